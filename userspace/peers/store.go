package peers

import (
	"cmp"
	"container/heap"
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"
	"time"
)

// store is one member's copy of the replicated table and its logical clock.
// It is pure: no I/O, no goroutine, no clock of its own (every call is given
// now), so the conflict and expiry rules are tested exhaustively without a
// network. The Member serialises access.
//
// Entries are immutable once in the tree: a change replaces the entry, so a
// snapshot (a slice of entries) can be encoded after the lock is released.
type store struct {
	self      string
	tombstone time.Duration
	byKey     map[string]*entry
	// byExpiry orders the entries that expire, so a sweep visits only what
	// is due instead of the whole table (which may hold 100,000s of moved
	// sessions). A heap whose entries know their place in it, so a touch
	// or a replacement moves one entry in O(log n) rather than leaving a
	// stale copy behind. An ordered map would serve prefixed too, but
	// that is rare (a full-state exchange) and a scan and sort of the
	// table then costs less than a dependency.
	byExpiry expiryHeap
	clock    uint64
	// digest is the XOR of a hash of every entry's key and version: two
	// members with the same digest hold the same versions. It is advertised
	// so that operators (and tests) can see whether peers agree.
	digest     uint64
	live, dead int
}

// entry is a key's record. Its key and record never change once it is in
// the table (a change replaces the entry), so a snapshot of entries can be
// read after the lock is released; only its place in the expiry heap does,
// under the lock.
type entry struct {
	key  string
	rec  Record
	slot int // index in byExpiry; unused when rec.Expires is zero
}

// expiryHeap is a container/heap of the entries that expire, soonest
// first.
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].rec.Expires.Before(h[j].rec.Expires) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].slot, h[j].slot = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.slot = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

func newStore(self string, tombstone time.Duration) *store {
	return &store{self: self, tombstone: tombstone, byKey: map[string]*entry{}}
}

func expired(r Record, now time.Time) bool {
	return !r.Expires.IsZero() && !r.Expires.After(now)
}

// expirySlack is how much later a new expiry must be than the current one to
// be recorded. Without it, the milliseconds a message spends in transit would
// make every full-state exchange rewrite (and report as changed) the expiry
// of every record, and every repeated touch a change to send.
func expirySlack(ttl time.Duration) time.Duration { return min(time.Second, ttl/8) }

// lookup returns key's entry unless it is absent or expired at now (an
// expired entry may wait for the next sweep; it is already gone).
func (s *store) lookup(key string, now time.Time) *entry {
	e, ok := s.byKey[key]
	if !ok || expired(e.rec, now) {
		return nil
	}
	return e
}

// tick advances the clock for a local write. It is a Lamport clock (never
// behind anything this member has seen, so a write made after seeing
// another wins over it) that is also never behind the wall clock in
// milliseconds, so that writes made on two sides of a partition, which
// cannot have seen each other, are ordered roughly by when they were made
// rather than by how many writes each side happened to do.
func (s *store) tick(now time.Time) uint64 {
	s.clock = max(s.clock+1, uint64(now.UnixMilli()))
	return s.clock
}

// observe moves the clock past a clock seen in a peer's message.
func (s *store) observe(clock uint64) { s.clock = max(s.clock, clock) }

func entryHash(key string, v Version, deleted bool) uint64 {
	h := fnv.New64a()
	var b [9]byte
	binary.BigEndian.PutUint64(b[:8], v.Clock)
	if deleted {
		b[8] = 1
	}
	h.Write([]byte(key))
	h.Write(b[:])
	h.Write([]byte(v.Origin))
	return h.Sum64()
}

// replace puts rec under key and returns what was visible there before (the
// zero Record if nothing, or only an expired entry, was).
func (s *store) replace(key string, rec Record, now time.Time) Record {
	var old Record
	if prev, ok := s.byKey[key]; ok {
		if !expired(prev.rec, now) {
			old = prev.rec
		}
		s.unindex(prev)
	}
	e := &entry{key: key, rec: rec}
	s.byKey[key] = e
	s.index(e)
	return old
}

// index and unindex keep the expiry tree, the digest and the counts in step
// with byKey; byKey itself is changed by the caller.
func (s *store) index(e *entry) {
	if !e.rec.Expires.IsZero() {
		heap.Push(&s.byExpiry, e)
	}
	s.digest ^= entryHash(e.key, e.rec.Version, e.rec.Deleted)
	if e.rec.Deleted {
		s.dead++
	} else {
		s.live++
	}
}

func (s *store) unindex(e *entry) {
	if !e.rec.Expires.IsZero() {
		heap.Remove(&s.byExpiry, e.slot)
	}
	s.digest ^= entryHash(e.key, e.rec.Version, e.rec.Deleted)
	if e.rec.Deleted {
		s.dead--
	} else {
		s.live--
	}
}

// write records a local Set (deleted false) or Delete with a new version.
// A delete leaves a tombstone that expires after the store's tombstone
// time; a set expires after ttl, or never when ttl is 0.
func (s *store) write(key string, value []byte, deleted bool, ttl time.Duration, now time.Time) Change {
	rec := Record{Value: value, Version: Version{Clock: s.tick(now), Origin: s.self}, Deleted: deleted}
	if deleted {
		rec.Value, ttl = nil, s.tombstone
	}
	if ttl > 0 {
		rec.Expires = now.Add(ttl)
	}
	return Change{Key: key, Old: s.replace(key, rec, now), New: rec}
}

// apply merges a record from a peer: a newer version replaces ours, the
// same version may carry a later expiry (a touch we missed), an older one
// is ignored. It reports whether anything changed.
func (s *store) apply(w wireRecord, now time.Time) (Change, bool) {
	s.observe(w.version.Clock)
	rec := Record{Value: w.value, Version: w.version, Deleted: w.deleted}
	if w.ttl > 0 {
		rec.Expires = now.Add(w.ttl)
	}
	cur := s.lookup(w.key, now)
	switch {
	case cur == nil || rec.Version.After(cur.rec.Version):
		return Change{Key: w.key, Old: s.replace(w.key, rec, now), New: rec}, true
	case rec.Version == cur.rec.Version:
		return s.extend(cur, rec.Expires, w.ttl, now)
	}
	return Change{}, false
}

// touch applies a touch from a peer: the expiry of version v of key moves
// to now+ttl, if v is still the version we hold. A touch for any other
// version is ignored, so a refresh can never bring back a value that a
// newer write replaced, nor outlive a delete.
func (s *store) touch(w wireTouch, now time.Time) (Change, bool) {
	s.observe(w.version.Clock)
	cur := s.lookup(w.key, now)
	if cur == nil || cur.rec.Deleted || cur.rec.Version != w.version {
		return Change{}, false
	}
	return s.extend(cur, now.Add(w.ttl), w.ttl, now)
}

// extend moves cur's expiry to at, when that is later by more than the
// slack. A record that never expires stays so.
func (s *store) extend(cur *entry, at time.Time, ttl time.Duration, now time.Time) (Change, bool) {
	if cur.rec.Expires.IsZero() || at.IsZero() || at.Sub(cur.rec.Expires) <= expirySlack(ttl) {
		return Change{}, false
	}
	rec := cur.rec
	rec.Expires = at
	return Change{Key: cur.key, Old: s.replace(cur.key, rec, now), New: rec}, true
}

// sweep removes what expired by now and returns the changes of the live
// records among them (a tombstone's expiry changes nothing visible).
func (s *store) sweep(now time.Time) []Change {
	var changes []Change
	for len(s.byExpiry) > 0 && expired(s.byExpiry[0].rec, now) {
		e := s.byExpiry[0]
		delete(s.byKey, e.key)
		s.unindex(e)
		if !e.rec.Deleted {
			changes = append(changes, Change{Key: e.key, Old: e.rec})
		}
	}
	return changes
}

// prefixed returns the unexpired entries whose key starts with prefix, in
// key order.
func (s *store) prefixed(prefix string, now time.Time) []*entry {
	var out []*entry
	for key, e := range s.byKey {
		if strings.HasPrefix(key, prefix) && !expired(e.rec, now) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b *entry) int { return cmp.Compare(a.key, b.key) })
	return out
}
