package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"

	"golang.org/x/net/http2/hpack"
)

// frameGuard reads a client's HTTP/2 frames before net/http's HTTP/2
// server does, for what that server gets wrong and no setting of it
// changes (the first two fail h2spec 6.5.3/1 and 8.1.2.2):
//
//   - a SETTINGS frame that names a setting more than once: net/http hangs
//     up, RFC 9113 section 6.5.3 has the values processed in order. The
//     guard keeps one value per setting, the one that order leaves: the
//     last, or the first the server must refuse.
//   - connection-specific fields and te other than "trailers" (RFC 9113
//     section 8.2.2): net/http answers 400 itself, they call for a stream
//     error. The guard appends a field the server refuses with one
//     (RST_STREAM PROTOCOL_ERROR): its own check of header blocks.
//   - a stream reset as it opens (HEADERS, then RST_STREAM for it, among
//     the bytes already received): net/http starts the stream's handler
//     before it reads the reset, and the handler would have forwarded the
//     request before it heard of it (the rapid-reset attack,
//     CVE-2023-44487). The guard drops the RST_STREAM and has the server
//     refuse the stream, so no handler runs for it.
//
// It decodes every header block with its own HPACK decoder, whose dynamic
// table follows the server's because both see the same blocks; the fields
// it adds are literals never indexed, which leave that table alone. Frames
// pass unchanged otherwise, DATA without being copied. When it cannot
// follow the connection (a frame over the size limit, a block that does
// not decode, frames out of order) it hands the server that frame, which
// the server answers with a connection error, and then nothing more.
type frameGuard struct {
	net.Conn // the client's TLS connection, but not its ConnectionState: see startHTTP2
	tls      tls.ConnectionState
	dropped  func() // counts a stream reset as it opened

	hdr   [frameHeaderLen]byte // the frame being handled
	in    *guardBuf            // bytes received and not yet handled: in[r:w]; nil when none
	r, w  int
	out   []byte    // bytes ready for the server
	outB  *guardBuf // what out points into, if pooled
	pass  int       // payload bytes of the current frame still to pass unread
	start bool      // the client preface has been read
	lost  bool      // the guard cannot follow the connection any more

	hdec      *hpack.Decoder
	block     headerBlock
	maxStream uint32 // the highest stream a HEADERS frame has opened
}

// headerBlock is what the guard knows of the header block being decoded.
type headerBlock struct {
	stream    uint32
	opens     bool // the block opens its stream (else: trailers)
	open      bool // a HEADERS frame without END_HEADERS has been read
	forbidden bool // a field HTTP/2 forbids in a request
	te        int  // te fields seen
}

// HTTP/2 framing (RFC 9113 section 4) and what catherd's server advertises.
const (
	frameHeaderLen = 9
	// maxFrameSize is the SETTINGS_MAX_FRAME_SIZE catherd advertises: the
	// protocol's default. net/http's 1 MiB lets a single HEADERS frame
	// carry more than the header limit (h2spec 4.2/3).
	maxFrameSize = 16384
	// headerTableSize is the HPACK dynamic table size the server decodes
	// with (SETTINGS_HEADER_TABLE_SIZE); the guard's decoder must use the
	// same, so that both tables hold the same entries.
	headerTableSize = 4096

	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	frameContinuation = 0x9

	flagAck        = 0x1 // SETTINGS
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// guardBuf holds a frame with room to read what follows it; guards take
// one while they handle a frame and give it back when it is passed on, so
// that an idle connection holds none.
type guardBuf [2 * (frameHeaderLen + maxFrameSize)]byte

var guardBufs = sync.Pool{New: func() any { return new(guardBuf) }}

// errGuardPreface: the connection does not start with HTTP/2's preface.
var errGuardPreface = errors.New("HTTP/2 client preface missing")

// newFrameGuard guards the HTTP/2 connection c, a TLS connection in this
// state. maxHeaderBytes is the server's header limit: the decoder accepts
// strings twice as long, so it never refuses a block the server would
// accept (the server refuses a string longer than its limit). dropped
// counts a stream reset as it opened.
func newFrameGuard(c net.Conn, state tls.ConnectionState, maxHeaderBytes int, dropped func()) *frameGuard {
	g := &frameGuard{Conn: c, tls: state, dropped: dropped}
	g.hdec = hpack.NewDecoder(headerTableSize, g.field)
	g.hdec.SetMaxStringLength(2*maxHeaderBytes + 1024)
	return g
}

// Read gives the server the client's bytes, one frame at a time, as the
// guard lets them through.
func (g *frameGuard) Read(p []byte) (int, error) {
	for len(g.out) == 0 && g.pass == 0 {
		if g.outB != nil {
			guardBufs.Put(g.outB)
			g.outB = nil
		}
		if err := g.next(); err != nil {
			return 0, err
		}
	}
	if len(g.out) > 0 {
		n := copy(p, g.out)
		g.out = g.out[n:]
		return n, nil
	}
	if len(p) > g.pass {
		p = p[:g.pass]
	}
	var n int
	var err error
	if g.r < g.w {
		n = copy(p, g.in[g.r:g.w])
		g.r += n
	} else {
		n, err = g.Conn.Read(p)
	}
	g.pass -= n
	return n, err
}

// next reads the next frame (or the preface) and sets out, and pass for a
// payload that goes through unread.
func (g *frameGuard) next() error {
	if g.lost {
		// The server has been handed what it refuses with a connection
		// error: it sends GOAWAY and closes. Until then nothing more
		// reaches it.
		_, err := io.Copy(io.Discard, g.Conn)
		if err == nil {
			err = io.EOF
		}
		return err
	}
	if !g.start {
		g.start = true
		p, err := g.payload(len(clientPreface))
		if err != nil {
			return err
		}
		if string(p) != clientPreface {
			return errGuardPreface
		}
		g.out = []byte(clientPreface)
		return nil
	}
	if err := g.readHeader(); err != nil {
		return err
	}
	length := int(g.hdr[0])<<16 | int(g.hdr[1])<<8 | int(g.hdr[2])
	typ, flags := g.hdr[3], g.hdr[4]
	stream := binary.BigEndian.Uint32(g.hdr[5:]) & (1<<31 - 1)
	switch {
	case length > maxFrameSize:
		// The server answers FRAME_SIZE_ERROR after reading the header.
		g.lost = true
		g.out = g.hdr[:]
		return nil
	case g.block.open && typ != frameContinuation:
		// A block not finished: the server answers PROTOCOL_ERROR.
		return g.passLost(length)
	case typ == frameSettings && flags&flagAck == 0 && length%6 == 0:
		p, err := g.payload(length)
		if err != nil {
			return err
		}
		g.emit(g.hdr[:], dedupSettings(p), nil)
		return nil
	case typ == frameHeaders || typ == frameContinuation:
		p, err := g.payload(length)
		if err != nil {
			return err
		}
		g.headerFrame(typ, flags, stream, p)
		return nil
	case typ == framePushPromise:
		// Clients may not push: the server answers PROTOCOL_ERROR,
		// without decoding the block the frame carries.
		return g.passLost(length)
	}
	g.out = g.hdr[:]
	g.pass = length
	return nil
}

// passLost passes the current frame, of which only the header has been
// read, and gives up on the connection.
func (g *frameGuard) passLost(length int) error {
	p, err := g.payload(length)
	if err != nil {
		return err
	}
	g.lost = true
	g.emit(g.hdr[:], p, nil)
	return nil
}

// headerFrame decodes the block fragment of a HEADERS or CONTINUATION
// frame and passes the frame on, with a field the server refuses after
// the block's last fragment when the request is to be refused.
func (g *frameGuard) headerFrame(typ, flags byte, stream uint32, payload []byte) {
	frag := payload
	if typ == frameHeaders {
		var ok bool
		if frag, ok = headersFragment(flags, payload); !ok || stream == 0 {
			g.lost = true
		}
		g.block = headerBlock{stream: stream, open: true, opens: stream > g.maxStream}
		g.maxStream = max(g.maxStream, stream)
	} else if !g.block.open || stream != g.block.stream {
		g.lost = true
	}
	if !g.lost {
		if _, err := g.hdec.Write(frag); err != nil {
			g.lost = true
		}
	}
	end := flags&flagEndHeaders != 0
	if end && !g.lost {
		g.block.open = false
		if err := g.hdec.Close(); err != nil {
			g.lost = true
		}
	}
	if g.lost || !end {
		g.emit(g.hdr[:], payload, nil)
		return
	}
	refuse := g.block.forbidden
	if g.block.opens && g.resetFollows(stream) {
		// The reset is dropped either way: the server, which refuses
		// the stream, would take a reset of it for a protocol error.
		if !refuse {
			g.dropped()
		}
		refuse = true
	}
	if !refuse {
		g.emit(g.hdr[:], payload, nil)
		return
	}
	g.hdr[4] &^= flagEndHeaders
	var tail [frameHeaderLen]byte
	putFrameHeader(tail[:], len(refusal), frameContinuation, flagEndHeaders, stream)
	g.emit(g.hdr[:], payload, append(tail[:], refusal...))
}

// field checks one field of the header block being decoded.
func (g *frameGuard) field(f hpack.HeaderField) {
	if f.Name == "te" {
		g.block.te++
	}
	if connectionSpecific(f) || g.block.te > 1 {
		g.block.forbidden = true
	}
}

// connectionSpecific reports the fields RFC 9113 section 8.2.2 makes a
// request malformed with: those of HTTP/1.1's connection management, and
// te with anything but "trailers".
func connectionSpecific(f hpack.HeaderField) bool {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return f.Value != "trailers"
	}
	return false
}

// refusal is a header block fragment with one field the server refuses
// with a stream error (a name that is not a token) and that changes no
// HPACK table (a literal never indexed).
var refusal = func() []byte {
	var b bytes.Buffer
	hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: "refused by catherd", Sensitive: true})
	return b.Bytes()
}()

// resetFollows reports whether the bytes already received after a header
// block begin with an RST_STREAM frame for its stream, and if so drops it:
// the server, which refuses the stream, never hears of that stream again.
func (g *frameGuard) resetFollows(stream uint32) bool {
	const rstLen = frameHeaderLen + 4
	if g.w-g.r < rstLen {
		return false
	}
	h := g.in[g.r : g.r+frameHeaderLen]
	if h[0] != 0 || h[1] != 0 || h[2] != 4 || h[3] != frameRSTStream ||
		binary.BigEndian.Uint32(h[5:])&(1<<31-1) != stream {
		return false
	}
	g.r += rstLen
	return true
}

// headersFragment returns the header block fragment of a HEADERS frame's
// payload, without padding and priority; false when they do not fit.
func headersFragment(flags byte, p []byte) ([]byte, bool) {
	pad := 0
	if flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// emit sets out to a frame, whose header is h and payload p (its length
// set from p), followed by extra.
func (g *frameGuard) emit(h, p, extra []byte) {
	g.outB = guardBufs.Get().(*guardBuf)
	out := append(g.outB[:0], h...)
	putFrameHeader(out, len(p), h[3], h[4], binary.BigEndian.Uint32(h[5:]))
	out = append(out, p...)
	g.out = append(out, extra...)
}

func putFrameHeader(b []byte, length int, typ, flags byte, stream uint32) {
	b[0], b[1], b[2], b[3], b[4] = byte(length>>16), byte(length>>8), byte(length), typ, flags
	binary.BigEndian.PutUint32(b[5:], stream)
}

// readHeader reads a frame header into hdr. With nothing buffered it reads
// straight from the connection and gives the buffer back, so that a guard
// waiting for a client holds none.
func (g *frameGuard) readHeader() error {
	n := copy(g.hdr[:], g.buffered())
	g.r += n
	if g.r == g.w && g.in != nil {
		guardBufs.Put(g.in)
		g.in, g.r, g.w = nil, 0, 0
	}
	_, err := io.ReadFull(g.Conn, g.hdr[n:])
	return err
}

// payload returns the next n bytes received, reading as much as the
// connection has ready, so that what follows them is seen too (see
// resetFollows). The bytes are valid until the next call.
func (g *frameGuard) payload(n int) ([]byte, error) {
	if g.in == nil {
		g.in = guardBufs.Get().(*guardBuf)
	}
	if g.r+n > len(g.in) {
		g.w = copy(g.in[:], g.in[g.r:g.w])
		g.r = 0
	}
	for g.w-g.r < n {
		m, err := g.Conn.Read(g.in[g.w:])
		g.w += m
		if err != nil && g.w-g.r < n {
			return nil, err
		}
	}
	g.r += n
	return g.in[g.r-n : g.r], nil
}

func (g *frameGuard) buffered() []byte {
	if g.in == nil {
		return nil
	}
	return g.in[g.r:g.w]
}
