package membership

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func beacon(host string, port int32, id byte) *Beacon {
	return &Beacon{
		Host: netip.MustParseAddr(host), Port: port, SecurePort: -1, UDPPort: -1,
		UniqueID: [16]byte{15: id},
	}
}

func shutdown(b *Beacon) *Beacon {
	s := *b
	s.Command = []byte(ShutdownCommand)
	return &s
}

func inDomain(b *Beacon, domain string) *Beacon {
	d := *b
	d.Domain = []byte(domain)
	return &d
}

func observe(t *testing.T, tab *Table, b *Beacon, now time.Time, want EventKind) Event {
	t.Helper()
	ev := tab.Observe(b, now)
	if ev.Kind != want {
		t.Fatalf("Observe(%v:%d id %d) = %v (%v), want %v", b.Host, b.Port, b.UniqueID[15], ev.Kind, ev.Reason, want)
	}
	return ev
}

func assertStats(t *testing.T, tab *Table, want Stats) {
	t.Helper()
	if got := tab.Stats(); got != want {
		t.Errorf("Stats = %+v\n        want %+v", got, want)
	}
	if n := uint64(len(tab.Members())); n != want.Joins-want.Leaves-want.Expiries {
		t.Errorf("%d members, want Joins-Leaves-Expiries = %d", n, want.Joins-want.Leaves-want.Expiries)
	}
}

func TestJoinThenRefresh(t *testing.T) {
	tab := NewTable(Config{})
	b := beacon("10.0.0.1", 4000, 1)
	b.AliveMillis = 500
	ev := observe(t, tab, b, at(0), Joined)
	want := Member{Host: b.Host, Port: 4000, UniqueID: b.UniqueID, AliveMillis: 500, FirstHeard: at(0), LastHeard: at(0)}
	if ev.Member != want || ev.Previous != (Member{}) || ev.Reason != NotIgnored {
		t.Errorf("join event = %+v, want Member %+v only", ev, want)
	}

	b.AliveMillis = 1000
	ev = observe(t, tab, b, at(500), Refreshed)
	want.AliveMillis, want.LastHeard = 1000, at(500)
	if ev.Member != want {
		t.Errorf("refresh event Member = %+v, want %+v", ev.Member, want)
	}
	if got := tab.Members(); len(got) != 1 || got[0] != want {
		t.Errorf("Members = %+v, want [%+v]", got, want)
	}
	assertStats(t, tab, Stats{Observed: 2, Joins: 1})
}

func TestExpireBoundary(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		drop time.Duration
	}{
		{"default drop time", Config{}, 3 * time.Second},
		{"negative drop time means default", Config{DropTime: -1}, 3 * time.Second},
		{"configured drop time", Config{DropTime: 5 * time.Second}, 5 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tab := NewTable(tt.cfg)
			b := beacon("10.0.0.1", 4000, 1)
			observe(t, tab, b, at(0), Joined)
			observe(t, tab, b, at(1000), Refreshed)
			// Silence is measured from the last beacon, not the first.
			if gone := tab.Expire(at(1000).Add(tt.drop)); gone != nil {
				t.Fatalf("expired after exactly DropTime of silence: %+v", gone)
			}
			if !inGroup(tab, b.Host) {
				t.Fatal("member gone after a no-op Expire")
			}
			gone := tab.Expire(at(1000).Add(tt.drop + time.Nanosecond))
			if len(gone) != 1 || gone[0].UniqueID != b.UniqueID || gone[0].LastHeard != at(1000) {
				t.Fatalf("Expire = %+v, want the member last heard at +1s", gone)
			}
			if len(tab.Members()) != 0 {
				t.Error("expired member still listed")
			}
			assertStats(t, tab, Stats{Observed: 2, Joins: 1, Expiries: 1})
			// Heard again after expiry: a fresh join.
			observe(t, tab, b, at(10000), Joined)
		})
	}
}

func TestExpireReturnsSortedAndKeepsLive(t *testing.T) {
	tab := NewTable(Config{})
	observe(t, tab, beacon("10.0.0.2", 4000, 1), at(0), Joined)
	observe(t, tab, beacon("10.0.0.1", 4001, 2), at(0), Joined)
	observe(t, tab, beacon("10.0.0.1", 4000, 3), at(0), Joined)
	observe(t, tab, beacon("10.0.0.3", 4000, 4), at(2000), Joined)
	gone := tab.Expire(at(3001))
	var got []string
	for _, m := range gone {
		got = append(got, fmt.Sprintf("%v:%d", m.Host, m.Port))
	}
	if fmt.Sprint(got) != "[10.0.0.1:4000 10.0.0.1:4001 10.0.0.2:4000]" {
		t.Errorf("Expire = %v, want the three silent members in order", got)
	}
	if m := tab.Members(); len(m) != 1 || m[0].Port != 4000 || m[0].UniqueID[15] != 4 {
		t.Errorf("Members = %+v, want only 10.0.0.3:4000", m)
	}
	assertStats(t, tab, Stats{Observed: 4, Joins: 4, Expiries: 3})
}

func TestShutdownLeavesAtOnce(t *testing.T) {
	tab := NewTable(Config{})
	b := beacon("10.0.0.1", 4000, 1)
	observe(t, tab, b, at(0), Joined)
	observe(t, tab, beacon("10.0.0.2", 4000, 2), at(0), Joined)

	ev := observe(t, tab, shutdown(b), at(100), Left)
	if ev.Member.Host != b.Host || ev.Member.LastHeard != at(100) || ev.Member.FirstHeard != at(0) {
		t.Errorf("left event Member = %+v", ev.Member)
	}
	if inGroup(tab, b.Host) {
		t.Error("member still in group right after its shutdown beacon")
	}
	if gone := tab.Expire(at(100_000)); len(gone) != 1 || gone[0].Host != netip.MustParseAddr("10.0.0.2") {
		t.Errorf("Expire = %+v, want only the other member (the one that left is not expired too)", gone)
	}
	assertStats(t, tab, Stats{Observed: 3, Joins: 2, Leaves: 1, Expiries: 1})
}

func TestShutdownOfUnknownMemberIgnored(t *testing.T) {
	tab := NewTable(Config{})
	b := beacon("10.0.0.1", 4000, 1)
	ev := observe(t, tab, shutdown(b), at(0), Ignored)
	if ev.Reason != UnknownShutdown {
		t.Errorf("Reason = %v, want %v", ev.Reason, UnknownShutdown)
	}
	observe(t, tab, b, at(0), Joined)
	// Same host and port, other uniqueId: as in Tomcat, a shutdown only
	// removes the exact member.
	ev = observe(t, tab, shutdown(beacon("10.0.0.1", 4000, 2)), at(100), Ignored)
	if ev.Reason != UnknownShutdown || !inGroup(tab, b.Host) {
		t.Errorf("shutdown with a foreign uniqueId: %+v, member present %v", ev, inGroup(tab, b.Host))
	}
	assertStats(t, tab, Stats{Observed: 3, Joins: 1, IgnoredUnknownShutdown: 2})
}

func TestRestartIsANewMember(t *testing.T) {
	tab := NewTable(Config{})
	old := beacon("10.0.0.1", 4000, 1)
	old.AliveMillis = 90_000
	observe(t, tab, old, at(0), Joined)
	observe(t, tab, old, at(500), Refreshed)

	fresh := beacon("10.0.0.1", 4000, 2)
	fresh.AliveMillis = 10
	ev := observe(t, tab, fresh, at(2000), Restarted)
	if ev.Previous.UniqueID != old.UniqueID || ev.Previous.LastHeard != at(500) || ev.Previous.AliveMillis != 90_000 {
		t.Errorf("Previous = %+v, want the old incarnation as last heard", ev.Previous)
	}
	if ev.Member.UniqueID != fresh.UniqueID || ev.Member.FirstHeard != at(2000) || ev.Member.AliveMillis != 10 {
		t.Errorf("Member = %+v, want the new incarnation first heard now", ev.Member)
	}
	if m := tab.Members(); len(m) != 1 || m[0].UniqueID != fresh.UniqueID {
		t.Errorf("Members = %+v, want only the new incarnation", m)
	}
	// The old incarnation's beacons are a restart again, not a refresh.
	observe(t, tab, old, at(2100), Restarted)
	// Another port on the same host is another member.
	observe(t, tab, beacon("10.0.0.1", 4001, 1), at(2100), Joined)
	assertStats(t, tab, Stats{Observed: 5, Joins: 2, Restarts: 2})
}

func TestDomainFilter(t *testing.T) {
	b := beacon("10.0.0.1", 4000, 1)

	def := NewTable(Config{})
	for _, d := range []string{"prod", " ", "\x00"} {
		if ev := observe(t, def, inDomain(b, d), at(0), Ignored); ev.Reason != WrongDomain {
			t.Errorf("domain %q: Reason = %v, want %v", d, ev.Reason, WrongDomain)
		}
	}
	// A wrong-domain shutdown must not remove a member either.
	observe(t, def, b, at(0), Joined)
	observe(t, def, inDomain(shutdown(b), "prod"), at(0), Ignored)
	assertStats(t, def, Stats{Observed: 5, IgnoredWrongDomain: 4, Joins: 1})

	prod := NewTable(Config{Domain: "prod"})
	for _, d := range []string{"", "Prod", "production", "pro"} {
		if ev := observe(t, prod, inDomain(b, d), at(0), Ignored); ev.Reason != WrongDomain {
			t.Errorf("domain %q: Reason = %v, want %v", d, ev.Reason, WrongDomain)
		}
	}
	observe(t, prod, inDomain(b, "prod"), at(0), Joined)
	assertStats(t, prod, Stats{Observed: 5, IgnoredWrongDomain: 4, Joins: 1})

	// Any domain: every beacon counts, and the member keeps its domain.
	all := NewTable(Config{AnyDomain: true})
	observe(t, all, inDomain(b, "east"), at(0), Joined)
	other := beacon("10.0.0.9", 4000, 7)
	observe(t, all, other, at(0), Joined)
	if d, ok := all.DomainOf(b.Host); !ok || d != "east" {
		t.Errorf("DomainOf(%s) = %q, %v; want east", b.Host, d, ok)
	}
	if d, ok := all.DomainOf(other.Host); !ok || d != "" {
		t.Errorf("DomainOf(%s) = %q, %v; want the empty domain", other.Host, d, ok)
	}
	if _, ok := all.DomainOf(netip.MustParseAddr("10.0.0.99")); ok {
		t.Error("DomainOf a host never heard: found")
	}
}

func TestMaxMembers(t *testing.T) {
	tab := NewTable(Config{MaxMembers: 3})
	for port := int32(1); port <= 3; port++ {
		observe(t, tab, beacon("10.0.0.1", port, 1), at(0), Joined)
	}
	ev := observe(t, tab, beacon("10.0.0.1", 4, 1), at(0), Ignored)
	if ev.Reason != TableFull {
		t.Errorf("Reason = %v, want %v", ev.Reason, TableFull)
	}
	// Members already in the table keep working while it is full.
	observe(t, tab, beacon("10.0.0.1", 1, 1), at(100), Refreshed)
	observe(t, tab, beacon("10.0.0.1", 2, 9), at(100), Restarted)
	// Room again once one leaves.
	observe(t, tab, shutdown(beacon("10.0.0.1", 3, 1)), at(100), Left)
	observe(t, tab, beacon("10.0.0.1", 4, 1), at(100), Joined)
	assertStats(t, tab, Stats{Observed: 8, IgnoredTableFull: 1, Joins: 4, Restarts: 1, Leaves: 1})
}

// TestDefaultMaxMembersBoundsAFlood plays a spoofer announcing a new member
// per datagram.
func TestDefaultMaxMembersBoundsAFlood(t *testing.T) {
	tab := NewTable(Config{MaxMembers: -1})
	for i := range 2000 {
		b := beacon("10.0.0.1", int32(i), byte(i))
		b.UniqueID[0] = byte(i >> 8)
		tab.Observe(b, at(0))
	}
	if n := len(tab.Members()); n != DefaultMaxMembers {
		t.Errorf("%d members after a flood, want %d", n, DefaultMaxMembers)
	}
	assertStats(t, tab, Stats{Observed: 2000, Joins: DefaultMaxMembers, IgnoredTableFull: 2000 - DefaultMaxMembers})
}

func TestMembersOrderIsDeterministic(t *testing.T) {
	order := []struct {
		host string
		port int32
	}{
		{"10.0.0.1", 4000}, {"10.0.0.1", 4001}, {"10.0.0.2", 3999},
		{"10.0.0.10", 4000}, {"::ffff:10.0.0.1", 4000}, {"2001:db8::1", 4000}, {"2001:db8::2", 1},
	}
	var want []string
	for _, o := range order {
		want = append(want, fmt.Sprintf("%s:%d", o.host, o.port))
	}
	for round := range 20 {
		tab := NewTable(Config{})
		// Insert in a different order every round.
		for i := range order {
			o := order[(i*3+round)%len(order)]
			observe(t, tab, beacon(o.host, o.port, byte(i)), at(0), Joined)
		}
		var got []string
		for _, m := range tab.Members() {
			got = append(got, fmt.Sprintf("%v:%d", m.Host, m.Port))
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("round %d: Members order %v, want %v", round, got, want)
		}
	}
}

// inGroup reports whether host is in the group, as the Watcher asks it.
func inGroup(tab *Table, host netip.Addr) bool {
	_, in := tab.DomainOf(host)
	return in
}

func TestDomainOfMatchesHosts(t *testing.T) {
	tab := NewTable(Config{})
	observe(t, tab, beacon("10.0.0.1", 4000, 1), at(0), Joined)
	observe(t, tab, beacon("::ffff:10.0.0.5", 4000, 2), at(0), Joined)
	observe(t, tab, beacon("2001:db8::1", 4000, 3), at(0), Joined)
	for host, want := range map[string]bool{
		"10.0.0.1":        true,
		"::ffff:10.0.0.1": true, // catherd may hold a backend in either form
		"10.0.0.5":        true,
		"2001:db8::1":     true,
		"fe80::1%eth0":    false,
		"10.0.0.2":        false,
		"2001:db8::2":     false,
	} {
		if got := inGroup(tab, netip.MustParseAddr(host)); got != want {
			t.Errorf("%s in the group: %v, want %v", host, got, want)
		}
	}

	observe(t, tab, beacon("fe80::1", 4000, 4), at(0), Joined)
	if !inGroup(tab, netip.MustParseAddr("fe80::1%eth0")) {
		t.Error("a zone on the backend address must not hide the member")
	}
	tab.Expire(at(3001))
	if inGroup(tab, netip.MustParseAddr("10.0.0.1")) {
		t.Error("in the group after the member expired")
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[fmt.Stringer]string{
		Ignored: "ignored", Joined: "joined", Refreshed: "refreshed", Restarted: "restarted", Left: "left",
		NotIgnored: "not ignored", WrongDomain: "wrong domain", TableFull: "table full", UnknownShutdown: "unknown shutdown",
	} {
		if got := v.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", v, got, want)
		}
	}
}

// TestConcurrentUse is for the race detector: the socket reader and the
// expiry ticker share one Table.
func TestConcurrentUse(t *testing.T) {
	tab := NewTable(Config{DropTime: time.Millisecond})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			tab.Observe(beacon("10.0.0.1", int32(i%50), byte(i%3)), at(i))
		}
	})
	wg.Go(func() {
		for i := range 1000 {
			tab.Expire(at(i))
			tab.Members()
			inGroup(tab, netip.MustParseAddr("10.0.0.1"))
			tab.Stats()
		}
	})
	wg.Wait()
	s := tab.Stats()
	if s.Observed != 1000 || uint64(len(tab.Members())) != s.Joins-s.Leaves-s.Expiries {
		t.Errorf("inconsistent after concurrent use: %+v, %d members", s, len(tab.Members()))
	}
}
