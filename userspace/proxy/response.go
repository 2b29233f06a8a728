package proxy

import (
	"strconv"

	"github.com/catherd/catherd/userspace/httpwire"
)

// response is the member's answer on its way to the client.
type response struct {
	head     httpwire.Response // an HTTP member's head, pointing into mc.in
	headDone bool              // the final (non-1xx) head has been read
	headLen  int
	status   int
	// received: a byte of an answer came from the member, so the request
	// reached it.
	received bool
	headSent bool  // the head was written to the client
	bytes    int64 // body bytes from the member
	out      outFraming
	// left counts the body bytes still to come when the member gave a
	// length; chunked when it chunks its body, cs following it;
	// untilClose when the body ends with the connection.
	left       int64
	chunked    bool
	untilClose bool
	cs         httpwire.ChunkScanner
	// clientClose: the client connection closes after this answer.
	clientClose bool
	// noReuse: the member connection must not carry another request (an
	// answer before the whole request went out, an interim answer not
	// asked for, a body ended by the close).
	noReuse bool
	done    bool
}

// outFraming is how the client gets the body.
type outFraming uint8

const (
	outNone  outFraming = iota // no body (HEAD, 1xx, 204, 304)
	outRaw                     // the member's bytes as they came: same framing
	outChunk                   // data, chunk-encoded here
	outPlain                   // data as it is: a length was given, or it ends with the connection
)

func (rs *response) reset() {
	head := rs.head
	head.Fields = head.Fields[:0]
	*rs = response{head: head, clientClose: rs.clientClose}
}

func (rs *response) received64() int64 { return rs.bytes }

// decide sets how the client gets the body and whether its connection
// closes after, from the request and the member's framing. length is the
// body's length (-1: unknown), chunkedIn whether the member chunks it
// (HTTP members; AJP's packets are their own framing).
func (x *exchange) decide(status int, length int64, chunkedIn, untilClose, httpMember bool) {
	rs := &x.resp
	rs.status = status
	client11 := x.req.Minor == 1
	switch {
	case x.req.IsHead() || status < 200 || status == 204 || status == 304:
		rs.out = outNone
		if httpMember && (x.req.IsHead() || status < 200 || status == 204 || status == 304) {
			untilClose, chunkedIn, length = false, false, 0
		}
	case httpMember && (client11 || !chunkedIn):
		rs.out = outRaw
	case length >= 0:
		rs.out = outPlain
	case client11:
		rs.out = outChunk
	default:
		rs.out = outPlain // HTTP/1.0 client: the close ends the body
		rs.clientClose = true
	}
	rs.left, rs.chunked, rs.untilClose = length, chunkedIn, untilClose
	if untilClose {
		rs.noReuse = true
		rs.clientClose = true
	}
	if !x.req.Persistent() || x.p().draining.Load() {
		rs.clientClose = true
	}
}

// keepsFraming reports whether the member's Content-Length (length) or
// Transfer-Encoding goes to the client: when the body goes as it came,
// and a length when catherd passes on data of that length.
func (rs *response) keepsFraming(length bool) bool {
	switch rs.out {
	case outRaw, outNone:
		return true
	case outPlain:
		return length && rs.left >= 0 && !rs.chunked
	}
	return false
}

// appendConnection appends the Connection field the client's connection
// needs, if any, after the member's fields.
func (x *exchange) appendConnection(dst []byte) []byte {
	switch {
	case x.resp.clientClose && x.req.Minor == 1:
		dst = append(dst, "Connection: close\r\n"...)
	case !x.resp.clientClose && x.req.Minor == 0:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	if x.resp.out == outChunk {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return dst
}

// writeData sends body data, in pieces, to the client in its framing
// (outChunk: the pieces as one chunk; outPlain), after prefix, in one
// write.
func (x *exchange) writeData(prefix []byte, data [][]byte) bool {
	size := 0
	for _, d := range data {
		size += len(d)
	}
	if size == 0 {
		return len(prefix) == 0 || x.cl.write(prefix)
	}
	iov := append(x.iov[:0], prefix)
	if x.resp.out == outChunk {
		x.tmp = append(strconv.AppendInt(x.tmp[:0], int64(size), 16), "\r\n"...)
		iov = append(iov, x.tmp)
	}
	iov = append(iov, data...)
	if x.resp.out == outChunk {
		iov = append(iov, crlf)
	}
	ok := x.cl.write(iov...)
	clear(iov)
	x.iov = iov[:0]
	return ok
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// finish completes the exchange once the member's answer has gone to the
// client: the member connection goes back to the pool if it may, the
// client connection waits for its next request or closes.
func (x *exchange) finish(memberReusable bool) {
	rs := &x.resp
	if rs.done {
		return
	}
	rs.done = true
	if rs.out == outChunk {
		if !x.cl.write(lastChunk) {
			return // the client is gone; close released everything
		}
	}
	x.end()
	if mc := x.mc; mc != nil {
		x.mc = nil
		mc.release(memberReusable && !rs.noReuse && !x.early && x.body.in)
	}
	cl := x.cl
	keep := !rs.clientClose
	x.release()
	cl.done(keep)
}

// afterDiscard: the body the member did not want has been read and
// dropped; its answer, held meanwhile, goes out now.
func (rs *response) afterDiscard(x *exchange) {
	if mc := x.mc; mc != nil {
		mc.c.ResumeRead()
		mc.busy()
		mc.arm()
		x.up.t.response(x, nil)
	}
}

// earlyAnswer handles an answer that came before the whole request body
// was read from the client: the member will not read the rest, so catherd
// reads and drops it (up to discardLimit, as nginx discards an unread
// body) before the answer goes out, since a client still sending may not
// read an answer until it is done; then the connection can carry the next
// request. It reports whether the answer must wait.
func (x *exchange) earlyAnswer() bool {
	if x.body.in || x.body.gaveUp {
		return false
	}
	x.early = true
	x.resp.noReuse = true
	if x.up2 != nil { // what the pipe holds was the member's, unwanted
		x.up2.release(x.lp())
		x.up2 = nil
	}
	x.body.sending, x.body.holding = false, false
	x.body.discarding = true
	x.mc.c.PauseRead()
	x.mc.timer.Stop() // its answer is in; the client's body is what runs now
	cl := x.cl
	cl.phase, cl.since = phaseBody, cl.lp.now()
	cl.ResumeRead()
	if err := x.body.discard(x); err != nil {
		// Past the limit or broken: answer now, and close after.
		x.body.discarding, x.body.gaveUp = false, true
		x.resp.clientClose = true
		x.mc.c.ResumeRead()
		cl.PauseRead()
		return false
	}
	if x.body.in {
		x.body.discarding = false
		x.mc.c.ResumeRead()
		return false
	}
	return true
}
