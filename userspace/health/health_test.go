package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

func TestCounterRiseAndFall(t *testing.T) {
	o := Options{Fall: 2, Rise: 3}
	var c counter
	down := false
	seq := []struct {
		ok   bool
		want transition
	}{
		{false, steady}, {true, steady}, // a single failure is forgiven
		{false, steady}, {false, wentDown},
		{true, steady}, {false, steady}, {true, steady}, {true, steady}, {true, cameUp},
	}
	for i, s := range seq {
		got := c.observe(s.ok, down, o)
		if got != s.want {
			t.Fatalf("step %d (ok=%v, down=%v): %v, want %v", i, s.ok, down, got, s.want)
		}
		switch got {
		case wentDown:
			down = true
		case cameUp:
			down = false
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestCheckerMarksMembersAndLogsOnce(t *testing.T) {
	m := balancer.NewMember("node1", "node1", 1, 0)
	var failing atomic.Bool
	failing.Store(true)
	probe := func(ctx context.Context) error {
		if failing.Load() {
			return errors.New("AJP secret refused")
		}
		return nil
	}
	var logs syncBuffer
	c := New([]Target{{Member: m, Probe: probe}}, Options{Interval: 5 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 2},
		slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	waitFor(t, "member down", m.Down)
	time.Sleep(30 * time.Millisecond) // more failing probes: no more log lines
	if n := strings.Count(logs.String(), "member down"); n != 1 {
		t.Fatalf("%d 'member down' lines, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "member=node1") || !strings.Contains(logs.String(), "secret refused") {
		t.Fatalf("log line lacks the member or the reason:\n%s", logs.String())
	}
	failing.Store(false)
	waitFor(t, "member up", func() bool { return !m.Down() })
}

// A failed request makes the checker probe the member at once, then at
// the fast interval while in doubt: a dead member is down long before its
// next regular probe (an hour away here). A probe that passes clears the
// doubt, and the member stays up.
func TestFailedRequestBringsProbesForward(t *testing.T) {
	m := balancer.NewMember("node2", "node2", 1, 0)
	var failing atomic.Bool
	var probes atomic.Int32
	probe := func(ctx context.Context) error {
		probes.Add(1)
		if failing.Load() {
			return errors.New("connect: connection refused")
		}
		return nil
	}
	var observed atomic.Int32
	opts := Options{Interval: time.Hour, FastInterval: 10 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 2,
		Observe: func(*balancer.Member, Result) { observed.Add(1) }}
	c := New([]Target{{Member: m, Probe: probe}}, opts, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// A failure on a member whose probe passes: one probe, no doubt left.
	m.SetLastError(time.Now(), "reset: connection reset by peer")
	waitFor(t, "a probe after the failed request", func() bool { return observed.Load() == 1 })
	if st, _ := c.Status(m); probes.Load() != 1 || m.Down() || st.Last == nil || st.Last.Err != nil || st.Failures != 0 {
		t.Fatalf("after a passing probe: down %v, status %+v", m.Down(), st)
	}

	failing.Store(true)
	m.SetLastError(time.Now(), "reset: connection reset by peer")
	waitFor(t, "member down", m.Down)
	waitFor(t, "the probe recorded", func() bool { st, _ := c.Status(m); return st.Last != nil && st.Last.Err != nil && st.Failures == 0 })
	st, ok := c.Status(m)
	if !ok || st.Last == nil || st.Last.Err == nil || st.Fall != 2 || st.Passes != 0 {
		t.Fatalf("status of a member just down: %+v", st)
	}
	if !strings.HasPrefix(m.LastError().Msg, "health check: connect") {
		t.Errorf("last error %q, want the probe's", m.LastError().Msg)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Members added and removed while the checker runs: an added one is
// probed from then on, a removed one no more.
func TestCheckerAddRemove(t *testing.T) {
	a, b := balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0)
	var probesA, probesB atomic.Int64
	c := New([]Target{{Member: a, Probe: func(context.Context) error { probesA.Add(1); return nil }}},
		Options{Interval: 5 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 2}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	c.Add(Target{Member: b, Probe: func(context.Context) error { probesB.Add(1); return errors.New("refused") }})
	waitFor(t, "b down", b.Down)
	if st, ok := c.Status(b); !ok || st.Last == nil || st.Last.Err == nil {
		t.Errorf("b's status: %+v %v", st, ok)
	}
	c.Remove(b)
	if _, ok := c.Status(b); ok {
		t.Error("a removed member still has a status")
	}
	n := probesB.Load()
	before := probesA.Load()
	waitFor(t, "more probes of a", func() bool { return probesA.Load() > before+3 })
	if probesB.Load() > n+1 { // one may have been under way
		t.Errorf("b probed %d more times after its removal", probesB.Load()-n)
	}
}
