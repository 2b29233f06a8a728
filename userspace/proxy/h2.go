package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// HTTP/2 clients are served by net/http's HTTP/2 server (fasthttp has
// none). Each stream's request is copied into a fasthttp RequestCtx and
// goes down the same path as an HTTP/1.1 request, so stickiness, failover,
// retries and metrics are the same whatever the client spoke; the member
// is always reached over HTTP/1.1 or AJP.

// maxHTTP2Streams is how many streams a client may have open on one
// connection: the least RFC 9113 recommends, HAProxy's default (nginx
// allows 128). net/http's 250 would let one connection keep 250 requests
// in flight on the members, and start as many handlers at once.
const maxHTTP2Streams = 100

// startHTTP2 sets up the HTTP/2 server. Its connections come from
// ServeTLS with the handshake done, each behind a frameGuard, which is not
// a *tls.Conn: the server takes them for HTTP/2 with prior knowledge
// ("unencrypted", to net/http; x/net/http2's ServeConn, which takes any
// connection, is deprecated for this), and the handler finds the TLS state
// in the request's context instead of Request.TLS. net/http's own checks
// of the TLS state are skipped: the listener's configuration already
// requires TLS 1.2, but a TLS 1.2 client that offers only CBC suites,
// which RFC 9113 lets a server refuse, is served.
func (p *Proxy) startHTTP2() {
	p.h2 = &http.Server{
		Handler:           http.HandlerFunc(p.serveHTTP2),
		IdleTimeout:       p.opts.ClientIdleTimeout,
		ReadHeaderTimeout: p.opts.ClientHeaderTimeout,
		MaxHeaderBytes:    p.opts.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:      maxHTTP2Streams,
			MaxReadFrameSize:          maxFrameSize,
			MaxDecoderHeaderTableSize: headerTableSize,
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if g, ok := c.(*frameGuard); ok {
				ctx = context.WithValue(ctx, tlsStateKey{}, &g.tls)
			}
			return ctx
		},
	}
	p.h2.Protocols.SetUnencryptedHTTP2(true)
}

// tlsStateKey is the context key of a client connection's TLS state.
type tlsStateKey struct{}

var h2Contexts = sync.Pool{New: func() any { return new(fasthttp.RequestCtx) }}

func (p *Proxy) serveHTTP2(w http.ResponseWriter, r *http.Request) {
	if err := checkHTTP2Request(r); err != nil {
		p.refuseHTTP2(w, http.StatusBadRequest, err)
		return
	}
	ctx := h2Contexts.Get().(*fasthttp.RequestCtx)
	defer func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		h2Contexts.Put(ctx)
	}()
	stream := &h2Stream{remote: tcpAddr(r.RemoteAddr)}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		stream.local = a
	}
	if state, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
		stream.state = *state
	}
	ctx.Init2(stream, fasthttpLogger{p.log}, false)

	h := &ctx.Request.Header
	h.SetMethod(r.Method)
	h.SetRequestURI(r.RequestURI)
	h.SetHost(r.Host)
	for name, values := range r.Header {
		if name == "Host" || name == "Content-Length" {
			continue // the member gets r.Host, and the length of the body the client sent
		}
		for _, v := range values {
			h.Add(name, v)
		}
	}
	if r.Body != nil && r.Body != http.NoBody {
		ctx.Request.SetBodyStream(r.Body, int(r.ContentLength))
		if n := int(r.ContentLength); n > 0 && n <= replayLimit {
			// Read whole now, as the request path would to keep it for
			// a retry, so that a stream reset meanwhile is caught below.
			if _, err := readReplayable(&ctx.Request, n); err != nil && r.Context().Err() == nil {
				p.refuseHTTP2(w, http.StatusBadRequest, err)
				return
			}
		}
	}
	if r.Context().Err() != nil {
		// The client reset the stream before a member was chosen: no
		// one waits for the answer, so no member is asked. A stream
		// reset after this point may still reach one.
		p.metrics.HTTP2ResetUnforwarded()
		return
	}

	p.serve(ctx)
	writeHTTP2Response(w, ctx)
}

// refuseHTTP2 answers a request refused before a member was chosen.
func (p *Proxy) refuseHTTP2(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s\n", code, err)
	p.none.Done(code, time.Now(), 0, 0, false)
}

// writeHTTP2Response sends what the request path left in ctx.Response.
func writeHTTP2Response(w http.ResponseWriter, ctx *fasthttp.RequestCtx) {
	resp := &ctx.Response
	out := w.Header()
	for k, v := range resp.Header.All() {
		if hopHeader(k) != "" || string(k) == fasthttp.HeaderContentLength || string(k) == fasthttp.HeaderTransferEncoding {
			continue // HTTP/2 frames the body itself and has no connection headers
		}
		out.Add(string(k), string(v))
	}
	if _, typed := out["Content-Type"]; !typed {
		out["Content-Type"] = nil // as the member sent it: no type sniffed
	}
	code := resp.StatusCode()
	stream := resp.BodyStream()
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified:
	case stream != nil || ctx.IsHead():
		if n := resp.Header.ContentLength(); n >= 0 {
			out.Set("Content-Length", strconv.Itoa(n))
		}
	default:
		out.Set("Content-Length", strconv.Itoa(len(resp.Body())))
	}
	w.WriteHeader(code)
	if stream == nil {
		w.Write(resp.Body())
		return
	}
	if err := copyFlushing(w, stream); err != nil {
		if x, ok := stream.(*exchange); ok {
			x.streamErr = err // so the member's connection is not reused
		}
	}
	// resp.Reset, when the request is done, closes the stream.
}

var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyFlushing streams a response body to an HTTP/2 client, flushing as
// the member's bytes arrive rather than when a buffer fills, so that
// streamed responses (server-sent events, long polls) are not held back.
func copyFlushing(w http.ResponseWriter, r io.Reader) error {
	flusher, _ := w.(http.Flusher)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	buf := *bp
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func tcpAddr(hostport string) net.Addr {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return net.TCPAddrFromAddrPort(ap)
}

// h2Stream stands in for the connection of a RequestCtx that carries an
// HTTP/2 stream. fasthttp asks its conn for the addresses and TLS state
// only (the stream's bytes go through net/http), and the request path never
// hijacks: an HTTP/2 request cannot ask to upgrade. The embedded Conn is
// nil; calling its I/O methods would be a bug.
type h2Stream struct {
	net.Conn
	local, remote net.Addr
	state         tls.ConnectionState
}

func (s *h2Stream) LocalAddr() net.Addr {
	if s.local == nil {
		return &net.TCPAddr{}
	}
	return s.local
}

func (s *h2Stream) RemoteAddr() net.Addr                 { return s.remote }
func (s *h2Stream) Handshake() error                     { return nil }
func (s *h2Stream) ConnectionState() tls.ConnectionState { return s.state }
