// Package health probes members on an interval and marks them down or up
// again, so that requests stop meeting a dead or misconfigured member
// instead of discovering it one failure at a time. The probes themselves
// belong to the transports (HTTP or AJP); this package owns the schedule,
// the rise/fall counting and the log line at each transition.
package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Probe checks a member once; nil means healthy. It must return by the
// context's deadline.
type Probe func(ctx context.Context) error

// Options tune the checker.
type Options struct {
	Interval time.Duration // between probes of one member
	Timeout  time.Duration // for one probe
	Fall     int           // consecutive failures that mark a member down
	Rise     int           // consecutive successes that bring it back
	// OnChange, if set, is called after each transition, so that a
	// datapath that copies member state (XDP) can follow at once.
	OnChange func()
}

// Checker runs the probes.
type Checker struct {
	members []*balancer.Member
	probes  []Probe
	opts    Options
	log     *slog.Logger
}

// New returns a checker; probes[i] checks members[i].
func New(members []*balancer.Member, probes []Probe, opts Options, log *slog.Logger) *Checker {
	return &Checker{members: members, probes: probes, opts: opts, log: log}
}

// Run probes every member until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watch(ctx, c.members[i], c.probes[i])
		}()
	}
	wg.Wait()
}

// watch probes one member. The first probe comes after a random part of
// the interval, so members are not all probed in the same instant.
func (c *Checker) watch(ctx context.Context, m *balancer.Member, probe Probe) {
	t := time.NewTimer(rand.N(c.opts.Interval) + time.Millisecond)
	defer t.Stop()
	var streak counter
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch streak.observe(err == nil, m.Down(), c.opts) {
		case wentDown:
			m.SetLastError(time.Now(), "health check: "+err.Error())
			m.SetDown(true)
			c.log.Warn("member down: health check failed", "member", m.Name, "checks", c.opts.Fall, "reason", err)
			c.changed()
		case cameUp:
			m.SetDown(false)
			c.log.Info("member up: health check passed", "member", m.Name, "checks", c.opts.Rise)
			c.changed()
		}
		t.Reset(c.opts.Interval)
	}
}

func (c *Checker) changed() {
	if c.opts.OnChange != nil {
		c.opts.OnChange()
	}
}

type transition uint8

const (
	steady transition = iota
	wentDown
	cameUp
)

// counter counts consecutive results pointing away from the current state.
type counter struct{ n int }

func (s *counter) observe(ok, down bool, o Options) transition {
	if ok != down { // the result agrees with the current state
		s.n = 0
		return steady
	}
	s.n++
	switch {
	case !down && s.n >= o.Fall:
		s.n = 0
		return wentDown
	case down && s.n >= o.Rise:
		s.n = 0
		return cameUp
	}
	return steady
}
