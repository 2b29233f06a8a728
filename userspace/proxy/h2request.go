package proxy

import (
	"errors"
	"net/http"
	"strings"
)

// Ways an HTTP/2 request is refused before a member is chosen. net/http's
// HTTP/2 server enforces the framing and most field rules of RFC 9113;
// these are what it leaves to the handler and what matters to a proxy
// that rewrites the request as HTTP/1.1 for its member: a request the
// member would read differently from catherd (RFC 9113 section 8.1.1 has
// an intermediary refuse a malformed request rather than forward it).
var (
	// errH2Authority: neither :authority nor host gives a valid
	// authority, so no Host line can be written for the member.
	errH2Authority = errors.New("no valid :authority or host field")
	// errH2Host: a host field beside :authority names another
	// authority (RFC 9113 section 8.3.1), or host is repeated. Forwarded,
	// either could reach the member as the Host it routes by.
	errH2Host = errors.New("host field disagrees with :authority, or is repeated")
	// errH2Path: :path is not a request-target an HTTP/1.1 request line
	// can carry as it is; a space in it would end the target and have the
	// member read the rest as the protocol version, or worse.
	errH2Path = errors.New(":path is not an origin-form request target")
	// errH2Connect: catherd proxies requests, not tunnels.
	errH2Connect = errors.New("CONNECT is not proxied")
	// errH2ContentLength: content-length repeated, not a plain decimal, or
	// not the length of the body the client sent: the member would frame
	// the forwarded body by a length the client did not mean.
	errH2ContentLength = errors.New("content-length repeated, malformed, or not the body's length")
)

// checkHTTP2Request checks a request that net/http's HTTP/2 server has
// accepted for what it lets through and an HTTP/1.1 member must not see.
// net/http answers OPTIONS * itself and refuses connection-specific fields
// (frameGuard turns those into stream errors), so neither is checked here.
func checkHTTP2Request(r *http.Request) error {
	if r.Method == http.MethodConnect {
		return errH2Connect
	}
	if !validAuthority(r.Host) {
		return errH2Authority
	}
	// net/http takes host as the authority when :authority is absent,
	// so a lone host field always agrees.
	switch hosts := r.Header["Host"]; {
	case len(hosts) > 1:
		return errH2Host
	case len(hosts) == 1 && !strings.EqualFold(hosts[0], r.Host):
		return errH2Host
	}
	if !validTarget(r.Method, r.RequestURI) {
		return errH2Path
	}
	return checkContentLength(r)
}

// validAuthority reports whether a is a non-empty RFC 3986 authority
// without userinfo (RFC 9113 section 8.3.1): a host of unreserved,
// percent-encoded and sub-delims characters or an IP literal, and a port.
func validAuthority(a string) bool {
	if a == "" {
		return false
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c >= 0x80 || !authorityChars[c] {
			return false
		}
	}
	return true
}

var authorityChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "-._~%!$&'()*+,;=:[]" {
		t[c] = true
	}
	return t
}()

// validTarget reports whether path, a request's :path, can go into an
// HTTP/1.1 request line unchanged: origin-form, which starts with "/"
// (RFC 9112 section 3.2.1), or "*" for OPTIONS alone; no byte that ends
// the target or the line (space, controls) and no fragment, which is
// never part of a request (RFC 9110 section 7.1).
func validTarget(method, path string) bool {
	if path == "*" {
		return method == http.MethodOptions
	}
	if path == "" || path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// checkContentLength checks a request's content-length field: at most one,
// of decimal digits only, equal to the length net/http took for the body.
// net/http takes the first field when a body follows, and 0 when the
// HEADERS frame ended the stream; it enforces that the DATA frames add up
// to that length as they arrive.
func checkContentLength(r *http.Request) error {
	values := r.Header["Content-Length"]
	switch {
	case len(values) == 0:
		return nil
	case len(values) > 1:
		return errH2ContentLength
	}
	v := values[0]
	if v == "" || len(v) > 18 {
		return errH2ContentLength
	}
	var n int64
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return errH2ContentLength
		}
		n = n*10 + int64(v[i]-'0')
	}
	if n != r.ContentLength {
		return errH2ContentLength
	}
	return nil
}
