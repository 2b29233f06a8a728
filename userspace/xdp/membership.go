package xdp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
)

// MembershipFilter says which datagrams are the cluster's membership
// beacons (Tomcat McastService) and which of them the program lets through
// to the kernel: from an allowed source, well formed, of the cluster's
// domain, and within a per-source rate. The zero value turns the filter
// off.
type MembershipFilter struct {
	Group  netip.AddrPort // the multicast group and port
	Allow  []netip.Prefix
	Domain string
	// AnyDomain lets beacons of every domain through (Domain unused):
	// catherd follows several clusters sharing the group.
	AnyDomain bool
	Rate      uint32 // beacons per second per source
	// Burst is how many beacons a source may send back to back; 0 is
	// a second's worth (Rate), and at least minBurst.
	Burst uint32
}

// minBurst is the smallest default burst: a node that restarts, or two
// beacons that queue behind each other, must not lose the next ones.
const minBurst = 5

// MaxDomain is the longest domain the filter compares (MAX_DOMAIN).
const MaxDomain = 64

// MaxBeaconRate bounds Rate and Burst, so that the program's token
// arithmetic (nanobeacons in 64 bits) cannot overflow.
const MaxBeaconRate = 1_000_000

// SetMembership replaces the filter's configuration. The allowed prefixes
// are written before the configuration that makes the filter act on
// them, and removed ones deleted after.
func (d *Datapath) SetMembership(f MembershipFilter) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := &d.objs.catherdMaps
	if f.Burst == 0 {
		f.Burst = max(f.Rate, minBurst)
	}
	if len(f.Domain) > MaxDomain {
		return fmt.Errorf("membership domain %q is longer than %d bytes", f.Domain, MaxDomain)
	}
	if f.Group.IsValid() && (f.Rate == 0 || f.Burst == 0 || f.Rate > MaxBeaconRate || f.Burst > MaxBeaconRate) {
		return fmt.Errorf("membership rate and burst must be 1..%d", MaxBeaconRate)
	}
	want := map[catherdLpmKey]bool{}
	for _, p := range f.Allow {
		k := lpmKey(p)
		want[k] = true
		if err := m.MembershipAllow.Put(&k, uint32(1)); err != nil {
			return fmt.Errorf("write membership_allow %s: %w", p, err)
		}
	}
	var c catherdMembershipConfig
	if f.Group.IsValid() {
		c.Family = family(f.Group.Addr())
		c.Group.Bytes = addrBytes(f.Group.Addr())
		c.Port = htons(f.Group.Port())
		c.DomainLen = uint16(len(f.Domain))
		copy(c.Domain[:], f.Domain)
		c.Rate, c.Burst = f.Rate, f.Burst
		if f.AnyDomain {
			c.Flags = membershipAnyDomain
		}
	}
	if err := m.Membership.Put(uint32(0), &c); err != nil {
		return fmt.Errorf("write membership config: %w", err)
	}
	var k catherdLpmKey
	var v uint32
	var stale []catherdLpmKey
	it := m.MembershipAllow.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read membership_allow: %w", err)
	}
	for i := range stale {
		if err := m.MembershipAllow.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove from membership_allow: %w", err)
		}
	}
	return nil
}

// lpmKey lays a prefix out as the trie holds it: IPv4 as IPv4-mapped IPv6.
func lpmKey(p netip.Prefix) catherdLpmKey {
	p = p.Masked()
	k := catherdLpmKey{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}
	if p.Addr().Is4() {
		k.Prefixlen += 96
	}
	return k
}
