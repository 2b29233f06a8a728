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

// upstream is one member as the proxy reaches it: its address, its
// transport, its connection counters. Its connections live on the loops;
// what is here is shared by them.
type upstream struct {
	index   int
	member  *balancer.Member
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
	ajpProbe  *ajp.Client // a blocking client for health probes (AJP members)
	stop      context.CancelFunc
}

func newUpstream(i int, m *balancer.Member, t Target, mm *metrics.Member, o *Options, log *slog.Logger) *upstream {
	u := &upstream{index: i, member: m, metrics: mm, addr: t.Addr, origin: []byte("http://" + t.Addr)}
	if t.AJP != nil {
		u.t = newAJPTransport(t.AJP)
		po := *t.AJP
		po.Addr, po.MaxConns, po.ConnectTimeout, po.IdleTTL = t.Addr, 4, o.ConnectTimeout, o.BackendIdleTimeout
		po.Ping &^= ajp.PingInterval // a probe's pool needs no pinger
		u.ajpProbe = ajp.NewClient(po)
	} else {
		u.t = httpTransport{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.stop = cancel
	if ap, err := netip.ParseAddrPort(t.Addr); err == nil {
		u.ap.Store(&ap)
	} else {
		go u.resolve(ctx, log)
	}
	return u
}

// resolveEvery is how often a member named by host name is looked up
// again. Lookups happen here, never on a loop, which must not block.
const resolveEvery = 30 * time.Second

func (u *upstream) resolve(ctx context.Context, log *slog.Logger) {
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
func (u *upstream) address() (netip.AddrPort, error) {
	if ap := u.ap.Load(); ap != nil {
		return *ap, nil
	}
	return netip.AddrPort{}, fmt.Errorf("%s: address not resolved", u.addr)
}

func (u *upstream) close() {
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
