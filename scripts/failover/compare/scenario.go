package main

// The scenario: the phases every side goes through, on whatever front
// ends the side runs (balancers).

import (
	"context"
	"log"
	"time"

	"github.com/catherd/catherd/scripts/failover"
)

// balancers is a side's pair of front ends, as the scenario drives them.
type balancers interface {
	// fronts are the base URLs the load goes through.
	fronts() []string
	// waitUsable waits until every front end considers node usable
	// (want true) or out of service (false).
	waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error
	// takeOut takes node out of service on every front end before a
	// planned stop, and returns once it may be stopped.
	takeOut(ctx context.Context, node string) error
	// putBack puts node back in service on every front end.
	putBack(ctx context.Context, node string) error
	// epilogue returns whatever the front ends can tell about the run.
	epilogue(ctx context.Context) string
}

// frontEnd is one front end of a side, whichever scenario it is in.
type frontEnd interface {
	// waitUsable waits until the front end considers node usable (want
	// true) or out after a failure (false).
	waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error
}

// waitAllUsable waits on every one of a side's front ends at once; who
// names the side in the log.
func waitAllUsable[F frontEnd](ctx context.Context, who string, fronts []F, node string, want bool, limit time.Duration) error {
	t0 := time.Now()
	err := onAll(len(fronts), func(i int) error { return fronts[i].waitUsable(ctx, node, want, limit) })
	if err == nil {
		log.Printf("%s: %s usable=%v on all %d after %v", who, node, want, len(fronts), time.Since(t0).Round(time.Millisecond))
	}
	return err
}

// scenario is TestTomcatReplicationFailover's sequence of phases.
func scenario(ctx context.Context, b balancers, rig *rig, nodes []string) ([]failover.Report, error) {
	load, err := failover.Start(ctx, failover.Options{Fronts: b.fronts()}, "steady")
	if err != nil {
		return nil, err
	}
	err = phases(ctx, b, rig, nodes, load)
	reps := load.Stop()
	return reps, err
}

func phases(ctx context.Context, b balancers, rig *rig, nodes []string, load *failover.Load) error {
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	load.Phase("kill -9 node2")
	load.Out("node2")
	if err := rig.node(ctx, "kill", "node2"); err != nil {
		return err
	}
	if err := b.waitUsable(ctx, "node2", false, 10*time.Second); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}

	load.Phase("node2 back")
	if err := rig.node(ctx, "start", "node2"); err != nil {
		return err
	}
	if err := b.waitUsable(ctx, "node2", true, 20*time.Second); err != nil {
		return err
	}
	load.In("node2")
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}

	for _, n := range nodes {
		load.Phase("evacuate " + n)
		load.Out(n)
		if err := b.takeOut(ctx, n); err != nil {
			return err
		}
		load.Phase("restart " + n)
		if err := rig.node(ctx, "stop", n); err != nil {
			return err
		}
		if err := rig.node(ctx, "start", n); err != nil {
			return err
		}
		if err := b.putBack(ctx, n); err != nil {
			return err
		}
		if err := b.waitUsable(ctx, n, true, 20*time.Second); err != nil {
			return err
		}
		load.In(n)
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ---------------------------------------------------------------- the rig
