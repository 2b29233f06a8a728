package httpwire

// ChunkScanner follows a chunked body (RFC 9112 7.1) through the bytes
// that carry it, without copying them: Scan says how many bytes at the
// front of a buffer are framing and how many are data, so that a proxy
// can forward the body as it came, or pass on only the data.
//
// It is strict: a chunk's data must end in CRLF exactly, sizes are hex
// digits only, extensions and trailer fields hold no control characters,
// and lines are bounded. Broken framing is an error, never re-framed into
// something a server behind could read another way.
type ChunkScanner struct {
	state    chunkState
	left     int64 // data bytes left in the current chunk
	size     int64
	digits   int
	lineLen  int // bytes of the current size or trailer line
	trailers int // trailer bytes so far
}

type chunkState uint8

const (
	csSize         chunkState = iota // hex digits of a chunk size
	csSizeWS                         // whitespace after the size, before ';' or CR
	csExt                            // a chunk extension, up to CR
	csSizeLF                         // the LF after a size line's CR
	csData                           // chunk data
	csDataCR                         // the CR after chunk data
	csDataLF                         // the LF after chunk data
	csTrailerStart                   // the start of a trailer line, or of the final CRLF
	csTrailerName                    // a trailer field's name, up to ':'
	csTrailerLine                    // a trailer field's value, up to CR
	csTrailerLF                      // the LF of a trailer line
	csEndLF                          // the LF of the final CRLF
	csDone
)

// Bounds: a size line (extensions included) and all trailer fields.
const (
	maxSizeLine   = 1024
	maxTrailers   = 8 << 10
	maxSizeDigits = 15 // 2^60 bytes: no overflow
)

// ErrChunk is malformed chunked framing.
var ErrChunk = bad("malformed chunked body")

// Done reports whether the body's end (the final CRLF) has been scanned.
func (s *ChunkScanner) Done() bool { return s.state == csDone }

// Reset makes s ready for a new body.
func (s *ChunkScanner) Reset() { *s = ChunkScanner{} }

// Scan consumes the longest run at the front of b that is all framing or
// all chunk data, and says which (data). It returns n == 0 only when b is
// empty or the body is done.
func (s *ChunkScanner) Scan(b []byte) (n int, data bool, err error) {
	if s.state == csData && len(b) > 0 {
		n := int(min(int64(len(b)), s.left))
		s.left -= int64(n)
		if s.left == 0 {
			s.state = csDataCR
		}
		return n, true, nil
	}
	for i, c := range b {
		if s.state == csData || s.state == csDone {
			return i, false, nil
		}
		if err := s.framing(c); err != nil {
			return i, false, err
		}
		if s.state == csDone {
			return i + 1, false, nil
		}
	}
	return len(b), false, nil
}

// Body scans b and returns how many of its bytes belong to the body (all
// of them until the body ends), for a proxy that forwards it as it came.
func (s *ChunkScanner) Body(b []byte) (int, error) {
	at := 0
	for at < len(b) && !s.Done() {
		n, _, err := s.Scan(b[at:])
		if err != nil {
			return at + n, err
		}
		at += n
	}
	return at, nil
}

func (s *ChunkScanner) framing(c byte) *Error {
	switch s.state {
	case csSize:
		if d, ok := hexDigit(c); ok {
			if s.digits++; s.digits > maxSizeDigits {
				return ErrChunk
			}
			s.size = s.size<<4 | int64(d)
			break
		}
		if s.digits == 0 {
			return ErrChunk
		}
		switch c {
		case ' ', '\t':
			s.state = csSizeWS
		case ';':
			s.state = csExt
		case '\r':
			s.state = csSizeLF
		default:
			return ErrChunk
		}
	case csSizeWS:
		switch c {
		case ' ', '\t':
		case ';':
			s.state = csExt
		case '\r':
			s.state = csSizeLF
		default:
			return ErrChunk
		}
	case csExt:
		if c == '\r' {
			s.state = csSizeLF
		} else if !fieldValueChars[c] {
			return ErrChunk
		}
	case csSizeLF:
		if c != '\n' {
			return ErrChunk
		}
		if s.size == 0 {
			s.state = csTrailerStart
		} else {
			s.state, s.left = csData, s.size
		}
		s.size, s.digits, s.lineLen = 0, 0, 0
		return nil
	case csDataCR:
		if c != '\r' {
			return ErrChunk
		}
		s.state = csDataLF
	case csDataLF:
		if c != '\n' {
			return ErrChunk
		}
		s.state = csSize
		return nil
	case csTrailerStart:
		switch {
		case c == '\r':
			s.state = csEndLF
		case tokenChars[c]:
			s.state = csTrailerName
		default:
			return ErrChunk // a trailer line starts with a field name
		}
	case csTrailerName:
		if c == ':' {
			s.state = csTrailerLine
		} else if !tokenChars[c] {
			return ErrChunk
		}
	case csTrailerLine:
		if c == '\r' {
			s.state = csTrailerLF
		} else if !fieldValueChars[c] {
			return ErrChunk
		}
	case csTrailerLF:
		if c != '\n' {
			return ErrChunk
		}
		s.state = csTrailerStart
	case csEndLF:
		if c != '\n' {
			return ErrChunk
		}
		s.state = csDone
		return nil
	}
	if s.state <= csSizeLF {
		if s.lineLen++; s.lineLen > maxSizeLine {
			return ErrChunk
		}
	} else if s.state >= csTrailerStart {
		if s.trailers++; s.trailers > maxTrailers {
			return ErrChunk
		}
	}
	return nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
