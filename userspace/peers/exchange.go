package peers

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// How a member's changes travel (see the package comment): flushes of what
// changed, as gossip or over TCP; the sweep of what expired; reconnecting
// to failed peers; what arrives, checked and applied; the full state of
// memberlist's push/pull.

// encode fills in the envelope (sender, clock, digest) and encodes msg.
func (m *Member) encode(msg message) []byte {
	m.mu.Lock()
	msg.sender, msg.clock, msg.digest = m.cfg.Name, m.store.clock, m.store.digest
	m.mu.Unlock()
	return encodeMessage(msg)
}

func (m *Member) sendReliable(n *memberlist.Node, msg []byte) error {
	err := m.ml.Load().SendReliable(n, msg)
	if err != nil {
		m.stats.sendErrors.Add(1)
		m.log.Debug("peers: send failed", "peer", n.Name, "err", err)
		return err
	}
	m.stats.sent.Add(1)
	return nil
}

func (m *Member) flushLoop() {
	tick := time.NewTicker(m.timing.TouchFlush)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.flushNow:
			m.flush(false)
		case <-tick.C:
			m.flush(true)
		}
	}
}

func toWire(e *entry, now time.Time) wireRecord {
	w := wireRecord{key: e.key, version: e.rec.Version, deleted: e.rec.Deleted, value: e.rec.Value}
	if !e.rec.Expires.IsZero() {
		w.ttl = e.rec.Expires.Sub(now)
	}
	return w
}

// flush sends the changed records (and, with touches, the touched ones'
// expiries): as gossip when they fit a few packets and the gossip queue is
// short, else over TCP to every live peer.
func (m *Member) flush(touches bool) {
	now := time.Now()
	var b batch
	m.mu.Lock()
	for key := range m.out.records {
		if e := m.store.lookup(key, now); e != nil {
			b.records = append(b.records, toWire(e, now))
		}
		delete(m.out.touches, key) // the record carries its expiry
	}
	clear(m.out.records)
	if touches {
		for key := range m.out.touches {
			if e := m.store.lookup(key, now); e != nil && !e.rec.Deleted && !e.rec.Expires.IsZero() {
				b.touches = append(b.touches, wireTouch{key: key, version: e.rec.Version, ttl: e.rec.Expires.Sub(now)})
			}
		}
		clear(m.out.touches)
	}
	env := envelope{kind: kindGossip, sender: m.cfg.Name, clock: m.store.clock, digest: m.store.digest}
	m.mu.Unlock()
	if len(b.records)+len(b.touches) == 0 {
		return
	}
	if msgs, ok := pack(env, b, gossipMessageMax); ok && len(msgs) <= maxGossipPerFlush && m.queue.NumQueued() < maxGossipQueued {
		for _, msg := range msgs {
			m.queue.QueueBroadcast(gossipBroadcast(msg))
		}
		return
	}
	env.kind = kindDirect
	msgs, _ := pack(env, b, directMessageMax) // a record never exceeds it
	for _, n := range m.peers.nodes(true) {
		m.links.send(n, msgs)
	}
}

// gossipBroadcast is a message in memberlist's transmit queue. Unique:
// nothing it carries is made obsolete by another message (a newer version
// of a key wins wherever it lands), and the queue skips its linear scan
// for invalidated messages.
type gossipBroadcast []byte

func (b gossipBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b gossipBroadcast) Message() []byte                       { return b }
func (b gossipBroadcast) Finished()                             {}
func (b gossipBroadcast) UniqueBroadcast()                      {}

// every calls f every interval until the member closes.
func (m *Member) every(interval time.Duration, f func(now time.Time)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-tick.C:
			f(now)
		}
	}
}

// sweep removes what expired by now, and reports the records among it.
func (m *Member) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range m.store.sweep(now) {
		m.events.push(c)
	}
}

// reconnect contacts failed peers again, and the seeds while no peer is
// live. memberlist alone never would: it stops gossiping to a failed peer
// after a while and never probes one, so two sides of a healed partition
// would stay apart.
func (m *Member) reconnect(now time.Time) {
	addrs := m.peers.reconnectAddrs(now, m.timing.Forget)
	if m.peers.members() == 0 {
		addrs = append(addrs, m.cfg.Seeds...)
	}
	if len(addrs) == 0 {
		return
	}
	if _, err := m.ml.Load().Join(addrs); err != nil {
		m.log.Debug("peers: reconnect", "err", err)
	}
}

// receive handles a user message: gossip and direct batches, questions,
// answers, goodbyes.
func (m *Member) receive(buf []byte) {
	if m.ctx.Err() != nil {
		return
	}
	msg, ok := m.accept(buf)
	if !ok {
		return
	}
	switch msg.kind {
	case kindGossip, kindDirect:
		m.applyBatch(msg, msg.kind == kindGossip)
	case kindQuestion:
		m.answer(msg)
	case kindAnswer:
		m.asks.settle(msg.id, msg.sender, msg.payload)
	case kindBye:
		m.peers.bye(msg.sender, time.Now())
	default:
		m.refuse(&m.stats.refusedMalformed, "unexpected kind", msg.sender, fmt.Errorf("kind %d in a user message", msg.kind))
		return
	}
	m.stats.received.Add(1)
}

// accept decodes buf and checks its sender is a known peer, counting what
// it refuses.
func (m *Member) accept(buf []byte) (message, bool) {
	msg, err := decodeMessage(buf)
	if err != nil {
		m.refuse(&m.stats.refusedMalformed, "malformed message", "", err)
		return message{}, false
	}
	if !m.peers.advertised(msg.sender, msg.clock, msg.digest, time.Now()) {
		m.refuse(&m.stats.refusedUnknown, "message from an unknown sender", msg.sender, nil)
		return message{}, false
	}
	return msg, true
}

func (m *Member) refuse(counter *atomic.Uint64, what, sender string, err error) {
	counter.Add(1)
	m.log.Warn("peers: refused "+what, "sender", sender, "err", err)
}

// applyBatch merges a batch into the table. What a gossip batch taught us
// is relayed, so gossip spreads epidemically (memberlist sends a message
// only to a few random peers, and receivers do not pass it on).
func (m *Member) applyBatch(msg message, relay bool) {
	now := time.Now()
	relayed := false
	m.mu.Lock()
	m.store.observe(msg.clock)
	for _, w := range msg.batch.records {
		if c, ok := m.store.apply(w, now); ok {
			m.events.push(c)
			if relay {
				m.out.records[w.key] = struct{}{}
				relayed = true
			}
		}
	}
	for _, t := range msg.batch.touches {
		if c, ok := m.store.touch(t, now); ok {
			m.events.push(c)
			if relay {
				m.out.touches[t.key] = struct{}{}
			}
		}
	}
	m.mu.Unlock()
	if relayed {
		select {
		case m.flushNow <- struct{}{}:
		default:
		}
	}
}

// localState encodes the whole table for a push/pull.
func (m *Member) localState() []byte {
	now := time.Now()
	m.mu.Lock()
	entries := m.store.prefixed("", now)
	env := envelope{kind: kindState, sender: m.cfg.Name, clock: m.store.clock, digest: m.store.digest}
	m.mu.Unlock()
	b := batch{records: make([]wireRecord, len(entries))}
	for i, e := range entries {
		b.records[i] = toWire(e, now)
	}
	m.stats.sent.Add(1)
	msgs, _ := pack(env, b, stateMessageMax)
	switch {
	case len(msgs) == 0:
		return encodeMessage(message{envelope: env})
	case len(msgs) > 1:
		m.log.Error("peers: the table is larger than a state exchange can carry; sending part of it",
			"records", len(entries), "limit_bytes", stateMessageMax)
	}
	return msgs[0]
}

func (m *Member) mergeState(buf []byte) {
	if m.ctx.Err() != nil {
		return
	}
	msg, ok := m.accept(buf)
	if !ok {
		return
	}
	if msg.kind != kindState {
		m.refuse(&m.stats.refusedMalformed, "unexpected kind", msg.sender, fmt.Errorf("kind %d as push/pull state", msg.kind))
		return
	}
	m.stats.received.Add(1)
	m.applyBatch(msg, false)
}
