// Package httpwire reads HTTP/1.1 messages as they arrive on the wire:
// request and response heads parsed in place (every field a slice of the
// bytes received, so that a proxy forwards the client's own bytes), and
// chunked bodies followed byte by byte without being copied.
//
// It is strict where RFC 9112 lets a recipient be: an edge balancer must
// not read a message differently from the server behind it, so anything
// that two parsers could frame two ways (request smuggling: RFC 9112
// section 11.2) is an error, never a guess.
package httpwire

import (
	"bytes"
	"strconv"
)

// MaxFields bounds the header fields of a head, as Apache's
// LimitRequestFields (100) and HAProxy's tune.http.maxhdr (101) do.
const MaxFields = 100

// Field is one header field of a head.
type Field struct {
	Name  []byte // as received: case is kept
	Value []byte // without the whitespace around it
	Line  []byte // the whole line, CRLF included
}

// Error is a head or body refused, with the status code its sender gets.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return strconv.Itoa(e.Status) + " " + e.Msg }

func bad(msg string) *Error { return &Error{Status: 400, Msg: msg} }

// Errors a head can end with. Requests get the status; a response that
// fails to parse is the member's fault and becomes the proxy's 502.
var (
	ErrBareLF         = bad("a line ends in a bare LF")
	ErrBareCR         = bad("a bare CR")
	ErrObsFold        = bad("obsolete line folding")
	ErrFieldName      = bad("a field name is not a token")
	ErrFieldValue     = bad("a field value holds a control character")
	ErrRequestLine    = bad("malformed request line")
	ErrHTTP2Preface   = bad("an HTTP/2 connection preface without TLS")
	ErrVersion        = &Error{Status: 505, Msg: "HTTP version not supported"}
	ErrTooManyFields  = &Error{Status: 431, Msg: "too many header fields"}
	ErrHeadTooLarge   = &Error{Status: 431, Msg: "request header fields too large"}
	ErrLineTooLong    = &Error{Status: 414, Msg: "URI too long"}
	ErrNoHost         = bad("no Host")
	ErrTwoHosts       = bad("more than one Host")
	ErrContentLength  = bad("malformed or repeated Content-Length")
	ErrTransferCoding = bad("a transfer coding other than chunked, or a repeated Transfer-Encoding")
	ErrCLAndTE        = bad("both Content-Length and Transfer-Encoding")
	ErrTEInHTTP10     = bad("Transfer-Encoding in an HTTP/1.0 request")
	// RFC 9110 7.6.1 has a proxy remove the fields Connection names.
	// Naming a field that frames the message or says where it goes would
	// have the proxy take the request apart: a body whose length the
	// member is no longer told reaches it as the start of the next
	// request on a pooled connection (AJP request injection).
	ErrConnectionFraming = bad("Connection names a field that frames or routes the message")
	// An upgrade to HTTP/2 in cleartext would have the member speak
	// HTTP/2 with the client through a tunnel, past the proxy's checks;
	// RFC 9113 deprecates it.
	ErrH2C             = bad("an upgrade to HTTP/2 over cleartext (h2c)")
	ErrTooManyNamed    = bad("Connection names too many fields")
	ErrBadResponseHead = &Error{Status: 502, Msg: "malformed response head"}
)

// maxNamed bounds the fields one head's Connection may name.
const maxNamed = 16

// head is what request and response heads share: their fields and what
// Connection says.
type head struct {
	Fields []Field
	// Len is the head's length in bytes, blank line included.
	Len int
	// ContentLength is the body's length, -1 when the head gives none.
	ContentLength int64
	// Chunked: the body is chunked (Transfer-Encoding: chunked).
	Chunked bool
	// Minor is the version's minor digit: HTTP/1.Minor.
	Minor int
	// Close: Connection says close. KeepAlive: it says keep-alive.
	Close, KeepAlive bool
	// ConnUpgrade: Connection says upgrade.
	ConnUpgrade bool
	// Named are the fields Connection names (hop-by-hop by its say).
	Named [][]byte
	te    int // Transfer-Encoding fields seen
	named [maxNamed][]byte
}

func (h *head) reset() {
	h.Fields = h.Fields[:0]
	h.Len, h.ContentLength, h.Chunked, h.Minor = 0, -1, false, 0
	h.Close, h.KeepAlive, h.ConnUpgrade = false, false, false
	h.Named = h.named[:0]
	h.te = 0
}

// Persistent reports whether the connection may carry another message
// after this one, by the version and Connection (RFC 9112 9.3).
func (h *head) Persistent() bool {
	if h.Close {
		return false
	}
	return h.Minor == 1 || h.KeepAlive
}

// Field returns the value of the first field named name (any case).
func (h *head) Field(name string) ([]byte, bool) {
	for i := range h.Fields {
		if EqualFold(h.Fields[i].Name, name) {
			return h.Fields[i].Value, true
		}
	}
	return nil, false
}

// IsNamed reports whether Connection names the field name.
func (h *head) IsNamed(name []byte) bool {
	for _, n := range h.Named {
		if bytes.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// mayBeWhole reports whether b may hold a whole head: every head ends in
// a line end followed by the blank line (or a bare LF, an error).
func mayBeWhole(b []byte) bool {
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// lineEnd returns the index of the LF that ends the line starting at
// b[0], checking that it is preceded by CR and that no other CR comes
// before it; -1 when b holds no LF yet.
func lineEnd(b []byte) (int, *Error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return -1, nil
	}
	if i == 0 || b[i-1] != '\r' {
		return 0, ErrBareLF
	}
	return i, nil
}

// fields parses the header fields from b (which starts after the start
// line) up to and including the blank line, calling field for each; it
// returns the bytes consumed, 0 when the blank line has not arrived.
func (h *head) fields(b []byte, field func(f *Field) *Error) (int, *Error) {
	at := 0
	for {
		rest := b[at:]
		end, err := lineEnd(rest)
		if err != nil {
			return 0, err
		}
		if end < 0 {
			return 0, nil
		}
		line := rest[:end+1]
		at += end + 1
		if end == 1 {
			return at, nil // the blank line
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, ErrObsFold
		}
		if len(h.Fields) == MaxFields {
			return 0, ErrTooManyFields
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) {
			return 0, ErrFieldName
		}
		v := line[colon+1 : end-1]
		for _, c := range v {
			if !fieldValueChars[c] {
				if c == '\r' {
					return 0, ErrBareCR
				}
				return 0, ErrFieldValue
			}
		}
		h.Fields = append(h.Fields, Field{Name: line[:colon], Value: trimOWS(v), Line: line})
		if err := field(&h.Fields[len(h.Fields)-1]); err != nil {
			return 0, err
		}
	}
}

// common handles the fields both kinds of head give a meaning to.
func (h *head) common(f *Field) *Error {
	switch {
	case EqualFold(f.Name, "content-length"):
		if h.ContentLength >= 0 {
			return ErrContentLength
		}
		n, ok := parseLength(f.Value)
		if !ok {
			return ErrContentLength
		}
		h.ContentLength = n
	case EqualFold(f.Name, "transfer-encoding"):
		h.te++
		if h.te > 1 || !EqualFold(f.Value, "chunked") {
			return ErrTransferCoding
		}
		h.Chunked = true
	case EqualFold(f.Name, "connection"):
		for v := f.Value; len(v) > 0; {
			var opt []byte
			opt, v, _ = bytes.Cut(v, []byte{','})
			opt = trimOWS(opt)
			switch {
			case len(opt) == 0:
			case EqualFold(opt, "close"):
				h.Close = true
			case EqualFold(opt, "keep-alive"):
				h.KeepAlive = true
			case EqualFold(opt, "upgrade"):
				h.ConnUpgrade = true
				h.Named = append(h.Named, opt)
			case !IsToken(opt):
				return ErrFieldValue
			case len(h.Named) == maxNamed:
				return ErrTooManyNamed
			default:
				h.Named = append(h.Named, opt)
			}
		}
	}
	return nil
}

// parseLength parses a Content-Length value: digits only, no sign, no
// list, at most 18 of them.
func parseLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseVersion parses "HTTP/d.d" and returns major and minor digits.
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// IsToken reports whether b is a non-empty RFC 9110 token.
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII string s,
// ignoring case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

var tokenChars = func() (t [256]bool) {
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

// fieldValueChars: HTAB, SP, visible ASCII and obs-text (RFC 9110 5.5).
var fieldValueChars = func() (t [256]bool) {
	t['\t'] = true
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for c := 0x80; c < 0x100; c++ {
		t[c] = true
	}
	return t
}()
