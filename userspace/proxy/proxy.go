// Package proxy is catherd's HTTP/1.1 front end: it accepts client requests,
// asks the balancer for a member, forwards the request over a pooled
// keep-alive connection and streams the response back. It is built on
// fasthttp rather than net/http because the standard library's reverse
// proxy costs about five times HAProxy's CPU per request on this class of
// machine (see docs/BACKGROUND.md); bodies are still streamed, never buffered whole.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
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
	// between requests, and its silence while a response is written to
	// it: see clientConn.
	ClientHeaderTimeout time.Duration
	ClientBodyTimeout   time.Duration
	ClientIdleTimeout   time.Duration
	ClientSendTimeout   time.Duration
	MaxHeaderBytes      int
	MaxClientConns      int
	// TrustedProxies are the peers (unmapped IPv4 or IPv6 prefixes) whose
	// X-Forwarded-* fields are kept: see rewriteRequestHeader.
	TrustedProxies []netip.Prefix
}

// replayLimit is the largest request body kept in memory so that the
// request can be sent again to another member after a failure. Larger or
// chunked bodies are streamed and can only be retried if the failure came
// before any byte was sent (a connect error).
const replayLimit = 64 << 10

// discardLimit bounds how much of a client's body that a member did not
// read catherd reads and drops to keep the connection.
const discardLimit = 16 << 20

// smallBody is the largest response body of known length that is read
// whole before the client is answered; larger ones stream.
const smallBody = 64 << 10

// Proxy forwards client requests to the members of a pool.
type Proxy struct {
	pool     *balancer.Pool
	backends []*backend // by member index
	opts     Options
	metrics  *metrics.Metrics
	none     *metrics.Member
	log      *slog.Logger
	server   *fasthttp.Server
	slots    chan struct{} // one per client connection open: see clientListener
	accepted atomic.Uint64 // client connections accepted
	h2       *http.Server  // HTTP/2 over TLS; started by the first ServeTLS
	h2Once   sync.Once

	lnMu      sync.Mutex
	listeners []*clientListener // what Serve and ServeTLS accept on
	draining  atomic.Bool       // every response closes its connection
}

// New builds a proxy over pool; targets[i] says how to reach member i.
func New(pool *balancer.Pool, targets []Target, m *metrics.Metrics, opts Options, log *slog.Logger) *Proxy {
	p := &Proxy{pool: pool, opts: opts, metrics: m, none: m.Member(metrics.NoMember), log: log,
		slots: make(chan struct{}, opts.MaxClientConns)}
	for i, mem := range pool.Members() {
		b := newBackend(mem, targets[i], m.Member(mem.Name), &opts)
		if b.ajp != nil {
			m.BackendConns(mem.Name, b.ajp.Opened.Load, b.ajp.Discarded.Load)
		} else {
			m.BackendConns(mem.Name, b.opened.Load, nil)
		}
		p.backends = append(p.backends, b)
	}
	p.server = &fasthttp.Server{
		Handler:                       p.serve,
		ErrorHandler:                  p.clientError,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: false,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		ReadTimeout:                   opts.ClientHeaderTimeout,
		IdleTimeout:                   opts.ClientIdleTimeout,
		HeaderReceived:                p.headerReceived,
		ReadBufferSize:                opts.MaxHeaderBytes,
		WriteBufferSize:               16 << 10,
		// Never reached: clientListener holds connections to
		// MaxClientConns. fasthttp counts its workers, and one that
		// served a connection is back in its pool only after the
		// connection's Close freed a slot for the next one.
		Concurrency:     2 * opts.MaxClientConns,
		CloseOnShutdown: true,
		TCPKeepalive:    true,
		Logger:          fasthttpLogger{log},
	}
	return p
}

// Serve accepts clients on ln until Shutdown or Drain.
func (p *Proxy) Serve(ln net.Listener) error {
	return p.server.Serve(p.clientListener(ln))
}

// clientListener wraps ln for the proxy's clients, and remembers it for
// Drain.
func (p *Proxy) clientListener(ln net.Listener) *clientListener {
	cl := newClientListener(ln, &p.opts, p.slots, &p.accepted)
	p.lnMu.Lock()
	p.listeners = append(p.listeners, cl)
	p.lnMu.Unlock()
	return cl
}

// ClientConns reports the client side for operators: connections open
// (each holds one of the --max-client-conns slots, from accept to close,
// upgraded tunnels included), connections accepted since start, and the
// limit.
func (p *Proxy) ClientConns() (open, accepted uint64, limit int) {
	return uint64(len(p.slots)), p.accepted.Load(), cap(p.slots)
}

// headerReceived gives a request with a body --client-body-timeout, from
// the end of its head, for the first bytes of the body that fasthttp reads
// before the handler runs, instead of what is left of the head's deadline.
func (p *Proxy) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if n := h.ContentLength(); n > 0 || n == -1 { // -1: chunked
		return fasthttp.RequestConfig{ReadTimeout: p.opts.ClientBodyTimeout}
	}
	return fasthttp.RequestConfig{}
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
	p.draining.Store(true)
	p.lnMu.Lock()
	for _, ln := range p.listeners {
		ln.Close()
	}
	p.lnMu.Unlock()
	grace := time.NewTimer(drainIdle)
	defer grace.Stop()
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
wait:
	for len(p.slots) > 0 { // a slot per client connection open
		select {
		case <-grace.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-poll.C:
		}
	}
	return p.stop(ctx)
}

// Shutdown stops at once, without Drain's grace for idle keep-alive
// connections (fasthttp closes them): for tests.
func (p *Proxy) Shutdown() error { return p.stop(context.Background()) }

// stop shuts the client servers down (fasthttp closes its listeners and
// idle connections, HTTP/2 clients get GOAWAY), waits for requests in
// flight until ctx ends, and closes idle backend connections.
func (p *Proxy) stop(ctx context.Context) error {
	var wg sync.WaitGroup
	p.h2Once.Do(func() {}) // no HTTP/2 server may start from now on
	var h2err error
	if p.h2 != nil {
		wg.Go(func() { h2err = p.h2.Shutdown(ctx) })
	}
	err := p.server.ShutdownWithContext(ctx)
	if errors.Is(err, net.ErrClosed) {
		err = nil // listeners Drain closed already
	}
	wg.Wait()
	for _, b := range p.backends {
		if b.ajp != nil {
			b.ajp.Close()
		}
	}
	return errors.Join(err, h2err)
}

// call is one client request while catherd looks for a member to serve it.
type call struct {
	ctx      *fasthttp.RequestCtx
	start    time.Time
	clientIP netip.Addr
	body     []byte // the request body when small enough to send again
	streamed bool   // the body is streamed from the client: no replay
}

func (p *Proxy) serve(ctx *fasthttp.RequestCtx) {
	p.route(ctx)
	if p.draining.Load() {
		ctx.SetConnectionClose() // whatever the answer was
	}
}

// route answers one request: through a member, or with an error.
func (p *Proxy) route(ctx *fasthttp.RequestCtx) {
	c := call{ctx: ctx, start: time.Now(), clientIP: clientIP(ctx)}
	if cc, ok := clientConnOf(ctx.Conn()); ok {
		cc.readingBody()
	}
	req := &ctx.Request
	if err := checkVersion(req.Header.Protocol()); err != nil {
		p.refuseHead(&c, err)
		return
	}
	if err := checkHead(req.Header.RawHeaders()); err != nil {
		p.refuseHead(&c, err)
		return
	}
	br := balancer.Request{ClientIP: c.clientIP}
	if id := p.sessionID(req); id != nil {
		br.SessionKey, br.Route = p.opts.Sticky.Split(id)
	}
	if req.Header.ConnectionClose() {
		ctx.Response.SetConnectionClose()
	}
	upgrade := isUpgrade(&req.Header)
	if n := req.Header.ContentLength(); !upgrade && n >= 0 && n <= replayLimit {
		// Small: keep it, so a retry can send it again.
		body, err := readReplayable(req, n)
		if err != nil {
			p.refuseBody(&c, err)
			return
		}
		c.body = body
	}
	c.streamed = req.IsBodyStream() && c.body == nil

	for attempt := 1; ; attempt++ {
		m, outcome, err := p.pool.Pick(&br)
		if err != nil {
			p.refuse(&c, err)
			return
		}
		b := p.backends[m.Index]
		switch {
		case b.ajp != nil:
			// AJP cannot switch protocols: an upgrade request goes as a
			// plain request, as mod_proxy_ajp sends it.
			err = p.forwardAJP(&c, b)
		case upgrade:
			err = p.tunnel(&c, b)
		default:
			err = p.forward(&c, b)
		}
		if err == nil {
			p.metrics.Sticky(outcome)
			return
		}
		if errors.Is(err, errClientBody) {
			// No member is to blame: the member saw an incomplete
			// request only.
			p.refuseBody(&c, err)
			return
		}
		if errors.Is(err, errCannotCarry) {
			p.plain(ctx, fasthttp.StatusBadRequest, "400 request head too large for the backend protocol\n")
			p.none.Done(fasthttp.StatusBadRequest, c.start, 0, 0, false)
			return
		}
		kind := errorKind(err)
		b.metrics.Error(kind)
		m.SetLastError(time.Now(), kind+": "+err.Error())
		if kind == metrics.ErrConnect {
			p.pool.MarkError(m)
			p.log.Warn("member unreachable", "member", m.Name, "addr", b.addr, "err", err)
		}
		br.Tried.Add(m.Index)
		if attempt >= p.opts.MaxAttempts || !mayRetry(kind, &req.Header, c.streamed) {
			p.metrics.Sticky(outcome)
			p.fail(&c, b, kind, err)
			return
		}
		b.metrics.Retried()
	}
}

// mayRetry says whether a request that failed with an error of kind may be
// sent to another member. A connect error reached no backend, so any
// request may move. A connection lost before the response may have reached
// the backend: only an idempotent request whose body we still hold may go
// again. Timeouts are never retried: the backend may still be working.
func mayRetry(kind string, h *fasthttp.RequestHeader, streamed bool) bool {
	switch kind {
	case metrics.ErrConnect:
		return true
	case metrics.ErrReset:
		return !streamed && isIdempotent(h)
	}
	return false
}

func isIdempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
}

// sessionID finds the session id in the cookie, then in the path parameter.
func (p *Proxy) sessionID(req *fasthttp.Request) []byte {
	if !p.opts.Sticky.Enabled() {
		return nil
	}
	if id := p.opts.Sticky.FromCookieHeader(req.Header.Peek(fasthttp.HeaderCookie)); id != nil {
		return id
	}
	return p.opts.Sticky.FromPath(req.Header.RequestURI())
}

func clientIP(ctx *fasthttp.RequestCtx) netip.Addr {
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// forward sends the request to b and, on success, arranges for the
// response to stream back to the client. It returns an error only when no
// response byte has reached the client, so the caller may still answer.
func (p *Proxy) forward(c *call, b *backend) error {
	ctx := c.ctx
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	ctx.Request.Header.CopyTo(&out.Header)
	out.UseHostHeader = true
	p.rewriteRequestHeader(c, &out.Header, false)
	x := acquireExchange(b, c.start)
	if c.streamed {
		x.sent.streamFrom(ctx.RequestBodyStream(), ctx.Request.Header.ContentLength())
		out.SetBodyStream(&x.sent, ctx.Request.Header.ContentLength())
	} else {
		out.SetBodyRaw(c.body)
		x.sent.n = int64(len(c.body))
	}
	b.member.Begin()
	b.metrics.Begin()
	resp := fasthttp.AcquireResponse()
	if err := b.client.Do(out, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		err = x.sent.failure(b, err)
		x.abort(err)
		return err
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	p.rewriteResponseHeader(ctx, b)
	x.code = resp.StatusCode()
	stream := resp.BodyStream()
	if stream == nil {
		fasthttp.ReleaseResponse(resp)
		x.finish(nil)
		return nil
	}
	x.resp, x.body = resp, stream
	return x.respond(ctx, resp.Header.ContentLength())
}

// respond hands the member's response body to the client side. n is its
// length, negative when unknown.
func (x *exchange) respond(ctx *fasthttp.RequestCtx, n int) error {
	if x.sent.clientBodyLeft() {
		// The member answered without reading all of the client's body
		// (a page that ignores its upload). Read and drop the rest, as
		// nginx discards an unread request body: closing with bytes unread
		// makes the kernel reset the connection, and the client, still
		// sending, never sees the answer. Past discardLimit, announce the
		// close instead of reading on.
		io.Copy(io.Discard, io.LimitReader(&x.sent, discardLimit))
		if x.sent.clientBodyLeft() {
			ctx.Response.SetConnectionClose()
		}
	}
	if n >= 0 && n <= smallBody {
		// Small and of known length: usually already in the read buffer.
		// Taking it whole frees the backend connection at once and lets
		// the client side write head and body without stream machinery.
		if _, err := io.CopyN(ctx.Response.BodyWriter(), x, int64(n)); err != nil {
			// Nothing has reached the client yet: it can still get a 502.
			ctx.Response.Reset()
			err = fmt.Errorf("%s %s: reading body: %w", x.b.member.Name, x.b.addr, err)
			x.abort(err)
			return err
		}
		x.CloseWithError(nil)
		return nil
	}
	if n < 0 {
		n = -1 // chunked or close-delimited: chunk it to the client
	}
	ctx.Response.SetBodyStream(x, n)
	return nil
}

// refuseHead answers a request whose head checkHead refused, and closes
// the connection: what follows on it cannot be trusted to be framed as
// the client meant.
func (p *Proxy) refuseHead(c *call, err error) {
	code := fasthttp.StatusBadRequest
	switch {
	case errors.Is(err, errTooManyHeaders):
		code = fasthttp.StatusRequestHeaderFieldsTooLarge
	case errors.Is(err, errVersion):
		code = fasthttp.StatusHTTPVersionNotSupported
	}
	p.plain(c.ctx, code, fmt.Sprintf("%d %s\n", code, err))
	c.ctx.SetConnectionClose()
	p.none.Done(code, c.start, 0, 0, false)
}

// noBody is the body of a request that has none: empty, but not nil,
// because a nil body means a streamed one.
var noBody = []byte{}

// replayBufs hold a small body while it is read from the client.
var replayBufs = sync.Pool{New: func() any { return new([replayLimit]byte) }}

// readReplayable reads a request body of n <= replayLimit bytes whole, so
// that it can be sent to another member after a failure. It does not use
// fasthttp's Request.Body, which on a read error hands back what arrived,
// or the error's text, as if it were the body: a client gone mid-upload
// would reach the member as a complete, shorter request.
func readReplayable(req *fasthttp.Request, n int) ([]byte, error) {
	if n == 0 {
		return noBody, nil
	}
	if !req.IsBodyStream() {
		return req.Body(), nil // already whole in memory
	}
	buf := replayBufs.Get().(*[replayLimit]byte)
	defer replayBufs.Put(buf)
	if _, err := io.ReadFull(req.BodyStream(), buf[:n]); err != nil {
		return nil, fmt.Errorf("%w: %w", errClientBody, err)
	}
	// Copied into the request's own buffer, which lives as long as the
	// request (an AJP member may ask for the body while it answers).
	req.SetBody(buf[:n])
	return req.Body(), nil
}

// refuseBody answers a request whose body could not be read from the
// client: 408 when it stalled past the timeout, else 400 (broken chunk
// framing, or a body cut short). The connection is closed: what is left of
// the body cannot be told from a next request.
func (p *Proxy) refuseBody(c *call, err error) {
	code, msg := fasthttp.StatusBadRequest, "400 malformed request body\n"
	if isTimeout(err) {
		code, msg = fasthttp.StatusRequestTimeout, "408 request timeout\n"
	}
	p.plain(c.ctx, code, msg)
	c.ctx.SetConnectionClose()
	p.none.Done(code, c.start, 0, 0, false)
}

// refuse answers a request no member could take.
func (p *Proxy) refuse(c *call, err error) {
	msg := "503 no backend available\n"
	switch {
	case errors.Is(err, balancer.ErrNoFailover):
		msg = "503 the member holding this session is unavailable\n"
	case errors.Is(err, balancer.ErrNoPartner):
		msg = "503 no member of this session's replication domain is available\n"
	}
	p.plain(c.ctx, fasthttp.StatusServiceUnavailable, msg)
	p.none.Done(fasthttp.StatusServiceUnavailable, c.start, 0, 0, false)
}

// fail answers a request whose last member failed.
func (p *Proxy) fail(c *call, b *backend, kind string, err error) {
	code, msg := fasthttp.StatusBadGateway, "502 bad gateway\n"
	switch kind {
	case metrics.ErrConnect:
		code, msg = fasthttp.StatusServiceUnavailable, "503 no backend available\n"
	case metrics.ErrTimeout:
		code, msg = fasthttp.StatusGatewayTimeout, "504 gateway timeout\n"
	}
	p.log.Warn("request failed", "member", b.member.Name, "kind", kind, "method", string(c.ctx.Method()), "uri", string(c.ctx.RequestURI()), "err", err)
	p.plain(c.ctx, code, msg)
	// The member's metrics already counted the failure; the client's
	// answer is counted under no member.
	p.none.Done(code, c.start, 0, 0, false)
}

func (p *Proxy) plain(ctx *fasthttp.RequestCtx, code int, msg string) {
	ctx.Response.Reset()
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(msg)
}

// clientError answers requests fasthttp could not read: 414 when the
// request line alone outgrew --max-header-bytes, 431 when the head did,
// 408 when it or the first bytes of the body took too long, 400 otherwise.
func (p *Proxy) clientError(ctx *fasthttp.RequestCtx, err error) {
	code, msg := fasthttp.StatusBadRequest, "400 bad request\n"
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.As(err, &small):
		code, msg = fasthttp.StatusRequestHeaderFieldsTooLarge, "431 request header fields too large\n"
		if cc, ok := clientConnOf(ctx.Conn()); ok && !cc.lineEnded {
			code, msg = fasthttp.StatusRequestURITooLong, "414 URI too long\n"
		}
	case isTimeout(err):
		code, msg = fasthttp.StatusRequestTimeout, "408 request timeout\n"
	}
	p.plain(ctx, code, msg)
	ctx.SetConnectionClose()
	p.none.Done(code, time.Now(), 0, 0, false)
}

// countingReader counts the request body bytes sent to a backend and,
// for a body streamed from the client, whether all of it was read.
type countingReader struct {
	r          io.Reader
	n          int64
	fromClient bool  // r is the client's body stream
	want       int64 // its declared length; -1 when chunked
	eof        bool
	clientErr  error // reading the client's body failed
}

// streamFrom makes c read the client's body stream of length want (-1:
// unknown).
func (c *countingReader) streamFrom(r io.Reader, want int) {
	c.r, c.fromClient, c.want = r, true, int64(want)
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	switch {
	case err == io.EOF && c.fromClient && c.want >= 0 && c.n < c.want:
		// fasthttp ends a body of known length cut short by the client
		// with a plain EOF; passed on, the member would get a request
		// whose body silently ends early.
		err = io.ErrUnexpectedEOF
		c.clientErr = err
	case err == io.EOF:
		c.eof = true
	case err != nil && c.fromClient:
		c.clientErr = err
	}
	return n, err
}

// errClientBody marks a request that failed because the client's body
// could not be read (bad chunk framing, the client went away, or it
// stalled).
var errClientBody = errors.New("reading the client's request body")

// failure is the error of a failed exchange with member b: errClientBody
// when reading the client's body failed, else err.
func (c *countingReader) failure(b *backend, err error) error {
	if c.clientErr != nil {
		return fmt.Errorf("%w: %w", errClientBody, c.clientErr)
	}
	return fmt.Errorf("%s %s: %w", b.member.Name, b.addr, err)
}

// clientBodyLeft reports whether part of the client's body is still unread
// on the client connection.
func (c *countingReader) clientBodyLeft() bool {
	return c.fromClient && !c.eof && (c.want < 0 || c.n < c.want)
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}
