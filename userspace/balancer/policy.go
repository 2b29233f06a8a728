package balancer

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Policy picks a member for a new session among candidates. members is the
// whole pool in configuration order (some methods, like iphash, depend on
// it); only members in candidates may be returned. candidates is never empty.
type Policy interface {
	Pick(members []*Member, candidates *Set, r *Request) *Member
}

// Methods lists the balancing methods by their flag names.
var Methods = []string{"byrequests", "bytraffic", "bybusyness", "iphash", "hash"}

// NewPolicy returns the policy for a --lbmethod name over a pool's members.
func NewPolicy(method string, members []*Member) (Policy, error) {
	n := len(members)
	switch method {
	case "byrequests":
		return newSmoothWRR(n), nil
	case "bytraffic":
		return byTraffic{}, nil
	case "bybusyness":
		return &byBusyness{rr: newSmoothWRR(n)}, nil
	case "iphash":
		return &ipHash{fallback: newSmoothWRR(n)}, nil
	case "hash":
		return newRendezvous(members), nil
	}
	return nil, fmt.Errorf("unknown method %q (want one of %v)", method, Methods)
}

// smoothWRR is Apache's byrequests (and nginx's round robin): every pick adds
// each candidate's weight to its credit, takes the candidate with the most
// credit, and charges it the total. Picks interleave smoothly in proportion
// to the weights: 5,1,1 gives a a b a c a a, not a a a a a b c.
type smoothWRR struct {
	mu     sync.Mutex
	credit []int64
}

func newSmoothWRR(n int) *smoothWRR { return &smoothWRR{credit: make([]int64, n)} }

func (p *smoothWRR) Pick(members []*Member, candidates *Set, r *Request) *Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *Member
	var total int64
	for i, m := range members {
		if !candidates.Has(i) {
			continue
		}
		w := m.share(r.now)
		p.credit[i] += w
		total += w
		if best == nil || p.credit[i] > p.credit[best.index] {
			best = m
		}
	}
	p.credit[best.index] -= total
	return best
}

// byTraffic is Apache's bytraffic: the member that moved the fewest bytes
// relative to its weight.
type byTraffic struct{}

func (byTraffic) Pick(members []*Member, candidates *Set, r *Request) *Member {
	var best *Member
	var bestLoad float64
	for i, m := range members {
		if !candidates.Has(i) {
			continue
		}
		load := float64(m.traffic.Load()) / float64(m.share(r.now))
		if best == nil || load < bestLoad {
			best, bestLoad = m, load
		}
	}
	return best
}

// byBusyness is Apache's bybusyness: the member with the fewest requests in
// flight relative to its weight; ties are broken by byrequests, so an idle
// pool still spreads new sessions.
type byBusyness struct {
	rr *smoothWRR
}

func (p *byBusyness) Pick(members []*Member, candidates *Set, r *Request) *Member {
	var least Set
	var best *Member
	var bestShare int64
	for i, m := range members {
		if !candidates.Has(i) {
			continue
		}
		// a/wa < b/wb without division: a*wb < b*wa.
		share := m.share(r.now)
		switch {
		case best == nil || m.Active()*bestShare < best.Active()*share:
			best, bestShare, least = m, share, Set{}
			least.Add(i)
		case m.Active()*bestShare == best.Active()*share:
			least.Add(i)
		}
	}
	return p.rr.Pick(members, &least, r)
}

// ipHash is nginx's ip_hash, bit for bit, so clients keep the backend they
// had behind nginx: the key is the first three octets of an IPv4 address
// (the whole of an IPv6 one), the member is found by walking the configured
// members by weight, an unusable pick is re-hashed, and after 20 tries it
// falls back to round robin. Hot-standby members are left out, as nginx
// ip_hash does not allow backup servers.
type ipHash struct {
	fallback *smoothWRR
}

func (p *ipHash) Pick(members []*Member, candidates *Set, r *Request) *Member {
	var key []byte
	if r.ClientIP.Is4() {
		a := r.ClientIP.As4()
		key = a[:3]
	} else {
		a := r.ClientIP.As16()
		key = a[:]
	}
	total := 0
	for _, m := range members {
		if m.Flags()&Standby == 0 && !m.Removed() {
			total += m.Weight()
		}
	}
	if total == 0 {
		return p.fallback.Pick(members, candidates, r)
	}
	hash := 89
	for tries := 0; tries < 20; tries++ {
		for _, b := range key {
			hash = (hash*113 + int(b)) % 6271
		}
		w := hash % total
		for _, m := range members {
			if m.Flags()&Standby != 0 || m.Removed() {
				continue
			}
			if w < m.Weight() {
				if candidates.Has(m.index) {
					return m
				}
				break
			}
			w -= m.Weight()
		}
	}
	return p.fallback.Pick(members, candidates, r)
}

// rendezvous is weighted rendezvous (highest random weight) hashing of the
// client address: each (client, member) pair gets a pseudo-random score
// scaled by the member's weight, and the highest score wins. It is
// consistent: when a member leaves, only its clients move, and a member
// that joins takes about 1/N of the clients from every other member. Scores
// use a fixed hash so every catherd instance picks the same member.
type rendezvous struct {
	seeds []uint64
}

// newRendezvous derives each member's hash seed from its name, not its
// position, so reordering --backend flags does not move clients.
func newRendezvous(members []*Member) *rendezvous {
	p := &rendezvous{seeds: make([]uint64, len(members))}
	for i, m := range members {
		p.seeds[i] = hashBytes([]byte(m.Name))
	}
	return p
}

func (p *rendezvous) Pick(members []*Member, candidates *Set, r *Request) *Member {
	a := r.ClientIP.As16()
	return p.pickKey(members, candidates, hashBytes(a[:]), r.now)
}

// pickKey returns the candidate with the highest weighted score for key:
// weighted by share at rampedAt, or by plain weight when rampedAt is zero.
// Failover partners are picked by plain weight, so that every catherd
// instance agrees on them whenever each saw a member return.
func (p *rendezvous) pickKey(members []*Member, candidates *Set, key uint64, rampedAt time.Time) *Member {
	var best *Member
	bestScore := math.Inf(-1)
	for i, m := range members {
		if !candidates.Has(i) {
			continue
		}
		// u is uniform in (0,1); -w/ln(u) is the weighted score whose
		// maximum falls on each member with probability w/sum(w).
		u := (float64(mix(key^p.seeds[i])>>11) + 0.5) / (1 << 53)
		w := int64(m.Weight()) * shareScale
		if !rampedAt.IsZero() {
			w = m.share(rampedAt)
		}
		score := -float64(w) / math.Log(u)
		if score > bestScore {
			best, bestScore = m, score
		}
	}
	return best
}

// hashBytes is FNV-1a, written out so the request path does not allocate.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// mix is the splitmix64 finalizer: it spreads FNV's weak low bits.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
