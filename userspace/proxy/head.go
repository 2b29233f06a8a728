package proxy

import (
	"bytes"
	"errors"
)

// MaxHeaderFields bounds the header fields of a request, as Apache's
// LimitRequestFields (100) and HAProxy's tune.http.maxhdr (101) do.
const MaxHeaderFields = 100

// Ways a request head is refused before anything is forwarded. fasthttp
// parses leniently (it unfolds obs-fold lines, accepts bare LF, forwards
// header names with spaces, and lets Transfer-Encoding override
// Content-Length); an edge balancer must not, because a server behind it
// may read the same bytes differently (request smuggling). So the raw head
// is checked as received, and anything RFC 9112 lets a recipient reject
// is rejected.
var (
	errBareLF         = errors.New("a line of the head ends in a bare LF")
	errObsFold        = errors.New("obsolete line folding in the head")
	errHeaderName     = errors.New("a header name is not a token")
	errTooManyHeaders = errors.New("too many header fields")
	errCLAndTE        = errors.New("both Content-Length and Transfer-Encoding")
	// RFC 9110 7.6.1 has a proxy remove the fields a Connection header
	// names. Naming a field that frames the message or says where it goes
	// would have catherd take the request apart: a body whose length the
	// member is no longer told reaches it as the start of the next request
	// on a pooled connection (AJP request injection). Such a request is
	// refused rather than forwarded in either reading.
	errConnectionFraming = errors.New("Connection names a field that frames or routes the message")
	// An upgrade to HTTP/2 in cleartext would have the member speak
	// HTTP/2 with the client through a tunnel, past every check catherd
	// makes; RFC 9113 deprecates it, and nginx refuses it too.
	errH2C = errors.New("an upgrade to HTTP/2 over cleartext (h2c)")
)

// errVersion: the request line names an HTTP version other than 1.0 and
// 1.1. Forwarded, it would have the member answer 505 and close, often
// without saying so, leaving a dead connection in the pool; and what a
// later version means by the bytes that follow is not HTTP/1.1's framing.
var errVersion = errors.New("HTTP version not supported")

// checkVersion checks the protocol of a request line.
func checkVersion(proto []byte) error {
	if string(proto) != "HTTP/1.1" && string(proto) != "HTTP/1.0" {
		return errVersion
	}
	return nil
}

// checkHead checks the header block of a request as it arrived (the lines
// after the request line, each ending in CRLF).
func checkHead(raw []byte) error {
	fields := 0
	var contentLength, transferEncoding bool
	for len(raw) > 0 {
		var line []byte
		if i := bytes.IndexByte(raw, '\n'); i < 0 {
			line, raw = raw, nil // the last line, without its terminator
		} else {
			line, raw = raw[:i], raw[i+1:]
			if len(line) == 0 || line[len(line)-1] != '\r' {
				return errBareLF
			}
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		name, _, ok := bytes.Cut(line, []byte{':'})
		if !ok || !isToken(name) {
			return errHeaderName
		}
		if fields++; fields > MaxHeaderFields {
			return errTooManyHeaders
		}
		switch {
		case asciiEqualFold(name, "Content-Length"):
			contentLength = true
		case asciiEqualFold(name, "Transfer-Encoding"):
			transferEncoding = true
		case asciiEqualFold(name, "Connection"):
			if listHas(line[len(name)+1:], endToEnd) {
				return errConnectionFraming
			}
		case asciiEqualFold(name, "Upgrade"):
			if listHas(line[len(name)+1:], isH2C) {
				return errH2C
			}
		}
	}
	if contentLength && transferEncoding {
		return errCLAndTE
	}
	return nil
}

// listHas reports whether an element of the comma-separated list v
// satisfies is.
func listHas(v []byte, is func([]byte) bool) bool {
	for len(v) > 0 {
		var elem []byte
		elem, v, _ = bytes.Cut(v, []byte{','})
		if is(bytes.Trim(elem, " \t")) {
			return true
		}
	}
	return false
}

// endToEnd reports the fields a client may not name in Connection: those
// that frame the request (Content-Length, Transfer-Encoding) or say which
// resource and session it is for (Host, Cookie), which catherd has read
// before it forwards.
func endToEnd(name []byte) bool {
	return asciiEqualFold(name, "Content-Length") || asciiEqualFold(name, "Transfer-Encoding") ||
		asciiEqualFold(name, "Host") || asciiEqualFold(name, "Cookie")
}

// isH2C reports an Upgrade protocol of h2c, with or without a version.
func isH2C(proto []byte) bool {
	name, _, _ := bytes.Cut(proto, []byte{'/'})
	return asciiEqualFold(name, "h2c")
}

// isToken reports whether b is a non-empty RFC 9110 token.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tokenChars[c] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		if b[i]|0x20 != s[i]|0x20 {
			return false
		}
	}
	return true
}
