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
)

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
		}
	}
	if contentLength && transferEncoding {
		return errCLAndTE
	}
	return nil
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
