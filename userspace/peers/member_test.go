package peers

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// These tests run real memberlist instances on loopback. They wait for
// conditions by polling, with deadlines far above what they need, except
// where a deadline is the requirement itself (a change reaches every peer
// within a second).

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitNoGoroutines(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines left behind by closed members:\n%s", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoGoroutines waits until no goroutine runs code of this package or
// of memberlist (other than tests), and returns their stacks if some still
// do when the time is up.
func waitNoGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "testing.tRunner") || strings.Contains(g, "peers.waitNoGoroutines") {
				continue
			}
			if strings.Contains(g, "hashicorp/memberlist") || strings.Contains(g, "catherd/userspace/peers.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testTiming detects failures and reconnects faster than the defaults, so
// partition tests take seconds, and exchanges full state rarely, so that
// tests of gossip and TCP batches are not passed by a push/pull. Gossip
// and touches keep their defaults: the one-second test is of those.
func testTiming() Timing {
	return Timing{
		Probe:        200 * time.Millisecond,
		ProbeTimeout: 150 * time.Millisecond,
		PushPull:     time.Minute,
		Reconnect:    200 * time.Millisecond,
		Sweep:        50 * time.Millisecond,
		TCPTimeout:   2 * time.Second,
	}
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// testLogger keeps a member's log and prints it if the test fails.
func testLogger(t *testing.T, name string) *slog.Logger {
	var b lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			t.Logf("log of %s:\n%s", name, b.buf.String())
			b.mu.Unlock()
		}
	})
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start starts a member on a free loopback port, closed when the test ends.
func start(t *testing.T, cfg Config) *Member {
	t.Helper()
	if cfg.Bind == "" {
		cfg.Bind = "127.0.0.1:0"
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = testTiming()
	}
	cfg.Logger = testLogger(t, cfg.Name)
	m, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// cluster starts n members named lb1..lbn with key, each joining the first,
// and waits until each sees all the others alive. configure, if not nil,
// adjusts each member's Config first.
func cluster(t *testing.T, n int, key []byte, configure func(*Config)) []*Member {
	t.Helper()
	var ms []*Member
	for i := range n {
		cfg := Config{Name: fmt.Sprintf("lb%d", i+1), Key: key}
		if i > 0 {
			cfg.Seeds = []string{ms[0].Addr()}
		}
		if configure != nil {
			configure(&cfg)
		}
		m := start(t, cfg)
		if err := m.Join(); err != nil {
			t.Fatalf("%s: %v", cfg.Name, err)
		}
		ms = append(ms, m)
	}
	waitFor(t, 10*time.Second, "everyone sees everyone alive", func() bool {
		for _, m := range ms {
			if alive(m) != n-1 {
				return false
			}
		}
		return true
	})
	return ms
}

func alive(m *Member) int {
	n := 0
	for _, p := range m.Peers() {
		if p.State == PeerAlive {
			n++
		}
	}
	return n
}

func peerState(m *Member, name string) PeerState {
	for _, p := range m.Peers() {
		if p.Name == name {
			return p.State
		}
	}
	return ""
}

// waitFor polls cond until it holds, failing the test after timeout; it
// returns how long it took.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for !cond() {
		if time.Since(began) > timeout {
			t.Fatalf("after %v: not yet %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(began)
}

func waitAll(t *testing.T, ms []*Member, timeout time.Duration, what string, cond func(*Member) bool) time.Duration {
	t.Helper()
	return waitFor(t, timeout, what, func() bool {
		for _, m := range ms {
			if !cond(m) {
				return false
			}
		}
		return true
	})
}

func holds(key, value string) func(*Member) bool {
	return func(m *Member) bool {
		r, ok := m.Get(key)
		return ok && string(r.Value) == value
	}
}

func TestStartChecksConfig(t *testing.T) {
	key := generateKey()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "a", Bind: "0.0.0.0:0"}, "a key is required to bind to 0.0.0.0:0"},
		{Config{Name: "a", Bind: "10.1.2.3:7946"}, "a key is required"},
		{Config{Name: "a", Bind: "localhost:7946", Key: key}, "HOST must be an IP address"},
		{Config{Name: "a", Bind: "127.0.0.1", Key: key}, "want HOST:PORT"},
		{Config{Name: "a", Bind: "127.0.0.1:99999", Key: key}, "PORT must be a number"},
		{Config{Name: "a", Bind: "127.0.0.1:0", Key: key[:10]}, "key of 10 bytes"},
		{Config{Bind: "127.0.0.1:0"}, "needs a name"},
		{Config{Name: "a", Bind: "127.0.0.1:0", Advertise: "x"}, "advertise address"},
	} {
		m, err := Start(c.cfg)
		if err == nil {
			m.Close()
			t.Errorf("%+v started", c.cfg)
		} else if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

func TestSetGetLocally(t *testing.T) {
	m := start(t, Config{Name: "solo"})
	if _, err := m.Set("", nil, 0); err == nil {
		t.Error("empty key accepted")
	}
	if _, err := m.Set("k", make([]byte, maxValueLen+1), 0); err == nil {
		t.Error("oversized value accepted")
	}
	value := []byte("v")
	if _, err := m.Set("a/1", value, 0); err != nil {
		t.Fatal(err)
	}
	value[0] = 'X' // the member keeps its own copy
	m.Set("a/2", []byte("w"), 0)
	m.Set("b/1", []byte("x"), 0)
	m.Delete("a/2")
	if got := dump(m); len(got) != 2 || !strings.HasPrefix(got["a/1"], "v@") || !strings.HasPrefix(got["b/1"], "x@") {
		t.Errorf("table %v", got)
	}
	if _, ok := m.Get("a/2"); ok {
		t.Error("a deleted key is still there")
	}
	if s := m.Stats(); s.Records != 2 || s.Tombstones != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A Set, a Delete and a Touch on any member are in force on every member
// within a second.
func TestChangesConvergeWithinASecond(t *testing.T) {
	ms := cluster(t, 3, generateKey(), nil)
	a, b, c := ms[0], ms[1], ms[2]

	a.Set("action/node1", []byte("evacuate"), 0)
	d := waitAll(t, ms, time.Second, "a Set everywhere", holds("action/node1", "evacuate"))
	t.Logf("Set reached all in %v", d)

	b.Delete("action/node1")
	d = waitAll(t, ms, time.Second, "a Delete everywhere", func(m *Member) bool { _, ok := m.Get("action/node1"); return !ok })
	t.Logf("Delete reached all in %v", d)

	c.Set("moved/S1", []byte("node2"), 10*time.Second)
	waitAll(t, ms, time.Second, "the moved session everywhere", holds("moved/S1", "node2"))
	touched := time.Now()
	if !a.Touch("moved/S1", time.Hour) {
		t.Fatal("Touch found no record")
	}
	d = waitAll(t, ms, time.Second, "a Touch everywhere", func(m *Member) bool {
		r, ok := m.Get("moved/S1")
		return ok && r.Expires.After(touched.Add(59*time.Minute))
	})
	t.Logf("Touch reached all in %v", d)
	if a.Touch("moved/none", time.Hour) {
		t.Error("Touch of an absent key reported a record")
	}
}

// Members writing the same keys at the same time all end with the same
// winner: the highest version.
func TestConcurrentWritesConvergeOnOneWinner(t *testing.T) {
	ms := cluster(t, 3, generateKey(), nil)
	for round := range 5 {
		key := fmt.Sprintf("action/node%d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winner Record
		startLine := make(chan struct{})
		for _, m := range ms {
			wg.Go(func() {
				<-startLine
				r, err := m.Set(key, []byte(m.Name()), 0)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				if r.Version.After(winner.Version) {
					winner = r
				}
				mu.Unlock()
			})
		}
		close(startLine)
		wg.Wait()
		waitAll(t, ms, 5*time.Second, key+" converged on "+string(winner.Value), func(m *Member) bool {
			r, ok := m.Get(key)
			return ok && r.Version == winner.Version && bytes.Equal(r.Value, winner.Value)
		})
	}
	waitAll(t, ms, 5*time.Second, "equal digests", func(m *Member) bool { return m.Stats().Digest == ms[0].Stats().Digest })
}

// A touch that names a version a newer write replaced does nothing: it
// neither brings the old value back nor extends the new one.
func TestStaleTouchIgnored(t *testing.T) {
	ms := cluster(t, 3, generateKey(), nil)
	a, b, c := ms[0], ms[1], ms[2]
	v1, _ := a.Set("moved/S", []byte("node1"), time.Minute)
	waitAll(t, ms, 5*time.Second, "v1 everywhere", holds("moved/S", "node1"))
	v2, _ := b.Set("moved/S", []byte("node2"), time.Minute)
	waitAll(t, ms, 5*time.Second, "v2 everywhere", holds("moved/S", "node2"))

	// a's touch of v1, as it would arrive had a touched just before b wrote.
	stale := encodeMessage(message{
		envelope: envelope{kind: kindGossip, sender: a.Name(), clock: v1.Version.Clock},
		batch:    batch{touches: []wireTouch{{key: "moved/S", version: v1.Version, ttl: time.Hour}}},
	})
	received := c.Stats().Received
	c.receive(stale)
	if c.Stats().Received != received+1 {
		t.Fatal("the touch message was not accepted")
	}
	r, _ := c.Get("moved/S")
	if r.Version != v2.Version || string(r.Value) != "node2" || r.Expires.After(time.Now().Add(2*time.Minute)) {
		t.Errorf("after a stale touch: %+v, want v2 %+v unchanged", r, v2)
	}
}

// dump is m's live records, each as its value and version.
func dump(m *Member) map[string]string {
	m.mu.Lock()
	entries := m.store.prefixed("", time.Now())
	m.mu.Unlock()
	out := map[string]string{}
	for _, e := range entries {
		if !e.rec.Deleted {
			out[e.key] = fmt.Sprintf("%s@%v", e.rec.Value, e.rec.Version)
		}
	}
	return out
}

func sameTable(a, b map[string]string) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d records and %d", len(a), len(b))
	}
	for k, v := range a {
		if b[k] != v {
			return fmt.Errorf("%s: %q and %q", k, v, b[k])
		}
	}
	return nil
}

// A member that joins late, or restarts with an empty table, holds the
// whole table when Join returns, and has been told of all of it: no
// polling here.
func TestJoinBringsTheWholeTable(t *testing.T) {
	key := generateKey()
	ms := cluster(t, 2, key, nil)
	a, b := ms[0], ms[1]
	for i := range 500 {
		a.Set(fmt.Sprintf("moved/%03d", i), []byte("node2"), 30*time.Minute)
	}
	b.Set("action/node1", []byte("disable"), 0)
	b.Delete("moved/000")
	waitFor(t, 10*time.Second, "b has a's records", func() bool { return sameTable(dump(a), dump(b)) == nil })

	var told atomic.Int64
	joinAs := func(name, bind string) *Member {
		told.Store(0)
		c := start(t, Config{Name: name, Bind: bind, Key: key, Seeds: []string{a.Addr()},
			OnChange: func(Change) { told.Add(1) }})
		if err := c.Join(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := joinAs("lb3", "")
	if err := sameTable(dump(a), dump(c)); err != nil {
		t.Fatalf("late joiner right after Join: %v", err)
	}
	if n := told.Load(); n != 501 { // 499 moved, 1 action, 1 tombstone
		t.Errorf("OnChange called %d times before Join returned, want 501", n)
	}

	// Restarted: closed (as a crash would), changed meanwhile, started
	// again at the same address, empty.
	addr := c.Addr()
	c.Close()
	a.Set("action/node2", []byte("drain"), 0)
	c = joinAs("lb3", addr)
	if err := sameTable(dump(a), dump(c)); err != nil {
		t.Fatalf("restarted member right after Join: %v", err)
	}
	if r, ok := c.Get("action/node2"); !ok || string(r.Value) != "drain" {
		t.Error("the restarted member lacks the change made while it was down")
	}
}

// With no seed answering, Join says so and the member runs alone; once a
// seed appears it joins by itself.
func TestJoinWithoutSeedsFailsThenReconnects(t *testing.T) {
	// A free port, for a seed that is not there yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seed := l.Addr().String()
	l.Close()

	b := start(t, Config{Name: "lb2", Seeds: []string{seed}})
	err = b.Join()
	if !errors.Is(err, ErrNoPeers) || !strings.Contains(err.Error(), seed) {
		t.Fatalf("Join with no seed up: %v", err)
	}
	b.Set("action/b", []byte("1"), 0) // alone, it still works

	a := start(t, Config{Name: "lb1", Bind: seed})
	a.Set("action/a", []byte("1"), 0)
	waitAll(t, []*Member{a, b}, 10*time.Second, "both joined and merged", func(m *Member) bool {
		return holds("action/a", "1")(m) && holds("action/b", "1")(m)
	})
}

// echoAnswer answers a question with who answers whom, and the question.
func echoAnswer(name string) AnswerFunc {
	return func(_ context.Context, from string, q []byte) []byte {
		return fmt.Appendf(nil, "%s to %s: %s", name, from, q)
	}
}

func TestAsk(t *testing.T) {
	ms := cluster(t, 4, generateKey(), func(c *Config) { c.Answer = echoAnswer(c.Name) })
	a, d := ms[0], ms[3]

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d.Close() // failed, as far as a knows for a while: asked all the same
	ans, err := a.Ask(ctx, []byte("in flight?"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ans.From) != 2 || string(ans.From["lb2"]) != "lb2 to lb1: in flight?" || string(ans.From["lb3"]) != "lb3 to lb1: in flight?" {
		t.Errorf("answers %q", ans.From)
	}
	if strings.Join(ans.Unreachable, ",") != "lb4" {
		t.Errorf("unreachable %v, want lb4", ans.Unreachable)
	}

	// A live peer too slow to answer is unreachable at the deadline, and its
	// answerer saw the deadline.
	var slowSaw atomic.Value
	slow := start(t, Config{Name: "lb5", Key: a.cfg.Key, Seeds: []string{a.Addr()}, Answer: func(ctx context.Context, _ string, _ []byte) []byte {
		<-ctx.Done()
		slowSaw.Store(ctx.Err())
		return nil
	}})
	if err := slow.Join(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a sees lb5", func() bool { return peerState(a, "lb5") == PeerAlive })
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	ans, _ = a.Ask(ctx, []byte("q"))
	took := time.Since(began)
	if strings.Join(ans.Unreachable, ",") != "lb4,lb5" || len(ans.From) != 2 {
		t.Errorf("with a slow peer: answers %q, unreachable %v", ans.From, ans.Unreachable)
	}
	if took < 500*time.Millisecond || took > 5*time.Second {
		t.Errorf("Ask with a 500ms deadline took %v", took)
	}
	waitFor(t, 5*time.Second, "the slow answerer sees its deadline", func() bool {
		return slowSaw.Load() == context.DeadlineExceeded
	})
}

// A peer's entry tells its address, its state (alive, then left after a
// Leave, or dead after a crash), when it was last heard from and the state
// version it advertises.
func TestPeersReportStateAndVersion(t *testing.T) {
	ms := cluster(t, 3, generateKey(), nil)
	a, b, c := ms[0], ms[1], ms[2]
	b.Set("action/x", []byte("1"), 0)
	waitFor(t, 10*time.Second, "a sees the version b advertises", func() bool {
		for _, p := range a.Peers() {
			if p.Name == "lb2" {
				s := b.Stats()
				return p.Digest == s.Digest && p.Clock == s.Clock
			}
		}
		return false
	})
	for _, p := range a.Peers() {
		want := map[string]string{"lb2": b.Addr(), "lb3": c.Addr()}[p.Name]
		if p.Addr != want || p.State != PeerAlive || time.Since(p.LastContact) > 5*time.Second || p.Since.IsZero() {
			t.Errorf("peer %+v", p)
		}
	}
	if err := b.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, 10*time.Second, "lb2 left and lb3 dead", func() bool {
		return peerState(a, "lb2") == PeerLeft && peerState(a, "lb3") == PeerDead
	})
	if s := a.Stats(); s.Sent == 0 || s.Received == 0 || s.RefusedAuth+s.RefusedMalformed+s.RefusedUnknown != 0 {
		t.Errorf("stats %+v", s)
	}
}

// 10,000 records set on one member (the moved sessions of a failed node)
// reach the others: over TCP, not a packet at a time.
func TestTenThousandRecords(t *testing.T) {
	ms := cluster(t, 3, generateKey(), nil)
	const n = 10000
	began := time.Now()
	for i := range n {
		if _, err := ms[0].Set(fmt.Sprintf("moved/%032X", i), []byte("node2"), 30*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	set := time.Since(began)
	waitAll(t, ms[1:], 30*time.Second, "10,000 records everywhere", func(m *Member) bool { return m.Stats().Records == n })
	t.Logf("10,000 records: set in %v, on both peers %v after the first Set", set, time.Since(began))
	if err := sameTable(dump(ms[0]), dump(ms[2])); err != nil {
		t.Error(err)
	}
}

// partition cuts members off from each other at the transport: traffic
// between the two sides is dropped, dials fail.
type partition struct {
	mu  sync.Mutex
	cut map[string]bool // addresses on the cut-off side
}

func (p *partition) set(addrs ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = map[string]bool{}
	for _, a := range addrs {
		p.cut[a] = true
	}
}

func (p *partition) blocks(from, to string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut[from] != p.cut[to]
}

type cutTransport struct {
	memberlist.NodeAwareTransport
	p    *partition
	self atomic.Value // string: this member's address, once known
}

func (c *cutTransport) blocks(to string) bool {
	self, _ := c.self.Load().(string)
	return c.p.blocks(self, to)
}

func (c *cutTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return c.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (c *cutTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.blocks(a.Addr) {
		return time.Now(), nil
	}
	return c.NodeAwareTransport.WriteToAddress(b, a)
}

func (c *cutTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return c.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (c *cutTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.blocks(a.Addr) {
		return nil, errors.New("partitioned")
	}
	return c.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// Both sides of a partition keep working and diverge; when it heals they
// converge, conflicts by the last-writer rule.
func TestPartitionAndHeal(t *testing.T) {
	p := &partition{}
	var cuts []*cutTransport
	ms := cluster(t, 3, generateKey(), func(c *Config) {
		c.wrapTransport = func(inner memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
			ct := &cutTransport{NodeAwareTransport: inner, p: p}
			cuts = append(cuts, ct)
			return ct
		}
	})
	for i, m := range ms {
		cuts[i].self.Store(m.Addr())
	}
	a, b, c := ms[0], ms[1], ms[2]
	a.Set("action/x", []byte("before"), 0)
	waitAll(t, ms, 5*time.Second, "x everywhere", holds("action/x", "before"))

	p.set(c.Addr())
	waitFor(t, 15*time.Second, "each side finds the other dead", func() bool {
		return peerState(a, "lb3") == PeerDead && peerState(b, "lb3") == PeerDead &&
			peerState(c, "lb1") == PeerDead && peerState(c, "lb2") == PeerDead
	})
	va, _ := a.Set("action/x", []byte("from a"), 0)
	vc, _ := c.Set("action/x", []byte("from c"), 0)
	b.Set("action/b", []byte("1"), 0)
	c.Set("action/c", []byte("1"), 0)
	waitAll(t, ms[:2], 5*time.Second, "a and b agree", func(m *Member) bool {
		return holds("action/x", "from a")(m) && holds("action/b", "1")(m)
	})
	// Gossip sent across the cut is lost, and retransmitted only a few
	// times: once it is all spent, only the reconnect and its state
	// exchange can carry the writes over.
	waitAll(t, ms, 10*time.Second, "gossip queues spent", func(m *Member) bool { return m.queue.NumQueued() == 0 })
	if !holds("action/x", "from c")(c) {
		t.Error("c lost its own write while cut off")
	}
	if _, ok := c.Get("action/b"); ok {
		t.Fatal("b's write crossed the partition")
	}
	if _, ok := a.Get("action/c"); ok {
		t.Fatal("c's write crossed the partition")
	}

	p.set()
	want := "from a"
	if vc.Version.After(va.Version) {
		want = "from c"
	}
	d := waitAll(t, ms, 10*time.Second, "converged after the heal", func(m *Member) bool {
		return holds("action/x", want)(m) && holds("action/b", "1")(m) && holds("action/c", "1")(m)
	})
	t.Logf("converged %v after the heal, on x = %q", d, want)
	waitAll(t, ms, 10*time.Second, "everyone alive again", func(m *Member) bool { return alive(m) == 2 })
}

// seal encrypts plain as memberlist does, with key and additional data ad.
func seal(t *testing.T, key, plain, ad []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	return append(append([]byte{1}, nonce...), gcm.Seal(nil, nonce, plain, ad)...)
}

// memberlist's message types.
const (
	mlPushPullMsg = 6
	mlUserMsg     = 8
)

// pushPull builds a memberlist push/pull stream carrying state and no
// nodes; the header is msgpack, encoded here by hand.
func pushPull(state []byte) []byte {
	b := []byte{mlPushPullMsg, 0x83, 0xa5}
	b = append(b, "Nodes"...)
	b = append(b, 0x00, 0xac)
	b = append(b, "UserStateLen"...)
	b = append(b, 0xce)
	b = binary.BigEndian.AppendUint32(b, uint32(len(state)))
	b = append(b, 0xa4)
	b = append(b, "Join"...)
	b = append(b, 0xc2)
	return append(b, state...)
}

// sealStream encrypts a stream message as memberlist does.
func sealStream(t *testing.T, key, plain []byte) []byte {
	head := binary.BigEndian.AppendUint32([]byte{mlEncryptMsg}, uint32(1+12+len(plain)+16))
	return append(head, seal(t, key, plain, head)...)
}

func sendUDP(t *testing.T, addr string, b []byte) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// sendTCP writes b and reads the answer until the member closes.
func sendTCP(t *testing.T, addr string, b []byte) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, c)
}

// Gossip and push/pull messages forged as coming from a real peer are
// applied when sealed with the tier's key (so they are well-formed) and
// refused, counted, never applied when unencrypted or sealed with another.
func TestForgedMessagesRefused(t *testing.T) {
	key := generateKey()
	ms := cluster(t, 2, key, nil)
	a := ms[0]
	forged := func(k kind, key string) []byte {
		msg := message{envelope: envelope{kind: k, sender: "lb2", clock: 1}, batch: batch{records: []wireRecord{{key: key, version: Version{1 << 50, "lb2"}, value: []byte("forged")}}}}
		return encodeMessage(msg)
	}
	udp := func(key string) []byte { return append([]byte{mlUserMsg}, forged(kindGossip, key)...) }
	tcp := func(key string) []byte { return pushPull(forged(kindState, key)) }

	// Sealed with the key: these are what a peer sends, and apply.
	sendUDP(t, a.Addr(), seal(t, key, udp("sealed-udp"), nil))
	sendTCP(t, a.Addr(), sealStream(t, key, tcp("sealed-tcp")))
	waitFor(t, 5*time.Second, "the sealed messages applied", func() bool {
		return holds("sealed-udp", "forged")(a) && holds("sealed-tcp", "forged")(a)
	})

	before := a.Stats().RefusedAuth
	other := generateKey()
	sendUDP(t, a.Addr(), udp("plain-udp"))
	sendUDP(t, a.Addr(), seal(t, other, udp("other-udp"), nil))
	sendTCP(t, a.Addr(), tcp("plain-tcp"))
	sendTCP(t, a.Addr(), sealStream(t, other, tcp("other-tcp")))
	waitFor(t, 5*time.Second, "four refusals counted", func() bool { return a.Stats().RefusedAuth == before+4 })
	for _, k := range []string{"plain-udp", "other-udp", "plain-tcp", "other-tcp"} {
		if _, ok := a.Get(k); ok {
			t.Errorf("%s applied", k)
		}
	}
}

// Without a key (loopback only) nothing is authenticated, but a message
// from a name that is no peer, or one that does not decode, is refused.
func TestUnknownAndMalformedRefused(t *testing.T) {
	ms := cluster(t, 2, nil, nil)
	a := ms[0]
	msg := encodeMessage(message{envelope: envelope{kind: kindGossip, sender: "mallory", clock: 1},
		batch: batch{records: []wireRecord{{key: "k", version: Version{1, "mallory"}}}}})
	sendUDP(t, a.Addr(), append([]byte{mlUserMsg}, msg...))
	sendUDP(t, a.Addr(), append([]byte{mlUserMsg}, msg[:len(msg)-1]...))
	waitFor(t, 5*time.Second, "both refused", func() bool {
		s := a.Stats()
		return s.RefusedUnknown == 1 && s.RefusedMalformed == 1
	})
	if _, ok := a.Get("k"); ok {
		t.Error("applied")
	}
}

// A member with another key, or none, cannot join: its state is never
// applied, and it is never listed as a peer.
func TestWrongKeyCannotJoin(t *testing.T) {
	ms := cluster(t, 2, generateKey(), nil)
	a := ms[0]
	for _, key := range [][]byte{generateKey(), nil} {
		before := a.Stats().RefusedAuth
		x := start(t, Config{Name: "intruder", Key: key, Seeds: []string{a.Addr()}})
		x.Set("action/node1", []byte("disable"), 0)
		if err := x.Join(); !errors.Is(err, ErrNoPeers) {
			t.Fatalf("key %x: Join: %v", key, err)
		}
		// It keeps trying (the seeds, every Timing.Reconnect); let it try
		// a few more times.
		waitFor(t, 10*time.Second, "repeated refusals", func() bool { return a.Stats().RefusedAuth >= before+3 })
		for _, m := range ms {
			if _, ok := m.Get("action/node1"); ok {
				t.Errorf("key %x: the intruder's state reached %s", key, m.Name())
			}
			if st := peerState(m, "intruder"); st != "" {
				t.Errorf("key %x: %s lists the intruder as %s", key, m.Name(), st)
			}
		}
		if len(x.Peers()) != 0 {
			t.Errorf("the intruder knows %v", x.Peers())
		}
		x.Close()
	}
}

// Members end their goroutines when closed, whatever they were doing.
func TestCloseEndsGoroutines(t *testing.T) {
	if leaked := waitNoGoroutines(10 * time.Second); leaked != "" {
		t.Fatalf("left over from earlier tests:\n%s", leaked)
	}
	ms := cluster(t, 3, generateKey(), func(c *Config) { c.Answer = echoAnswer(c.Name) })
	for i := range 2000 {
		ms[i%3].Set(fmt.Sprintf("k%d", i), []byte("v"), time.Minute)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ms[0].Ask(ctx, []byte("q"))
	if err := ms[1].Leave(time.Second); err != nil {
		t.Error(err)
	}
	ms[0].Close()
	ms[2].Close()
	if leaked := waitNoGoroutines(10 * time.Second); leaked != "" {
		t.Fatalf("goroutines left:\n%s", leaked)
	}
}

// BenchmarkTouch is what a request of a moved session costs the tier: the
// shared record is touched on every such request (tier's observer.Used),
// and is extended, and gossiped, at most once a second.
func BenchmarkTouch(b *testing.B) {
	m, err := Start(Config{Name: "lb1", Bind: "127.0.0.1:0", Timing: testTiming(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	const sessions, ttl = 10000, 30 * time.Minute
	keys := make([]string, sessions)
	for i := range keys {
		keys[i] = fmt.Sprintf("moved/%032x", i)
		if _, err := m.Set(keys[i], []byte("down node2"), ttl); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !m.Touch(keys[next.Add(1)%sessions], ttl) {
				b.Error("a live record not touched")
				return
			}
		}
	})
}
