package moved

import (
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
