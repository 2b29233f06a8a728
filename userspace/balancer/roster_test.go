package balancer

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
)

// A member added at run time takes its share of new sessions and the
// sessions its route names; names and routes stay unique.
func TestAddMember(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:1", "b:1")
	c := NewMember("c", "c", 1, 0)
	if i, err := p.Add(c, nil); err != nil || i != 2 || c.Index() != 2 {
		t.Fatalf("Add c: index %d, %v", i, err)
	}
	if _, err := p.Add(NewMember("c", "z", 1, 0), nil); !errors.Is(err, ErrMemberExists) {
		t.Errorf("a second c: %v", err)
	}
	if _, err := p.Add(NewMember("z", "a", 1, 0), nil); !errors.Is(err, ErrMemberExists) {
		t.Errorf("a second route a: %v", err)
	}
	got := map[string]int{}
	for range 30 {
		m, _, err := p.Pick(&Request{})
		if err != nil {
			t.Fatal(err)
		}
		got[m.Name]++
	}
	if got["c"] != 10 {
		t.Errorf("new sessions over a, b and c: %v", got)
	}
	if m, o, _ := p.Pick(&Request{Route: []byte("c"), SessionKey: []byte("S")}); m != c || o != Hit {
		t.Errorf("a session of c: %v %v", m, o)
	}
	if n := len(p.Members()); n != 3 {
		t.Errorf("%d members listed, want 3", n)
	}
}

// A removed member takes nothing more: its sessions fail over to their
// partners, sessions that had moved to it are forgotten, it leaves the
// listings and snapshots; the last member cannot go.
func TestRemoveMember(t *testing.T) {
	table := moved.New(time.Hour, 100)
	p, now := newTestPool(t, "byrequests", Options{Moved: table}, "a:1", "b:1", "c:1")
	a, b, c := p.Members()[0], p.Members()[1], p.Members()[2]
	table.Move([]byte("toB"), b.Index(), moved.Down, *now)
	if err := p.Remove(b); err != nil {
		t.Fatal(err)
	}
	if !b.Removed() || len(p.Members()) != 2 || p.Member("b") != nil {
		t.Fatalf("after Remove: removed %v, members %v", b.Removed(), p.Members())
	}
	for range 20 {
		if m, _, _ := p.Pick(&Request{}); m == b {
			t.Fatal("a removed member was picked")
		}
	}
	m, o, err := p.Pick(&Request{Route: []byte("b"), SessionKey: []byte("S1")})
	if err != nil || o != Failover || (m != a && m != c) {
		t.Errorf("a session of b: %v %v %v, want a failover to a or c", m, o, err)
	}
	if _, ok := table.Lookup([]byte("toB"), *now); ok {
		t.Error("a session moved to b is still in the table")
	}
	if m, o, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: []byte("toB")}); m != a || o != Hit {
		t.Errorf("a session that had moved to b, from a: %v %v, want home", m, o)
	}
	for _, ms := range p.Snapshot().Members {
		if ms.Name == "b" {
			t.Error("a removed member is in the snapshot")
		}
	}
	if err := p.Remove(b); err == nil {
		t.Error("removed twice")
	}
	p.Remove(c)
	if err := p.Remove(a); !errors.Is(err, ErrLastMember) {
		t.Errorf("removing the last member: %v", err)
	}
	// Added again under its name: a new member, in a new slot.
	b2 := NewMember("b", "b", 1, 0)
	if i, err := p.Add(b2, nil); err != nil || i != 3 {
		t.Errorf("b added again: index %d, %v", i, err)
	}
	if m, o, _ := p.Pick(&Request{Route: []byte("b"), SessionKey: []byte("S2")}); m != b2 || o != Hit {
		t.Errorf("a session of b, back: %v %v", m, o)
	}
}

// Slots are reused only when the pool is full, and then nothing of the
// slot's old member is left: no failover count, no moved session.
func TestAddReusesARemovedSlotWhenFull(t *testing.T) {
	specs := make([]string, MaxMembers)
	for i := range specs {
		specs[i] = fmt.Sprintf("m%d:1", i)
	}
	table := moved.New(time.Hour, 100)
	p, now := newTestPool(t, "byrequests", Options{Moved: table}, specs...)
	if _, err := p.Add(NewMember("x", "x", 1, 0), nil); !errors.Is(err, ErrPoolFull) {
		t.Fatalf("adding to a full pool: %v", err)
	}
	old := p.Members()[7]
	old.SetFlags(Disabled)
	p.Pick(&Request{Route: []byte(old.Route), SessionKey: []byte("S")}) // counts a failover from old
	table.Move([]byte("T"), old.Index(), moved.Down, *now)
	if err := p.Remove(old); err != nil {
		t.Fatal(err)
	}
	x := NewMember("x", "x", 1, 0)
	if i, err := p.Add(x, nil); err != nil || i != 7 {
		t.Fatalf("added into the full pool: index %d, %v; want 7", i, err)
	}
	total := uint64(0)
	for _, to := range p.Members() {
		total += p.Failovers(old, to)
	}
	if total != 0 {
		t.Errorf("failovers of the slot's old member still counted: %d", total)
	}
	if _, ok := table.Lookup([]byte("T"), *now); ok {
		t.Error("a session moved to the slot's old member reaches x")
	}
	if _, o, _ := p.Pick(&Request{Route: []byte(old.Route), SessionKey: []byte("S3")}); o != UnknownRoute {
		t.Errorf("a session of the slot's old member: %v, want an unknown route, balanced", o)
	}
}

// At finds members by index, as tables beside the pool name them, also
// once the member list no longer lines up with the indexes.
func TestAtAfterRemove(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:1", "b:1", "c:1")
	a, b, c := p.Members()[0], p.Members()[1], p.Members()[2]
	p.Remove(b)
	if p.At(a.Index()) != a || p.At(b.Index()) != nil || p.At(c.Index()) != c || p.At(3) != nil || p.At(-1) != nil {
		t.Errorf("At: %v %v %v %v", p.At(0), p.At(1), p.At(2), p.At(3))
	}
	if p.Members()[1] != c {
		t.Fatal("the list of members should skip b")
	}
}
