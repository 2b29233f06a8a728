package balancer

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
)

// TestSnapshotRestore hands members over to a fresh pool, as a catherd
// taking over does: a settling member goes on settling, and operator
// flags, weights, health and domains carry over.
func TestSnapshotRestore(t *testing.T) {
	opts := Options{RejoinSettle: 10 * time.Second, SlowStart: 100 * time.Second}
	p, now := newTestPool(t, "byrequests", opts, "a:1", "b:1", "c:1")
	a, b, c := p.Members()[0], p.Members()[1], p.Members()[2]
	a.SetDown(true)
	*now = now.Add(time.Minute)
	a.SetDown(false) // settling
	b.SetFlags(Drain)
	b.SetWeight(7)
	b.SetDomain("east")
	c.SetDown(true)

	q, qnow := newTestPool(t, "byrequests", opts, "a:1", "b:1", "c:1")
	*qnow = *now
	for i, m := range p.Members() {
		q.Members()[i].restore(m.snapshot())
	}
	qa, qb, qc := q.Members()[0], q.Members()[1], q.Members()[2]
	if got := qa.State(*qnow); got != StateSettling {
		t.Errorf("a: %v, want still settling", got)
	}
	*qnow = qnow.Add(20 * time.Second)
	if got := qa.Ramp(*qnow); got < 0.09 || got > 0.11 {
		t.Errorf("a 10%% into its ramp: ramp %v", got)
	}
	if qb.Flags() != Drain || qb.Weight() != 7 || qb.Domain() != "east" {
		t.Errorf("b: flags %v weight %d domain %q", qb.Flags(), qb.Weight(), qb.Domain())
	}
	if !qc.Down() || qc.State(*qnow) != StateDown {
		t.Errorf("c: down %v state %v", qc.Down(), qc.State(*qnow))
	}
	// c comes back under the new process: it was lost after serving, so it
	// settles as it would have under the old one.
	qc.SetDown(false)
	if got := qc.State(*qnow); got != StateSettling {
		t.Errorf("c back after the handover: %v, want settling", got)
	}
}

// A successor gets the members and moved sessions by name: it may lack
// some members and number the others differently.
func TestPoolSnapshotRestore(t *testing.T) {
	newPool := func(table *moved.Table, names ...string) *Pool {
		var ms []*Member
		for _, n := range names {
			ms = append(ms, NewMember(n, n, 1, 0))
		}
		p, err := NewPool(ms, "byrequests", Options{Moved: table})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	fromMoved := moved.New(time.Hour, 100)
	from := newPool(fromMoved, "a", "b", "c")
	from.Members()[1].SetFlags(Disabled)
	fromMoved.Move([]byte("s1"), 2, moved.Down, now) // to c
	fromMoved.Move([]byte("s2"), 1, moved.Down, now) // to b, which the successor lacks

	// The successor has no b, and numbers c differently.
	toMoved := moved.New(time.Hour, 100)
	to := newPool(toMoved, "c", "a")
	members, sessions := to.Restore(from.Snapshot())
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
func TestRestoreKeepsEditedConfiguration(t *testing.T) {
	pool := func(weightA int, flagsB Flags) *Pool {
		a, b := NewMember("a", "a", weightA, 0), NewMember("b", "b", 1, flagsB)
		p, err := NewPool([]*Member{a, b}, "byrequests", Options{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	from := pool(1, 0)
	from.Member("a").SetWeight(7)    // an operator's weight
	from.Member("b").SetFlags(Drain) // an operator's drain
	st := from.Snapshot()

	same := pool(1, 0) // a restart with the same flags: the operators' changes stay
	same.Restore(st)
	if a, b := same.Member("a"), same.Member("b"); a.Weight() != 7 || b.Flags() != Drain {
		t.Errorf("same flags: a weighs %d, b's flags %v; want 7 and N", a.Weight(), b.Flags())
	}
	edited := pool(5, Standby) // both edited: the new flags win
	edited.Restore(st)
	if a, b := edited.Member("a"), edited.Member("b"); a.Weight() != 5 || b.Flags() != Standby {
		t.Errorf("edited flags: a weighs %d, b's flags %v; want 5 and H", a.Weight(), b.Flags())
	}
}

// A snapshot goes from one catherd build to another: its JSON names are
// the hand-off protocol's (version 1) and must not change.
func TestSnapshotJSON(t *testing.T) {
	s := Snapshot{Members: []MemberSnapshot{{Name: "a"}}, Moved: []MovedSession{{Key: "k", Member: "a"}}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"members":[{"name":"a","flags":0,"weight":0,"down":false,"domain":"","served":false,"lost":false,"back_since":0}]`,
		`"moved":[{"key":"k","member":"a","reason":`, `"last_used":`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
}

// A state file keeps what operators set and the moved sessions, and
// nothing a process observed: a plain restart resumes with the first and
// observes the rest again. An edited --backend wins here as in a take-over.
func TestResumeAppliesOnlySettings(t *testing.T) {
	newPool := func(table *moved.Table, weightB int) *Pool {
		a, b := NewMember("a", "a", 1, 0), NewMember("b", "b", weightB, 0)
		p, err := NewPool([]*Member{a, b}, "byrequests", Options{Moved: table})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	fromMoved := moved.New(time.Hour, 100)
	from := newPool(fromMoved, 1)
	from.Member("a").SetFlags(Disabled)
	from.Member("a").SetDomain("east")
	from.Member("b").SetWeight(9)
	from.Member("b").SetDown(true)
	fromMoved.Move([]byte("s1"), 1, moved.Down, now)
	saved, err := json.Marshal(from.Snapshot().Settings())
	if err != nil {
		t.Fatal(err)
	}
	var st Snapshot
	if err := json.Unmarshal(saved, &st); err != nil {
		t.Fatal(err)
	}

	toMoved := moved.New(time.Hour, 100)
	to := newPool(toMoved, 1)
	if members, sessions := to.Resume(st); members != 2 || sessions != 1 {
		t.Fatalf("resumed %d members, %d sessions; want 2 and 1", members, sessions)
	}
	a, b := to.Member("a"), to.Member("b")
	if a.Flags() != Disabled || b.Weight() != 9 {
		t.Errorf("operators' settings: a's flags %v, b weighs %d; want D and 9", a.Flags(), b.Weight())
	}
	if a.Domain() != "" || b.Down() {
		t.Errorf("observed state came back: a's domain %q, b down %v", a.Domain(), b.Down())
	}
	if m, ok := toMoved.Lookup([]byte("s1"), now); !ok || to.Members()[m].Name != "b" {
		t.Errorf("s1 moved to member %d (%v), want b", m, ok)
	}

	edited := newPool(moved.New(time.Hour, 100), 4) // b's weight edited on the command line
	edited.Resume(st)
	if w := edited.Member("b").Weight(); w != 4 {
		t.Errorf("edited --backend weight: b weighs %d, want 4", w)
	}
}
