package peers

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func rec(key string, clock uint64, origin string, value string, ttl time.Duration) wireRecord {
	var v []byte
	if value != "" {
		v = []byte(value)
	}
	return wireRecord{key: key, version: Version{clock, origin}, value: v, ttl: ttl}
}

func TestVersionAfter(t *testing.T) {
	for _, c := range []struct {
		a, b Version
		want bool
	}{
		{Version{2, "a"}, Version{1, "z"}, true},
		{Version{1, "z"}, Version{2, "a"}, false},
		{Version{1, "b"}, Version{1, "a"}, true},
		{Version{1, "a"}, Version{1, "b"}, false},
		{Version{1, "a"}, Version{1, "a"}, false},
	} {
		if got := c.a.After(c.b); got != c.want {
			t.Errorf("%v.After(%v) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}

// Whatever order conflicting writes arrive in, every store ends with the
// same winner.
func TestStoreLastWriterWinsInAnyOrder(t *testing.T) {
	writes := []wireRecord{
		rec("k", 5, "b", "b5", 0),
		rec("k", 7, "a", "a7", 0),
		rec("k", 7, "c", "c7", 0), // same clock: the greater name wins
		rec("k", 6, "z", "z6", 0),
		{key: "k", version: Version{3, "a"}, deleted: true, ttl: time.Hour},
	}
	orders := [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {2, 0, 4, 1, 3}, {3, 2, 1, 4, 0}}
	for _, order := range orders {
		s := newStore("me", time.Hour)
		for _, i := range order {
			s.apply(writes[i], t0)
		}
		e := s.lookup("k", t0)
		if e == nil || string(e.rec.Value) != "c7" || e.rec.Version != (Version{7, "c"}) {
			t.Fatalf("order %v: got %+v, want c7 at {7 c}", order, e)
		}
		if s.clock != 7 {
			t.Errorf("order %v: clock %d, want 7 (the highest seen)", order, s.clock)
		}
	}
}

func TestStoreApplyReportsOnlyChanges(t *testing.T) {
	s := newStore("me", time.Hour)
	if _, ok := s.apply(rec("k", 5, "b", "v", 0), t0); !ok {
		t.Fatal("first write not applied")
	}
	if _, ok := s.apply(rec("k", 5, "b", "v", 0), t0); ok {
		t.Error("the same version again was a change")
	}
	if _, ok := s.apply(rec("k", 4, "b", "old", 0), t0); ok {
		t.Error("an older version was a change")
	}
	c, ok := s.apply(rec("k", 6, "a", "new", 0), t0)
	if !ok || string(c.Old.Value) != "v" || string(c.New.Value) != "new" {
		t.Errorf("newer version: %+v %v", c, ok)
	}
}

// A local write's clock is past everything seen and not behind the wall
// clock in milliseconds.
func TestStoreWriteClock(t *testing.T) {
	s := newStore("me", time.Hour)
	c := s.write("a", []byte("1"), false, 0, t0)
	if c.New.Version.Clock != uint64(t0.UnixMilli()) || c.New.Version.Origin != "me" {
		t.Errorf("first write at %v: version %v", t0, c.New.Version)
	}
	c = s.write("a", []byte("2"), false, 0, t0)
	if c.New.Version.Clock != uint64(t0.UnixMilli())+1 {
		t.Errorf("second write in the same millisecond: clock %d", c.New.Version.Clock)
	}
	far := uint64(t0.UnixMilli()) + 1_000_000
	s.apply(rec("b", far, "peer", "x", 0), t0)
	if c = s.write("b", []byte("mine"), false, 0, t0); c.New.Version.Clock != far+1 {
		t.Errorf("write after seeing clock %d: clock %d", far, c.New.Version.Clock)
	}
}

func TestStoreDeleteLeavesExpiringTombstone(t *testing.T) {
	s := newStore("me", time.Minute)
	s.write("k", []byte("v"), false, 0, t0)
	c := s.write("k", nil, true, 0, t0)
	if !c.Old.Live() || c.New.Live() || !c.New.Deleted || !c.New.Expires.Equal(t0.Add(time.Minute)) {
		t.Fatalf("delete: %+v", c)
	}
	// An older write arriving late does not bring the value back.
	if _, ok := s.apply(rec("k", 1, "zz", "late", 0), t0); ok {
		t.Error("an older write replaced the tombstone")
	}
	if s.live != 0 || s.dead != 1 {
		t.Errorf("counts live %d dead %d", s.live, s.dead)
	}
	if changes := s.sweep(t0.Add(time.Minute)); len(changes) != 0 {
		t.Errorf("a tombstone's expiry reported %v", changes)
	}
	if s.dead != 0 || len(s.byKey) != 0 || len(s.byExpiry) != 0 || s.digest != 0 {
		t.Errorf("after the sweep: dead %d, %d keys, %d expiries, digest %x", s.dead, len(s.byKey), len(s.byExpiry), s.digest)
	}
}

func TestStoreTouch(t *testing.T) {
	s := newStore("me", time.Hour)
	v1 := s.write("k", []byte("v1"), false, time.Minute, t0).New.Version
	now := t0.Add(30 * time.Second)

	if _, ok := s.touch(wireTouch{"k", v1, time.Minute}, now); !ok {
		t.Fatal("touch of the current version did nothing")
	}
	if e := s.lookup("k", now); !e.rec.Expires.Equal(now.Add(time.Minute)) {
		t.Errorf("expires %v, want %v", e.rec.Expires, now.Add(time.Minute))
	}
	if _, ok := s.touch(wireTouch{"k", v1, time.Minute}, now.Add(500*time.Millisecond)); ok {
		t.Error("a touch moving the expiry by half a second was recorded")
	}

	// A newer write; a touch of the old version is stale and changes nothing.
	v2 := s.write("k", []byte("v2"), false, time.Minute, now).New.Version
	later := now.Add(40 * time.Second)
	if _, ok := s.touch(wireTouch{"k", v1, 10 * time.Minute}, later); ok {
		t.Error("a touch of a replaced version was applied")
	}
	if e := s.lookup("k", later); string(e.rec.Value) != "v2" || !e.rec.Expires.Equal(now.Add(time.Minute)) {
		t.Errorf("after the stale touch: %+v", e.rec)
	}
	if _, ok := s.touch(wireTouch{"k", v2, time.Minute}, later); !ok {
		t.Error("touch of the new version did nothing")
	}

	// Nothing to extend: a record that never expires, a tombstone, nothing.
	vn := s.write("n", []byte("x"), false, 0, t0).New.Version
	if _, ok := s.touch(wireTouch{"n", vn, time.Minute}, t0); ok {
		t.Error("touch gave an expiry to a record that never expires")
	}
	vd := s.write("d", nil, true, 0, t0).New.Version
	if _, ok := s.touch(wireTouch{"d", vd, 2 * time.Hour}, t0); ok {
		t.Error("touch extended a tombstone")
	}
	if _, ok := s.touch(wireTouch{"none", vd, time.Hour}, t0); ok {
		t.Error("touch of an absent key")
	}
}

// A full-state exchange carries the same version with a later expiry when a
// touch was missed; within the slack it is no change.
func TestStoreApplySameVersionExtends(t *testing.T) {
	s := newStore("me", time.Hour)
	s.apply(rec("k", 9, "p", "v", time.Minute), t0)
	if _, ok := s.apply(rec("k", 9, "p", "v", time.Minute), t0.Add(10*time.Millisecond)); ok {
		t.Error("10 ms later was a change")
	}
	c, ok := s.apply(rec("k", 9, "p", "v", time.Minute), t0.Add(10*time.Second))
	if !ok || !c.New.Expires.Equal(t0.Add(70*time.Second)) {
		t.Errorf("missed touch: %+v %v", c, ok)
	}
}

func TestStoreExpiry(t *testing.T) {
	s := newStore("me", time.Hour)
	s.write("a", []byte("1"), false, time.Second, t0)
	s.write("b", []byte("2"), false, 2*time.Second, t0)
	s.write("c", []byte("3"), false, 0, t0)
	at := t0.Add(time.Second)
	if s.lookup("a", at) != nil {
		t.Error("an expired record is still visible before the sweep")
	}
	// Replacing an expired but unswept record: the old one was absent.
	if c := s.write("a", []byte("again"), false, time.Minute, at); c.Old.exists() {
		t.Errorf("old of a write over an expired record: %+v", c.Old)
	}
	changes := s.sweep(t0.Add(2 * time.Second))
	if len(changes) != 1 || changes[0].Key != "b" || string(changes[0].Old.Value) != "2" || changes[0].New.exists() {
		t.Fatalf("sweep: %+v", changes)
	}
	if s.live != 2 || s.lookup("a", at) == nil || s.lookup("c", at) == nil {
		t.Errorf("after the sweep: live %d", s.live)
	}
}

func TestStoreDigestIsOrderFree(t *testing.T) {
	a, b := newStore("a", time.Hour), newStore("b", time.Hour)
	ws := []wireRecord{rec("x", 1, "p", "1", 0), rec("y", 2, "q", "2", 0), rec("x", 3, "q", "3", 0)}
	for _, w := range ws {
		a.apply(w, t0)
	}
	for i := len(ws) - 1; i >= 0; i-- {
		b.apply(ws[i], t0)
	}
	if a.digest != b.digest || a.digest == 0 {
		t.Errorf("digests %x and %x", a.digest, b.digest)
	}
	b.apply(rec("z", 1, "p", "", 0), t0)
	if a.digest == b.digest {
		t.Error("an extra record left the digest unchanged")
	}
}

func TestStorePrefixed(t *testing.T) {
	s := newStore("me", time.Hour)
	for _, k := range []string{"moved/2", "action/b", "moved/1", "action/a", "movedX", "z"} {
		s.write(k, []byte(k), false, 0, t0)
	}
	s.write("moved/3", []byte("gone"), false, time.Second, t0)
	var got []string
	for _, e := range s.prefixed("moved/", t0.Add(time.Second)) {
		got = append(got, e.key)
	}
	if len(got) != 2 || got[0] != "moved/1" || got[1] != "moved/2" {
		t.Errorf("prefixed: %v", got)
	}
}
