// Package moved remembers where sessions went when their node failed, so
// that they stay there: when the node returns, its copy of a moved session
// may be stale (it missed the updates made on the partner), and sending the
// session back would serve that stale copy. A session is forgotten after
// it has been idle for the TTL, or when its client comes back carrying the
// new node's route (the backend renamed it, as JvmRouteBinderValve does),
// which makes the entry redundant. The table is bounded: past its size the
// least recently used sessions are forgotten first.
package moved

import (
	"container/list"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Reason says why a session moved.
type Reason uint8

const (
	// Down: its node failed (health checks, errors, out of the group).
	Down Reason = iota
	// Evacuated: an operator is emptying its node.
	Evacuated
	// Isolated: its node left its replication group.
	Isolated
)

// Reasons lists every reason, in the order of their values.
var Reasons = []Reason{Down, Evacuated, Isolated}

func (r Reason) String() string { return [...]string{"down", "evacuated", "isolated"}[r] }

// MarshalText names the reason, so that JSON maps are keyed by name.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a reason's name.
func (r *Reason) UnmarshalText(b []byte) error {
	for _, x := range Reasons {
		if x.String() == string(b) {
			*r = x
			return nil
		}
	}
	return fmt.Errorf("unknown move reason %q", b)
}

// Table maps session keys (ids without their route) to the member a
// session moved to. It is safe for concurrent use.
type Table struct {
	ttl  time.Duration
	size int

	// entries mirrors lru.Len() so that Lookup, on every request of a
	// session, takes no lock while nothing has moved (the usual case).
	entries atomic.Int64

	// observer, if set, is told of moves, uses and forgets (Observe).
	observer atomic.Pointer[Observer]

	mu    sync.Mutex
	byKey map[string]*list.Element
	lru   *list.List // front: most recently used
	moves [3]uint64  // by Reason
	evict uint64     // dropped for room
	// changed and used count changes of the table (Versions).
	changed, used uint64
}

type entry struct {
	key      string
	member   int // the member's index in its pool
	why      Reason
	lastUsed time.Time
}

// New returns a table that forgets sessions idle for ttl and holds at most
// size of them.
func New(ttl time.Duration, size int) *Table {
	return &Table{ttl: ttl, size: size, byKey: map[string]*list.Element{}, lru: list.New()}
}

// Observer is told of what the table's users do to it, so that other
// catherd instances of a tier can do the same (userspace/tier): a session
// moved, a moved session was used (a Lookup hit), a session was forgotten
// (Forget). It is called after the table's lock is released, on the
// goroutine of the call, so it must be quick. What Restore adds and what
// expires is not reported: the first comes from elsewhere, the second
// happens on every instance alike.
type Observer interface {
	Moved(Entry)
	Used(Entry)
	Forgotten(key string)
}

// Observe makes o the table's observer (nil: none).
func (t *Table) Observe(o Observer) {
	if o == nil {
		t.observer.Store(nil)
		return
	}
	t.observer.Store(&o)
}

// Move records that the session key now lives on member.
func (t *Table) Move(key []byte, member int, why Reason, now time.Time) {
	t.mu.Lock()
	t.moves[why]++
	t.changed++
	if e, ok := t.byKey[string(key)]; ok {
		en := e.Value.(*entry)
		en.member, en.why, en.lastUsed = member, why, now
		t.lru.MoveToFront(e)
	} else {
		if t.lru.Len() >= t.size {
			t.remove(t.lru.Back())
			t.evict++
		}
		t.byKey[string(key)] = t.lru.PushFront(&entry{key: string(key), member: member, why: why, lastUsed: now})
		t.entries.Add(1)
	}
	t.mu.Unlock()
	if o := t.observer.Load(); o != nil {
		(*o).Moved(Entry{Key: string(key), Member: member, Reason: why, LastUsed: now})
	}
}

// Peek returns the session's entry as Lookup would find it, without
// counting it as use: for operators asking where a session goes.
func (t *Table) Peek(key []byte, now time.Time) (Entry, bool) {
	if t.entries.Load() == 0 {
		return Entry{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[string(key)]
	if !ok || now.Sub(e.Value.(*entry).lastUsed) > t.ttl {
		return Entry{}, false
	}
	return e.Value.(*entry).export(), true
}

// Recent lists at most n sessions the table holds, most recently used
// first.
func (t *Table) Recent(n int) []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, min(n, t.lru.Len()))
	for e := t.lru.Front(); e != nil && len(out) < n; e = e.Next() {
		out = append(out, e.Value.(*entry).export())
	}
	return out
}

// Lookup returns the member the session moved to, if it did and has not
// been idle past the TTL; a hit counts as use.
func (t *Table) Lookup(key []byte, now time.Time) (int, bool) {
	if t.entries.Load() == 0 {
		return 0, false
	}
	t.mu.Lock()
	e, ok := t.byKey[string(key)]
	if !ok {
		t.mu.Unlock()
		return 0, false
	}
	en := e.Value.(*entry)
	if now.Sub(en.lastUsed) > t.ttl {
		t.remove(e)
		t.mu.Unlock()
		return 0, false
	}
	en.lastUsed = now
	t.lru.MoveToFront(e)
	t.used++
	used := en.export()
	t.mu.Unlock()
	if o := t.observer.Load(); o != nil {
		(*o).Used(used)
	}
	return used.Member, true
}

// Forget drops the session.
func (t *Table) Forget(key []byte) {
	t.mu.Lock()
	e, ok := t.byKey[string(key)]
	if ok {
		t.remove(e)
	}
	t.mu.Unlock()
	if o := t.observer.Load(); ok && o != nil {
		(*o).Forgotten(string(key))
	}
}

// ForgetMember drops every session that moved to member: it left its
// pool, and its index may be given to another.
func (t *Table) ForgetMember(member int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for e := t.lru.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*entry).member == member {
			t.remove(e)
		}
		e = next
	}
}

// Expire drops the sessions idle past the TTL, oldest first; callers run
// it now and then so that idle sessions do not wait for eviction.
func (t *Table) Expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for e := t.lru.Back(); e != nil && now.Sub(e.Value.(*entry).lastUsed) > t.ttl; e = t.lru.Back() {
		t.remove(e)
		n++
	}
	return n
}

// ExpireEvery runs Expire every interval until ctx ends, so that sessions
// idle past the TTL leave the table without waiting for a lookup of
// theirs (which also drops them) or for eviction.
func (t *Table) ExpireEvery(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			t.Expire(now)
		}
	}
}

func (t *Table) remove(e *list.Element) {
	t.changed++
	delete(t.byKey, e.Value.(*entry).key)
	t.lru.Remove(e)
	t.entries.Add(-1)
}

// Stats are the table's size and its counters.
type Stats struct {
	Size    int               `json:"size"`
	Moves   map[Reason]uint64 `json:"moves"`
	Evicted uint64            `json:"evicted"` // forgotten for room, before their TTL
}

// Stats reports the table's size and counters.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := Stats{Size: t.lru.Len(), Moves: map[Reason]uint64{}, Evicted: t.evict}
	for _, r := range Reasons {
		st.Moves[r] = t.moves[r]
	}
	return st
}

// Entry is one moved session, as Snapshot, Peek and Recent give it.
type Entry struct {
	Key      string
	Member   int
	Reason   Reason
	LastUsed time.Time
}

func (en *entry) export() Entry {
	return Entry{Key: en.key, Member: en.member, Reason: en.why, LastUsed: en.lastUsed}
}

// Snapshot lists the sessions the table holds, least recently used first,
// for Restore in a process that takes over from this one.
func (t *Table) Snapshot() []Entry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Entry, 0, t.lru.Len())
	for e := t.lru.Back(); e != nil; e = e.Prev() {
		out = append(out, e.Value.(*entry).export())
	}
	return out
}

// Restore adds entries as listed by Snapshot (least recently used first),
// keeping their last use, so that each expires when it would have in the
// table it came from. Entries past the TTL at now are skipped; the size
// bound holds as for Move. Moves are not counted again. An entry the table
// holds already, on the same member for the same reason, only takes the
// listed last use: for Versions, that is a use, not a change.
func (t *Table) Restore(entries []Entry, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, in := range entries {
		if now.Sub(in.LastUsed) > t.ttl {
			continue
		}
		if e, ok := t.byKey[in.Key]; ok {
			if en := e.Value.(*entry); en.member == in.Member && en.why == in.Reason {
				// Only its last use, as a tier's peer refreshes it.
				en.lastUsed = in.LastUsed
				t.lru.MoveToFront(e)
				t.used++
				continue
			}
			t.remove(e)
		}
		if t.lru.Len() >= t.size {
			t.remove(t.lru.Back())
			t.evict++
		}
		t.byKey[in.Key] = t.lru.PushFront(&entry{key: in.Key, member: in.Member, why: in.Reason, lastUsed: in.LastUsed})
		t.entries.Add(1)
		t.changed++
	}
}

// Versions counts what happened to the table: changed grows with every
// change of which sessions moved where, used with every change of a last
// use alone (a Lookup hit, a Restore that refreshes an entry). While
// changed stays the same, the table holds the same sessions on the same
// members; while both do, it is the same table. The state file's keeper
// asks this before it copies a table of thousands of sessions.
func (t *Table) Versions() (changed, used uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed, t.used
}
