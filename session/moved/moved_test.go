package moved

import (
	"context"
	"testing"
	"time"
)

func TestTable(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := New(time.Minute, 2)
	tb.Move([]byte("a"), 1, Down, now)
	tb.Move([]byte("b"), 2, Isolated, now)
	if m, ok := tb.Lookup([]byte("a"), now.Add(30*time.Second)); !ok || m != 1 {
		t.Fatalf("a: %d %v", m, ok)
	}
	// a was used, so b is the least recent and makes room for c.
	tb.Move([]byte("c"), 3, Evacuated, now.Add(30*time.Second))
	if _, ok := tb.Lookup([]byte("b"), now.Add(30*time.Second)); ok {
		t.Fatal("b survived eviction")
	}
	st := tb.Stats()
	if st.Size != 2 || st.Evicted != 1 || st.Moves[Down] != 1 || st.Moves[Isolated] != 1 || st.Moves[Evacuated] != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Moving a known session again updates it in place.
	tb.Move([]byte("a"), 4, Down, now.Add(40*time.Second))
	if m, _ := tb.Lookup([]byte("a"), now.Add(40*time.Second)); m != 4 || tb.Stats().Size != 2 {
		t.Fatalf("a moved again: %d, size %d", m, tb.Stats().Size)
	}
	// Idle exactly the TTL is kept, past it forgotten; Expire sweeps.
	if _, ok := tb.Lookup([]byte("a"), now.Add(100*time.Second)); !ok {
		t.Fatal("a forgotten at exactly the TTL")
	}
	if n := tb.Expire(now.Add(91 * time.Second)); n != 1 {
		t.Fatalf("Expire dropped %d, want c only", n)
	}
	if _, ok := tb.Lookup([]byte("a"), now.Add(161*time.Second)); ok {
		t.Fatal("a kept past the TTL")
	}
	tb.Move([]byte("d"), 1, Down, now)
	tb.Forget([]byte("d"))
	if tb.Stats().Size != 0 {
		t.Fatalf("size %d after Forget", tb.Stats().Size)
	}
}

func TestSnapshotRestore(t *testing.T) {
	now := time.Unix(1000, 0)
	from := New(time.Minute, 10)
	from.Move([]byte("old"), 1, Down, now.Add(-2*time.Minute)) // past the TTL by now
	from.Move([]byte("a"), 2, Down, now.Add(-30*time.Second))
	from.Move([]byte("b"), 0, Evacuated, now.Add(-10*time.Second))
	snap := from.Snapshot()
	if len(snap) != 3 || snap[0].Key != "old" || snap[2].Key != "b" {
		t.Fatalf("snapshot %+v, want least recently used first", snap)
	}

	to := New(time.Minute, 2)
	to.Move([]byte("c"), 1, Down, now.Add(-time.Second)) // already here: the oldest after restore
	to.Restore(snap, now)
	if m, ok := to.Lookup([]byte("b"), now); !ok || m != 0 {
		t.Errorf("b: %d %v", m, ok)
	}
	if _, ok := to.Lookup([]byte("old"), now); ok {
		t.Error("an entry past its TTL was restored")
	}
	// a keeps its last use: it expires 30s later, as it would have.
	if _, ok := to.Lookup([]byte("a"), now.Add(31*time.Second)); ok {
		t.Error("a restored entry outlived its TTL")
	}
	st := to.Stats()
	if st.Size != 1 || st.Evicted != 1 || st.Moves[Down] != 1 {
		t.Errorf("stats %+v: want the size bound kept (c evicted) and restored entries not counted as moves", st)
	}
}

// ExpireEvery sweeps idle sessions out without a lookup of theirs, until
// its context ends.
func TestExpireEvery(t *testing.T) {
	tab := New(time.Millisecond, 10)
	tab.Move([]byte("s"), 1, Down, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tab.ExpireEvery(ctx, 5*time.Millisecond); close(done) }()
	for deadline := time.Now().Add(5 * time.Second); tab.Stats().Size > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the idle session was not swept out")
		}
	}
	cancel()
	<-done
}

// recorder is an Observer that writes down what it is told.
type recorder struct{ events []string }

func (r *recorder) Moved(e Entry)        { r.events = append(r.events, "moved "+e.Key+" "+e.Reason.String()) }
func (r *recorder) Used(e Entry)         { r.events = append(r.events, "used "+e.Key) }
func (r *recorder) Forgotten(key string) { r.events = append(r.events, "forgotten "+key) }

// The observer hears of moves, hits and forgets, and of nothing that
// changed nothing (a miss, forgetting what is not there) or that came
// from elsewhere (Restore) or from the clock (expiry).
func TestObserver(t *testing.T) {
	now := time.Unix(1000, 0)
	tb := New(time.Minute, 10)
	var r recorder
	tb.Observe(&r)
	tb.Move([]byte("a"), 1, Down, now)
	tb.Lookup([]byte("a"), now)
	tb.Lookup([]byte("nope"), now)
	tb.Forget([]byte("a"))
	tb.Forget([]byte("a"))
	tb.Restore([]Entry{{Key: "b", Member: 2, LastUsed: now}}, now)
	tb.Expire(now.Add(time.Hour))
	want := []string{"moved a down", "used a", "forgotten a"}
	if len(r.events) != len(want) {
		t.Fatalf("told %q, want %q", r.events, want)
	}
	for i := range want {
		if r.events[i] != want[i] {
			t.Fatalf("told %q, want %q", r.events, want)
		}
	}
	tb.Observe(nil)
	tb.Move([]byte("c"), 1, Down, now)
	if len(r.events) != len(want) {
		t.Errorf("told %q after Observe(nil)", r.events[len(want):])
	}
}

// Versions: a move, a forget, an expiry and a restore change the table; a
// hit uses it; a miss and a Peek do neither.
func TestVersions(t *testing.T) {
	tb := New(time.Minute, 10)
	now := time.Unix(1000, 0)
	step := func(what string, f func(), wantChanged, wantUsed bool) {
		t.Helper()
		c0, u0 := tb.Versions()
		f()
		c1, u1 := tb.Versions()
		if (c1 != c0) != wantChanged || (u1 != u0) != wantUsed {
			t.Errorf("%s: changed %d->%d, used %d->%d", what, c0, c1, u0, u1)
		}
	}
	step("move", func() { tb.Move([]byte("a"), 1, Down, now) }, true, false)
	step("hit", func() { tb.Lookup([]byte("a"), now) }, false, true)
	step("miss", func() { tb.Lookup([]byte("b"), now) }, false, false)
	step("peek", func() { tb.Peek([]byte("a"), now) }, false, false)
	step("forget", func() { tb.Forget([]byte("a")) }, true, false)
	step("restore", func() { tb.Restore([]Entry{{Key: "c", Member: 2, LastUsed: now}}, now) }, true, false)
	step("restore of a later use", func() { tb.Restore([]Entry{{Key: "c", Member: 2, LastUsed: now.Add(time.Second)}}, now) }, false, true)
	step("restore elsewhere", func() { tb.Restore([]Entry{{Key: "c", Member: 3, LastUsed: now}}, now) }, true, false)
	step("expire", func() { tb.Expire(now.Add(2 * time.Minute)) }, true, false)
}
