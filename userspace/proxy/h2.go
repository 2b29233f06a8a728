package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/catherd/catherd/userspace/httpwire"
)

// HTTP/2 clients are served by net/http's HTTP/2 server. Each stream's
// request is written out as an HTTP/1.1 request on a connection of its
// own to a loop (a bridge), and the HTTP/1.1 answer the loop writes back
// is turned into the stream's response. So an HTTP/2 request goes down
// the same path as an HTTP/1.1 one: the same checks, stickiness,
// failover, retries, edits and accounting. The member is always reached
// over HTTP/1.1 or AJP.

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

func (p *Proxy) serveHTTP2(w http.ResponseWriter, r *http.Request) {
	if err := checkHTTP2Request(r); err != nil {
		p.refuseHTTP2(w, http.StatusBadRequest, err)
		return
	}
	head, chunked := http2RequestHead(r)
	src := io.Reader(bytes.NewReader(head))
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		body := io.Reader(r.Body)
		if n := r.ContentLength; n > 0 && n <= replayLimit {
			// Read whole now, as the loop would, so that a stream reset
			// meanwhile is caught below.
			small := make([]byte, n)
			if _, err := io.ReadFull(r.Body, small); err != nil {
				if r.Context().Err() != nil {
					p.metrics.HTTP2ResetUnforwarded()
				} else {
					p.refuseHTTP2(w, http.StatusBadRequest, err)
				}
				return
			}
			body = bytes.NewReader(small)
		}
		if chunked {
			body = &chunkEncoder{r: r.Body}
		}
		src = io.MultiReader(src, body)
	}
	if r.Context().Err() != nil {
		// The client reset the stream before a member was chosen: no one
		// waits for the answer, so no member is asked. A stream reset
		// after this point may still reach one.
		p.metrics.HTTP2ResetUnforwarded()
		return
	}
	state, _ := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	remote, _ := netip.ParseAddrPort(r.RemoteAddr)
	lp := p.pickLoop()
	b := newBridge(lp)
	// A stream the client resets ends its request on the loop too.
	stop := context.AfterFunc(r.Context(), func() { lp.nl.Post(func() { b.abort() }) })
	defer stop()
	lp.nl.Post(func() {
		cl := lp.newClient(netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port()), state)
		cl.io, b.cl = b, cl
		cl.h2, cl.slotless = true, true
		cl.start()
		go b.readFrom(src)
	})
	out := &h2Response{w: w, maxHead: p.opts.MaxHeaderBytes}
	b.writeTo(out)
	out.finish()
}

// refuseHTTP2 answers a request refused before a member was chosen.
func (p *Proxy) refuseHTTP2(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "%d %s\n", code, err)
	p.none.Done(code, time.Now(), 0, 0, false)
}

// abort closes the stream's connection on the loop, whatever it was doing.
func (b *bridge) abort() {
	if b.cl != nil {
		b.cl.close()
	} else {
		b.Close()
	}
}

// http2RequestHead writes an HTTP/2 request's head as HTTP/1.1: the
// authority as Host, the fields as they came (their names lower-case, as
// HTTP/2 has them), and the body's framing: its length when the client
// gave one, else chunked. Expect is left to net/http's server, which
// answers 100-continue itself.
func http2RequestHead(r *http.Request) ([]byte, bool) {
	var b []byte
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, r.RequestURI...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	for name, values := range r.Header {
		switch name {
		case "Host", "Content-Length", "Transfer-Encoding", "Expect":
			continue
		}
		for _, v := range values {
			b = append(b, name...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	chunked := false
	switch {
	case r.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	case r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		chunked = true
	}
	return append(b, "\r\n"...), chunked
}

// chunkEncoder reads r as a chunked body.
type chunkEncoder struct {
	r    io.Reader
	buf  []byte
	done bool
}

func (c *chunkEncoder) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.done {
			return 0, io.EOF
		}
		data := make([]byte, 16<<10)
		n, err := c.r.Read(data)
		if n > 0 {
			c.buf = strconv.AppendInt(c.buf[:0], int64(n), 16)
			c.buf = append(append(append(c.buf, "\r\n"...), data[:n]...), "\r\n"...)
		}
		if errors.Is(err, io.EOF) {
			c.buf, c.done = append(c.buf, "0\r\n\r\n"...), true
		} else if err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	return n, nil
}

// h2Response turns the HTTP/1.1 answer the loop writes into the stream's
// response: the head into the ResponseWriter's, the body as it comes,
// flushed at once so that streamed answers are not held back.
type h2Response struct {
	w       http.ResponseWriter
	maxHead int
	head    []byte
	resp    httpwire.Response
	started bool
	cs      httpwire.ChunkScanner
	err     error
}

func (o *h2Response) Write(p []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n := len(p)
	if !o.started {
		o.head = append(o.head, p...)
		m, err := httpwire.ParseResponse(o.head, &o.resp, o.maxHead)
		if err != nil || m == 0 {
			return n, err
		}
		o.started = true
		o.writeHead()
		p = o.head[m:]
	}
	if err := o.body(p); err != nil {
		o.err = err
		return 0, err
	}
	if f, ok := o.w.(http.Flusher); ok {
		f.Flush()
	}
	return n, nil
}

// writeHead sends the response head: HTTP/2 frames the body itself and
// has no connection fields.
func (o *h2Response) writeHead() {
	out := o.w.Header()
	for i := range o.resp.Fields {
		f := &o.resp.Fields[i]
		if hopByHop(f.Name) || httpwire.EqualFold(f.Name, "transfer-encoding") {
			continue
		}
		name := http.CanonicalHeaderKey(string(f.Name))
		out[name] = append(out[name], string(f.Value))
	}
	if _, typed := out["Content-Type"]; !typed {
		out["Content-Type"] = nil // as the member sent it: no type sniffed
	}
	o.w.WriteHeader(o.resp.Status)
}

// body writes body bytes, taking chunk framing out.
func (o *h2Response) body(p []byte) error {
	if !o.resp.Chunked {
		_, err := o.w.Write(p)
		return err
	}
	for len(p) > 0 && !o.cs.Done() {
		n, data, err := o.cs.Scan(p)
		if err != nil {
			return err
		}
		if data {
			if _, err := o.w.Write(p[:n]); err != nil {
				return err
			}
		}
		p = p[n:]
	}
	return nil
}

// finish answers a stream the loop closed without an answer.
func (o *h2Response) finish() {
	if !o.started {
		o.w.WriteHeader(http.StatusBadGateway)
	}
}
