package ajp

import (
	"fmt"
	"slices"
)

// Messages a container sends.

// SendHeaders is a decoded SEND_HEADERS message. Header names sent as codes
// come back in their canonical case.
type SendHeaders struct {
	Status  int
	Message []byte
	Headers []Header
}

// ParseSendHeaders decodes a SEND_HEADERS payload (type byte included),
// appending its headers to into.Headers[:0] so that callers can reuse it.
// The result points into payload, and a coded header name into a table
// shared by all decodes: neither may be modified.
func ParseSendHeaders(payload []byte, into *SendHeaders) error {
	d := decoder{b: payload}
	if t := d.byte("type"); d.err == nil && t != TypeSendHeaders {
		return malformed("type %d, want SEND_HEADERS", t)
	}
	into.Status = d.uint16("status")
	into.Message = d.string("status message")
	into.Headers = d.headers(into.Headers[:0], responseHeaderNames)
	if d.err == nil && (into.Status < 100 || into.Status > 999) {
		return malformed("status %d", into.Status)
	}
	return d.err
}

// ParseBodyChunk returns the data of a SEND_BODY_CHUNK payload. Tomcat
// follows the data with a NUL that is not part of it.
func ParseBodyChunk(payload []byte) ([]byte, error) {
	d := decoder{b: payload}
	if t := d.byte("type"); d.err == nil && t != TypeSendBodyChunk {
		return nil, malformed("type %d, want SEND_BODY_CHUNK", t)
	}
	n := d.uint16("chunk length")
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) < n {
		return nil, malformed("chunk of %d bytes in %d", n, len(d.b))
	}
	return d.b[:n:n], nil
}

// ParseEndResponse decodes END_RESPONSE: whether the container keeps the
// connection for another request.
func ParseEndResponse(payload []byte) (reuse bool, err error) {
	d := decoder{b: payload}
	if t := d.byte("type"); d.err == nil && t != TypeEndResponse {
		return false, malformed("type %d, want END_RESPONSE", t)
	}
	return d.byte("reuse flag") == 1, d.err
}

// ParseGetBodyChunk decodes GET_BODY_CHUNK: how many more body bytes the
// container asks for.
func ParseGetBodyChunk(payload []byte) (int, error) {
	d := decoder{b: payload}
	if t := d.byte("type"); d.err == nil && t != TypeGetBodyChunk {
		return 0, malformed("type %d, want GET_BODY_CHUNK", t)
	}
	return d.uint16("requested length"), d.err
}

// AppendSendHeaders appends a SEND_HEADERS packet (container side).
func AppendSendHeaders(dst []byte, status int, message string, headers []Header, packetSize int) ([]byte, error) {
	dst, start := beginPacket(dst, magicFromContainer)
	dst = append(dst, TypeSendHeaders)
	dst = appendUint16(dst, status)
	dst = appendString(dst, message)
	var err error
	if dst, err = appendHeaders(dst, headers, responseHeaderCode); err != nil {
		return dst[:start], err
	}
	return endPacket(dst, start, packetSize)
}

func responseHeaderCode(name []byte) byte {
	for code, h := range responseHeaders {
		if h != "" && len(h) == len(name) && string(name) == h {
			return byte(code)
		}
	}
	return 0
}

// SendChunkOverhead is what a SEND_BODY_CHUNK packet adds to its data: the
// packet header, then type, length and a trailing NUL (4 bytes).
const SendChunkOverhead = headerLen + 4

// MaxSendChunk is the most data one SEND_BODY_CHUNK carries in a packet of
// the given size.
func MaxSendChunk(packetSize int) int { return packetSize - SendChunkOverhead }

// AppendSendBodyChunk appends a SEND_BODY_CHUNK packet (container side).
func AppendSendBodyChunk(dst, data []byte, packetSize int) ([]byte, error) {
	dst, start := beginPacket(dst, magicFromContainer)
	dst = append(dst, TypeSendBodyChunk)
	dst = appendString(dst, data)
	return endPacket(dst, start, packetSize)
}

// AppendEndResponse appends an END_RESPONSE packet (container side).
func AppendEndResponse(dst []byte, reuse bool) []byte {
	dst = append(dst, magicFromContainer[0], magicFromContainer[1], 0, 2, TypeEndResponse)
	return appendBool(dst, reuse)
}

// AppendGetBodyChunk appends a GET_BODY_CHUNK packet (container side).
func AppendGetBodyChunk(dst []byte, n int) []byte {
	dst = append(dst, magicFromContainer[0], magicFromContainer[1], 0, 3, TypeGetBodyChunk)
	return appendUint16(dst, n)
}

// AppendCPong appends a CPONG packet (container side).
func AppendCPong(dst []byte) []byte {
	return append(dst, magicFromContainer[0], magicFromContainer[1], 0, 1, TypeCPong)
}

// Messages a proxy sends besides FORWARD_REQUEST.

// MaxBodyChunk is the most request body one body packet carries in a packet
// of the given size: the 2-byte data length follows the packet header.
func MaxBodyChunk(packetSize int) int { return packetSize - headerLen - 2 }

// AppendBodyChunk appends a request body packet. An empty data slice is the
// empty packet that ends a body of unknown length.
func AppendBodyChunk(dst, data []byte, packetSize int) ([]byte, error) {
	if len(data) > MaxBodyChunk(packetSize) {
		return dst, fmt.Errorf("%w: %d body bytes, packet size %d", ErrTooLarge, len(data), packetSize)
	}
	start := len(dst)
	dst = slices.Grow(dst, bodyHeaderLen+len(data))
	copy(dst[start+bodyHeaderLen:start+bodyHeaderLen+len(data)], data)
	return appendBodyHeader(dst, len(data)), nil
}

// bodyHeaderLen is a body packet's header: magic, packet length, data length.
const bodyHeaderLen = headerLen + 2

// appendBodyHeader completes a body packet whose n data bytes were already
// written past len(dst)+bodyHeaderLen (within cap); n = 0 gives the empty
// packet that ends a body of unknown length.
func appendBodyHeader(dst []byte, n int) []byte {
	if n == 0 {
		return append(dst, magicToContainer[0], magicToContainer[1], 0, 0)
	}
	dst = append(dst, magicToContainer[0], magicToContainer[1])
	dst = appendUint16(dst, n+2)
	dst = appendUint16(dst, n)
	return dst[:len(dst)+n]
}

// ParseBodyPacket returns the data of a request body packet (container
// side); an empty payload is the end of the body.
func ParseBodyPacket(payload []byte) ([]byte, error) {
	if len(payload) == 0 {
		return nil, nil
	}
	d := decoder{b: payload}
	n := d.uint16("body length")
	if d.err != nil {
		return nil, d.err
	}
	if n != len(d.b) {
		return nil, malformed("body length %d in a packet of %d", n, len(d.b))
	}
	return d.b, nil
}

// AppendCPing appends a CPING packet: a container that is alive answers
// CPONG at once, without a servlet being involved.
func AppendCPing(dst []byte) []byte {
	return append(dst, magicToContainer[0], magicToContainer[1], 0, 1, TypeCPing)
}
