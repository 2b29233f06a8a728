package xdp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/membership"
)

var group = netip.MustParseAddrPort("228.0.0.4:45564")

// beaconFrame is a UDP frame from src to the membership group carrying b's
// encoding, changed by mutate (which may return a different slice).
func beaconFrame(t testing.TB, src string, b membership.Beacon, mutate func([]byte) []byte) []byte {
	t.Helper()
	payload := membership.Append(nil, &b)
	if mutate != nil {
		payload = mutate(payload)
	}
	return pkt{src: netip.MustParseAddr(src), dst: group.Addr(), sport: 45564, dport: group.Port(), proto: UDP, payload: payload}.build(t)
}

func beacon(host, domain string) membership.Beacon {
	return membership.Beacon{AliveMillis: 1234, Port: 4000, SecurePort: -1, UDPPort: -1,
		Host: netip.MustParseAddr(host), Domain: []byte(domain), UniqueID: [16]byte{1, 2, 3}}
}

func TestMembershipFilter(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(*net.Interface) {
		d := testDatapath(t)
		valid := func(src string) []byte { return beaconFrame(t, src, beacon(src, ""), nil) }

		t.Run("off: beacons are anyone's traffic", func(t *testing.T) {
			expectVerdict(t, d, valid("10.77.0.11"), xdpPass, "pass_not_service")
		})
		if err := d.SetMembership(MembershipFilter{Group: group, Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
			Rate: 2, Burst: 3}); err != nil {
			t.Fatal(err)
		}
		t.Run("a well-formed beacon from an allowed source passes", func(t *testing.T) {
			expectVerdict(t, d, valid("10.77.0.11"), xdpPass, "pass_beacon")
			shutdown := beacon("10.77.0.12", "")
			shutdown.Command = []byte("BABY-ALEX")
			expectVerdict(t, d, beaconFrame(t, "10.77.0.12", shutdown, nil), xdpPass, "pass_beacon")
		})
		t.Run("sources outside the allowed prefixes are dropped", func(t *testing.T) {
			expectVerdict(t, d, valid("10.77.1.11"), xdpDrop, "drop_beacon_source")
			expectVerdict(t, d, valid("192.0.2.66"), xdpDrop, "drop_beacon_source")
		})
		t.Run("another domain is dropped", func(t *testing.T) {
			expectVerdict(t, d, beaconFrame(t, "10.77.0.13", beacon("10.77.0.13", "other"), nil), xdpDrop, "drop_beacon_domain")
		})
		t.Run("malformed beacons are dropped", func(t *testing.T) {
			cases := map[string]func([]byte) []byte{
				"begin marker":          func(b []byte) []byte { b[7] = 'X'; return b },
				"end marker":            func(b []byte) []byte { b[len(b)-3] = 'X'; return b },
				"end marker version":    func(b []byte) []byte { b[len(b)-2] = 2; return b },
				"body length too long":  func(b []byte) []byte { binary.BigEndian.PutUint32(b[10:], uint32(len(b))); return b },
				"body length too short": func(b []byte) []byte { binary.BigEndian.PutUint32(b[10:], 20); return b },
				"truncated":             func(b []byte) []byte { return b[:len(b)-1] },
				"trailing byte":         func(b []byte) []byte { return append(b, 0) },
				"host length 5":         func(b []byte) []byte { b[34] = 5; return b },
				"command length huge":   func(b []byte) []byte { binary.BigEndian.PutUint32(b[39:], 1<<30); return b },
				"command length off":    func(b []byte) []byte { binary.BigEndian.PutUint32(b[39:], 1); return b },
				"only markers":          func(b []byte) []byte { return append(append([]byte{}, b[:14]...), b[len(b)-10:]...) },
				"empty":                 func(b []byte) []byte { return []byte{} },
			}
			for name, mutate := range cases {
				t.Run(name, func(t *testing.T) {
					src := "10.77.0.21"
					expectVerdict(t, d, beaconFrame(t, src, beacon(src, ""), mutate), xdpDrop, "drop_beacon_malformed")
				})
			}
			frag := valid("10.77.0.21")
			binary.BigEndian.PutUint16(frag[14+6:], 0x2000) // more fragments
			expectVerdict(t, d, frag, xdpDrop, "drop_beacon_malformed")
		})
		t.Run("other ports of the group are not beacons", func(t *testing.T) {
			p := pkt{src: netip.MustParseAddr("192.0.2.66"), dst: group.Addr(), sport: 1, dport: 9, proto: UDP}
			expectVerdict(t, d, p.build(t), xdpPass, "pass_not_service")
		})
		t.Run("a source over its rate is dropped, others are not", func(t *testing.T) {
			// Burst 3 at 2 a second: beacons sent back to back pass until
			// the burst and what the rate refilled meanwhile are spent
			// (on a slow machine the refill counts: no fixed count), and
			// the next is dropped.
			dropped := verdictCount(t, d, "drop_beacon_rate")
			start := time.Now()
			passed := 0
			for ; ; passed++ {
				allowed := 3 + int(2*time.Since(start).Seconds()) + 1
				if passed > allowed {
					t.Fatalf("%d beacons back to back passed, at most %d may", passed, allowed)
				}
				if ret, _ := run(t, d, valid("10.77.0.31")); ret == xdpDrop {
					break
				}
			}
			if passed < 3 {
				t.Errorf("only %d beacons passed before the first drop, want the burst of 3", passed)
			}
			if got := verdictCount(t, d, "drop_beacon_rate"); got != dropped+1 {
				t.Errorf("drop_beacon_rate went %d -> %d, want +1", dropped, got)
			}
			expectVerdict(t, d, valid("10.77.0.32"), xdpPass, "pass_beacon")
		})
		t.Run("a configured domain must match exactly", func(t *testing.T) {
			if err := d.SetMembership(MembershipFilter{Group: group, Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.11/32")},
				Domain: "cluster-a", Rate: 100, Burst: 100}); err != nil {
				t.Fatal(err)
			}
			expectVerdict(t, d, beaconFrame(t, "10.77.0.11", beacon("10.77.0.11", "cluster-a"), nil), xdpPass, "pass_beacon")
			expectVerdict(t, d, beaconFrame(t, "10.77.0.11", beacon("10.77.0.11", "cluster-b"), nil), xdpDrop, "drop_beacon_domain")
			expectVerdict(t, d, beaconFrame(t, "10.77.0.11", beacon("10.77.0.11", ""), nil), xdpDrop, "drop_beacon_domain")
			// The allow list was replaced: the /24 is gone.
			expectVerdict(t, d, beaconFrame(t, "10.77.0.12", beacon("10.77.0.12", "cluster-a"), nil), xdpDrop, "drop_beacon_source")
		})
		t.Run("any domain: every domain passes, malformed ones do not", func(t *testing.T) {
			if err := d.SetMembership(MembershipFilter{Group: group, Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")},
				AnyDomain: true, Rate: 100, Burst: 100}); err != nil {
				t.Fatal(err)
			}
			for _, domain := range []string{"", "cluster-a", strings.Repeat("x", 200)} {
				expectVerdict(t, d, beaconFrame(t, "10.77.0.41", beacon("10.77.0.41", domain), nil), xdpPass, "pass_beacon")
			}
			long := func(b []byte) []byte { binary.BigEndian.PutUint32(b[43:], 1<<20); return b } // domain length
			expectVerdict(t, d, beaconFrame(t, "10.77.0.41", beacon("10.77.0.41", "a"), long), xdpDrop, "drop_beacon_malformed")
			expectVerdict(t, d, beaconFrame(t, "192.0.2.66", beacon("192.0.2.66", "a"), nil), xdpDrop, "drop_beacon_source")
		})
		t.Run("rate and burst must be positive and bounded", func(t *testing.T) {
			for _, f := range []MembershipFilter{{Group: group, Rate: 0, Burst: 5}, {Group: group, Rate: 5, Burst: MaxBeaconRate + 1},
				{Group: group, Rate: MaxBeaconRate + 1, Burst: 5}} {
				if err := d.SetMembership(f); err == nil {
					t.Errorf("SetMembership(rate %d, burst %d) accepted", f.Rate, f.Burst)
				}
			}
			// No burst is a second's worth, at least minBurst.
			if err := d.SetMembership(MembershipFilter{Group: group, Rate: 2}); err != nil {
				t.Errorf("SetMembership(rate 2, no burst): %v", err)
			}
		})
		t.Run("off again", func(t *testing.T) {
			if err := d.SetMembership(MembershipFilter{}); err != nil {
				t.Fatal(err)
			}
			expectVerdict(t, d, valid("192.0.2.66"), xdpPass, "pass_not_service")
		})
	})
}
