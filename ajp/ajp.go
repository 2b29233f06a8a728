// Package ajp implements the Apache JServ Protocol 1.3 as spoken by Tomcat's
// AJP connector: the packet framing, the proxy's FORWARD_REQUEST and body
// packets, and the container's SEND_HEADERS, SEND_BODY_CHUNK, END_RESPONSE,
// GET_BODY_CHUNK and CPONG messages.
//
// Both directions are implemented, so the package can serve as a proxy's
// client codec and as the codec of a test container (ajptest). Encoders
// append to a caller's buffer and decoders return sub-slices of the packet
// they were given (or of the package's name tables, which callers must not
// modify): the request path allocates nothing. Every decoder checks
// every length against the bytes it holds; malformed input is an error,
// never a panic.
package ajp

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Packet sizes. Both ends must agree on the size (Tomcat's packetSize,
// mod_jk's max_packet_size); 8192 is the default of both.
const (
	DefaultPacketSize = 8192
	MinPacketSize     = 8192
	MaxPacketSize     = 65536
	headerLen         = 4 // magic (2) + payload length (2)
)

// Packet magics: proxy -> container packets start 0x1234, container ->
// proxy packets start "AB".
var (
	magicToContainer   = [2]byte{0x12, 0x34}
	magicFromContainer = [2]byte{'A', 'B'}
)

// Message types (the first payload byte).
const (
	TypeForwardRequest byte = 2
	TypeSendBodyChunk  byte = 3
	TypeSendHeaders    byte = 4
	TypeEndResponse    byte = 5
	TypeGetBodyChunk   byte = 6
	TypeCPong          byte = 9
	TypeCPing          byte = 10
)

// Request attribute codes in FORWARD_REQUEST.
const (
	attrRemoteUser   byte = 0x03
	attrAuthType     byte = 0x04
	attrQueryString  byte = 0x05
	attrRoute        byte = 0x06
	attrSSLCert      byte = 0x07
	attrSSLCipher    byte = 0x08
	attrSSLSession   byte = 0x09
	attrReqAttribute byte = 0x0A
	attrSSLKeySize   byte = 0x0B
	attrSecret       byte = 0x0C
	attrStoredMethod byte = 0x0D
	attrTerminator   byte = 0xFF
)

// methodStored is the method code for methods without a code of their own;
// the name then travels in the stored-method attribute.
const methodStored byte = 0xFF

// methods maps HTTP methods to their AJP codes (index = code).
var methods = [...]string{
	1: "OPTIONS", 2: "GET", 3: "HEAD", 4: "POST", 5: "PUT", 6: "DELETE", 7: "TRACE",
	8: "PROPFIND", 9: "PROPPATCH", 10: "MKCOL", 11: "COPY", 12: "MOVE", 13: "LOCK",
	14: "UNLOCK", 15: "ACL", 16: "REPORT", 17: "VERSION-CONTROL", 18: "CHECKIN",
	19: "CHECKOUT", 20: "UNCHECKOUT", 21: "SEARCH", 22: "MKWORKSPACE", 23: "UPDATE",
	24: "LABEL", 25: "MERGE", 26: "BASELINE-CONTROL", 27: "MKACTIVITY",
}

// requestHeaders are the request header names sent as 0xA0nn codes
// (index = nn); matched case-insensitively.
var requestHeaders = [...]string{
	1: "accept", 2: "accept-charset", 3: "accept-encoding", 4: "accept-language",
	5: "authorization", 6: "connection", 7: "content-type", 8: "content-length",
	9: "cookie", 10: "cookie2", 11: "host", 12: "pragma", 13: "referer", 14: "user-agent",
}

// responseHeaders are the response header names sent as 0xA0nn codes.
var responseHeaders = [...]string{
	1: "Content-Type", 2: "Content-Language", 3: "Content-Length", 4: "Date",
	5: "Last-Modified", 6: "Location", 7: "Set-Cookie", 8: "Set-Cookie2",
	9: "Servlet-Engine", 10: "Status", 11: "WWW-Authenticate",
}

// Decoders hand out coded names and methods from these byte-slice copies
// of the tables above, shared by every decode, rather than converting a
// string per message. Their capacity is their length, so that appending to
// one copies it.
var (
	methodNames         = byteTable(methods[:])
	requestHeaderNames  = byteTable(requestHeaders[:])
	responseHeaderNames = byteTable(responseHeaders[:])
)

func byteTable(names []string) [][]byte {
	t := make([][]byte, len(names))
	for i, name := range names {
		if name != "" {
			t[i] = []byte(name)[:len(name):len(name)]
		}
	}
	return t
}

// codedPrefix marks a coded header name: 0xA0 then the code byte. A plain
// name is a string whose 2-byte length is below 0xA000.
const codedPrefix = 0xA0

// Errors. Decoding errors wrap ErrMalformed so callers can count them as
// protocol errors; ErrTooLarge means a message does not fit the packet size.
var (
	ErrMalformed = errors.New("ajp: malformed packet")
	ErrTooLarge  = errors.New("ajp: message does not fit the packet size")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// beginPacket appends a packet header with a zero length, to be fixed by
// endPacket once the payload is known.
func beginPacket(dst []byte, magic [2]byte) ([]byte, int) {
	return append(dst, magic[0], magic[1], 0, 0), len(dst)
}

// endPacket fills in the payload length of the packet started at start.
func endPacket(dst []byte, start, packetSize int) ([]byte, error) {
	n := len(dst) - start - headerLen
	if n+headerLen > packetSize {
		return dst[:start], fmt.Errorf("%w: %d bytes, packet size %d", ErrTooLarge, n+headerLen, packetSize)
	}
	binary.BigEndian.PutUint16(dst[start+2:], uint16(n))
	return dst, nil
}

func appendUint16(dst []byte, v int) []byte { return binary.BigEndian.AppendUint16(dst, uint16(v)) }

func appendBool(dst []byte, v bool) []byte {
	if v {
		return append(dst, 1)
	}
	return append(dst, 0)
}

// appendString appends an AJP string: 2-byte length, bytes, NUL.
func appendString[S string | []byte](dst []byte, s S) []byte {
	dst = appendUint16(dst, len(s))
	dst = append(dst, s...)
	return append(dst, 0)
}

// decoder reads AJP primitives from one packet's payload.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = malformed("truncated %s", what)
	}
	d.b = nil
}

func (d *decoder) byte(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uint16(what string) int {
	if len(d.b) < 2 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return int(v)
}

// string reads an AJP string; a length of 0xFFFF is the null string (nil).
func (d *decoder) string(what string) []byte {
	n := d.uint16(what)
	if d.err != nil || n == 0xFFFF {
		return nil
	}
	return d.stringBody(n, what)
}

// stringBody reads n bytes and the NUL after them.
func (d *decoder) stringBody(n int, what string) []byte {
	if len(d.b) < n+1 {
		d.fail(what)
		return nil
	}
	if d.b[n] != 0 {
		if d.err == nil {
			d.err = malformed("%s not NUL-terminated", what)
		}
		d.b = nil
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n+1:]
	return s
}

// packetLen checks a packet header against the expected magic and the
// packet size, and returns the payload length.
func packetLen(h []byte, magic [2]byte, max int) (int, error) {
	if h[0] != magic[0] || h[1] != magic[1] {
		return 0, malformed("bad magic %#02x%02x", h[0], h[1])
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if n+headerLen > max {
		return 0, malformed("length %d past packet size %d", n, max)
	}
	return n, nil
}

// PacketReader reads whole packets from a connection without copying them.
type PacketReader struct {
	br    *bufio.Reader
	magic [2]byte
	max   int
}

// NewContainerReader reads the packets a container sends (magic "AB").
func NewContainerReader(r io.Reader, packetSize int) *PacketReader {
	return &PacketReader{br: bufio.NewReaderSize(r, packetSize), magic: magicFromContainer, max: packetSize}
}

// NewProxyReader reads the packets a proxy sends (magic 0x1234): the
// container side, for test servers.
func NewProxyReader(r io.Reader, packetSize int) *PacketReader {
	return &PacketReader{br: bufio.NewReaderSize(r, packetSize), magic: magicToContainer, max: packetSize}
}

// Next returns the payload of the next packet. It stays valid until the
// following call. io.EOF means the peer closed between packets; a close
// inside a packet is io.ErrUnexpectedEOF.
func (pr *PacketReader) Next() ([]byte, error) {
	h, err := pr.br.Peek(headerLen)
	if err != nil {
		if err == io.EOF && len(h) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	n, err := packetLen(h, pr.magic, pr.max)
	if err != nil {
		return nil, err
	}
	p, err := pr.br.Peek(headerLen + n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	pr.br.Discard(headerLen + n)
	return p[headerLen:], nil
}

// Buffered reports whether bytes of a next packet were already read: a
// container that sent more than one response must not be reused.
func (pr *PacketReader) Buffered() int { return pr.br.Buffered() }

// nextBuffered reports whether the next packet was read whole already, so
// that Next will return it without reading from the connection.
func (pr *PacketReader) nextBuffered() bool {
	n := pr.br.Buffered()
	if n < headerLen {
		return false
	}
	h, _ := pr.br.Peek(headerLen)
	return n >= headerLen+int(binary.BigEndian.Uint16(h[2:]))
}

// appendHeaders appends a header count and the headers, each name as its
// 0xA0nn code when code() knows it, else as a string.
func appendHeaders(dst []byte, headers []Header, code func([]byte) byte) ([]byte, error) {
	if len(headers) > 0xFFFF {
		return dst, fmt.Errorf("%w: %d headers", ErrTooLarge, len(headers))
	}
	dst = appendUint16(dst, len(headers))
	for _, h := range headers {
		if c := code(h.Name); c != 0 {
			dst = append(dst, codedPrefix, c)
		} else {
			if len(h.Name) > maxPlainNameLen {
				return dst, fmt.Errorf("%w: header name of %d bytes", ErrTooLarge, len(h.Name))
			}
			dst = appendString(dst, h.Name)
		}
		dst = appendString(dst, h.Value)
	}
	return dst, nil
}

// headers reads a header count and the headers, appending them to dst;
// coded names are looked up in names, and point into it.
func (d *decoder) headers(dst []Header, names [][]byte) []Header {
	n := d.uint16("header count")
	for i := 0; i < n && d.err == nil; i++ {
		var h Header
		if len(d.b) > 0 && d.b[0] == codedPrefix {
			d.byte("header code")
			c := d.byte("header code")
			if d.err == nil && (int(c) >= len(names) || names[c] == nil) {
				d.err = malformed("unknown header code %#x", c)
			}
			if d.err != nil {
				break
			}
			h.Name = names[c]
		} else {
			h.Name = d.string("header name")
		}
		h.Value = d.string("header value")
		dst = append(dst, h)
	}
	return dst
}

// SplitContainerPacket returns the payload of the container's packet at
// the start of b, and the packet's length in b; n is 0 while b does not
// hold all of it yet. It lets a caller that reads into buffers of its own
// (an event loop) take packets out of them without a reader.
func SplitContainerPacket(b []byte, packetSize int) (payload []byte, n int, err error) {
	if len(b) < headerLen {
		return nil, 0, nil
	}
	l, err := packetLen(b, magicFromContainer, packetSize)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < headerLen+l {
		return nil, 0, nil
	}
	return b[headerLen : headerLen+l], headerLen + l, nil
}
