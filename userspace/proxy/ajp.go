package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/ajp"
)

// errCannotCarry marks a request the member's protocol cannot carry (an AJP
// head larger than the packet size): the client gets 400, and neither the
// member nor any other is to blame.
var errCannotCarry = errors.New("request cannot be carried to the member")

// remotePortAttr is the request attribute that tells Tomcat the client's
// port (getRemotePort).
var remotePortAttr = []byte("AJP_REMOTE_PORT")

// ajpRequest is forwardAJP's per-request state, pooled so that forwarding
// allocates nothing once the pool is warm: the rewritten head, the
// FORWARD_REQUEST pointing into it and into buf, the reader of a buffered
// request body, and the member's response. It is the exchange's body
// stream; the exchange closes it once, when the response was written or
// given up, and that returns it and the response to their pools.
type ajpRequest struct {
	header  fasthttp.RequestHeader // the client's head, rewritten for the member
	fr      ajp.ForwardRequest
	headers []ajp.Header // fr.Headers' storage
	attrs   [2]ajp.Header
	buf     []byte // the remote address, route and port fr points to
	body    bytes.Reader
	resp    *ajp.Response
}

var ajpRequests = sync.Pool{New: func() any { return new(ajpRequest) }}

// forwardAJP sends the request to an AJP member and arranges for the
// response to stream back, like forward does for HTTP members.
func (p *Proxy) forwardAJP(c *call, b *backend) error {
	ctx := c.ctx
	a := ajpRequests.Get().(*ajpRequest)
	ctx.Request.Header.CopyTo(&a.header)
	p.rewriteRequestHeader(c, &a.header, false)
	a.setHead(c, b)

	x := acquireExchange(b, c.start)
	length := int64(len(c.body))
	if c.streamed {
		x.sent.streamFrom(ctx.RequestBodyStream(), ctx.Request.Header.ContentLength())
		length = int64(ctx.Request.Header.ContentLength()) // -1: chunked
	} else {
		a.body.Reset(c.body)
		x.sent.r = &a.body
	}
	b.member.Begin()
	b.metrics.Begin()
	resp, err := b.ajp.Do(&a.fr, &x.sent, length, p.opts.BackendTimeout)
	if err != nil {
		failure := x.sent.failure(b, err)
		x.abort(failure)
		a.release()
		if errors.Is(err, ajp.ErrTooLarge) {
			return fmt.Errorf("%w: %v", errCannotCarry, err)
		}
		return failure
	}
	a.resp = resp
	ctx.Response.SetStatusCode(resp.Status)
	n := -1
	for _, h := range resp.Headers {
		ctx.Response.Header.AddBytesKV(h.Name, h.Value)
		if string(h.Name) == fasthttp.HeaderContentLength {
			if v, err := strconv.Atoi(string(h.Value)); err == nil && v >= 0 {
				n = v
			}
		}
	}
	p.rewriteResponseHeader(ctx, b)
	x.code, x.body = resp.Status, a
	if ctx.IsHead() || resp.Status == fasthttp.StatusNoContent || resp.Status == fasthttp.StatusNotModified {
		// No body on the wire, whatever Content-Length says: read up to
		// END_RESPONSE so the connection can be reused.
		ctx.Response.SkipBody = true
		n = 0
	}
	return x.respond(ctx, n)
}

// setHead fills in a.fr from the client's request and a.header. The
// fields point into those and into a's buffers, valid until a is released.
// The remote address is the TCP peer, even a --trusted-proxy: as over HTTP,
// where the member's peer is catherd, the client behind a proxy is told by
// the X-Forwarded-For chain among the headers (Tomcat's RemoteIpValve
// reads it over AJP too).
func (a *ajpRequest) setHead(c *call, b *backend) {
	ctx := c.ctx
	a.buf = c.clientIP.AppendTo(a.buf[:0])
	addrEnd := len(a.buf)
	a.buf = append(a.buf, b.member.Route...)
	routeEnd := len(a.buf)
	tcp, isTCP := ctx.RemoteAddr().(*net.TCPAddr)
	if isTCP {
		a.buf = strconv.AppendInt(a.buf, int64(tcp.Port), 10)
	}
	a.fr = ajp.ForwardRequest{
		Method:     ctx.Method(),
		Protocol:   ctx.Request.Header.Protocol(),
		RemoteAddr: a.buf[:addrEnd],
		RemoteHost: a.buf[:addrEnd],
		IsSSL:      ctx.IsTLS(),
		Route:      a.buf[addrEnd:routeEnd],
	}
	a.fr.URI, a.fr.QueryString, _ = bytes.Cut(ctx.Request.Header.RequestURI(), []byte("?"))
	a.fr.ServerName, a.fr.ServerPort = serverNamePort(ctx)
	a.headers = a.headers[:0]
	for k, v := range a.header.All() {
		a.headers = append(a.headers, ajp.Header{Name: k, Value: v})
	}
	a.fr.Headers = a.headers
	a.fr.Attributes = a.attrs[:0]
	if isTCP {
		a.fr.Attributes = append(a.fr.Attributes, ajp.Header{Name: remotePortAttr, Value: a.buf[routeEnd:]})
	}
	if a.fr.IsSSL {
		// What mod_jk tells Tomcat about the client's TLS connection
		// (the servlet's cipher_suite, key_size and protocol attributes).
		// Go names cipher suites as IANA does, not as OpenSSL does.
		state := ctx.TLSConnectionState()
		suite := tls.CipherSuiteName(state.CipherSuite)
		a.fr.SSLCipher = readOnlyBytes(suite)
		a.fr.SSLKeySize = cipherKeyBits(suite)
		version := tlsVersionName(state.Version)
		a.fr.Attributes = append(a.fr.Attributes, ajp.Header{Name: sslProtocolAttr, Value: readOnlyBytes(version)})
	}
}

// readOnlyBytes views s as bytes without copying; the AJP encoder only
// reads them.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// sslProtocolAttr is the request attribute that tells Tomcat the client's
// TLS version (javax.servlet.request.secure_protocol).
var sslProtocolAttr = []byte("AJP_SSL_PROTOCOL")

// cipherKeyBits is the symmetric key size of a cipher suite, by its IANA
// name: what a servlet reads as javax.servlet.request.key_size.
func cipherKeyBits(suite string) int {
	switch {
	case strings.Contains(suite, "AES_128"):
		return 128
	case strings.Contains(suite, "AES_256"), strings.Contains(suite, "CHACHA20"):
		return 256
	case strings.Contains(suite, "3DES"):
		return 168
	}
	return 0
}

// tlsVersionName names a TLS version as OpenSSL and Tomcat do.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return "unknown"
}

// Read and CloseWithError make a the exchange's body stream.
func (a *ajpRequest) Read(b []byte) (int, error) { return a.resp.Read(b) }

// CloseWithError ends the member's response (see ajp.Response) and
// releases a: the exchange calls it once, and reads nothing of a after.
func (a *ajpRequest) CloseWithError(err error) error {
	a.resp.CloseWithError(err)
	a.release()
	return nil
}

// release returns a and its response to their pools, dropping its
// references into the client's request.
func (a *ajpRequest) release() {
	if a.resp != nil {
		a.resp.Release()
		a.resp = nil
	}
	a.fr = ajp.ForwardRequest{}
	a.body.Reset(nil)
	ajpRequests.Put(a)
}

// serverNamePort splits the client's Host into the name and port a servlet
// sees (getServerName, getServerPort): Tomcat builds redirects from them.
// The name is a sub-slice of the request's Host.
func serverNamePort(ctx *fasthttp.RequestCtx) ([]byte, int) {
	port := 80
	if ctx.IsTLS() {
		port = 443
	}
	host := ctx.Request.Header.Host()
	// A string view of host, not a copy: nothing keeps it past this call
	// (an error holding it is dropped), and host does not change during it.
	h, ps, err := net.SplitHostPort(unsafe.String(unsafe.SliceData(host), len(host)))
	if err != nil {
		return host, port
	}
	if p, err := strconv.Atoi(ps); err == nil {
		port = p
	}
	// h is host without the port and, for an IPv6 literal, the brackets.
	start := 0
	if host[0] == '[' {
		start = 1
	}
	return host[start : start+len(h)], port
}
