package peers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Config says how a member starts. Name and Bind are required; Key is
// required unless Bind is a loopback address.
type Config struct {
	// Name identifies this instance in the tier; it must be unique there
	// (callers default it to the host name).
	Name string
	// Bind is the HOST:PORT gossip listens on, UDP and TCP; HOST is an IP
	// address. Port 0 takes a free port (see Member.Addr).
	Bind string
	// Advertise is the HOST:PORT peers reach this member at, when that is
	// not Bind (Bind on 0.0.0.0: by default memberlist then picks a private
	// address of the host).
	Advertise string
	// Seeds are peers to join (HOST:PORT): any one live one is enough. Join
	// contacts them; while this member knows no live peer, it keeps trying
	// them every Timing.Reconnect.
	Seeds []string
	// Key (16, 24 or 32 bytes; LoadKeyFile) encrypts and authenticates all
	// traffic between peers. Without it anyone who can reach the port could
	// read and change the shared state, so only a loopback Bind may do
	// without.
	Key []byte
	// OnChange, if set, is called for every change applied to the table,
	// local or remote, and for every record that expires; from one goroutine,
	// in the order they were applied, with no lock held. It must not call
	// Join or Close.
	OnChange func(Change)
	// Answer answers the questions peers Ask. Without it, a member answers
	// with an empty payload.
	Answer AnswerFunc
	// Logger receives this package's and memberlist's log lines
	// (slog.Default() if nil).
	Logger *slog.Logger
	Timing Timing

	// wrapTransport lets tests put a layer between memberlist and the guard
	// (to cut a member off the network).
	wrapTransport func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport
}

// Timing tunes the member; a zero field takes its default
// (defaultTiming).
type Timing struct {
	// Gossip is how often queued small changes go out over UDP, to 3 random
	// peers (memberlist's GossipInterval).
	Gossip time.Duration
	// Probe and ProbeTimeout drive failure detection: one peer is probed
	// each Probe, and suspected when it does not answer in ProbeTimeout.
	Probe, ProbeTimeout time.Duration
	// PushPull is how often the whole table is exchanged with one random
	// peer: what a member missed (a lost packet, a partition) comes back
	// within about this long.
	PushPull time.Duration
	// Reconnect is how often failed peers (and the seeds, while no peer is
	// live) are contacted again, so a healed partition merges.
	Reconnect time.Duration
	// TouchFlush is how long touches are coalesced before they are sent.
	TouchFlush time.Duration
	// Sweep is how often expired records are removed (and reported).
	Sweep time.Duration
	// Tombstone is how long a delete is remembered. A partition longer than
	// this may bring a deleted record back when it heals.
	Tombstone time.Duration
	// TCPTimeout bounds a TCP exchange with a peer: a dial, a send, a state
	// exchange.
	TCPTimeout time.Duration
	// Forget is how long a failed or departed peer is listed (and, failed,
	// retried) before it is forgotten.
	Forget time.Duration
}

// defaultTiming suits a tier on one LAN: a change reaches every peer in a
// fraction of a second, a failure is noticed in a few.
func defaultTiming() Timing {
	return Timing{
		Gossip:       200 * time.Millisecond,
		Probe:        time.Second,
		ProbeTimeout: 500 * time.Millisecond,
		PushPull:     15 * time.Second,
		Reconnect:    5 * time.Second,
		TouchFlush:   200 * time.Millisecond,
		Sweep:        time.Second,
		Tombstone:    time.Hour,
		TCPTimeout:   5 * time.Second,
		Forget:       24 * time.Hour,
	}
}

func (t Timing) withDefaults() Timing {
	d := defaultTiming()
	for _, f := range []struct{ v, def *time.Duration }{
		{&t.Gossip, &d.Gossip}, {&t.Probe, &d.Probe}, {&t.ProbeTimeout, &d.ProbeTimeout},
		{&t.PushPull, &d.PushPull}, {&t.Reconnect, &d.Reconnect}, {&t.TouchFlush, &d.TouchFlush},
		{&t.Sweep, &d.Sweep}, {&t.Tombstone, &d.Tombstone}, {&t.TCPTimeout, &d.TCPTimeout},
		{&t.Forget, &d.Forget},
	} {
		if *f.v <= 0 {
			*f.v = *f.def
		}
	}
	return t
}

// Message sizes. A gossip message must fit a UDP packet beside memberlist's
// own messages (its UDPBufferSize is 1400 bytes, less 29 for encryption). A
// flush of more than a few packets' worth goes over TCP instead: gossip
// carries about one packet per peer per Gossip interval, so 10,000 records
// would take minutes that way, and TCP takes well under a second. A full
// state must stay within memberlist's 20 MiB limit on push/pull state.
const (
	gossipMessageMax  = 1200
	maxGossipPerFlush = 4
	maxGossipQueued   = 64
	directMessageMax  = 1 << 20
	stateMessageMax   = 16 << 20
	// maxLinkBacklog bounds what waits for one slow peer; the oldest is
	// dropped beyond it (the next full-state exchange brings it back).
	maxLinkBacklog = 64 << 20
)

// ErrNoPeers is returned (wrapped) by Join when no seed answered.
var ErrNoPeers = errors.New("no seed answered")

// Member is one catherd instance in the tier: a replicated table of
// records, shared with its peers over memberlist.
type Member struct {
	cfg    Config
	timing Timing
	log    *slog.Logger
	ml     atomic.Pointer[memberlist.Memberlist]
	queue  *memberlist.TransmitLimitedQueue
	peers  *peerTable
	events *dispatcher
	stats  counters
	links  linkSet
	asks   askSet

	mu    sync.Mutex // store and out
	store *store
	// out holds the keys changed since the last flush: records to send
	// whole, and touched records whose new expiry to send. Keys, not
	// records: a flush sends what the table holds then, so repeated
	// changes to a key coalesce into one.
	out struct {
		records, touches map[string]struct{}
	}
	flushNow chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	goMu   sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

type counters struct {
	sent, received, refusedAuth, refusedMalformed, refusedUnknown, sendErrors atomic.Uint64
}

// Stats are a member's counters and the size and version of its table.
type Stats struct {
	// Sent counts messages of this package handed to the network: each UDP
	// transmission of a gossip message, each TCP message, each full state.
	Sent uint64
	// Received counts messages accepted from peers.
	Received uint64
	// Refused counts, by reason: packets and streams not sealed with the
	// key (unencrypted, another key, tampered); messages that did not
	// decode; messages from a sender that is not a known peer.
	RefusedAuth, RefusedMalformed, RefusedUnknown uint64
	// SendErrors counts messages that did not reach a peer over TCP (the
	// next full-state exchange repairs what they carried).
	SendErrors uint64
	// Records and Tombstones count the table's live and deleted entries.
	Records, Tombstones int
	// Clock and Digest are the state version this member advertises.
	Clock, Digest uint64
}

func (c *Config) validate() (host string, port int, err error) {
	if c.Name == "" {
		return "", 0, errors.New("peers: a member needs a name")
	}
	if len(c.Name) > maxNameLen {
		return "", 0, fmt.Errorf("peers: member name of %d bytes, at most %d", len(c.Name), maxNameLen)
	}
	ip, port, err := parseHostPort(c.Bind)
	if err != nil {
		return "", 0, fmt.Errorf("peers: bind address: %w", err)
	}
	if len(c.Key) == 0 {
		c.Key = nil
	}
	if c.Key == nil && !ip.IsLoopback() {
		return "", 0, fmt.Errorf("peers: a key is required to bind to %s: without one anyone who reaches it could read and change the shared state, so only a loopback address may run without", c.Bind)
	}
	if c.Key != nil {
		if err := memberlist.ValidateKey(c.Key); err != nil {
			return "", 0, fmt.Errorf("peers: key of %d bytes: it must be 16, 24 or 32", len(c.Key))
		}
	}
	if c.Advertise != "" {
		if _, _, err := parseHostPort(c.Advertise); err != nil {
			return "", 0, fmt.Errorf("peers: advertise address: %w", err)
		}
	}
	return ip.String(), port, nil
}

func parseHostPort(s string) (net.IP, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		return nil, 0, fmt.Errorf("%q: want HOST:PORT: %w", s, err)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return nil, 0, fmt.Errorf("%q: HOST must be an IP address", s)
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("%q: PORT must be a number from 0 to 65535", s)
	}
	return ip, int(port), nil
}

// Start validates cfg, listens on cfg.Bind and runs a member that knows no
// peer yet: call Join to join the tier.
func Start(cfg Config) (*Member, error) {
	host, port, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	m := &Member{
		cfg:      cfg,
		timing:   cfg.Timing.withDefaults(),
		log:      cfg.Logger,
		peers:    newPeerTable(cfg.Name),
		events:   newDispatcher(cfg.OnChange),
		flushNow: make(chan struct{}, 1),
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.store = newStore(cfg.Name, m.timing.Tombstone)
	m.out.records, m.out.touches = map[string]struct{}{}, map[string]struct{}{}
	m.links.m = m
	m.queue = &memberlist.TransmitLimitedQueue{
		NumNodes:       func() int { return m.peers.members() + 1 },
		RetransmitMult: 4,
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())

	mlLog := log.New(logWriter{m.log}, "", 0)
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{host}, BindPort: port, Logger: mlLog,
	})
	if err != nil {
		return nil, fmt.Errorf("peers: listening on %s: %w", cfg.Bind, err)
	}
	g, err := newGuard(inner, cfg.Key, m.timing.TCPTimeout,
		func() { m.stats.refusedAuth.Add(1) },
		func(addr string) { m.peers.heardFrom(addr, time.Now()) })
	if err != nil {
		inner.Shutdown()
		return nil, err
	}
	var tr memberlist.NodeAwareTransport = g
	if cfg.wrapTransport != nil {
		tr = cfg.wrapTransport(g)
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.Transport = tr
	if cfg.Advertise != "" {
		ip, port, _ := parseHostPort(cfg.Advertise)
		mc.AdvertiseAddr, mc.AdvertisePort = ip.String(), port
	}
	mc.SecretKey = cfg.Key
	mc.GossipInterval = m.timing.Gossip
	mc.ProbeInterval = m.timing.Probe
	mc.ProbeTimeout = m.timing.ProbeTimeout
	mc.PushPullInterval = m.timing.PushPull
	mc.TCPTimeout = m.timing.TCPTimeout
	d := &delegate{m}
	mc.Delegate, mc.Events, mc.Ping = d, d, d
	mc.Logger = mlLog
	ml, err := memberlist.Create(mc)
	if err != nil {
		g.Shutdown()
		return nil, fmt.Errorf("peers: starting memberlist: %w", err)
	}
	m.ml.Store(ml)

	if cfg.OnChange != nil {
		m.spawn(m.events.run)
	}
	m.spawn(m.flushLoop)
	m.spawn(func() { m.every(m.timing.Sweep, m.sweep) })
	m.spawn(func() { m.every(m.timing.Reconnect, m.reconnect) })
	return m, nil
}

// spawn runs f in a goroutine that Close waits for, unless the member is
// closing.
func (m *Member) spawn(f func()) bool {
	m.goMu.Lock()
	defer m.goMu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		f()
	}()
	return true
}

// Name is the member's name.
func (m *Member) Name() string { return m.cfg.Name }

// Addr is the HOST:PORT peers reach this member at.
func (m *Member) Addr() string { return nodeAddr(m.ml.Load().LocalNode()) }

// Join exchanges the whole table with every seed, so that when it returns
// this member holds the tier's state (and OnChange has been called for all
// of it): a restarted instance must know the tier's moved sessions before
// it serves a client. It fails, wrapping ErrNoPeers, when no peer could be
// reached; the member then runs alone, and keeps trying the seeds. Whether
// to serve alone is the caller's decision.
func (m *Member) Join() error {
	if len(m.cfg.Seeds) == 0 {
		return nil
	}
	_, err := m.ml.Load().Join(m.cfg.Seeds)
	// Counted by who we know rather than by memberlist's count of seeds
	// that answered: a seed list that names this member itself counts as
	// an answer there.
	if m.peers.members() == 0 {
		return fmt.Errorf("peers: joining %s: %w: %v", strings.Join(m.cfg.Seeds, ", "), ErrNoPeers, err)
	}
	m.events.wait()
	return nil
}

func checkKey(key string) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("peers: key of %d bytes: it must be 1 to %d", len(key), maxKeyLen)
	}
	return nil
}

// Set writes key with a new version, which every peer applies unless it
// holds a newer one. A ttl above 0 makes the record expire when that long
// passes without a Touch. Set returns the record written.
func (m *Member) Set(key string, value []byte, ttl time.Duration) (Record, error) {
	if err := checkKey(key); err != nil {
		return Record{}, err
	}
	if len(value) > maxValueLen {
		return Record{}, fmt.Errorf("peers: value of %s: %d bytes, at most %d", key, len(value), maxValueLen)
	}
	if ttl < 0 || ttl > maxDuration {
		return Record{}, fmt.Errorf("peers: ttl of %s: %v is out of range", key, ttl)
	}
	if len(value) == 0 {
		value = nil
	}
	return m.write(key, bytes.Clone(value), false, ttl)
}

// Delete writes a tombstone for key (whether or not this member holds it:
// a peer may).
func (m *Member) Delete(key string) (Record, error) {
	if err := checkKey(key); err != nil {
		return Record{}, err
	}
	return m.write(key, nil, true, 0)
}

func (m *Member) write(key string, value []byte, deleted bool, ttl time.Duration) (Record, error) {
	if m.ctx.Err() != nil {
		return Record{}, errClosed
	}
	m.mu.Lock()
	c := m.store.write(key, value, deleted, ttl, time.Now())
	m.out.records[key] = struct{}{}
	m.events.push(c)
	m.mu.Unlock()
	select {
	case m.flushNow <- struct{}{}:
	default:
	}
	return c.New, nil
}

// Touch moves the expiry of key's current version to ttl from now, here
// and (within Timing.TouchFlush) on every peer, for the version touched
// only: if a peer holds a newer version by then, the touch does nothing
// there. It reports whether key holds a live record. Cheap enough to call
// on every request: touches coalesce per key, and one that would move the
// expiry by less than a second is not even recorded.
func (m *Member) Touch(key string, ttl time.Duration) bool {
	now := time.Now()
	ttl = min(ttl, maxDuration)
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.store.lookup(key, now)
	if e == nil || e.rec.Deleted {
		return false
	}
	if c, ok := m.store.touch(wireTouch{key: key, version: e.rec.Version, ttl: ttl}, now); ok {
		m.out.touches[key] = struct{}{}
		m.events.push(c)
	}
	return true
}

// Get returns key's live record.
func (m *Member) Get(key string) (Record, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.store.lookup(key, time.Now())
	if e == nil || e.rec.Deleted {
		return Record{}, false
	}
	return e.rec, true
}

// Peers lists the other members this one knows of, by name.
func (m *Member) Peers() []Peer {
	// Suspect once two of our own rounds of probes (each peer is probed once
	// per round) went by without a word from it.
	n := time.Duration(max(1, m.peers.members()))
	return m.peers.list(time.Now(), 2*n*m.timing.Probe+m.timing.ProbeTimeout)
}

// Stats returns the counters and the table's size and version.
func (m *Member) Stats() Stats {
	m.mu.Lock()
	s := Stats{Records: m.store.live, Tombstones: m.store.dead, Clock: m.store.clock, Digest: m.store.digest}
	m.mu.Unlock()
	s.Sent = m.stats.sent.Load()
	s.Received = m.stats.received.Load()
	s.RefusedAuth = m.stats.refusedAuth.Load()
	s.RefusedMalformed = m.stats.refusedMalformed.Load()
	s.RefusedUnknown = m.stats.refusedUnknown.Load()
	s.SendErrors = m.stats.sendErrors.Load()
	return s
}

// Leave tells the peers this member is leaving (so they list it as left,
// not failed), then closes it. timeout bounds the goodbyes.
func (m *Member) Leave(timeout time.Duration) error {
	if m.ctx.Err() != nil {
		return errClosed
	}
	deadline := time.Now().Add(timeout)
	bye := m.encode(message{envelope: envelope{kind: kindBye}})
	nodes := m.peers.nodes(true)
	sent := make(chan struct{}, len(nodes))
	for _, n := range nodes {
		m.spawn(func() {
			m.sendReliable(n, bye)
			sent <- struct{}{}
		})
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for range nodes {
		select {
		case <-sent:
		case <-timer.C:
		}
	}
	err := m.ml.Load().Leave(max(0, time.Until(deadline)))
	return errors.Join(err, m.Close())
}

// Close stops the member without a goodbye (peers will find it failed) and
// waits for its goroutines. Changes not yet given to OnChange are dropped.
func (m *Member) Close() error {
	m.goMu.Lock()
	if m.closed {
		m.goMu.Unlock()
		return nil
	}
	m.closed = true
	m.goMu.Unlock()
	m.cancel()
	err := m.ml.Load().Shutdown()
	m.events.close()
	m.wg.Wait()
	return err
}
