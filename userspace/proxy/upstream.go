package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
)

// Target says how to reach a member.
type Target struct {
	Addr string // host:port
	// AJP, when set, makes the member an AJP/1.3 container; otherwise it
	// speaks HTTP/1.1.
	AJP *ajp.ClientOptions
}

// Upstream is one member as catherd reaches it: the balancer's Member, the
// address and protocol it is reached on (its Target: HTTP/1.1 or AJP),
// its connections and its health probe. It is built once per member
// (NewUpstream) and handed to the proxy (New), which serves it from then
// on; the health checker probes it over its own protocol (Probe). Its
// connections live on the loops; what is here is shared by them.
type Upstream struct {
	member  *balancer.Member
	target  Target
	index   int // the member's index in the pool, which the loops' tables follow
	metrics *metrics.Member
	addr    string
	ap      atomic.Pointer[netip.AddrPort] // addr resolved; nil until it is
	origin  []byte                         // "http://host:port", as it may appear in Location
	t       transport
	conns   atomic.Int64 // open, across loops: at most --max-conns-per-backend
	opened  atomic.Uint64
	// discarded counts connections closed because the member broke the
	// exchange (a malformed or cut answer).
	discarded atomic.Uint64
	removed   atomic.Bool // its member left the pool (Proxy.Detach)
	maxHead   int         // the largest answer head a probe reads
	ajpProbe  *ajp.Client // a blocking client for health probes (AJP members)
	stop      context.CancelFunc
}

// NewUpstream describes member m, reached as t says. It starts nothing:
// the proxy does, in New.
func NewUpstream(m *balancer.Member, t Target) *Upstream {
	return &Upstream{member: m, target: t, addr: t.Addr, origin: []byte("http://" + t.Addr)}
}

// Member is the balancer's member this upstream reaches.
func (u *Upstream) Member() *balancer.Member { return u.member }

// URL says where the member is, as operators write it: http://host:port
// or ajp://host:port.
func (u *Upstream) URL() string {
	if u.target.AJP != nil {
		return "ajp://" + u.addr
	}
	return "http://" + u.addr
}

// start readies u to be served by p: its transport, metrics and probe
// client, and, for a member named by host name, the goroutine that
// resolves it.
func (u *Upstream) start(p *Proxy) {
	u.index = u.member.Index()
	u.metrics = p.metrics.Member(u.member.Name)
	u.maxHead = p.opts.MaxHeaderBytes
	if u.target.AJP != nil {
		u.t = newAJPTransport(u.target.AJP)
		po := *u.target.AJP
		po.Addr, po.MaxConns, po.ConnectTimeout, po.IdleTTL = u.addr, 4, p.opts.ConnectTimeout, p.opts.BackendIdleTimeout
		po.Ping &^= ajp.PingInterval // a probe's pool needs no pinger
		u.ajpProbe = ajp.NewClient(po)
	} else {
		u.t = httpTransport{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.stop = cancel
	if ap, err := netip.ParseAddrPort(u.addr); err == nil {
		u.ap.Store(&ap)
	} else {
		go u.resolve(ctx, p.log)
	}
}

// resolveEvery is how often a member named by host name is looked up
// again. Lookups happen here, never on a loop, which must not block.
const resolveEvery = 30 * time.Second

func (u *Upstream) resolve(ctx context.Context, log *slog.Logger) {
	for {
		host, port, err := net.SplitHostPort(u.addr)
		if err == nil {
			var addrs []netip.Addr
			if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err == nil && len(addrs) > 0 {
				var ap netip.AddrPort
				if ap, err = netip.ParseAddrPort(net.JoinHostPort(addrs[0].Unmap().String(), port)); err == nil {
					u.ap.Store(&ap)
				}
			}
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("member address not resolved", "member", u.member.Name, "addr", u.addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(resolveEvery):
		}
	}
}

// address is where to connect, or an error while the name is unresolved.
func (u *Upstream) address() (netip.AddrPort, error) {
	if ap := u.ap.Load(); ap != nil {
		return *ap, nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: address not resolved", u.addr)
}

func (u *Upstream) close() {
	u.stop()
	if u.ajpProbe != nil {
		u.ajpProbe.Close()
	}
}

// Failure kinds of an exchange with a member, for the retry rule and, by
// name, for the member's metrics (catherd_backend_errors_total{kind}).
type failKind uint8

const (
	failConnect  failKind = iota // could not connect: nothing was sent
	failReset                    // the connection ended before a response
	failTimeout                  // the member was silent past --backend-timeout
	failProtocol                 // a malformed or cut answer
)

func (k failKind) String() string {
	return [...]string{"connect", "reset", "timeout", "protocol"}[k]
}

// memberError is a failed exchange with a member.
type memberError struct {
	kind failKind
	err  error
}

func (e *memberError) Error() string { return e.kind.String() + ": " + e.err.Error() }
func (e *memberError) Unwrap() error { return e.err }
