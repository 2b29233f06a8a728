// Package health probes members on an interval and marks them down or up
// again, so that requests stop meeting a dead or misconfigured member
// instead of discovering it one failure at a time. The probes themselves
// belong to the transports (HTTP or AJP); this package owns the schedule,
// the rise/fall counting, the log line at each transition and the record
// of each member's last probe (for the admin page and metrics).
//
// A member in doubt is probed faster: after a failed request (the member
// signals it, see balancer.Member.Failures) it is probed at once, and from
// a first failed probe until it is marked down, or from a first passed
// probe of a down member until it is back, every FastInterval instead of
// every Interval (HAProxy's fastinter). A node killed under load is so
// marked down within a probe or two of the first request that met it,
// rather than after Fall full intervals. A failed request alone never
// marks a member down: a reset on a reused keep-alive connection also
// happens when a healthy node closed an idle connection.
package health

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Probe checks a member once; nil means healthy. It must return by the
// context's deadline.
type Probe func(ctx context.Context) error

// Target is a member to check and the probe that checks it (over the
// member's own protocol: the proxy's for L7 members, a TCP connect for
// L4 backends).
type Target struct {
	Member *balancer.Member
	Probe  Probe
}

// Options tune the checker.
type Options struct {
	Interval time.Duration // between probes of one member
	// FastInterval is between probes of a member in doubt (see the
	// package comment); at most Interval (0: Interval).
	FastInterval time.Duration
	Timeout      time.Duration // for one probe
	Fall         int           // consecutive failures that mark a member down
	Rise         int           // consecutive successes that bring it back
	// OnChange, if set, is called after each transition, so that a
	// datapath that copies member state (XDP) can follow at once.
	OnChange func()
	// Observe, if set, is called after each probe (for metrics).
	Observe func(m *balancer.Member, r Result)
}

// Result is the outcome of one probe.
type Result struct {
	At       time.Time     // when it started
	Duration time.Duration // how long it took
	Err      error         // nil when it passed
}

// Status is what the checker knows of a member: its last probe and how
// far it is along the way to a change of state.
type Status struct {
	Last *Result // nil before the first probe
	// Failures counts consecutive failed probes of a member that is up
	// (it goes down at Fall); Passes, consecutive passed probes of a
	// member that is down (it is back at Rise).
	Failures, Passes int
	Fall, Rise       int
}

// Checker runs the probes.
type Checker struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	status  map[*balancer.Member]*Status
	targets []Target        // to start when Run starts
	ctx     context.Context // Run's, while it runs
	stops   map[*balancer.Member]context.CancelFunc
	wg      sync.WaitGroup
}

// New returns a checker of targets.
func New(targets []Target, opts Options, log *slog.Logger) *Checker {
	if opts.FastInterval <= 0 || opts.FastInterval > opts.Interval {
		opts.FastInterval = opts.Interval
	}
	c := &Checker{opts: opts, log: log, status: map[*balancer.Member]*Status{}, stops: map[*balancer.Member]context.CancelFunc{}}
	for _, t := range targets {
		c.Add(t)
	}
	return c
}

// Add has the checker probe one more target (a member added at run
// time), from now if it runs, else from when it does.
func (c *Checker) Add(t Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[t.Member] = &Status{Fall: c.opts.Fall, Rise: c.opts.Rise}
	if c.ctx == nil {
		c.targets = append(c.targets, t)
		return
	}
	c.start(t)
}

// Remove stops probing m (a member removed at run time).
func (c *Checker) Remove(m *balancer.Member) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.status, m)
	if stop, ok := c.stops[m]; ok {
		stop()
		delete(c.stops, m)
	}
	c.targets = slices.DeleteFunc(c.targets, func(t Target) bool { return t.Member == m })
}

// start probes t until Run's context ends or t is removed; c.mu is held.
func (c *Checker) start(t Target) {
	ctx, stop := context.WithCancel(c.ctx)
	c.stops[t.Member] = stop
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.watch(ctx, t.Member, t.Probe)
	}()
}

// Status returns what the checker knows of m; false when it does not
// check m.
func (c *Checker) Status(m *balancer.Member) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.status[m]
	if !ok {
		return Status{}, false
	}
	out := *st
	if st.Last != nil {
		last := *st.Last
		out.Last = &last
	}
	return out, true
}

// record keeps a probe's result and the streak it left.
func (c *Checker) record(m *balancer.Member, r Result, streak int) {
	c.mu.Lock()
	st, ok := c.status[m]
	if !ok { // removed while it was probed
		c.mu.Unlock()
		return
	}
	st.Last = &r
	st.Failures, st.Passes = 0, 0
	if m.Down() {
		st.Passes = streak
	} else {
		st.Failures = streak
	}
	c.mu.Unlock()
	if c.opts.Observe != nil {
		c.opts.Observe(m, r)
	}
}

// Run probes every member until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	for _, t := range c.targets {
		c.start(t)
	}
	c.targets = nil
	c.mu.Unlock()
	<-ctx.Done()
	c.wg.Wait()
}

// watch probes one member. The first probe comes after a random part of
// the interval, so members are not all probed in the same instant. A
// failure the member signals brings the next probe forward, but never
// closer than FastInterval to the previous one.
func (c *Checker) watch(ctx context.Context, m *balancer.Member, probe Probe) {
	next := time.Now().Add(rand.N(c.opts.Interval) + time.Millisecond)
	var last time.Time // of the previous probe
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	var streak counter
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Failures():
			soon := last.Add(c.opts.FastInterval)
			if now := time.Now(); soon.Before(now) {
				soon = now
			}
			if !m.Down() && soon.Before(next) {
				next = soon
				t.Reset(time.Until(next))
			}
			continue
		case <-t.C:
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		err := probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		last = start
		change := streak.observe(err == nil, m.Down(), c.opts)
		switch change {
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
		c.record(m, Result{At: start, Duration: time.Since(start), Err: err}, streak.n)
		next = start.Add(c.opts.Interval)
		if streak.n > 0 { // in doubt
			next = start.Add(c.opts.FastInterval)
		}
		t.Reset(time.Until(next))
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
