package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// hopHeaders describe one connection, not the message (RFC 9110 7.6.1), so
// a proxy must not forward them. Transfer-Encoding and Connection: close
// are handled by fasthttp itself on each side.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Upgrade",
}

// delHopHeaders removes the hop-by-hop headers and any header the
// Connection header names. With keepUpgrade, Connection and Upgrade stay so
// that a protocol upgrade can reach the backend.
func delHopHeaders(connection []byte, del func(string), keepUpgrade bool) {
	for len(connection) > 0 {
		var token []byte
		if i := bytes.IndexByte(connection, ','); i >= 0 {
			token, connection = connection[:i], connection[i+1:]
		} else {
			token, connection = connection, nil
		}
		token = bytes.TrimSpace(token)
		if len(token) > 0 && !(keepUpgrade && bytes.EqualFold(token, []byte("upgrade"))) {
			del(string(token))
		}
	}
	for _, h := range hopHeaders {
		if keepUpgrade && (h == "Connection" || h == "Upgrade") {
			continue
		}
		del(h)
	}
}

// isUpgrade reports a protocol switch request (WebSocket and the like).
func isUpgrade(h *fasthttp.RequestHeader) bool {
	return len(h.Peek(fasthttp.HeaderUpgrade)) > 0 && headerHasToken(h.Peek(fasthttp.HeaderConnection), "upgrade")
}

func headerHasToken(v []byte, token string) bool {
	for _, t := range bytes.Split(v, []byte(",")) {
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(token)) {
			return true
		}
	}
	return false
}

// rewriteRequestHeader turns the client's request head into the one sent to
// a member: hop-by-hop headers removed, X-Forwarded-* set, and Expect
// dropped (the client already got its 100 Continue from us).
func (p *Proxy) rewriteRequestHeader(c *call, h *fasthttp.RequestHeader) {
	upgrade := isUpgrade(h)
	delHopHeaders(h.Peek(fasthttp.HeaderConnection), h.Del, upgrade)
	h.ResetConnectionClose()
	h.Del(fasthttp.HeaderExpect)

	var buf [128]byte
	xff := buf[:0]
	if prior := h.Peek(fasthttp.HeaderXForwardedFor); p.opts.TrustForwardedFor && len(prior) > 0 {
		xff = append(append(xff, prior...), ", "...)
	}
	h.SetBytesV(fasthttp.HeaderXForwardedFor, c.clientIP.AppendTo(xff))
	proto := "http"
	if c.ctx.IsTLS() {
		proto = "https"
	}
	h.Set("X-Forwarded-Proto", proto)
	h.SetBytesV("X-Forwarded-Host", c.ctx.Request.Header.Host())
}

// rewriteResponseHeader removes hop-by-hop headers from a member's response
// and points Location and Content-Location that name the member back at the
// front end, as Apache's ProxyPassReverse does.
func (p *Proxy) rewriteResponseHeader(ctx *fasthttp.RequestCtx, b *backend) {
	h := &ctx.Response.Header
	delHopHeaders(h.Peek(fasthttp.HeaderConnection), h.Del, false)
	h.ResetConnectionClose()
	if ctx.Request.Header.ConnectionClose() {
		h.SetConnectionClose()
	}
	for _, name := range []string{fasthttp.HeaderLocation, fasthttp.HeaderContentLocation} {
		if v := h.Peek(name); len(v) > 0 {
			if rewritten, ok := rewriteOrigin(v, b.origin, ctx); ok {
				h.SetBytesV(name, rewritten)
			}
		}
	}
}

// rewriteOrigin replaces a leading backend origin ("http://10.0.0.1:8080")
// in v with the origin the client used.
func rewriteOrigin(v, origin []byte, ctx *fasthttp.RequestCtx) ([]byte, bool) {
	if len(v) < len(origin) || !bytes.EqualFold(v[:len(origin)], origin) {
		return nil, false
	}
	rest := v[len(origin):]
	if len(rest) > 0 && rest[0] != '/' && rest[0] != '?' && rest[0] != '#' {
		return nil, false // e.g. http://host:80800: another port
	}
	scheme := "http://"
	if ctx.IsTLS() {
		scheme = "https://"
	}
	out := make([]byte, 0, len(scheme)+len(ctx.Host())+len(rest))
	out = append(out, scheme...)
	out = append(out, ctx.Host()...)
	return append(out, rest...), true
}
