package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
)

// Target says how to reach a member.
type Target struct {
	Addr string // host:port
	// AJP, when set, makes the member an AJP/1.3 container; otherwise it
	// speaks HTTP/1.1. Addr and Dial are filled in by the proxy.
	AJP *ajp.ClientOptions
}

// backend is the transport to one member: a keep-alive connection pool
// (HTTP or AJP) and what the proxy needs to rewrite its responses.
type backend struct {
	member  *balancer.Member
	addr    string
	origin  []byte // "http://host:port", as it may appear in Location
	client  *fasthttp.HostClient
	ajp     *ajp.Client // instead of client for AJP members
	metrics *metrics.Member
	dial    func() (net.Conn, error)
	opened  atomic.Uint64 // HTTP connections opened
}

// dialError marks a failure to connect: nothing reached the backend, so the
// request may go to another member whatever its method.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func newBackend(m *balancer.Member, t Target, mm *metrics.Member, o *Options) *backend {
	addr := t.Addr
	b := &backend{member: m, addr: addr, origin: []byte("http://" + addr), metrics: mm}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	if t.AJP != nil {
		ao := *t.AJP
		ao.Addr = addr
		ao.MaxConns = o.MaxConnsPerBackend
		ao.ConnectTimeout = o.ConnectTimeout
		ao.IdleTTL = o.BackendIdleTimeout
		ao.Dial = func() (net.Conn, error) { return dialer.Dial("tcp", addr) }
		b.ajp = ajp.NewClient(ao)
		return b
	}
	b.dial = func() (net.Conn, error) {
		c, err := dialer.Dial("tcp", addr)
		if err != nil {
			return nil, &dialError{err}
		}
		b.opened.Add(1)
		return newIdleConn(c, o.BackendTimeout), nil
	}
	b.client = &fasthttp.HostClient{
		Addr: addr,
		Dial: func(string) (net.Conn, error) { return b.dial() },
		// One attempt per Do: retries across members are the proxy's job,
		// and it knows whether the body can be sent again.
		MaxIdemponentCallAttempts:     1,
		RetryIfErr:                    func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		MaxConns:                      o.MaxConnsPerBackend,
		MaxConnWaitTimeout:            o.ConnectTimeout,
		MaxIdleConnDuration:           o.BackendIdleTimeout,
		ReadBufferSize:                o.MaxHeaderBytes,
		WriteBufferSize:               16 << 10,
		StreamResponseBody:            true,
		DisablePathNormalizing:        true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultUserAgentHeader:      true,
		ConnPoolStrategy:              fasthttp.LIFO,
	}
	return b
}

// errorKind classifies a failed exchange for metrics and for the retry rule.
func errorKind(err error) string {
	var de *dialError
	var ade *ajp.DialError
	switch {
	case errors.As(err, &de), errors.As(err, &ade), errors.Is(err, fasthttp.ErrNoFreeConns):
		return metrics.ErrConnect
	case errors.Is(err, fasthttp.ErrTimeout), isTimeout(err):
		return metrics.ErrTimeout
	case errors.Is(err, ajp.ErrMalformed):
		return metrics.ErrProtocol
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), isReset(err):
		return metrics.ErrReset
	}
	return metrics.ErrProtocol
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) || errors.Is(err, net.ErrClosed)
}
