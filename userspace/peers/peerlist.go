package peers

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// PeerState is a peer's state as this member sees it.
type PeerState string

const (
	// PeerAlive: memberlist counts it a member and it was heard from lately.
	PeerAlive PeerState = "alive"
	// PeerSuspect: memberlist still counts it a member, but nothing has come
	// from it for a few rounds of probes. (memberlist keeps its own suspect
	// state to itself; this is the same observation made from outside.)
	PeerSuspect PeerState = "suspect"
	// PeerDead: memberlist declared it failed. It is retried every
	// Timing.Reconnect, so a partition heals.
	PeerDead PeerState = "dead"
	// PeerLeft: it said goodbye (Member.Leave).
	PeerLeft PeerState = "left"
)

// Peer is what Member.Peers reports of another member.
type Peer struct {
	Name  string
	Addr  string // HOST:PORT
	State PeerState
	// Since is when State last changed (suspicion aside).
	Since time.Time
	// LastContact is when the latest packet or message came from it: a
	// ping, an ack, gossip or a state message.
	LastContact time.Time
	// Clock and Digest are the state version it last advertised (in every
	// message and ping ack): its logical clock, and the digest of its
	// table. Peers with equal digests hold the same records.
	Clock  uint64
	Digest uint64
}

type peerEntry struct {
	Peer
	member bool // memberlist counts it alive (or suspect)
	left   bool
}

// peerTable follows memberlist's events, plus what they leave out: when a
// peer was last heard from, the version it advertises, and whether it left
// or failed (memberlist v0.7.0 reports both as NotifyLeave, without the
// state: it keeps the state in a field of its own and never copies it into
// the Node it passes).
type peerTable struct {
	self string

	mu     sync.Mutex
	byName map[string]*peerEntry
	byAddr map[string]*peerEntry
}

func newPeerTable(self string) *peerTable {
	return &peerTable{self: self, byName: map[string]*peerEntry{}, byAddr: map[string]*peerEntry{}}
}

func nodeAddr(n *memberlist.Node) string {
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// upsert records n as a member (alive) or not (failed or left) and returns
// its entry. The caller holds mu.
func (t *peerTable) upsert(n *memberlist.Node, member bool, now time.Time) *peerEntry {
	p := t.byName[n.Name]
	if p == nil {
		p = &peerEntry{Peer: Peer{Name: n.Name, Since: now}}
		t.byName[n.Name] = p
	}
	if addr := nodeAddr(n); addr != p.Addr {
		delete(t.byAddr, p.Addr)
		p.Addr = addr
		t.byAddr[addr] = p
	}
	if p.member != member {
		p.member, p.Since = member, now
	}
	return p
}

func (t *peerTable) joined(n *memberlist.Node, now time.Time) {
	if n.Name == t.self {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.upsert(n, true, now)
	p.left = false
	p.LastContact = now
}

func (t *peerTable) updated(n *memberlist.Node, now time.Time) {
	if n.Name == t.self {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.upsert(n, true, now)
}

func (t *peerTable) failed(n *memberlist.Node, now time.Time) {
	if n.Name == t.self {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.upsert(n, false, now)
}

// bye marks a peer as leaving: when memberlist then reports it gone, it
// left rather than failed.
func (t *peerTable) bye(name string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.byName[name]; p != nil && !p.left {
		p.left, p.Since = true, now
	}
}

// heardFrom records a packet from addr.
func (t *peerTable) heardFrom(addr string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.byAddr[addr]; p != nil {
		p.LastContact = now
	}
}

// advertised records a message or ack from name with its state version,
// reporting whether name is a known peer.
func (t *peerTable) advertised(name string, clock, digest uint64, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byName[name]
	if p == nil {
		return false
	}
	p.LastContact, p.Clock, p.Digest = now, clock, digest
	return true
}

func (p *peerEntry) state(now time.Time, suspectAfter time.Duration) PeerState {
	switch {
	case p.left:
		return PeerLeft
	case !p.member:
		return PeerDead
	case now.Sub(p.LastContact) > suspectAfter:
		return PeerSuspect
	}
	return PeerAlive
}

// list returns every known peer by name. A peer is suspect when it has
// been silent for suspectAfter.
func (t *peerTable) list(now time.Time, suspectAfter time.Duration) []Peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Peer, 0, len(t.byName))
	for _, p := range t.byName {
		q := p.Peer
		q.State = p.state(now, suspectAfter)
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// members counts the peers memberlist counts as members (for the transmit
// queue's retransmit limit).
func (t *peerTable) members() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.byName {
		if p.member {
			n++
		}
	}
	return n
}

// node returns name as a memberlist Node to send to, and whether it is
// known and has not left.
func (t *peerTable) node(name string) (*memberlist.Node, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byName[name]
	if p == nil || p.left {
		return nil, false
	}
	return addrNode(p.Name, p.Addr), true
}

func addrNode(name, addr string) *memberlist.Node {
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	return &memberlist.Node{Name: name, Addr: net.ParseIP(host), Port: uint16(n)}
}

// nodes returns the peers to send to: all that have not left, or only
// memberlist's members when membersOnly.
func (t *peerTable) nodes(membersOnly bool) []*memberlist.Node {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*memberlist.Node
	for _, p := range t.byName {
		if !p.left && (p.member || !membersOnly) {
			out = append(out, addrNode(p.Name, p.Addr))
		}
	}
	return out
}

// reconnectAddrs returns the addresses of failed peers, and forgets the
// peers that failed or left longer than forget ago.
func (t *peerTable) reconnectAddrs(now time.Time, forget time.Duration) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name, p := range t.byName {
		if p.member {
			continue
		}
		if now.Sub(p.Since) > forget {
			delete(t.byName, name)
			delete(t.byAddr, p.Addr)
			continue
		}
		if !p.left {
			out = append(out, p.Addr)
		}
	}
	return out
}
