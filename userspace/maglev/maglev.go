// Package maglev builds the lookup tables of Maglev consistent hashing
// (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
// Balancer", NSDI 2016), with weights.
//
// A table has a prime number of slots, each holding the ID of a backend. The
// datapath hashes a flow to a slot and sends it to that slot's backend. The
// table is built so that each backend holds a share of the slots in
// proportion to its weight, and so that a change of the backend set moves
// few slots from one surviving backend to another: flows that the datapath
// has not recorded yet mostly keep their backend.
//
// The table depends only on the backends' keys, IDs and weights, never on
// their order or on the machine building it, so every balancer instance
// behind the same ECMP route sends a flow to the same backend.
package maglev

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/big"
	"slices"
)

// DefaultSize is the default number of slots in a table. It is prime, as
// Build requires, and large enough to balance hundreds of backends
// closely; Katran and Envoy use the same size.
const DefaultSize = 65537

// Empty marks a slot with no backend: every slot of a table built with no
// backend of positive weight.
const Empty = ^uint32(0)

// A Backend is one candidate for a table's slots.
type Backend struct {
	// ID is what the backend's slots hold: its index in the datapath. It
	// must not be Empty.
	ID uint32
	// Key is the backend's stable identity, such as "10.0.0.1:80". The
	// backend's order of preference over the slots derives from it alone,
	// so the backend claims the same slots whatever its ID, its place in
	// the slice or the balancer instance.
	Key string
	// Weight is the backend's relative share of the slots. A backend of
	// weight 0 (down or drained) gets none: the table is then the one that
	// omitting it would give.
	Weight uint32
}

// Build returns the table of size slots for backends.
//
// Size must be prime, so that every backend's walk over the slots visits
// each of them (see IsPrime), and at least len(backends), so that every
// backend of positive weight gets a slot. Backends of weight 0 count, so
// that a configuration that fits keeps fitting whichever of its backends
// are up. That is the only limit enforced, but balance wants more room: a
// backend holds its weight's share of size to within a few slots, so
// shares are only as fine as size is large next to the number of backends.
// The paper advises a size over 100 times the number of backends, which
// DefaultSize allows for 655.
//
// Keys and IDs must be unique. If no backend has a positive weight, every
// slot is Empty.
func Build(backends []Backend, size uint32) ([]uint32, error) {
	if !IsPrime(size) {
		return nil, fmt.Errorf("maglev: table size %d is not a prime", size)
	}
	if uint64(len(backends)) > uint64(size) {
		return nil, fmt.Errorf("maglev: %d backends do not fit in a table of %d slots", len(backends), size)
	}

	// Sorting by key makes the result independent of the caller's order.
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b Backend) int { return cmp.Compare(a.Key, b.Key) })
	keyOf := make(map[uint32]string, len(sorted))
	members := make([]member, 0, len(sorted))
	var maxWeight uint64
	for i, b := range sorted {
		if i > 0 && b.Key == sorted[i-1].Key {
			return nil, fmt.Errorf("maglev: two backends have key %q", b.Key)
		}
		if b.ID == Empty {
			return nil, fmt.Errorf("maglev: backend %q has ID %#x, which marks empty slots", b.Key, b.ID)
		}
		if k, dup := keyOf[b.ID]; dup {
			return nil, fmt.Errorf("maglev: backends %q and %q both have ID %d", k, b.Key, b.ID)
		}
		keyOf[b.ID] = b.Key
		if b.Weight > 0 {
			members = append(members, newMember(b, size))
			maxWeight = max(maxWeight, uint64(b.Weight))
		}
	}

	table := make([]uint32, size)
	for i := range table {
		table[i] = Empty
	}
	if len(members) == 0 {
		return table, nil
	}
	// Members take turns claiming their next preferred free slot, in
	// rounds. The paper gives each backend one turn a round, which makes
	// shares equal; here the heaviest members take a turn every round and a
	// member of weight w only once its weight accumulated over the rounds,
	// round*w, has reached maxWeight for each turn it has taken, as in
	// Envoy. Turns, and so slots, are then in proportion to weight, and
	// every member claims a slot in the first round.
	//
	// A heaviest member claims a slot every round, so there are at most
	// size rounds, and round*weight and due stay below 2^64.
	filled := uint32(0)
	for round := uint64(1); ; round++ {
		for i := range members {
			m := &members[i]
			if round*m.weight < m.due {
				continue
			}
			m.due += maxWeight
			for table[m.next] != Empty {
				m.advance(size)
			}
			table[m.next] = m.id
			m.advance(size)
			if filled++; filled == size {
				return table, nil
			}
		}
	}
}

// A member is a backend of positive weight while its table is built.
type member struct {
	id     uint32
	weight uint64
	due    uint64 // accumulated weight needed for the next turn
	next   uint32 // the next slot in the member's order of preference
	skip   uint32 // the step from one preferred slot to the next, in [1, size)
}

// newMember places b's walk over the slots: it starts at an offset and
// steps by skip, both from b.Key. A prime size makes every skip coprime with
// it, so the walk is a permutation of the slots.
//
// The hash is SHA-256 because it is well spread for keys that differ in a
// character (consecutive addresses), defined independently of any library
// version, and computed once per backend per table. Changing it would move
// nearly every flow whose backend the datapath has not recorded, and would
// split the flows of balancers running different versions of catherd.
func newMember(b Backend, size uint32) member {
	h := sha256.Sum256([]byte(b.Key))
	offset := binary.BigEndian.Uint64(h[0:8]) % uint64(size)
	skip := binary.BigEndian.Uint64(h[8:16])%uint64(size-1) + 1
	return member{id: b.ID, weight: uint64(b.Weight), next: uint32(offset), skip: uint32(skip)}
}

// advance moves m to the next slot of its walk, (next + skip) mod size,
// without overflowing uint32.
func (m *member) advance(size uint32) {
	if m.next >= size-m.skip {
		m.next -= size - m.skip
	} else {
		m.next += m.skip
	}
}

// Diff returns, in increasing order, the indexes of the slots of next that
// differ from prev: the slots to rewrite in the datapath to turn prev into
// next. Slots past the end of prev count as changed, so Diff(nil, next)
// lists every slot of next.
func Diff(prev, next []uint32) []uint32 {
	var changed []uint32
	for i, id := range next {
		if i >= len(prev) || prev[i] != id {
			changed = append(changed, uint32(i))
		}
	}
	return changed
}

// IsPrime reports whether n is prime, as Build requires of a table size.
func IsPrime(n uint32) bool {
	// ProbablyPrime(0) is exact for inputs below 2^64.
	return big.NewInt(int64(n)).ProbablyPrime(0)
}
