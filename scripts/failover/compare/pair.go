package main

// The keepalived scenario (-scenario keepalived): TestTierKeepalived's
// phases behind a pair of edge hosts under one keepalived configuration,
// for catherd (the pair is one tier) and for Apache (two instances that
// share nothing). The same load goes through the VIP for both.

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"path/filepath"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	"github.com/catherd/catherd/scripts/keepalived"
)

// edgeHost is one host of the pair: a namespace on the rig's bridge.
type edgeHost struct{ name, ns, addr string }

// pairHosts: A holds the VIP first (the higher priority) and takes it back
// when it returns (preempt), so the last phases go through the restarted
// front end, as in TestTierKeepalived. The addresses, VIP and namespaces
// differ from the test's, but the rig (one per host) keeps the two apart
// anyway.
var pairHosts = []edgeHost{{"A", "cth-cmpA", "10.77.0.203"}, {"B", "cth-cmpB", "10.77.0.204"}}

const (
	pairVIP      = "10.77.0.251"
	pairSessions = 100
	// pairTimeout is the load's timeout per request. A request cut off
	// by a move of the VIP fails after it; the phases after a move last
	// longer, so such failures count in the phase of the move.
	pairTimeout = 3 * time.Second
)

// pairFront is a side's front end on each host of the pair.
type pairFront interface {
	// start starts the front end on host i, again after a kill if
	// again, and returns once it serves (catherd: once it also joined
	// the tier, when again).
	start(ctx context.Context, i int, again bool) error
	// kill kills the front end on host i with SIGKILL: it crashed.
	kill(i int)
	// check is the URL keepalived's check on host i asks: whether the
	// local front end serves.
	check(i int) string
	// on is the front end on host i, to wait for its members' states.
	on(i int) frontEnd
}

// runPair runs the keepalived scenario once behind one side, on the rig
// runSide brought up.
func (s *setup) runPair(ctx context.Context, side, dir string, rig *rig, nodes []string, undo *cleanups) ([]failover.Report, error) {
	for _, h := range pairHosts {
		undo.add(func() { unplugHost(h.ns) })
		if err := plugHost(h.ns, h.addr); err != nil {
			return nil, err
		}
	}
	var f pairFront
	switch side {
	case "catherd":
		t, err := s.newCatherdTier(dir, nodes, undo)
		if err != nil {
			return nil, err
		}
		f = t
	default:
		f = &apacheHosts{root: s.root, dir: dir, nodes: nodes, redirect: side == "apache-redirect", undo: undo}
	}
	for i := range pairHosts {
		if err := f.start(ctx, i, false); err != nil {
			return nil, err
		}
	}
	for i, h := range pairHosts {
		kdir := filepath.Join(dir, "keepalived-"+h.name)
		argv, err := keepalived.Prepare(kdir, keepalived.Host{ID: "edge" + h.name, Priority: 150 - 50*i, VIP: pairVIP + "/24",
			Check: f.check(i), Preempt: true})
		if err != nil {
			return nil, err
		}
		undo.add(func() { keepalived.KillChild(kdir) }) // runs after keepalived's stop
		p, err := startProc("keepalived-"+h.name, filepath.Join(kdir, "keepalived.log"), inNS(h.ns, argv)...)
		if err != nil {
			return nil, err
		}
		undo.add(p.stop)
	}
	if err := keepalived.WaitVIP(ctx, pairHosts[0].ns, pairVIP, 20*time.Second); err != nil {
		return nil, err
	}
	for _, n := range nodes {
		for i := range pairHosts {
			if err := f.on(i).waitUsable(ctx, n, true, 20*time.Second); err != nil {
				return nil, err
			}
		}
	}
	vip := "http://" + pairVIP + ":8080"
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	err := poll(ctx, "through the VIP", 20*time.Second, func() (bool, string) {
		resp, err := client.Get(vip + "/health.jsp")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	if err != nil {
		return nil, err
	}

	load, err := failover.Start(ctx, failover.Options{Fronts: []string{vip}, Sessions: pairSessions, Timeout: pairTimeout}, "steady via A")
	if err != nil {
		return nil, err
	}
	err = pairPhases(ctx, f, rig, load)
	return load.Stop(), err
}

// pairPhases is TestTierKeepalived's sequence of phases.
func pairPhases(ctx context.Context, f pairFront, rig *rig, load *failover.Load) error {
	a, b := pairHosts[0], pairHosts[1]
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}

	load.Phase("kill -9 front end A")
	f.kill(0)
	if err := vipMoves(ctx, b, "A's front end died"); err != nil {
		return err
	}

	load.Phase("kill -9 node2 (via B)")
	load.Out("node2")
	if err := rig.node(ctx, "kill", "node2"); err != nil {
		return err
	}
	if err := f.on(1).waitUsable(ctx, "node2", false, 10*time.Second); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}

	load.Phase("A back, the VIP returns")
	if err := f.start(ctx, 0, true); err != nil {
		return err
	}
	if err := vipMoves(ctx, a, "A's front end served again"); err != nil {
		return err
	}

	load.Phase("node2 back (via A)")
	if err := rig.node(ctx, "start", "node2"); err != nil {
		return err
	}
	for i := range pairHosts {
		if err := f.on(i).waitUsable(ctx, "node2", true, 30*time.Second); err != nil {
			return fmt.Errorf("node2 back: %w", err)
		}
	}
	load.In("node2")
	return sleep(ctx, 3*time.Second)
}

// vipMoves waits until the VIP is on host to, then until the requests cut
// off by its move have timed out, so that they count in this phase; since
// names what made it move, for the log.
func vipMoves(ctx context.Context, to edgeHost, since string) error {
	t0 := time.Now()
	if err := keepalived.WaitVIP(ctx, to.ns, pairVIP, 20*time.Second); err != nil {
		return err
	}
	log.Printf("the VIP is on %s %v after %s", to.name, time.Since(t0).Round(time.Millisecond), since)
	return sleep(ctx, pairTimeout+time.Second)
}
