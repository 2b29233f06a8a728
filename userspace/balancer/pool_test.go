package balancer

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
)

// newTestPool builds a pool from specs "name:weight[:flags]" with a fixed clock.
func newTestPool(t *testing.T, method string, opts Options, specs ...string) (*Pool, *time.Time) {
	t.Helper()
	var ms []*Member
	for _, s := range specs {
		var name, flags string
		var w int
		parts := strings.Split(s, ":")
		name = parts[0]
		fmt.Sscan(parts[1], &w)
		if len(parts) > 2 {
			flags = parts[2]
		}
		f, err := ParseFlags(flags)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, NewMember(name, name, w, f))
	}
	now := time.Unix(1000, 0)
	opts.Clock = func() time.Time { return now }
	p, err := NewPool(ms, method, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, &now
}

func pickName(t *testing.T, p *Pool, r *Request) string {
	t.Helper()
	m, _, err := p.Pick(r)
	if err != nil {
		t.Fatalf("Pick: %v", err)
	}
	return m.Name
}

func TestByRequestsIsSmooth(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:5", "b:1", "c:1")
	var got []string
	for i := 0; i < 7; i++ {
		got = append(got, pickName(t, p, &Request{}))
	}
	if want := "a a b a c a a"; strings.Join(got, " ") != want {
		t.Fatalf("sequence %v, want %s", got, want)
	}
}

func TestByTrafficPicksLeastBytesPerWeight(t *testing.T) {
	p, _ := newTestPool(t, "bytraffic", Options{}, "a:1", "b:2")
	a, b := p.Members()[0], p.Members()[1]
	a.Begin()
	a.End(400, 600)
	b.Begin()
	b.End(500, 1000) // 750 per weight unit, below a's 1000
	if got := pickName(t, p, &Request{}); got != "b" {
		t.Fatalf("got %s, want b", got)
	}
	b.Begin()
	b.End(1000, 0) // now 1250 per unit
	if got := pickName(t, p, &Request{}); got != "a" {
		t.Fatalf("got %s, want a", got)
	}
	if picks, out, in := b.Traffic(); picks != 2 || out != 1500 || in != 1000 {
		t.Fatalf("b's traffic: %d requests, %d bytes out, %d in", picks, out, in)
	}
}

func TestByBusynessPicksLeastActiveThenRoundRobin(t *testing.T) {
	p, _ := newTestPool(t, "bybusyness", Options{}, "a:1", "b:1", "c:1")
	a, b := p.Members()[0], p.Members()[1]
	a.Begin()
	b.Begin()
	if got := pickName(t, p, &Request{}); got != "c" {
		t.Fatalf("got %s, want c", got)
	}
	a.End(0, 0)
	b.End(0, 0)
	seen := map[string]int{}
	for i := 0; i < 30; i++ {
		seen[pickName(t, p, &Request{})]++
	}
	if seen["a"] != 10 || seen["b"] != 10 || seen["c"] != 10 {
		t.Fatalf("idle pool not spread evenly: %v", seen)
	}
}

func TestIPHashMatchesNginx(t *testing.T) {
	// Expected members from nginx's ngx_http_upstream_get_ip_hash_peer run
	// over the same keys (first three octets) and weights.
	tests := []struct {
		ip       string
		even, wt string
	}{
		{"10.0.0.1", "a", "c"},
		{"10.0.0.200", "a", "c"}, // the last octet is not part of the key
		{"192.168.1.7", "b", "c"},
		{"127.0.0.1", "c", "b"},
		{"203.0.113.9", "a", "a"},
	}
	even, _ := newTestPool(t, "iphash", Options{}, "a:1", "b:1", "c:1")
	weighted, _ := newTestPool(t, "iphash", Options{}, "a:1", "b:2", "c:3")
	for _, tt := range tests {
		r := &Request{ClientIP: netip.MustParseAddr(tt.ip)}
		if got := pickName(t, even, r); got != tt.even {
			t.Errorf("%s even weights: got %s, want %s", tt.ip, got, tt.even)
		}
		if got := pickName(t, weighted, r); got != tt.wt {
			t.Errorf("%s weights 1,2,3: got %s, want %s", tt.ip, got, tt.wt)
		}
	}
}

func TestIPHashRehashesAroundUnusableMember(t *testing.T) {
	p, _ := newTestPool(t, "iphash", Options{}, "a:1", "b:1", "c:1")
	r := &Request{ClientIP: netip.MustParseAddr("10.0.0.1")}
	p.Members()[0].SetFlags(Disabled)
	first := pickName(t, p, r)
	if first == "a" {
		t.Fatal("picked a disabled member")
	}
	for i := 0; i < 5; i++ {
		if got := pickName(t, p, r); got != first {
			t.Fatalf("re-hash not stable: %s then %s", first, got)
		}
	}
}

func TestHashIsConsistentAndWeighted(t *testing.T) {
	p, _ := newTestPool(t, "hash", Options{}, "a:1", "b:1", "c:2")
	const clients = 20000
	before := make([]string, clients)
	count := map[string]int{}
	for i := range before {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		before[i] = pickName(t, p, &Request{ClientIP: ip})
		count[before[i]]++
	}
	if c := count["c"]; c < clients*45/100 || c > clients*55/100 {
		t.Errorf("weight 2 of 4 got %d of %d", c, clients)
	}
	p.Members()[1].SetFlags(Stopped) // b leaves
	for i := range before {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		got := pickName(t, p, &Request{ClientIP: ip})
		if before[i] != "b" && got != before[i] {
			t.Fatalf("client %d moved from %s to %s though its member stayed", i, before[i], got)
		}
	}
}

func TestStickyRouting(t *testing.T) {
	p, now := newTestPool(t, "byrequests", Options{Retry: time.Minute}, "a:1", "b:1", "c:1:N", "h:1:H")
	a, c := p.Members()[0], p.Members()[2]
	check := func(route string, wantMember string, wantOutcome Outcome) {
		t.Helper()
		var r Request
		if route != "" {
			r.Route = []byte(route)
		}
		m, o, err := p.Pick(&r)
		if err != nil || m.Name != wantMember || o != wantOutcome {
			t.Fatalf("route %q: got %v %v %v, want %s %v", route, m, o, err, wantMember, wantOutcome)
		}
	}
	check("a", "a", Hit)
	check("c", "c", Hit) // draining members keep their sessions
	check("h", "h", Hit)
	for i := 0; i < 10; i++ {
		m, o, _ := p.Pick(&Request{})
		if m == c || m.Name == "h" || o != New {
			t.Fatalf("new session went to %s (%v)", m.Name, o)
		}
	}
	p.MarkError(a)
	check("a", "b", Failover)
	*now = now.Add(time.Minute) // retry period over: a is tried again
	check("a", "a", Hit)
	a.SetFlags(Disabled)
	check("a", "b", Failover)
	m, o, _ := p.Pick(&Request{Route: []byte("nosuch")})
	if o != UnknownRoute || m.Name == "c" {
		t.Fatalf("unknown route: %v %v", m, o)
	}
}

func TestNoFailover(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{NoFailover: true}, "a:1", "b:1")
	p.Members()[0].SetFlags(Stopped)
	if _, _, err := p.Pick(&Request{Route: []byte("a")}); !errors.Is(err, ErrNoFailover) {
		t.Fatalf("got %v, want ErrNoFailover", err)
	}
	if got := pickName(t, p, &Request{}); got != "b" {
		t.Fatalf("new session: got %s", got)
	}
}

func TestHotStandbyOnlyWhenNothingElse(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{Retry: time.Minute}, "a:1", "h:1:+H")
	if got := pickName(t, p, &Request{}); got != "a" {
		t.Fatalf("got %s, want a", got)
	}
	p.Members()[0].SetFlags(Drain)
	if got := pickName(t, p, &Request{}); got != "h" {
		t.Fatalf("got %s, want standby h", got)
	}
}

func TestTriedMembersAreSkipped(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:1", "b:1")
	var r Request
	r.Route = []byte("a")
	r.Tried.Add(0)
	m, o, err := p.Pick(&r)
	if err != nil || m.Name != "b" || o != Failover {
		t.Fatalf("got %v %v %v", m, o, err)
	}
	r.Tried.Add(1)
	if _, _, err := p.Pick(&r); !errors.Is(err, ErrNoMember) {
		t.Fatalf("all tried: got %v", err)
	}
}

func TestForceRecoveryWhenAllInError(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{Retry: time.Hour}, "a:1", "b:1:S")
	p.MarkError(p.Members()[0])
	if got := pickName(t, p, &Request{}); got != "a" {
		t.Fatalf("got %s, want a tried despite its error state", got)
	}
}

func TestStates(t *testing.T) {
	p, now := newTestPool(t, "byrequests", Options{Retry: time.Second}, "a:1", "b:1:D", "c:1:S", "d:1:N", "e:1:H")
	want := []State{StateOK, StateDisabled, StateStopped, StateDrain, StateStandby}
	for i, m := range p.Members() {
		if got := m.State(*now); got != want[i] {
			t.Errorf("%s: state %v, want %v", m.Name, got, want[i])
		}
	}
	p.MarkError(p.Members()[0])
	if got := p.Members()[0].State(*now); got != StateError {
		t.Errorf("after error: %v", got)
	}
	p.Members()[0].SetDown(true)
	if got := p.Members()[0].State(*now); got != StateDown {
		t.Errorf("after failed health checks: %v", got)
	}
}

func TestDownMembersGetNothing(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:1", "b:1")
	p.Members()[0].SetDown(true)
	m, o, err := p.Pick(&Request{Route: []byte("a"), SessionKey: []byte("K")})
	if err != nil || m.Name != "b" || o != Failover {
		t.Fatalf("session of a down member: %v %v %v", m, o, err)
	}
	p.Members()[1].SetDown(true)
	if _, _, err := p.Pick(&Request{}); !errors.Is(err, ErrNoMember) {
		t.Fatalf("all down: %v, want ErrNoMember (no forced recovery onto failed health checks)", err)
	}
}

func TestParseFlags(t *testing.T) {
	for in, want := range map[string]string{"+H": "H", "+D+N": "DN", "H": "H", "+H-H": "", "s": "S", "": ""} {
		f, err := ParseFlags(in)
		if err != nil || f.String() != want {
			t.Errorf("ParseFlags(%q) = %q, %v; want %q", in, f, err, want)
		}
	}
	if _, err := ParseFlags("+X"); err == nil {
		t.Error("+X accepted")
	}
}

func BenchmarkPickSticky(b *testing.B) {
	ms := []*Member{NewMember("a", "a", 1, 0), NewMember("b", "b", 1, 0)}
	p, _ := NewPool(ms, "byrequests", Options{})
	r := Request{Route: []byte("b")}
	for b.Loop() {
		p.Pick(&r)
	}
}

func TestFailoverPartnerIsStablePerSession(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{Retry: time.Minute}, "a:1", "b:1", "c:1", "d:1")
	p.MarkError(p.Members()[0])
	partners := map[string]int{}
	for s := 0; s < 400; s++ {
		key := []byte(fmt.Sprintf("%032X", s))
		var first string
		for i := 0; i < 5; i++ {
			m, o, err := p.Pick(&Request{Route: []byte("a"), SessionKey: key})
			if err != nil || o != Failover {
				t.Fatalf("got %v %v", o, err)
			}
			if i == 0 {
				first = m.Name
			} else if m.Name != first {
				t.Fatalf("session %d moved between partners %s and %s", s, first, m.Name)
			}
		}
		partners[first]++
	}
	// A dead member's sessions spread over all survivors, not onto one.
	for _, name := range []string{"b", "c", "d"} {
		if n := partners[name]; n < 100 || n > 170 {
			t.Errorf("%s took %d of 400 failed-over sessions", name, n)
		}
	}
}

// A member out of its replication group keeps serving its own sessions but
// takes no new or moved ones while a member in the group can.
func TestIsolatedMemberTakesNoNewSessions(t *testing.T) {
	p, _ := newTestPool(t, "byrequests", Options{}, "a:1", "b:1", "c:1")
	b := p.Member("b")
	b.SetIsolated(true)
	if s := b.State(p.Now()); s != StateIsolated {
		t.Fatalf("state %v, want isolated", s)
	}
	for i := 0; i < 30; i++ {
		if n := pickName(t, p, &Request{}); n == "b" {
			t.Fatal("a new session went to the isolated member")
		}
	}
	if m, o, _ := p.Pick(&Request{Route: []byte("b"), SessionKey: []byte("s1")}); m.Name != "b" || o != Hit {
		t.Fatalf("b's own session went to %s (%v)", m.Name, o)
	}
	p.Member("c").SetDown(true)
	for i := 0; i < 20; i++ {
		key := []byte(fmt.Sprint("s", i))
		if m, o, _ := p.Pick(&Request{Route: []byte("c"), SessionKey: key}); m.Name != "a" || o != Failover {
			t.Fatalf("c's session moved to %s (%v), want a: b has no replica", m.Name, o)
		}
	}
	// Nobody in a group: isolated members are better than no answer.
	p.Member("a").SetIsolated(true)
	if n := pickName(t, p, &Request{}); n != "a" && n != "b" {
		t.Fatalf("with every member isolated, picked %s", n)
	}
}

// A moved session stays where it moved when its member returns, and the
// entry goes once the client carries the new member's route.
func TestMovedSessionsDoNotFlapBack(t *testing.T) {
	table := moved.New(30*time.Minute, 100)
	p, now := newTestPool(t, "byrequests", Options{Moved: table}, "a:1", "b:1", "c:1")
	key := []byte("SESSION1")
	p.Member("a").SetDown(true)
	m, o, err := p.Pick(&Request{Route: []byte("a"), SessionKey: key})
	if err != nil || o != Failover {
		t.Fatalf("failover: %v %v", o, err)
	}
	partner := m.Name
	p.Member("a").SetDown(false) // a returns
	for i := 0; i < 5; i++ {
		m, o, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key})
		if m.Name != partner || o != Moved {
			t.Fatalf("request %d after a returned: %s (%v), want %s (moved)", i, m.Name, o, partner)
		}
	}
	if st := table.Stats(); st.Size != 1 || st.Moves[moved.Down] != 1 {
		t.Fatalf("table %+v", st)
	}
	// The partner renamed the session to its route: the entry is redundant.
	if m, o, _ := p.Pick(&Request{Route: []byte(partner), SessionKey: key}); m.Name != partner || o != Hit {
		t.Fatalf("renamed session went to %s (%v)", m.Name, o)
	}
	if table.Stats().Size != 0 {
		t.Fatal("entry kept after the session was renamed")
	}
	// The partner fails too: the session moves again (from its home) and
	// the entry follows.
	p.Member("a").SetDown(true)
	p.Pick(&Request{Route: []byte("a"), SessionKey: key})
	first, _ := table.Lookup(key, *now)
	p.Members()[first].SetDown(true)
	m, o, _ = p.Pick(&Request{Route: []byte("a"), SessionKey: key})
	if o != Failover || m.index == first || m.Name == "a" {
		t.Fatalf("second move: %s (%v)", m.Name, o)
	}
	if again, _ := table.Lookup(key, *now); again != m.index {
		t.Fatalf("table points at %d, the session is on %d", again, m.index)
	}
	// Idle past the TTL: forgotten, and the returned home serves it.
	p.Members()[first].SetDown(false)
	p.Member("a").SetDown(false)
	*now = now.Add(31 * time.Minute)
	if m, o, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key}); m.Name != "a" || o != Hit {
		t.Fatalf("after the TTL: %s (%v), want a (hit)", m.Name, o)
	}
}

// Sessions move within their replication domain; with none of it left,
// they are refused unless failover may cross domains.
func TestFailoverStaysInDomain(t *testing.T) {
	build := func(opts Options) *Pool {
		p, _ := newTestPool(t, "byrequests", opts, "a1:1", "a2:1", "b1:1", "b2:1")
		for _, m := range p.Members() {
			m.SetDomain(m.Name[:1])
		}
		return p
	}
	p := build(Options{})
	p.Member("a1").SetDown(true)
	for i := 0; i < 50; i++ {
		m, o, err := p.Pick(&Request{Route: []byte("a1"), SessionKey: []byte(fmt.Sprint("k", i))})
		if err != nil || o != Failover || m.Name != "a2" {
			t.Fatalf("session of a1 moved to %v (%v, %v), want a2", m, o, err)
		}
	}
	p.Member("a2").SetDown(true)
	if _, _, err := p.Pick(&Request{Route: []byte("a1"), SessionKey: []byte("k")}); !errors.Is(err, ErrNoPartner) {
		t.Fatalf("no member of domain a left: %v, want ErrNoPartner", err)
	}
	if n := pickName(t, p, &Request{}); n[0] != 'b' {
		t.Fatalf("a new session went to %s", n)
	}
	any := build(Options{AnyDomain: true})
	any.Member("a1").SetDown(true)
	any.Member("a2").SetDown(true)
	if m, o, err := any.Pick(&Request{Route: []byte("a1"), SessionKey: []byte("k")}); err != nil || o != Failover || m.Name[0] != 'b' {
		t.Fatalf("scope any: %v %v %v", m, o, err)
	}
}

// Evacuation moves a member's sessions to their partners (reason
// evacuated), counts where they went, and is refused for the last member
// of a domain.
func TestEvacuate(t *testing.T) {
	table := moved.New(time.Hour, 100)
	p, _ := newTestPool(t, "byrequests", Options{Moved: table}, "a1:1", "a2:1", "b1:1")
	for _, m := range p.Members() {
		m.SetDomain(m.Name[:1])
	}
	a1, a2, b1 := p.Member("a1"), p.Member("a2"), p.Member("b1")
	if err := p.Evacuate(b1); !errors.Is(err, ErrLastInDomain) {
		t.Fatalf("evacuating the only member of domain b: %v", err)
	}
	if b1.Flags() != 0 {
		t.Fatal("a refused evacuation changed the member")
	}
	if err := p.Evacuate(a1); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		m, o, err := p.Pick(&Request{Route: []byte("a1"), SessionKey: []byte(fmt.Sprint("k", i))})
		if err != nil || m != a2 || o != Failover {
			t.Fatalf("session of evacuated a1: %v %v %v, want a2 by failover", m, o, err)
		}
	}
	if n := pickName(t, p, &Request{}); n == "a1" {
		t.Fatal("an evacuated member took a new session")
	}
	if st := table.Stats(); st.Moves[moved.Evacuated] != 10 {
		t.Fatalf("moves %+v, want 10 evacuated", st.Moves)
	}
	if got := p.Failovers(a1, a2); got != 10 {
		t.Fatalf("failovers a1->a2: %d, want 10", got)
	}
	if err := p.Evacuate(a2); !errors.Is(err, ErrLastInDomain) {
		t.Fatalf("evacuating a2 after a1: %v", err)
	}
	any, _ := newTestPool(t, "byrequests", Options{AnyDomain: true}, "a:1", "b:1")
	any.Member("b").SetDown(true)
	if err := any.Evacuate(any.Member("a")); err == nil {
		t.Fatal("evacuated the only usable member with scope any")
	}
}

// A moved session whose new member goes away while its home is back goes
// home, and the entry goes with it: it must not pull the session back to
// the other member when that one returns.
func TestMovedSessionGoesHomeWhenItsPartnerLeaves(t *testing.T) {
	table := moved.New(time.Hour, 100)
	p, _ := newTestPool(t, "byrequests", Options{Moved: table}, "a:1", "b:1")
	a, b := p.Member("a"), p.Member("b")
	key := []byte("S")
	a.SetDown(true)
	if m, _, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key}); m != b {
		t.Fatalf("failover to %v, want b", m)
	}
	a.SetDown(false)
	b.SetFlags(Disabled)
	if m, o, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key}); m != a || o != Hit {
		t.Fatalf("with b disabled: %v (%v), want a (hit)", m, o)
	}
	b.SetFlags(0)
	if m, o, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key}); m != a || o != Hit {
		t.Fatalf("with b back: %v (%v), want a (hit): the session stays where it is", m, o)
	}
}

// Explain tells where a session's next request goes, by Pick's rules, and
// changes nothing: the partner it names is the one Pick then chooses.
func TestExplainMatchesPickWithoutEffects(t *testing.T) {
	table := moved.New(time.Hour, 100)
	p, now := newTestPool(t, "byrequests", Options{Retry: time.Minute, Moved: table}, "a:1", "b:1", "c:1")
	a, b := p.Members()[0], p.Members()[1]
	key := []byte("S1")

	if d := p.Explain([]byte("a"), key); d.Outcome != Hit || d.Member != a || d.Home != a || d.Err != nil {
		t.Fatalf("a's session, a usable: %+v", d)
	}
	if d := p.Explain(nil, nil); d.Outcome != New || d.Member != nil || len(d.Candidates) != 3 {
		t.Fatalf("no session: %+v", d)
	}
	if d := p.Explain([]byte("zz"), key); d.Outcome != UnknownRoute || d.Home != nil || len(d.Candidates) != 3 {
		t.Fatalf("unknown route: %+v", d)
	}

	a.SetDown(true)
	d := p.Explain([]byte("a"), key)
	if d.Outcome != Failover || d.Member == nil || d.Member == a {
		t.Fatalf("a down: %+v", d)
	}
	if table.Stats().Size != 0 || p.Failovers(a, d.Member) != 0 {
		t.Fatalf("Explain moved or counted: %+v, %d", table.Stats(), p.Failovers(a, d.Member))
	}
	m, out, _ := p.Pick(&Request{Route: []byte("a"), SessionKey: key})
	if m != d.Member || out != Failover {
		t.Fatalf("Pick chose %v (%v), Explain said %v", m.Name, out, d.Member.Name)
	}
	partner := m

	a.SetDown(false)
	*now = now.Add(time.Hour)                         // a settled again
	e, _ := table.Peek(key, now.Add(-59*time.Minute)) // as used by the Pick above
	d = p.Explain([]byte("a"), key)
	if d.Outcome != Moved || d.Member != partner || d.MovedTo != partner || d.Moved != moved.Down {
		t.Fatalf("moved earlier: %+v", d)
	}
	if e2, _ := table.Peek(key, *now); !e2.LastUsed.Equal(e.LastUsed) {
		t.Fatalf("Explain counted as use: %v -> %v", e.LastUsed, e2.LastUsed)
	}

	// The partner it moved to is unusable: the entry no longer holds,
	// and the session goes home; the table still names it.
	partner.SetFlags(Disabled)
	d = p.Explain([]byte("a"), key)
	if d.Outcome != Hit || d.Member != a || d.MovedTo != partner || table.Stats().Size != 1 {
		t.Fatalf("partner disabled: %+v, table %+v", d, table.Stats())
	}

	// Nobody usable: Err, no member.
	for _, m := range p.Members() {
		m.SetDown(true)
	}
	if d := p.Explain([]byte("b"), key); d.Err != ErrNoMember || d.Member != nil || d.Home != b {
		t.Fatalf("all down: %+v", d)
	}
}
