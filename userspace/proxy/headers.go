package proxy

import (
	"bytes"
	"iter"
	"net/netip"
	"strings"

	"github.com/valyala/fasthttp"
)

// hopHeader returns the canonical name of a hop-by-hop header (RFC 9110
// 7.6.1: it describes one connection, not the message, so a proxy must not
// forward it), or "" for any other header. fasthttp hands names over in
// canonical case. Transfer-Encoding and "Connection: close" are handled by
// fasthttp itself on each side.
func hopHeader(name []byte) string {
	switch string(name) {
	case "Connection":
		return "Connection"
	case "Keep-Alive":
		return "Keep-Alive"
	case "Proxy-Connection":
		return "Proxy-Connection"
	case "Proxy-Authenticate":
		return "Proxy-Authenticate"
	case "Proxy-Authorization":
		return "Proxy-Authorization"
	case "Te":
		return "Te"
	case "Trailer":
		return "Trailer"
	case "Upgrade":
		return "Upgrade"
	}
	return ""
}

// headerScan is what one pass over a header block found.
type headerScan struct {
	hop      [8]string // hop-by-hop headers present, by canonical name
	nhop     int
	named    []string // headers the Connection header names
	location bool     // Location or Content-Location present
	// X-Forwarded-* fields, counted because a client may send one several
	// times: see setOnce.
	forwardedFor, forwardedProto, forwardedHost int
}

// scanHeaders walks a header block once. Per-request cost matters here: the
// alternative, a Del and a Peek per candidate name, rescans the block each
// time.
func scanHeaders(all iter.Seq2[[]byte, []byte]) headerScan {
	var s headerScan
	for k, v := range all {
		if name := hopHeader(k); name != "" {
			if s.nhop < len(s.hop) {
				s.hop[s.nhop] = name
				s.nhop++
			}
			if name == "Connection" {
				s.named = connectionTokens(v, s.named)
			}
			continue
		}
		switch string(k) {
		case fasthttp.HeaderLocation, fasthttp.HeaderContentLocation:
			s.location = true
		case fasthttp.HeaderXForwardedFor:
			s.forwardedFor++
		case fasthttp.HeaderXForwardedProto:
			s.forwardedProto++
		case fasthttp.HeaderXForwardedHost:
			s.forwardedHost++
		}
	}
	return s
}

// connectionTokens appends the header names listed in a Connection value.
// "close" and "keep-alive" are options, not names, and are skipped.
func connectionTokens(v []byte, dst []string) []string {
	for len(v) > 0 {
		var token []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			token, v = v[:i], v[i+1:]
		} else {
			token, v = v, nil
		}
		token = bytes.TrimSpace(token)
		if len(token) == 0 || bytes.EqualFold(token, []byte("close")) || bytes.EqualFold(token, []byte("keep-alive")) {
			continue
		}
		dst = append(dst, string(token))
	}
	return dst
}

// delHopHeaders removes what scan found. With keepUpgrade, Connection and
// Upgrade stay so that a protocol upgrade can reach the backend.
func (s *headerScan) delHopHeaders(del func(string), keepUpgrade bool) {
	for _, name := range s.named {
		if !(keepUpgrade && strings.EqualFold(name, "upgrade")) {
			del(name)
		}
	}
	for _, name := range s.hop[:s.nhop] {
		if !(keepUpgrade && (name == "Connection" || name == "Upgrade")) {
			del(name)
		}
	}
}

// isUpgrade reports a WebSocket handshake: the one protocol switch catherd
// tunnels. Any other Upgrade is hop-by-hop like the rest and removed, so
// the member answers the request as a plain one; a tunnel to a protocol
// catherd cannot read (h2c above all, which checkHead refuses) would carry
// requests past its checks.
func isUpgrade(h *fasthttp.RequestHeader) bool {
	return headerHasToken(h.Peek(fasthttp.HeaderUpgrade), "websocket") && headerHasToken(h.Peek(fasthttp.HeaderConnection), "upgrade")
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
//
// X-Forwarded-For is the peer's address, unless the peer is a trusted
// proxy (--trusted-proxy): then the chain it sent, with the peer's address
// appended, so that the member can find the client by walking the list
// from the right past the proxies it trusts (Tomcat's RemoteIpValve). A
// trusted proxy's X-Forwarded-Proto and -Host are kept too, when it sent
// them: it saw the scheme and host the client used, which catherd behind
// it cannot (a proxy ending TLS in front of catherd's plain HTTP). From
// anyone else, all three are replaced: a client could claim any address,
// or https.
func (p *Proxy) rewriteRequestHeader(c *call, h *fasthttp.RequestHeader, upgrade bool) {
	scan := scanHeaders(h.All())
	scan.delHopHeaders(h.Del, upgrade)
	h.ResetConnectionClose()
	h.Del(fasthttp.HeaderExpect)

	trusted := p.trusted(c.clientIP)
	var buf [128]byte
	xff := buf[:0]
	if trusted && scan.forwardedFor > 0 {
		for _, v := range h.PeekAll(fasthttp.HeaderXForwardedFor) {
			xff = append(append(xff, v...), ", "...)
		}
	}
	setOnce(h, fasthttp.HeaderXForwardedFor, c.clientIP.AppendTo(xff), scan.forwardedFor)
	if !trusted || scan.forwardedProto == 0 {
		proto := "http"
		if c.ctx.IsTLS() {
			proto = "https"
		}
		setOnce(h, fasthttp.HeaderXForwardedProto, []byte(proto), scan.forwardedProto)
	}
	if !trusted || scan.forwardedHost == 0 {
		setOnce(h, fasthttp.HeaderXForwardedHost, c.ctx.Request.Header.Host(), scan.forwardedHost)
	}
}

// trusted reports whether the peer at ip is a --trusted-proxy.
func (p *Proxy) trusted(ip netip.Addr) bool {
	for _, prefix := range p.opts.TrustedProxies {
		if prefix.Contains(ip) {
			return true
		}
	}
	return false
}

// setOnce sets header name, which the head holds n times, to v alone.
// fasthttp's Set replaces only the first: a client's repeats would follow
// catherd's value, and a member reading them as one list would take the
// client's forgery for what catherd added.
func setOnce(h *fasthttp.RequestHeader, name string, v []byte, n int) {
	if n > 1 {
		h.Del(name)
	}
	h.SetBytesV(name, v)
}

// rewriteResponseHeader removes hop-by-hop headers from a member's response
// and points Location and Content-Location that name the member back at the
// front end, as Apache's ProxyPassReverse does.
func (p *Proxy) rewriteResponseHeader(ctx *fasthttp.RequestCtx, b *backend) {
	h := &ctx.Response.Header
	scan := scanHeaders(h.All())
	scan.delHopHeaders(h.Del, false)
	h.ResetConnectionClose()
	if ctx.Request.Header.ConnectionClose() {
		h.SetConnectionClose()
	}
	if !scan.location {
		return
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
