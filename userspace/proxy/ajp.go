package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/ajp"
)

// errCannotCarry marks a request the member's protocol cannot carry (an AJP
// head larger than the packet size): the client gets 400, and neither the
// member nor any other is to blame.
var errCannotCarry = errors.New("request cannot be carried to the member")

// forwardAJP sends the request to an AJP member and arranges for the
// response to stream back, like forward does for HTTP members.
func (p *Proxy) forwardAJP(c *call, b *backend) error {
	ctx := c.ctx
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	ctx.Request.Header.CopyTo(&out.Header)
	p.rewriteRequestHeader(c, &out.Header, false)

	fr := ajp.ForwardRequest{
		Method:     ctx.Method(),
		Protocol:   ctx.Request.Header.Protocol(),
		RemoteAddr: c.clientIP.AppendTo(nil),
		IsSSL:      ctx.IsTLS(),
		Route:      []byte(b.member.Route),
	}
	fr.RemoteHost = fr.RemoteAddr
	fr.URI, fr.QueryString, _ = bytes.Cut(ctx.Request.Header.RequestURI(), []byte("?"))
	fr.ServerName, fr.ServerPort = serverNamePort(ctx)
	for k, v := range out.Header.All() {
		fr.Headers = append(fr.Headers, ajp.Header{Name: k, Value: v})
	}
	if a, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		fr.Attributes = []ajp.Header{{Name: []byte("AJP_REMOTE_PORT"), Value: strconv.AppendInt(nil, int64(a.Port), 10)}}
	}

	x := acquireExchange(b, c.start)
	length := int64(len(c.body))
	if c.streamed {
		x.sent.streamFrom(ctx.RequestBodyStream(), ctx.Request.Header.ContentLength())
		length = int64(ctx.Request.Header.ContentLength()) // -1: chunked
	} else {
		x.sent.r = bytes.NewReader(c.body)
	}
	b.member.Begin()
	b.metrics.Begin()
	resp, err := b.ajp.Do(&fr, &x.sent, length, p.opts.BackendTimeout)
	if err != nil {
		x.abort(err)
		if errors.Is(err, ajp.ErrTooLarge) {
			return fmt.Errorf("%w: %v", errCannotCarry, err)
		}
		return fmt.Errorf("%s %s: %w", b.member.Name, b.addr, err)
	}
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
	x.code, x.body = resp.Status, resp
	if ctx.IsHead() || resp.Status == fasthttp.StatusNoContent || resp.Status == fasthttp.StatusNotModified {
		// No body on the wire, whatever Content-Length says: read up to
		// END_RESPONSE so the connection can be reused.
		ctx.Response.SkipBody = true
		n = 0
	}
	return x.respond(ctx, n)
}

// serverNamePort splits the client's Host into the name and port a servlet
// sees (getServerName, getServerPort): Tomcat builds redirects from them.
func serverNamePort(ctx *fasthttp.RequestCtx) ([]byte, int) {
	port := 80
	if ctx.IsTLS() {
		port = 443
	}
	host := ctx.Request.Header.Host()
	if h, ps, err := net.SplitHostPort(string(host)); err == nil {
		if p, err := strconv.Atoi(ps); err == nil {
			port = p
		}
		return []byte(h), port
	}
	return host, port
}
