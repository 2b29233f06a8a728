package httpwire

import "bytes"

// Response is a parsed response head; its slices point into the bytes it
// was parsed from.
type Response struct {
	head
	// Status is the status code; Line the whole status line, CRLF
	// included.
	Status int
	Line   []byte
	// UntilClose: the body runs until the connection closes (no length,
	// and a transfer coding other than chunked, or none).
	UntilClose bool
}

// ParseResponse parses the response head at the start of b into r. It
// returns the head's length, or 0 when b does not hold all of it yet; a
// malformed head, or one over maxHead bytes, is ErrBadResponseHead.
func ParseResponse(b []byte, r *Response, maxHead int) (int, error) {
	r.reset()
	r.Status, r.Line, r.UntilClose = 0, nil, false
	if !mayBeWhole(b) {
		if len(b) > maxHead {
			return 0, ErrBadResponseHead
		}
		return 0, nil
	}
	end, err := lineEnd(b)
	if err != nil {
		return 0, ErrBadResponseHead
	}
	if end < 0 {
		return 0, nil
	}
	r.Line = b[:end+1]
	if !r.statusLine(b[:end-1]) {
		return 0, ErrBadResponseHead
	}
	n, ferr := r.fields(b[end+1:], r.field)
	switch {
	case ferr != nil:
		return 0, ErrBadResponseHead
	case n == 0 && len(b) > maxHead:
		return 0, ErrBadResponseHead
	case n == 0:
		return 0, nil
	}
	r.Len = end + 1 + n
	if r.Len > maxHead {
		return 0, ErrBadResponseHead
	}
	switch {
	case r.te > 0 && r.ContentLength >= 0:
		// RFC 9112 6.3 would have the length ignored; passed on, a
		// client or cache behind might not ignore it.
		return 0, ErrBadResponseHead
	case r.te > 0 && !r.Chunked, r.te == 0 && r.ContentLength < 0:
		r.UntilClose = true
	}
	return r.Len, nil
}

// statusLine parses HTTP/1.x SP 3DIGIT [SP reason].
func (r *Response) statusLine(line []byte) bool {
	if len(line) < 12 || line[8] != ' ' {
		return false
	}
	major, minor, ok := parseVersion(line[:8])
	if !ok || major != 1 || minor > 1 {
		return false
	}
	r.Minor = minor
	code := line[9:12]
	if !isDigit(code[0]) || !isDigit(code[1]) || !isDigit(code[2]) || code[0] == '0' {
		return false
	}
	if len(line) > 12 && line[12] != ' ' {
		return false
	}
	for _, c := range line[12:] {
		if !fieldValueChars[c] {
			return false
		}
	}
	r.Status = int(code[0]-'0')*100 + int(code[1]-'0')*10 + int(code[2]-'0')
	return true
}

// field takes Transfer-Encoding as a list (a response may be compressed
// and chunked: chunked must then come last) and everything else as the
// request does.
func (r *Response) field(f *Field) *Error {
	if EqualFold(f.Name, "transfer-encoding") {
		r.te++
		last := f.Value
		if i := bytes.LastIndexByte(last, ','); i >= 0 {
			last = trimOWS(last[i+1:])
		}
		r.Chunked = EqualFold(last, "chunked")
		return nil
	}
	return r.common(f)
}

// Interim reports a 1xx response, which another response follows.
func (r *Response) Interim() bool { return r.Status < 200 }
