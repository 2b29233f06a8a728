package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/httpwire"
)

// ajpTransport speaks AJP/1.3 to a Tomcat connector: the request goes as
// a FORWARD_REQUEST with what mod_jk tells Tomcat (the client's address
// and port, the route, the secret, TLS details), its body in packets the
// container asks for, and the answer comes back in packets that catherd
// turns into an HTTP/1.1 response.
type ajpTransport struct {
	secret      []byte
	packetSize  int
	ping        ajp.PingMode
	pingTimeout time.Duration
	pingIdle    time.Duration
}

func newAJPTransport(o *ajp.ClientOptions) *ajpTransport {
	t := &ajpTransport{secret: []byte(o.Secret), packetSize: o.PacketSize, ping: o.Ping,
		pingTimeout: o.PingTimeout, pingIdle: o.PingIdle}
	if t.packetSize == 0 {
		t.packetSize = ajp.DefaultPacketSize
	}
	if t.pingTimeout <= 0 {
		t.pingTimeout = 2 * time.Second
	}
	if t.pingIdle <= 0 {
		t.pingIdle = 10 * time.Second
	}
	return t
}

// ajpExchange is an exchange's AJP state. Its slices keep their storage
// across the exchanges that reuse it.
type ajpExchange struct {
	headers []ajp.Header
	attrs   [2]ajp.Header
	buf     []byte   // the remote address, route and port the request points to
	pkt     []byte   // a packet being built
	data    []byte   // body data for the next packet
	chunks  [][]byte // answer data going out in one write, in the read buffer
	// want is what the container asked for (GET_BODY_CHUNK) and has not
	// been sent yet; firstOwed: the first body packet, which the
	// container expects unasked when the length is known, is still due.
	want      int
	firstOwed bool
	// heldAt is how far into the held body (as the client sent it) the
	// packets have got; dechunk takes the data out of a chunked body.
	heldAt  int64
	dechunk httpwire.ChunkScanner
	ended   bool // the body's end went to the container
	sh      ajp.SendHeaders
	// head is the client's response head, built but not written yet: it
	// goes out with the first body chunk when one came in the same read
	// (one write instead of two). It points into the loop's scratch, so
	// it never outlives the call that built it.
	head []byte
}

// reset empties the state and returns it with its storage.
func (a *ajpExchange) reset() ajpExchange {
	return ajpExchange{headers: a.headers[:0], buf: a.buf[:0], pkt: a.pkt[:0], data: a.data[:0],
		chunks: a.chunks[:0], sh: ajp.SendHeaders{Headers: a.sh.Headers[:0]}}
}

// cping is the packet that checks a connection: a live container answers
// CPONG at once, without a servlet.
var cping = ajp.AppendCPing(nil)

func (t *ajpTransport) connected(mc *memberConn) {
	if t.ping&ajp.PingConnect == 0 {
		mc.ready()
		return
	}
	t.check(mc)
}

// check sends CPING; checked follows with the answer.
func (t *ajpTransport) check(mc *memberConn) {
	mc.state, mc.since = mcReady, mc.lp.now()
	if err := mc.c.Write(cping); err != nil {
		t.checked(mc, err)
		return
	}
	mc.arm()
}

func (t *ajpTransport) checked(mc *memberConn, err error) {
	if err == nil {
		payload, n, perr := ajp.SplitContainerPacket(mc.pending(), t.packetSize)
		switch {
		case perr != nil:
			err = perr
		case n == 0:
			return // the rest of the answer is on its way
		case len(payload) != 1 || payload[0] != ajp.TypeCPong:
			err = errors.New("answered CPING with something other than CPONG")
		default:
			mc.consume(n)
			mc.ready()
			return
		}
	}
	x := mc.x
	mc.x = nil
	mc.close(err)
	if x != nil {
		// Nothing of the request was sent: it may go elsewhere.
		x.connFailed(mc, &memberError{failConnect, fmt.Errorf("CPING: %w", err)})
	}
}

func (t *ajpTransport) checkTimeout() time.Duration { return t.pingTimeout }

// readSize: a packet from the container is parsed whole, and packet-size
// may exceed the loop's buffers (65536 against 16 KiB).
func (t *ajpTransport) readSize() int { return t.packetSize }

func (t *ajpTransport) needsCheck(mc *memberConn, now int64) bool {
	return t.ping&ajp.PingPrepost != 0 && now-mc.since > int64(t.pingIdle)
}

func (t *ajpTransport) idleCheck() time.Duration {
	if t.ping&ajp.PingInterval != 0 {
		return t.pingIdle
	}
	return 0
}

// idleTimeout pings a connection idle for a ping period (mode I), so that
// a dead one leaves the pool before a request meets it.
func (t *ajpTransport) idleTimeout(mc *memberConn, now int64) bool {
	if t.ping&ajp.PingInterval == 0 || now-mc.since < int64(t.pingIdle) {
		return false
	}
	mc.leavePool()
	t.check(mc)
	return true
}

// sendHead writes the FORWARD_REQUEST and, when the body's length is
// known, the first body packet behind it, as Tomcat expects.
func (t *ajpTransport) sendHead(x *exchange) error {
	a := &x.ajp
	a.want, a.heldAt, a.ended, a.firstOwed = 0, 0, false, x.req.ContentLength > 0
	a.dechunk.Reset()
	fr := t.forwardRequest(x)
	pkt, err := ajp.AppendForwardRequest(a.pkt[:0], &fr, t.packetSize)
	if err != nil {
		if errors.Is(err, ajp.ErrTooLarge) {
			return &errCannotCarry{err}
		}
		return err
	}
	a.pkt = pkt
	if err := x.mc.c.Write(pkt); err != nil {
		return err
	}
	x.mc.busy()
	if a.firstOwed {
		a.want = ajp.MaxBodyChunk(t.packetSize)
		return t.sendBody(x)
	}
	return nil
}

// forwardRequest fills in the request's FORWARD_REQUEST. Its fields point
// into the request and into x.ajp, valid for the exchange. The remote
// address is the TCP peer, even a --trusted-proxy: as over HTTP, where
// the member's peer is catherd, the client behind a proxy is told by the
// X-Forwarded-For chain among the headers (Tomcat's RemoteIpValve reads it
// over AJP too).
func (t *ajpTransport) forwardRequest(x *exchange) ajp.ForwardRequest {
	a, cl := &x.ajp, x.cl
	a.buf = cl.remote.Addr().AppendTo(a.buf[:0])
	addrEnd := len(a.buf)
	a.buf = append(a.buf, x.up.member.Route...)
	routeEnd := len(a.buf)
	a.buf = strconv.AppendUint(a.buf, uint64(cl.remote.Port()), 10)
	fr := ajp.ForwardRequest{
		Method:     x.req.Method,
		Protocol:   x.req.Version,
		RemoteAddr: a.buf[:addrEnd],
		RemoteHost: a.buf[:addrEnd],
		IsSSL:      cl.tls != nil,
		Route:      a.buf[addrEnd:routeEnd],
		Secret:     t.secret,
	}
	fr.URI, fr.QueryString, _ = bytes.Cut(x.req.Target, []byte("?"))
	fr.ServerName, fr.ServerPort = serverNamePort(x.req.Host, cl.tls != nil)
	a.headers = a.headers[:0]
	x.requestEdits(func(f *httpwire.Field) { a.headers = append(a.headers, ajp.Header{Name: f.Name, Value: f.Value}) },
		func(name string, value []byte) {
			a.headers = append(a.headers, ajp.Header{Name: readOnlyBytes(name), Value: value})
		})
	fr.Headers = a.headers
	fr.Attributes = append(a.attrs[:0], ajp.Header{Name: remotePortAttr, Value: a.buf[routeEnd:]})
	if cl.tls != nil {
		// What mod_jk tells Tomcat about the client's TLS connection (the
		// servlet's cipher_suite, key_size and protocol attributes). Go
		// names cipher suites as IANA does, not as OpenSSL does.
		suite := tls.CipherSuiteName(cl.tls.CipherSuite)
		fr.SSLCipher = readOnlyBytes(suite)
		fr.SSLKeySize = cipherKeyBits(suite)
		fr.Attributes = append(fr.Attributes, ajp.Header{Name: sslProtocolAttr, Value: readOnlyBytes(tlsVersionName(cl.tls.Version))})
	}
	return fr
}

// sendBody sends the container the body packet it asked for, once there
// are body bytes to fill it with or the body has ended.
func (t *ajpTransport) sendBody(x *exchange) error {
	a := &x.ajp
	if a.want == 0 || a.ended {
		return nil
	}
	data, err := t.appendData(x, a.data[:0], a.want)
	a.data = data
	if err != nil {
		return err
	}
	last := len(data) == 0
	if last && !t.bodyOver(x) {
		return nil // asked, but nothing has come yet
	}
	if a.pkt, err = ajp.AppendBodyChunk(a.pkt[:0], data, t.packetSize); err != nil {
		return err
	}
	if err := x.mc.c.Write(a.pkt); err != nil {
		return writeFailure(err)
	}
	x.body.sent += int64(len(data))
	a.want, a.firstOwed, a.ended = 0, false, last
	x.mc.busy()
	if !x.body.in {
		x.cl.ResumeRead() // room for more of the body
	}
	return nil
}

// bodyOver reports whether every byte of the body has gone to the
// container (or, answered early, been dropped): the client's all came,
// and packets took what is held. Bytes still in the client's buffer then
// are its next request.
func (t *ajpTransport) bodyOver(x *exchange) bool {
	return x.body.in && x.ajp.heldAt == x.body.heldLen
}

// appendData appends up to n bytes of body data to dst: from the held
// body first, then from what the client sent since, chunk framing taken
// out.
func (t *ajpTransport) appendData(x *exchange, dst []byte, n int) ([]byte, error) {
	a := &x.ajp
	raw := func(b []byte) {
		if !x.req.Chunked {
			dst = append(dst, b...)
			return
		}
		for len(b) > 0 {
			m, data, _ := a.dechunk.Scan(b) // checked as it arrived
			if m == 0 {
				return
			}
			if data {
				dst = append(dst, b[:m]...)
			}
			b = b[m:]
		}
	}
	for a.heldAt < x.body.heldLen && len(dst) < n {
		at := int64(0)
		x.body.heldBytes(func(b []byte) bool {
			if end := at + int64(len(b)); end > a.heldAt {
				piece := b[a.heldAt-at:]
				piece = piece[:min(len(piece), n-len(dst))]
				raw(piece)
				a.heldAt += int64(len(piece))
				return len(dst) < n && a.heldAt < x.body.heldLen
			}
			at += int64(len(b))
			return true
		})
	}
	if len(dst) < n && x.body.sending && !x.body.in {
		cl := x.cl
		piece, err := x.body.take(x, min(cl.w-cl.r, n-len(dst)))
		if err != nil {
			return dst, err
		}
		if len(piece) > 0 {
			x.body.streamed = true
			raw(piece)
		}
	}
	return dst, nil
}

// response reads the container's packets: body requests are answered,
// the head and body go to the client, END_RESPONSE ends the exchange.
func (t *ajpTransport) response(x *exchange, rerr error) {
	rs, mc := &x.resp, x.mc
	for {
		payload, n, err := ajp.SplitContainerPacket(mc.pending(), t.packetSize)
		if (len(payload) == 0 || payload[0] != ajp.TypeSendBodyChunk) && !t.flushHead(x) {
			return
		}
		if err != nil {
			x.memberFailed(&memberError{failProtocol, err})
			return
		}
		if n == 0 {
			if rerr != nil {
				x.memberFailed(readFailure(rerr, rs.received))
			}
			return
		}
		rs.received = true
		if len(payload) == 0 {
			x.memberFailed(&memberError{failProtocol, errors.New("an empty AJP packet")})
			return
		}
		switch payload[0] {
		case ajp.TypeGetBodyChunk:
			want, err := ajp.ParseGetBodyChunk(payload)
			if err != nil {
				x.memberFailed(&memberError{failProtocol, err})
				return
			}
			mc.consume(n)
			x.ajp.want = min(want, ajp.MaxBodyChunk(t.packetSize))
			if err := t.sendBody(x); err != nil {
				x.bodyFailed(err)
				return
			}
		case ajp.TypeSendHeaders:
			if rs.headSent {
				x.memberFailed(&memberError{failProtocol, errors.New("a second SEND_HEADERS")})
				return
			}
			if x.earlyAnswer() {
				return // the head waits in the buffer
			}
			if !t.readHead(x, payload) {
				return
			}
			if t.waitForSmallBody(x, n) {
				if rerr != nil {
					// Cut short before the head went out: the client gets
					// a 502, never an answer that looks whole.
					x.memberFailed(readFailure(rerr, true))
				}
				return // the head waits in the buffer
			}
			t.clientHead(x)
			mc.consume(n)
		case ajp.TypeSendBodyChunk:
			if !rs.headSent {
				x.memberFailed(&memberError{failProtocol, errors.New("a body chunk before the head")})
				return
			}
			// This chunk and the whole ones behind it go out in one
			// write, with the head if it waits.
			a := &x.ajp
			n, _ := t.leadingChunks(mc.pending(), func(data []byte) bool {
				rs.bytes += int64(len(data))
				if rs.out != outNone {
					a.chunks = append(a.chunks, data)
				}
				return len(a.chunks) < maxChunksPerWrite
			})
			if n == 0 { // the whole packet in front did not parse
				_, err := ajp.ParseBodyChunk(payload)
				x.memberFailed(&memberError{failProtocol, fmt.Errorf("a malformed body chunk: %v", err)})
				return
			}
			head := a.head
			a.head = nil
			ok := x.writeData(head, a.chunks)
			clear(a.chunks) // hold no buffer past the write
			a.chunks = a.chunks[:0]
			if !ok {
				return
			}
			mc.consume(n)
			if x.cl.io.Queued() > 0 {
				mc.stall() // until the client takes it
				return
			}
		case ajp.TypeEndResponse:
			reuse, err := ajp.ParseEndResponse(payload)
			if err != nil || !rs.headSent {
				x.memberFailed(&memberError{failProtocol, fmt.Errorf("END_RESPONSE before the head, or malformed: %v", err)})
				return
			}
			mc.consume(n)
			x.finish(reuse && x.ajp.settled())
			return
		default:
			x.memberFailed(&memberError{failProtocol, fmt.Errorf("AJP message type %d in an answer", payload[0])})
			return
		}
	}
}

// flushHead writes the held response head, if there is one.
func (t *ajpTransport) flushHead(x *exchange) bool {
	head := x.ajp.head
	if len(head) == 0 {
		return true
	}
	x.ajp.head = nil
	return x.cl.write(head)
}

// settled reports whether the body exchange with the container ended in
// step: the connection carries no body packet the container did not read.
func (a *ajpExchange) settled() bool { return !a.firstOwed }

// readHead decodes SEND_HEADERS and decides how the client gets the body.
// Running it again on the same packet (the head waited for its body) gives
// the same decision.
func (t *ajpTransport) readHead(x *exchange, payload []byte) bool {
	a := &x.ajp
	if err := ajp.ParseSendHeaders(payload, &a.sh); err != nil {
		x.memberFailed(&memberError{failProtocol, err})
		return false
	}
	length := int64(-1)
	for _, h := range a.sh.Headers {
		if httpwire.EqualFold(h.Name, "content-length") {
			if v, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil && v >= 0 {
				length = v
			}
		}
	}
	x.decide(a.sh.Status, length, false, false, false)
	return true
}

// waitForSmallBody reports whether the data of a body of known length that
// fits in the read buffer is still to come behind the SEND_HEADERS packet
// (headLen bytes) at the start of what was read. The head waits for it, as
// over HTTP: the answer then goes out in one write, not a head and a body
// that Tomcat flushed apart, and an answer cut short is a 502, never one
// that looks whole. Anything but body chunks after the head (END_RESPONSE
// early, GET_BODY_CHUNK, a malformed packet) ends the wait, for response
// to judge.
func (t *ajpTransport) waitForSmallBody(x *exchange, headLen int) bool {
	rs, mc := &x.resp, x.mc
	if rs.out == outNone || rs.left <= 0 || mc.w == len(mc.in.B) {
		return false
	}
	have := int64(0)
	_, more := t.leadingChunks(mc.pending()[headLen:], func(data []byte) bool {
		have += int64(len(data))
		return true
	})
	if !more || have >= rs.left {
		return false
	}
	// What is still to come, in packets as full as they can be, must fit
	// behind what is here. Smaller packets may fill the buffer first: a
	// full buffer ends the wait above.
	left := rs.left - have
	most := int64(ajp.MaxSendChunk(t.packetSize))
	packets := (left + most - 1) / most
	return int64(mc.w-mc.r)+left+packets*ajp.SendChunkOverhead <= int64(len(mc.in.B))
}

// maxChunksPerWrite bounds the body chunks gathered into one write, so
// that its vector stays far below the kernel's IOV_MAX (1024).
const maxChunksPerWrite = 64

// leadingChunks hands f the data of each whole SEND_BODY_CHUNK packet at
// the start of b, in order, while f returns true. It returns the bytes of
// the packets f took, and whether the next packet is still on its way
// (more) rather than of another kind or malformed, which response judges.
func (t *ajpTransport) leadingChunks(b []byte, f func(data []byte) bool) (n int, more bool) {
	for {
		payload, m, err := ajp.SplitContainerPacket(b[n:], t.packetSize)
		if m == 0 && err == nil {
			return n, true
		}
		if err != nil || len(payload) == 0 || payload[0] != ajp.TypeSendBodyChunk {
			return n, false
		}
		data, err := ajp.ParseBodyChunk(payload)
		if err != nil {
			return n, false
		}
		n += m
		if !f(data) {
			return n, false
		}
	}
}

// clientHead builds the client's response head from the decoded
// SEND_HEADERS, held until the next packet says whether body data goes
// out with it.
func (t *ajpTransport) clientHead(x *exchange) {
	a, lp := &x.ajp, x.lp()
	dst := append(lp.scratch[:0], "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(a.sh.Status), 10)
	dst = append(dst, ' ')
	dst = append(dst, a.sh.Message...)
	dst = append(dst, "\r\n"...)
	for _, h := range a.sh.Headers {
		dst = x.responseField(dst, h.Name, h.Value, nil, nil)
	}
	dst = x.appendConnection(dst)
	dst = append(dst, "\r\n"...)
	lp.scratch = dst
	x.resp.headSent = true
	a.head = dst
}

// serverNamePort splits the client's Host into the name and port a servlet
// sees (getServerName, getServerPort): Tomcat builds redirects from them.
// The name is a sub-slice of host.
func serverNamePort(host []byte, isTLS bool) ([]byte, int) {
	port := 80
	if isTLS {
		port = 443
	}
	// A string view of host, not a copy: nothing keeps it past this call.
	h, ps, err := net.SplitHostPort(unsafe.String(unsafe.SliceData(host), len(host)))
	if err != nil {
		return host, port
	}
	if p, err := strconv.Atoi(ps); err == nil {
		port = p
	}
	// h is host without the port and, for an IPv6 literal, the brackets.
	start := 0
	if host[0] == '[' {
		start = 1
	}
	return host[start : start+len(h)], port
}

// remotePortAttr is the request attribute that tells Tomcat the client's
// port (getRemotePort).
var remotePortAttr = []byte("AJP_REMOTE_PORT")

// sslProtocolAttr is the request attribute that tells Tomcat the client's
// TLS version (javax.servlet.request.secure_protocol).
var sslProtocolAttr = []byte("AJP_SSL_PROTOCOL")

// readOnlyBytes views s as bytes without copying; the AJP encoder only
// reads them.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// cipherKeyBits is the symmetric key size of a cipher suite, by its IANA
// name: what a servlet reads as javax.servlet.request.key_size.
func cipherKeyBits(suite string) int {
	switch {
	case strings.Contains(suite, "AES_128"):
		return 128
	case strings.Contains(suite, "AES_256"), strings.Contains(suite, "CHACHA20"):
		return 256
	case strings.Contains(suite, "3DES"):
		return 168
	}
	return 0
}

// tlsVersionName names a TLS version as OpenSSL and Tomcat do.
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return "unknown"
}
