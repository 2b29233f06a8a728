package httpwire

import "bytes"

// Request is a parsed request head. Its slices point into the bytes it
// was parsed from, which must outlive it.
type Request struct {
	head
	// Start is where the request line begins: after the empty lines a
	// client may send between requests (RFC 9112 2.2).
	Start int
	// Method, Target and Version are the request line's parts; Line is
	// the whole of it, CRLF included.
	Method, Target, Version, Line []byte
	// Host is the Host field's value (nil without one, which only
	// HTTP/1.0 allows).
	Host []byte
	// Expect100: the client waits for 100 Continue before its body.
	Expect100 bool
	// WebSocket: a WebSocket handshake (Upgrade names websocket, and
	// Connection upgrade), the one protocol switch a proxy may tunnel.
	WebSocket bool
	hosts     int
}

// maxBlankLines bounds the empty lines skipped before a request line.
const maxBlankLines = 4

// ParseRequest parses the request head at the start of b into r. It
// returns the head's length, or 0 when b does not hold all of it yet; a
// head that outgrows maxHead bytes is refused (414 when the request line
// alone does, else 431), as is anything malformed.
func ParseRequest(b []byte, r *Request, maxHead int) (int, error) {
	r.reset()
	r.Start, r.Method, r.Target, r.Version, r.Line, r.Host = 0, nil, nil, nil, nil, nil
	r.Expect100, r.WebSocket, r.hosts = false, false, 0
	if !mayBeWhole(b) && len(b) <= maxHead {
		return 0, nil // a head trickled in is not parsed again per byte
	}
	n, err := r.parse(b)
	switch {
	case err != nil:
		return 0, err
	case n > maxHead:
		return 0, r.tooLarge(b, maxHead)
	case n == 0 && len(b) > maxHead:
		return 0, r.tooLarge(b, maxHead)
	}
	return n, nil
}

// tooLarge tells a request line too long from a head too large.
func (r *Request) tooLarge(b []byte, maxHead int) error {
	if bytes.IndexByte(b[:min(len(b), maxHead)], '\n') < 0 {
		return ErrLineTooLong
	}
	return ErrHeadTooLarge
}

func (r *Request) parse(b []byte) (int, error) {
	for blank := 0; len(b) >= r.Start+2 && b[r.Start] == '\r' && b[r.Start+1] == '\n'; blank++ {
		if blank == maxBlankLines {
			return 0, ErrRequestLine
		}
		r.Start += 2
	}
	rest := b[r.Start:]
	end, lerr := lineEnd(rest)
	if lerr != nil {
		return 0, lerr
	}
	if end < 0 {
		return 0, nil
	}
	r.Line = rest[:end+1]
	if err := r.requestLine(rest[:end-1]); err != nil {
		return 0, err
	}
	n, ferr := r.fields(rest[end+1:], r.field)
	if ferr != nil {
		return 0, ferr
	}
	if n == 0 {
		return 0, nil
	}
	r.Len = r.Start + end + 1 + n
	if err := r.check(); err != nil {
		return 0, err
	}
	return r.Len, nil
}

// requestLine parses method SP target SP version.
func (r *Request) requestLine(line []byte) error {
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || !IsToken(line[:sp]) {
		return ErrRequestLine
	}
	r.Method = line[:sp]
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 {
		return ErrRequestLine
	}
	r.Target, r.Version = rest[:sp], rest[sp+1:]
	major, minor, ok := parseVersion(r.Version)
	switch {
	case !ok:
		return ErrRequestLine
	case string(r.Method) == "PRI" && string(r.Target) == "*":
		return ErrHTTP2Preface
	case !validTarget(r.Method, r.Target):
		return ErrRequestLine
	case major != 1 || minor > 1:
		return ErrVersion
	}
	r.Minor = minor
	return nil
}

// validTarget accepts the request-target forms a server of origin takes
// (RFC 9112 3.2): a path, a URI with a scheme, or * for OPTIONS; CONNECT's
// authority form is not one (catherd is not a forward proxy). No
// whitespace or control character, and no '#': a fragment is never part
// of a request-target, and servers split on it differently (Go's URL
// parser refuses one in a host, Tomcat answers 400).
func validTarget(method, target []byte) bool {
	for _, c := range target {
		if c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	switch {
	case target[0] == '/':
		return validPath(target)
	case len(target) == 1 && target[0] == '*':
		return string(method) == "OPTIONS"
	}
	scheme, rest, ok := bytes.Cut(target, []byte("://"))
	if !ok || len(scheme) == 0 || len(rest) == 0 || !isAlpha(scheme[0]) {
		return false
	}
	for _, c := range scheme {
		if !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	end := bytes.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	return validAuthority(rest[:end]) && validPath(rest[end:])
}

// validPath accepts a path (and its query) whose percent signs in the
// path each start an escape (%XX): a server that decodes the path refuses
// a broken one (Tomcat, Go), or might decode it differently from another.
func validPath(p []byte) bool {
	if q := bytes.IndexByte(p, '?'); q >= 0 {
		p = p[:q]
	}
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])) {
			return false
		}
	}
	return true
}

// validAuthority accepts host[:port] as a server of origin reads it: the
// host a name of unreserved characters and sub-delimiters, without
// escapes, or an IP literal in brackets; the port digits. No userinfo
// (RFC 9110 4.2.4 deprecates it in http URIs).
func validAuthority(a []byte) bool {
	host, port := a, []byte(nil)
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return false
		}
		for _, c := range a[1:end] {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
		host, port = nil, a[end+1:]
		if len(port) > 0 {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
		}
	} else if i := bytes.LastIndexByte(a, ':'); i >= 0 {
		host, port = a[:i], a[i+1:]
	}
	for _, c := range host {
		if !isAlpha(c) && !isDigit(c) && !bytes.ContainsRune([]byte("-._~!$&'()*+,;="), rune(c)) {
			return false
		}
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool { return isDigit(c) || 'a' <= c|0x20 && c|0x20 <= 'f' }

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func (r *Request) field(f *Field) *Error {
	switch {
	case EqualFold(f.Name, "host"):
		r.hosts++
		r.Host = f.Value
	case EqualFold(f.Name, "expect"):
		r.Expect100 = EqualFold(f.Value, "100-continue")
	case EqualFold(f.Name, "upgrade"):
		for v := f.Value; len(v) > 0; {
			var proto []byte
			proto, v, _ = bytes.Cut(v, []byte{','})
			name, _, _ := bytes.Cut(trimOWS(proto), []byte{'/'})
			switch {
			case EqualFold(name, "h2c"):
				return ErrH2C
			case EqualFold(name, "websocket"):
				r.WebSocket = true
			}
		}
	}
	return r.common(f)
}

// check applies the rules that need the whole head.
func (r *Request) check() error {
	switch {
	case r.hosts > 1:
		return ErrTwoHosts
	case r.hosts == 0 && r.Minor == 1:
		return ErrNoHost
	case r.Chunked && r.ContentLength >= 0:
		return ErrCLAndTE
	case r.Chunked && r.Minor == 0:
		return ErrTEInHTTP10
	}
	for _, n := range r.Named {
		if EqualFold(n, "content-length") || EqualFold(n, "transfer-encoding") || EqualFold(n, "host") || EqualFold(n, "cookie") {
			return ErrConnectionFraming
		}
	}
	r.WebSocket = r.WebSocket && r.ConnUpgrade
	return nil
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// IsHead reports a HEAD request, whose response has no body.
func (r *Request) IsHead() bool { return string(r.Method) == "HEAD" }

// Idempotent reports a method that RFC 9110 9.2.2 lets a client (or a
// proxy) send again after a failure.
func (r *Request) Idempotent() bool {
	switch string(r.Method) {
	case "GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE":
		return true
	}
	return false
}
