package handoff

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// greet accepts on ln and writes who to each connection, until ln closes.
func greet(ln net.Listener, who string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.WriteString(c, who)
		c.Close()
	}
}

func dialRead(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestTakeOver(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	if _, err := Take(path); !errors.Is(err, ErrNoPredecessor) {
		t.Fatalf("Take with nobody there: %v", err)
	}
	srv, err := Listen(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, quiet); !errors.Is(err, ErrRunning) {
		t.Fatalf("a second Listen: %v, want ErrRunning", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go greet(ln, "old")

	released := make(chan struct{})
	state := balancer.Snapshot{Members: []balancer.MemberSnapshot{{Name: "a", Weight: 3}}}
	go srv.Serve(Predecessor{
		Sockets: map[string]net.Listener{"--listen " + addr: ln},
		Release: func() { ln.Close(); close(released) },
		State:   func() balancer.Snapshot { return state },
	})

	// A successor that gives up leaves the predecessor serving.
	quitter, err := Take(path)
	if err != nil {
		t.Fatal(err)
	}
	quitter.Abort()
	if got := dialRead(t, addr); got != "old" {
		t.Fatalf("after an aborted take-over: %q", got)
	}

	succ, err := Take(path)
	if err != nil {
		t.Fatal(err)
	}
	if succ.Pid() != os.Getpid() {
		t.Errorf("predecessor pid %d", succ.Pid())
	}
	if _, ok, _ := succ.Listener("--listen 127.0.0.1:1"); ok {
		t.Error("claimed a socket that was not offered")
	}
	inherited, ok, err := succ.Listener("--listen " + addr)
	if !ok || err != nil {
		t.Fatalf("claim: %v %v", ok, err)
	}
	defer inherited.Close()
	select {
	case <-released:
		t.Fatal("released before the successor was ready")
	default:
	}
	got, err := succ.Ready()
	if err != nil {
		t.Fatal(err)
	}
	succ.Serving()
	go succ.Moves(func(balancer.MovedSession) {})
	<-released
	<-srv.Done()
	if len(got.Members) != 1 || got.Members[0].Weight != 3 {
		t.Errorf("state %+v", got)
	}
	go greet(inherited, "new")
	for i := 0; i < 20; i++ {
		if got := dialRead(t, addr); got != "new" {
			t.Fatalf("connection %d after the take-over answered by %q", i, got)
		}
	}
	// The path is free for the successor to listen on.
	next, err := Listen(path, quiet)
	if err != nil {
		t.Fatalf("successor's Listen: %v", err)
	}
	next.Close()
}

func TestStaleSocketIsReplaced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // a process that died: the file stays, nobody answers
	srv, err := Listen(path, quiet)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.Close()
}

// The sessions the predecessor moves while it drains reach the successor,
// in order, after the state; Moves ends when the relay is closed.
func TestMovesWhileDrainingArePassedOn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handoff.sock")
	srv, err := Listen(path, quiet)
	if err != nil {
		t.Fatal(err)
	}
	table := moved.New(time.Minute, 10)
	pool, err := balancer.NewPool([]*balancer.Member{balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0)},
		"byrequests", balancer.Options{Moved: table})
	if err != nil {
		t.Fatal(err)
	}
	relay := NewRelay(pool)
	go srv.Serve(Predecessor{
		Release: func() { table.Observe(relay) },
		State:   func() balancer.Snapshot { return pool.Snapshot() },
		Relay:   relay,
	})
	succ, err := Take(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := succ.Ready(); err != nil {
		t.Fatal(err)
	}
	got := make(chan []balancer.MovedSession)
	go func() {
		var mvs []balancer.MovedSession
		if err := succ.Moves(func(mv balancer.MovedSession) { mvs = append(mvs, mv) }); err != nil {
			t.Error(err)
		}
		got <- mvs
	}()
	<-srv.Done()
	// Draining: two sessions move, one is used (not passed on).
	now := time.Now()
	table.Move([]byte("s1"), 1, moved.Down, now)
	table.Move([]byte("s2"), 0, moved.Evacuated, now)
	table.Lookup([]byte("s1"), now)
	relay.Close()
	mvs := <-got
	// The predecessor waits for the successor to say it serves.
	finished := make(chan struct{})
	go func() { srv.Finish(5 * time.Second); close(finished) }()
	select {
	case <-finished:
		t.Fatal("the predecessor finished before the successor said it serves")
	case <-time.After(50 * time.Millisecond):
	}
	succ.Serving()
	<-finished
	if len(mvs) != 2 || mvs[0].Key != "s1" || mvs[0].Member != "b" || mvs[0].Reason != moved.Down ||
		mvs[1].Key != "s2" || mvs[1].Member != "a" || mvs[1].Reason != moved.Evacuated {
		t.Errorf("moves passed on: %+v", mvs)
	}
	table.Move([]byte("s3"), 1, moved.Down, now) // after Close: dropped, no panic
}
