// Package proxy is catherd's L7 front end: it takes client requests over
// HTTP/1.1 (plain or TLS) and HTTP/2, asks the balancer for a member,
// forwards each request to it over a pooled HTTP/1.1 or AJP connection and
// streams the answer back.
//
// Plain client connections and the member connections they use live on
// event loops (userspace/netloop), one per core: a request's bytes go
// client -> loop -> member -> loop -> client with one read and one write
// each way, parsed in place (userspace/httpwire) and forwarded as they came
// but for the documented edits (hop-by-hop fields, X-Forwarded-*,
// Location). TLS connections are read and written by a goroutine each (Go
// has no non-blocking TLS) that feeds the same loop; HTTP/2 streams come
// from net/http's server as HTTP/1.1 requests on such a connection. So
// every request, whatever its client protocol, takes one path: head
// checks, session, pick, edits, retries and accounting exist once.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/netloop"
)

// Options tune the proxy; see the flags of the same names in `catherd run`.
type Options struct {
	Sticky             session.Config
	MaxAttempts        int
	ConnectTimeout     time.Duration
	BackendTimeout     time.Duration
	BackendIdleTimeout time.Duration
	MaxConnsPerBackend int
	// A client's time for a request head, its silences in a body and
	// between requests, and its silence while a response is written to it.
	ClientHeaderTimeout time.Duration
	ClientBodyTimeout   time.Duration
	ClientIdleTimeout   time.Duration
	ClientSendTimeout   time.Duration
	MaxHeaderBytes      int
	MaxClientConns      int
	// TrustedProxies are the peers (unmapped IPv4 or IPv6 prefixes) whose
	// X-Forwarded-* fields are kept: see forwardedFields.
	TrustedProxies []netip.Prefix
	// BufferRequests is the largest request body read whole before a
	// member is chosen (--buffer-requests); larger ones stream. Bodies up
	// to replayLimit are always read whole.
	BufferRequests int64
	// AccessLog, when set, gets a line per request.
	AccessLog *accesslog.Log
}

// replayLimit is the largest request body always read whole before a
// member is chosen: a small body is checked (chunk framing, its end)
// before a member sees any of it, and can be sent again to another member
// after a failure.
const replayLimit = 64 << 10

// bufferBudget bounds the memory all requests held whole at once may take
// beyond replayLimit each; past it, larger bodies stream instead of
// waiting for memory.
const bufferBudget = 256 << 20

// discardLimit bounds how much of a client's body that a member did not
// read catherd reads and drops to keep the connection.
const discardLimit = 16 << 20

// Proxy forwards client requests to the members of a pool.
type Proxy struct {
	pool *balancer.Pool
	// upstreams are by member index (Member.Index); a slot is empty
	// until its member is added, and once it is removed.
	upstreams [balancer.MaxMembers]atomic.Pointer[Upstream]
	opts      Options
	metrics   *metrics.Metrics
	none      *metrics.Member
	log       *slog.Logger // for goroutines that may block
	loopLog   *slog.Logger // for the loops: never blocks (asyncHandler)
	endLog    func()
	loops     []*loop
	next      atomic.Uint32 // round robin of new connections over loops
	slots     chan struct{} // one per client connection open
	accepted  atomic.Uint64 // client connections accepted
	bufSize   int
	held      atomic.Int64 // bytes of request bodies held beyond replayLimit

	h2     *http.Server // HTTP/2 over TLS; started by the first ServeTLS
	h2Once sync.Once

	lnMu      sync.Mutex
	listeners []*clientListener // what Serve and ServeTLS accept on
	draining  atomic.Bool       // every response closes its connection
	stopOnce  sync.Once
}

// New builds a proxy over pool, reaching each of its members through its
// upstream in ups, and starts its event loops.
func New(pool *balancer.Pool, ups []*Upstream, m *metrics.Metrics, opts Options, log *slog.Logger) *Proxy {
	p := &Proxy{pool: pool, opts: opts, metrics: m, none: m.Member(metrics.NoMember), log: log,
		slots: make(chan struct{}, opts.MaxClientConns)}
	p.loopLog, p.endLog = newAsyncLogger(log)
	// A buffer holds a whole head, so that a head is parsed where it
	// landed; 16 KiB reads are large enough to move bodies efficiently.
	p.bufSize = max(16<<10, opts.MaxHeaderBytes+1024)
	for _, u := range ups {
		if pool.At(u.member.Index()) != u.member {
			panic(fmt.Sprintf("proxy: member %s of an upstream is not in the pool", u.member.Name))
		}
		p.Attach(u)
	}
	for _, m := range pool.Members() {
		if p.upstreams[m.Index()].Load() == nil {
			panic(fmt.Sprintf("proxy: member %s has no upstream", m.Name))
		}
	}
	for range runtime.GOMAXPROCS(0) { // a loop per core
		nl, err := netloop.New(p.bufSize)
		if err != nil {
			// epoll and eventfd fail only when the process is out of
			// file descriptors at start-up: nothing can be served.
			panic(fmt.Sprintf("proxy: starting an event loop: %v", err))
		}
		lp := newLoop(p, nl)
		p.loops = append(p.loops, lp)
		go nl.Run()
	}
	return p
}

// Serve accepts plain HTTP/1.1 clients on ln until Drain.
func (p *Proxy) Serve(ln net.Listener) error {
	cl, err := newClientListener(ln)
	if err != nil {
		return err
	}
	if !p.addListener(cl) {
		return nil
	}
	return p.acceptFds(cl, func(fd int, remote netip.AddrPort) {
		lp := p.pickLoop()
		lp.nl.Post(func() { lp.adopt(fd, remote) })
	})
}

func (p *Proxy) addListener(ln *clientListener) bool {
	p.lnMu.Lock()
	defer p.lnMu.Unlock()
	if p.draining.Load() {
		ln.Close()
		return false
	}
	p.listeners = append(p.listeners, ln)
	return true
}

// ClientConns reports the client side for operators: connections open
// (each holds one of the --max-client-conns slots, from accept to close,
// upgraded tunnels included), connections accepted since start, and the
// limit.
func (p *Proxy) ClientConns() (open, accepted uint64, limit int) {
	return uint64(len(p.slots)), p.accepted.Load(), cap(p.slots)
}

// pickLoop chooses the loop a new client connection lives on.
func (p *Proxy) pickLoop() *loop {
	return p.loops[int(p.next.Add(1))%len(p.loops)]
}

// drainIdle is how long Drain lets keep-alive connections run before it
// closes those still idle. A client that keeps sending gets its
// "Connection: close" well within it; one silent this long is rarely about
// to send, so closing it seldom races a request on the wire.
const drainIdle = time.Second

// Drain stops accepting clients and winds down the connections already
// open without cutting a request: each HTTP/1.1 connection closes after
// its next response (Connection: close), those still idle after drainIdle
// are closed, HTTP/2 clients get GOAWAY and their streams finish. It
// returns when no client connection is left, or with ctx's error when ctx
// ends first. With a successor accepting on the same sockets (a take-over),
// clients reconnect to it.
func (p *Proxy) Drain(ctx context.Context) error {
	p.lnMu.Lock()
	p.draining.Store(true)
	for _, ln := range p.listeners {
		ln.Close()
	}
	p.lnMu.Unlock()
	var h2err error
	h2done := make(chan struct{})
	p.h2Once.Do(func() {}) // no HTTP/2 server may start from now on
	go func() {
		if p.h2 != nil {
			h2err = p.h2.Shutdown(ctx)
		}
		close(h2done)
	}()
	grace := time.NewTimer(drainIdle)
	defer grace.Stop()
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	var err error
wait:
	for len(p.slots) > 0 { // a slot per client connection open
		select {
		case <-grace.C:
			for _, lp := range p.loops {
				lp.nl.Post(lp.closeIdle)
			}
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-poll.C:
		}
	}
	<-h2done
	p.stop()
	return errors.Join(err, h2err)
}

// Attach has the proxy serve u, whose member is in the pool at
// u.Member().Index(): a member added at run time is attached before the
// pool may pick it (balancer.Pool.Add calls back).
func (p *Proxy) Attach(u *Upstream) {
	u.start(p)
	p.metrics.BackendConns(u.member.Name, u.opened.Load, u.discarded.Load)
	p.upstreams[u.index].Store(u)
}

// Detach stops serving u, whose member the pool removed: its idle
// connections close now, the others as their exchanges end; requests
// waiting for one of its connections fail over as on a connect failure.
func (p *Proxy) Detach(u *Upstream) {
	u.removed.Store(true)
	p.upstreams[u.index].CompareAndSwap(u, nil)
	for _, lp := range p.loops {
		lp.nl.Post(func() { lp.forget(u) })
	}
	u.close()
	p.metrics.ForgetMember(u.member.Name)
}

// stop closes every connection left and ends the loops.
func (p *Proxy) stop() {
	p.stopOnce.Do(func() {
		for _, lp := range p.loops {
			done := make(chan struct{})
			lp.nl.Post(func() { lp.closeAll(); close(done) })
			<-done
			lp.nl.Stop()
		}
		for i := range p.upstreams {
			if u := p.upstreams[i].Load(); u != nil {
				u.close()
			}
		}
		p.endLog()
	})
}
