package handoff

import (
	"sync"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
)

// relayQueue bounds the moves waiting to be passed on: a node failing as
// the predecessor drains moves each of its sessions once, on the
// requests still coming in, so a few thousand at most.
const relayQueue = 16384

// Relay passes the sessions a predecessor moves while it drains on to its
// successor (Predecessor.Relay), which would otherwise send them back to
// the node they left. It is a moved.Observer: the predecessor makes it the
// moved-session table's observer when it hands over, and closes it once
// drained. It never blocks a request: a move beyond relayQueue is
// dropped and counted.
type Relay struct {
	pool *balancer.Pool
	ch   chan balancer.MovedSession

	mu      sync.Mutex
	closed  bool
	dropped int
}

// NewRelay returns a relay of pool's moves.
func NewRelay(pool *balancer.Pool) *Relay {
	return &Relay{pool: pool, ch: make(chan balancer.MovedSession, relayQueue)}
}

// Moved queues the move, named by member, for the successor.
func (r *Relay) Moved(e moved.Entry) {
	m := r.pool.At(e.Member)
	if m == nil {
		return // a member removed meanwhile: the move is void
	}
	mv := balancer.MovedSession{Key: e.Key, Member: m.Name, Reason: e.Reason, LastUsed: e.LastUsed}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.ch <- mv:
	default:
		r.dropped++
	}
}

// Used and Forgotten are not passed on: the successor serves the sessions
// from now on.
func (r *Relay) Used(moved.Entry) {}

// Forgotten: see Used.
func (r *Relay) Forgotten(string) {}

// Close ends the relay: what is queued is still passed on.
func (r *Relay) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.ch)
	}
}

// Dropped counts the moves dropped for want of room.
func (r *Relay) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}
