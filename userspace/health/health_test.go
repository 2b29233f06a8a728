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
	c := New([]*balancer.Member{m}, []Probe{probe}, Options{Interval: 5 * time.Millisecond, Timeout: time.Second, Fall: 2, Rise: 2},
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
