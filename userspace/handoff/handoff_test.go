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
	state := State{Members: []balancer.Snapshot{{Name: "a", Weight: 3}}}
	go srv.Serve(Predecessor{
		Sockets: map[string]net.Listener{"--listen " + addr: ln},
		Release: func() { ln.Close(); close(released) },
		State:   func() State { return state },
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

func TestCaptureApply(t *testing.T) {
	newPool := func(names ...string) *balancer.Pool {
		var ms []*balancer.Member
		for _, n := range names {
			ms = append(ms, balancer.NewMember(n, n, 1, 0))
		}
		p, err := balancer.NewPool(ms, "byrequests", balancer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	from, fromMoved := newPool("a", "b", "c"), moved.New(time.Hour, 100)
	from.Members()[1].SetFlags(balancer.Disabled)
	fromMoved.Move([]byte("s1"), 2, moved.Down, now) // to c
	fromMoved.Move([]byte("s2"), 1, moved.Down, now) // to b, which the successor lacks

	// The successor has no b, and numbers c differently.
	to, toMoved := newPool("c", "a"), moved.New(time.Hour, 100)
	members, sessions := Capture(from, fromMoved).Apply(to, toMoved, now)
	if members != 2 || sessions != 1 {
		t.Fatalf("applied %d members, %d sessions; want 2 and 1", members, sessions)
	}
	if m, ok := toMoved.Lookup([]byte("s1"), now); !ok || to.Members()[m].Name != "c" {
		t.Errorf("s1 moved to member %d (%v), want c", m, ok)
	}
}

// What operators changed at run time carries over a take-over, unless the
// successor's own configuration of it differs from the predecessor's: an
// edited flag wins (catherd reload with new flags).
func TestApplyKeepsEditedConfiguration(t *testing.T) {
	pool := func(weightA int, flagsB balancer.Flags) *balancer.Pool {
		a, b := balancer.NewMember("a", "a", weightA, 0), balancer.NewMember("b", "b", 1, flagsB)
		p, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	from := pool(1, 0)
	from.Member("a").SetWeight(7)             // an operator's weight
	from.Member("b").SetFlags(balancer.Drain) // an operator's drain
	st := Capture(from, nil)

	same := pool(1, 0) // a restart with the same flags: the operators' changes stay
	st.Apply(same, nil, time.Now())
	if a, b := same.Member("a"), same.Member("b"); a.Weight() != 7 || b.Flags() != balancer.Drain {
		t.Errorf("same flags: a weighs %d, b's flags %v; want 7 and N", a.Weight(), b.Flags())
	}
	edited := pool(5, balancer.Standby) // both edited: the new flags win
	st.Apply(edited, nil, time.Now())
	if a, b := edited.Member("a"), edited.Member("b"); a.Weight() != 5 || b.Flags() != balancer.Standby {
		t.Errorf("edited flags: a weighs %d, b's flags %v; want 5 and H", a.Weight(), b.Flags())
	}
}
