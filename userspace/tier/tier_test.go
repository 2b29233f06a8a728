package tier

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/peers"
)

// instance is one catherd's pool and moved sessions, in a tier.
type instance struct {
	pool    *balancer.Pool
	moved   *moved.Table
	members *roster
	tier    *Tier
	log     *logRecorder
}

// add adds the member spec names here and shares it, as `catherd member
// add` does.
func (x *instance) add(t *testing.T, spec string) {
	t.Helper()
	if err := x.members.AddFromTier(spec); err != nil {
		t.Fatal(err)
	}
	name, _, _ := strings.Cut(spec, "=")
	x.tier.Added(name, spec)
}

// logRecorder is a slog.Handler that keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

// logged reports whether msg was logged.
func (r *logRecorder) logged(msg string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.msgs, msg)
}

// roster is a Roster of members whose spec is NAME=ANYTHING, route NAME.
type roster struct {
	pool  *balancer.Pool
	mu    sync.Mutex
	specs map[string]string
}

func (r *roster) Spec(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[name]
}

func (r *roster) AddFromTier(spec string) error {
	name, _, _ := strings.Cut(spec, "=")
	if _, err := r.pool.Add(balancer.NewMember(name, name, 1, 0), nil); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.specs[name] = spec
	return nil
}

func (r *roster) RemoveFromTier(m *balancer.Member) error {
	if err := r.pool.Remove(m); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.specs, m.Name)
	return nil
}

const ttl = time.Minute

// startInstance starts an instance named name with members node1..node3
// on a free loopback port, joining seeds.
func startInstance(t *testing.T, name string, seeds ...string) *instance {
	t.Helper()
	x := openInstance(t, name, seeds...)
	if len(seeds) > 0 {
		if err := x.tier.Join(); err != nil {
			t.Fatalf("%s joining: %v", name, err)
		}
	}
	return x
}

// openInstance is startInstance without the join.
func openInstance(t *testing.T, name string, seeds ...string) *instance {
	t.Helper()
	table := moved.New(ttl, 1000)
	var members []*balancer.Member
	specs := map[string]string{}
	for _, n := range []string{"node1", "node2", "node3"} {
		members = append(members, balancer.NewMember(n, n, 1, 0))
		specs[n] = n + "=configured"
	}
	pool, err := balancer.NewPool(members, "byrequests", balancer.Options{Moved: table, Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	r := &roster{pool: pool, specs: specs}
	rec := &logRecorder{}
	log := slog.New(rec)
	tr, err := Start(peers.Config{Name: name, Bind: "127.0.0.1:0", Seeds: seeds,
		Timing: peers.Timing{Probe: 200 * time.Millisecond, ProbeTimeout: 150 * time.Millisecond, Reconnect: 200 * time.Millisecond}},
		Options{Pool: pool, Moved: table, Roster: r, SessionTTL: ttl, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Leave(time.Second) })
	return &instance{pool: pool, moved: table, members: r, tier: tr, log: rec}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An operator action on one instance is in force on the other.
func TestActionsAreShared(t *testing.T) {
	a := startInstance(t, "lb1")
	b := startInstance(t, "lb2", a.tier.Addr())
	if err := a.pool.Evacuate(a.pool.Member("node1")); err != nil {
		t.Fatal(err)
	}
	a.tier.Acted(a.pool.Member("node1"), "evacuate")
	a.pool.Member("node2").SetWeight(7)
	a.tier.Acted(a.pool.Member("node2"), "weight")
	waitFor(t, "node1 disabled and node2 weighted on lb2", func() bool {
		return b.pool.Member("node1").Flags() == balancer.Disabled && b.pool.Member("node2").Weight() == 7
	})
	// The last writer wins: lb2 enables node1 again, and lb1 follows.
	b.pool.Member("node1").SetFlags(0)
	b.tier.Acted(b.pool.Member("node1"), "enable")
	waitFor(t, "node1 enabled on lb1", func() bool { return a.pool.Member("node1").Flags() == 0 })

	// A recover takes the member out of the error state on every peer.
	b.pool.MarkError(b.pool.Member("node3"))
	if !b.pool.Member("node3").InError(time.Now()) {
		t.Fatal("node3 not in error")
	}
	a.tier.Acted(a.pool.Member("node3"), "recover")
	waitFor(t, "node3 recovered on lb2", func() bool { return !b.pool.Member("node3").InError(time.Now()) })
}

// A session moved on one instance goes to its partner on the others, and
// an instance that joins later (a restart) learns it before Join returns,
// so it never sends the session home.
func TestMovedSessionsAreShared(t *testing.T) {
	a := startInstance(t, "lb1")
	b := startInstance(t, "lb2", a.tier.Addr())
	home := a.pool.Member("node1")
	home.SetDown(true)
	req := &balancer.Request{Route: []byte("node1"), SessionKey: []byte("ABC")}
	partner, outcome, err := a.pool.Pick(req)
	if err != nil || outcome != balancer.Failover {
		t.Fatalf("pick on lb1: %v %v", outcome, err)
	}
	waitFor(t, "the move on lb2", func() bool {
		e, ok := b.moved.Peek([]byte("ABC"), time.Now())
		return ok && e.Member == partner.Index() && e.Reason == moved.Down
	})
	// lb2 never saw node1 fail, yet sends the session to the partner.
	if m, outcome, _ := b.pool.Pick(&balancer.Request{Route: []byte("node1"), SessionKey: []byte("ABC")}); m.Name != partner.Name || outcome != balancer.Moved {
		t.Errorf("lb2 picked %s (%v), want %s (moved)", m.Name, outcome, partner.Name)
	}

	// A third instance, started after the move, holds it once joined:
	// node1 is back, and the session stays on its partner.
	home.SetDown(false)
	c := startInstance(t, "lb3", a.tier.Addr())
	if m, outcome, _ := c.pool.Pick(&balancer.Request{Route: []byte("node1"), SessionKey: []byte("ABC")}); m.Name != partner.Name || outcome != balancer.Moved {
		t.Errorf("lb3 picked %s (%v) right after joining, want %s (moved)", m.Name, outcome, partner.Name)
	}

	// The client comes back renamed to its partner's route: the entry is
	// forgotten here, and on every peer.
	b.pool.Pick(&balancer.Request{Route: []byte(partner.Route), SessionKey: []byte("ABC")})
	for _, x := range []*instance{a, c} {
		waitFor(t, "the session forgotten", func() bool {
			_, ok := x.moved.Peek([]byte("ABC"), time.Now())
			return !ok
		})
	}
}

// A member added or removed at run time on one instance is added or
// removed on every other, with the actions on it; an instance that joins
// later does the same before Join returns, even with the removed member
// in its own configuration.
func TestMembersAreShared(t *testing.T) {
	a := startInstance(t, "lb1")
	b := startInstance(t, "lb2", a.tier.Addr())
	names := func(x *instance) string {
		var out []string
		for _, m := range x.pool.Members() {
			out = append(out, m.Name+"("+m.Flags().String()+")")
		}
		return strings.Join(out, " ")
	}

	a.add(t, "node4=added")
	a.pool.Member("node4").SetFlags(balancer.Drain)
	a.tier.Acted(a.pool.Member("node4"), "drain")
	waitFor(t, "node4 added and draining on lb2", func() bool { return names(b) == "node1() node2() node3() node4(N)" })
	if got := b.members.Spec("node4"); got != "node4=added" {
		t.Errorf("lb2 added node4 as %q", got)
	}

	// Removed with a drain: a request in flight on lb2 holds node4
	// there until it ends.
	b.pool.Member("node4").Begin()
	if err := a.members.RemoveFromTier(a.pool.Member("node4")); err != nil {
		t.Fatal(err)
	}
	a.tier.Removed("node4", true)
	waitFor(t, "lb2 waiting for node4's request in flight", func() bool {
		return b.log.logged("tier: member a peer removed waits for its requests in flight here")
	})
	time.Sleep(200 * time.Millisecond) // a negative: lb2 polls (every 50 ms) and must not remove it
	if b.pool.Member("node4") == nil {
		t.Fatal("lb2 removed node4 with a request in flight")
	}
	b.pool.Member("node4").End(0, 0)
	waitFor(t, "node4 removed on lb2", func() bool { return names(b) == "node1() node2() node3()" })

	// Removed at once, a configured member.
	if err := b.members.RemoveFromTier(b.pool.Member("node3")); err != nil {
		t.Fatal(err)
	}
	b.tier.Removed("node3", false)
	waitFor(t, "node3 removed on lb1", func() bool { return names(a) == "node1() node2()" })

	// lb3 starts with node1..node3 configured and joins: it follows what
	// the tier did. node4 added again (afresh: its drain was forgotten).
	a.add(t, "node4=again")
	waitFor(t, "node4 on lb2 again", func() bool { return b.members.Spec("node4") == "node4=again" })
	c := startInstance(t, "lb3", b.tier.Addr())
	if got := names(c); got != "node1() node2() node4()" {
		t.Errorf("lb3 right after joining: %s", got)
	}
}

// A member removed and added again under its name starts afresh on an
// instance that sees only the end of it, even one that kept the member,
// drained, from before (its state file).
func TestReaddedMemberStartsAfresh(t *testing.T) {
	a := startInstance(t, "lb1")
	a.add(t, "node4=x")
	a.pool.Member("node4").SetFlags(balancer.Drain)
	a.tier.Acted(a.pool.Member("node4"), "drain")
	a.pool.Member("node4").SetWeight(9)
	a.tier.Acted(a.pool.Member("node4"), "weight")
	if err := a.members.RemoveFromTier(a.pool.Member("node4")); err != nil {
		t.Fatal(err)
	}
	a.tier.Removed("node4", false)
	a.add(t, "node4=x")

	b := openInstance(t, "lb2", a.tier.Addr())
	if err := b.members.AddFromTier("node4=x"); err != nil {
		t.Fatal(err)
	}
	b.pool.Member("node4").SetFlags(balancer.Drain)
	b.pool.Member("node4").SetWeight(9)
	if err := b.tier.Join(); err != nil {
		t.Fatal(err)
	}
	if m := b.pool.Member("node4"); m.Flags() != 0 || m.Weight() != 1 {
		t.Errorf("lb2 kept node4's old settings: flags %q, weight %d", m.Flags(), m.Weight())
	}
}

// A drained removal of a member with nothing in flight here takes effect
// at once: an instance that joins after it does not have the member once
// Join returns.
func TestDrainedRemovalAtJoin(t *testing.T) {
	a := startInstance(t, "lb1")
	if err := a.members.RemoveFromTier(a.pool.Member("node2")); err != nil {
		t.Fatal(err)
	}
	a.tier.Removed("node2", true)
	b := startInstance(t, "lb2", a.tier.Addr())
	if m := b.pool.Member("node2"); m != nil {
		t.Fatal("lb2 still has node2 after joining a tier that removed it")
	}
}

// A member restored from the state file keeps the flags and weight it was
// restored with when it is shared with a tier that has no record of it,
// here and on the peer.
func TestRestoredKeepsSettings(t *testing.T) {
	a := startInstance(t, "lb1")
	b := openInstance(t, "lb2", a.tier.Addr())
	if err := b.members.AddFromTier("node4=x"); err != nil { // as --state-file restores it
		t.Fatal(err)
	}
	b.pool.Member("node4").SetFlags(balancer.Drain)
	b.pool.Member("node4").SetWeight(7)
	if err := b.tier.Join(); err != nil {
		t.Fatal(err)
	}
	b.tier.Restored("node4", "node4=x")
	waitFor(t, "node4 on lb1", func() bool { return a.pool.Member("node4") != nil })
	for _, x := range []*instance{b, a} {
		waitFor(t, "node4 draining, weight 7", func() bool {
			m := x.pool.Member("node4")
			return m != nil && m.Flags() == balancer.Drain && m.Weight() == 7
		})
	}
}

// The forgetting of a removed member's settings may reach an instance
// before the removal itself: the member, still there and being drained
// away, keeps its flags.
func TestForgottenSettingsBeforeTheRemoval(t *testing.T) {
	a := startInstance(t, "lb1")
	a.add(t, "node4=x")
	a.pool.Member("node4").SetFlags(balancer.Disabled)
	a.tier.Acted(a.pool.Member("node4"), "evacuate")
	// A weight written behind a change tells when the change has been
	// applied (one goroutine applies them in order).
	applied := func(weight string) {
		if _, err := a.tier.member.Set(weightPrefix+"node4", []byte(weight), 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "weight "+weight+" applied", func() bool { return strconv.Itoa(a.pool.Member("node4").Weight()) == weight })
	}
	applied("3")
	// The forgetting, as Removed writes it after the removal, arrives
	// first.
	if _, err := a.tier.member.Delete(flagsPrefix + "node4"); err != nil {
		t.Fatal(err)
	}
	applied("5")
	if f := a.pool.Member("node4").Flags(); f != balancer.Disabled {
		t.Fatalf("node4's evacuation undone before its removal arrived: flags %q", f)
	}
}

// evacuate --wait's question: every peer says how many requests it has
// in flight to the member; a peer that is gone is named.
func TestInFlight(t *testing.T) {
	a := startInstance(t, "lb1")
	b := startInstance(t, "lb2", a.tier.Addr())
	c := startInstance(t, "lb3", a.tier.Addr())
	waitFor(t, "lb1 knows both", func() bool { return len(a.tier.Peers()) == 2 })
	b.pool.Member("node2").Begin()
	b.pool.Member("node2").Begin()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, unreachable, err := a.tier.InFlight(ctx, "node2")
	if err != nil || got["lb2"] != 2 || got["lb3"] != 0 || len(unreachable) != 0 {
		t.Fatalf("in flight: %v, unreachable %v, %v", got, unreachable, err)
	}
	c.tier.member.Close() // no goodbye: a failed peer
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, unreachable, err = a.tier.InFlight(ctx, "node2")
	if err != nil || got["lb2"] != 2 || len(unreachable) != 1 || unreachable[0] != "lb3" {
		t.Fatalf("with lb3 gone: %v, unreachable %v, %v", got, unreachable, err)
	}
	if got, _, _ := a.tier.InFlight(ctx, "nosuch"); got["lb2"] != -1 {
		t.Errorf("a member lb2 lacks: %v", got)
	}
}

// The first instance of a tier finds no seed: Join says so, and the
// caller serves alone.
func TestJoinAlone(t *testing.T) {
	a := startInstance(t, "lb1")
	addr := a.tier.Addr()
	a.tier.Leave(time.Second)
	table := moved.New(ttl, 10)
	pool, _ := balancer.NewPool([]*balancer.Member{balancer.NewMember("node1", "node1", 1, 0)}, "byrequests", balancer.Options{Moved: table})
	tr, err := Start(peers.Config{Name: "lb2", Bind: "127.0.0.1:0", Seeds: []string{addr}, Timing: peers.Timing{TCPTimeout: time.Second}},
		Options{Pool: pool, Moved: table, SessionTTL: ttl, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Leave(time.Second)
	if err := tr.Join(); !errors.Is(err, peers.ErrNoPeers) {
		t.Errorf("Join with no live seed: %v", err)
	}
}
