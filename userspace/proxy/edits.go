package proxy

import (
	"bytes"
	"net/netip"

	"github.com/catherd/catherd/userspace/httpwire"
)

// The edits catherd makes to a message it forwards, and no others: a
// head goes out as the client or the member sent it, field by field, in
// its order and case, less the fields below, plus X-Forwarded-* on a
// request.

// hopByHop reports the fields that describe one connection, not the
// message (RFC 9110 7.6.1, and Proxy-Authenticate/-Authorization of
// RFC 2616): a proxy does not forward them.
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return httpwire.EqualFold(name, "te")
	case 7:
		return httpwire.EqualFold(name, "trailer") || httpwire.EqualFold(name, "upgrade")
	case 10:
		return httpwire.EqualFold(name, "connection") || httpwire.EqualFold(name, "keep-alive")
	case 16:
		return httpwire.EqualFold(name, "proxy-connection")
	case 18:
		return httpwire.EqualFold(name, "proxy-authenticate")
	case 19:
		return httpwire.EqualFold(name, "proxy-authorization")
	}
	return false
}

// forwardedKind tells the X-Forwarded-* fields apart: 1 For, 2 Proto,
// 3 Host, 0 any other field.
func forwardedKind(name []byte) int {
	if len(name) < 15 || !httpwire.EqualFold(name[:12], "x-forwarded-") {
		return 0
	}
	switch rest := name[12:]; {
	case httpwire.EqualFold(rest, "for"):
		return 1
	case httpwire.EqualFold(rest, "proto"):
		return 2
	case httpwire.EqualFold(rest, "host"):
		return 3
	}
	return 0
}

// requestEdits walks the request's fields as they go to a member: keep is
// called for each field forwarded as it is, add for each field catherd
// adds (after the client's). Removed: hop-by-hop fields and those
// Connection names (but Connection and Upgrade of a WebSocket handshake),
// Expect: 100-continue (catherd answered it), and X-Forwarded-* but from
// a trusted proxy.
//
// X-Forwarded-For is the peer's address, unless the peer is a trusted
// proxy (--trusted-proxy): then the chain it sent, with the peer's address
// appended, so that the member can find the client by walking the list
// from the right past the proxies it trusts (Tomcat's RemoteIpValve). A
// trusted proxy's X-Forwarded-Proto and -Host are kept too, when it sent
// them: it saw the scheme and host the client used, which catherd behind
// it cannot. From anyone else, all three are replaced: a client could
// claim any address, or https.
func (x *exchange) requestEdits(keep func(f *httpwire.Field), add func(name string, value []byte)) {
	r := &x.req
	trusted := x.p().trusted(x.cl.remote.Addr())
	var proto, host bool // a trusted proxy's X-Forwarded-Proto, -Host kept
	xff := x.tmp[:0]
	for i := range r.Fields {
		f := &r.Fields[i]
		switch {
		case x.req.WebSocket && (httpwire.EqualFold(f.Name, "upgrade")):
			keep(f)
			continue
		case hopByHop(f.Name), r.IsNamed(f.Name):
			continue
		case r.Expect100 && httpwire.EqualFold(f.Name, "expect"):
			continue
		}
		switch forwardedKind(f.Name) {
		case 0:
			keep(f)
		case 1:
			if trusted {
				xff = append(append(xff, f.Value...), ", "...)
			}
		case 2:
			if trusted && !proto {
				proto = true
				keep(f)
			}
		case 3:
			if trusted && !host {
				host = true
				keep(f)
			}
		}
	}
	if x.req.WebSocket {
		add("Connection", []byte("Upgrade"))
	}
	xff = x.cl.remote.Addr().AppendTo(xff)
	add("X-Forwarded-For", xff)
	if !proto {
		if x.cl.tls != nil {
			add("X-Forwarded-Proto", []byte("https"))
		} else {
			add("X-Forwarded-Proto", []byte("http"))
		}
	}
	if !host {
		add("X-Forwarded-Host", r.Host)
	}
	x.tmp = xff[:0]
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

// appendRequestHead appends the request's head as it goes to an HTTP
// member.
func (x *exchange) appendRequestHead(dst []byte) []byte {
	dst = append(dst, x.req.Line...)
	x.requestEdits(func(f *httpwire.Field) { dst = append(dst, f.Line...) },
		func(name string, value []byte) { dst = appendField(dst, name, value) })
	return append(dst, "\r\n"...)
}

func appendField[S string | []byte](dst []byte, name S, value []byte) []byte {
	dst = append(dst, name...)
	dst = append(dst, ": "...)
	dst = append(dst, value...)
	return append(dst, "\r\n"...)
}

// responseField decides what happens to a field of a member's answer on
// its way to the client: dropped (hop-by-hop, or named by Connection but
// for the fields that frame the body, which a member cannot take back),
// rewritten (Location and Content-Location that name the member), or kept.
// It appends what goes out to dst.
func (x *exchange) responseField(dst []byte, name, value, line []byte, named func([]byte) bool) []byte {
	length := httpwire.EqualFold(name, "content-length")
	framing := length || httpwire.EqualFold(name, "transfer-encoding")
	switch {
	case hopByHop(name):
		return dst
	case framing && !x.resp.keepsFraming(length):
		return dst // catherd frames the body itself
	case !framing && named != nil && named(name):
		return dst
	case httpwire.EqualFold(name, "location") || httpwire.EqualFold(name, "content-location"):
		if rewritten, ok := x.rewriteOrigin(value); ok {
			return appendField(dst, name, rewritten)
		}
	}
	if line != nil {
		return append(dst, line...)
	}
	return appendField(dst, name, value)
}

// rewriteOrigin returns v with a leading member origin
// ("http://10.0.0.1:8080") replaced by the origin the client used, as
// Apache's ProxyPassReverse does. The result is in x.tmp.
func (x *exchange) rewriteOrigin(v []byte) ([]byte, bool) {
	origin := x.up.origin
	if len(v) < len(origin) || !bytes.EqualFold(v[:len(origin)], origin) {
		return nil, false
	}
	rest := v[len(origin):]
	if len(rest) > 0 && rest[0] != '/' && rest[0] != '?' && rest[0] != '#' {
		return nil, false // e.g. http://host:80800: another port
	}
	out := x.tmp[:0]
	if x.cl.tls != nil {
		out = append(out, "https://"...)
	} else {
		out = append(out, "http://"...)
	}
	out = append(out, x.req.Host...)
	x.tmp = append(out, rest...)
	return x.tmp, true
}
