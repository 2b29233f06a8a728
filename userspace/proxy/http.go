package proxy

import (
	"errors"
	"io"
	"time"

	"github.com/catherd/catherd/userspace/httpwire"
)

// httpTransport speaks HTTP/1.1 to a member: the request's head and body
// go as the client sent them but for the edits, and the answer comes back
// the same way.
type httpTransport struct{}

func (httpTransport) connected(mc *memberConn)                   { mc.ready() }
func (httpTransport) checked(*memberConn, error)                 {}
func (httpTransport) checkTimeout() time.Duration                { return 0 }
func (httpTransport) needsCheck(*memberConn, int64) bool         { return false }
func (httpTransport) idleCheck() time.Duration                   { return 0 }
func (httpTransport) idleTimeout(mc *memberConn, now int64) bool { return false }

// sendHead writes the edited head and the held body in one write.
func (httpTransport) sendHead(x *exchange) error {
	lp := x.lp()
	lp.scratch = x.appendRequestHead(lp.scratch[:0])
	iov := append(x.iov[:0], lp.scratch)
	x.body.heldBytes(func(b []byte) bool {
		iov = append(iov, b)
		return true
	})
	x.iov = iov[:0]
	if err := x.mc.c.Writev(iov...); err != nil {
		return err
	}
	x.body.sent = x.body.heldLen
	x.mc.busy()
	return nil
}

// sendBody forwards the body bytes the client sent, as they came, while
// the member takes them.
func (httpTransport) sendBody(x *exchange) error {
	cl, mc := x.cl, x.mc
	if cl.r == cl.w && !x.body.in && x.startSpliceUp() {
		return nil
	}
	for cl.r < cl.w && !x.body.in && mc.c.Queued() == 0 {
		piece, err := x.body.take(x, cl.w-cl.r)
		if err != nil {
			return err
		}
		x.body.streamed = true
		if err := mc.c.Write(piece); err != nil {
			return writeFailure(err)
		}
		x.body.sent += int64(len(piece))
		mc.busy()
	}
	if mc.c.Queued() > 0 {
		cl.PauseRead() // until the member takes it (memberWritable)
	}
	return nil
}

var errUnaskedSwitch = errors.New("the member switched protocols unasked")

// response reads the member's answer and passes it on.
// readSize: an answer's head must fit the loop's buffers (the proxy sizes
// them for the largest head it takes), its body streams through.
func (httpTransport) readSize() int { return 0 }

func (t httpTransport) response(x *exchange, rerr error) {
	rs := &x.resp
	if !rs.headDone && !t.readHead(x, rerr) {
		return
	}
	var head []byte
	if !rs.headSent {
		if x.earlyAnswer() {
			return
		}
		if t.waitForSmallBody(x, rerr) {
			if rerr != nil {
				// Cut short before the head went out: the client gets a
				// 502, never an answer that looks whole.
				x.memberFailed(readFailure(rerr, true))
			}
			return
		}
		head = t.clientHead(x)
	}
	t.forwardBody(x, head, rerr)
}

// readHead parses the member's head once it has all come, skipping
// interim answers; it reports whether the head is there.
func (httpTransport) readHead(x *exchange, rerr error) bool {
	rs, mc := &x.resp, x.mc
	for {
		b := mc.pending()
		if len(b) > 0 {
			rs.received = true
		}
		n, err := httpwire.ParseResponse(b, &rs.head, x.opts().MaxHeaderBytes)
		switch {
		case err != nil:
			x.memberFailed(&memberError{failProtocol, err})
			return false
		case n == 0 && rerr != nil:
			x.memberFailed(readFailure(rerr, rs.received))
			return false
		case n == 0 && mc.in != nil && mc.r == 0 && mc.w == len(mc.in.B):
			x.memberFailed(&memberError{failProtocol, httpwire.ErrBadResponseHead})
			return false
		case n == 0:
			return false
		}
		if !rs.head.Interim() {
			rs.headDone, rs.headLen = true, n
			h := &rs.head
			x.decide(h.Status, h.ContentLength, h.Chunked, h.UntilClose, true)
			if !h.Persistent() {
				rs.noReuse = true
			}
			return true
		}
		if rs.head.Status == 101 {
			if x.req.WebSocket {
				x.tunnel(n)
			} else {
				x.memberFailed(&memberError{failProtocol, errUnaskedSwitch})
			}
			return false
		}
		// Another interim answer: catherd answered 100 Continue itself,
		// and removed Expect, so none was asked for. It is dropped, and
		// the connection not trusted with another request.
		rs.noReuse = true
		mc.consume(n)
	}
}

// waitForSmallBody reports whether the rest of a body that fits in the
// read buffer is still to come: the head waits for it, so that a body of
// known length cut short is a 502, never an answer that looks whole.
func (httpTransport) waitForSmallBody(x *exchange, rerr error) bool {
	rs, mc := &x.resp, x.mc
	if rs.out == outNone || rs.chunked || rs.untilClose {
		return false
	}
	have := int64(mc.w - mc.r - rs.headLen)
	return rs.left > have && int64(mc.r+rs.headLen)+rs.left <= int64(len(mc.in.B))
}

// clientHead builds the head the client gets from the member's, and marks
// the member's head used.
func (httpTransport) clientHead(x *exchange) []byte {
	rs, lp := &x.resp, x.lp()
	h := &rs.head
	dst := append(lp.scratch[:0], h.Line...)
	for i := range h.Fields {
		f := &h.Fields[i]
		dst = x.responseField(dst, f.Name, f.Value, f.Line, h.IsNamed)
	}
	dst = x.appendConnection(dst)
	dst = append(dst, "\r\n"...)
	lp.scratch = dst
	x.mc.consume(rs.headLen)
	rs.headSent = true
	return dst
}

// forwardBody passes on the body bytes the member sent (after head, when
// the head goes out with them), and finishes the exchange at the body's
// end.
func (httpTransport) forwardBody(x *exchange, head []byte, rerr error) {
	rs, mc, cl := &x.resp, x.mc, x.cl
	pending := mc.pending()
	var n int
	var body []byte // what goes to the client after head
	complete := false
	switch {
	case rs.out == outNone:
		complete = true
	case rs.chunked && rs.out == outPlain:
		// To an HTTP/1.0 client, which cannot read chunks: the data
		// only, and the close ends it.
		if !cl.write(head) {
			return
		}
		head = nil
		for n < len(pending) && !rs.cs.Done() {
			m, data, err := rs.cs.Scan(pending[n:])
			if err != nil {
				x.memberFailed(&memberError{failProtocol, err})
				return
			}
			if data && !cl.write(pending[n:n+m]) {
				return
			}
			n += m
		}
		complete = rs.cs.Done()
	case rs.chunked:
		var err error
		if n, err = rs.cs.Body(pending); err != nil {
			x.memberFailed(&memberError{failProtocol, err})
			return
		}
		body, complete = pending[:n], rs.cs.Done()
	case rs.untilClose:
		n = len(pending)
		body, complete = pending, errors.Is(rerr, io.EOF)
	default:
		n = int(min(int64(len(pending)), rs.left))
		rs.left -= int64(n)
		body, complete = pending[:n], rs.left == 0
	}
	rs.bytes += int64(n)
	if head != nil || len(body) > 0 {
		if !cl.write(head, body) {
			return
		}
	}
	mc.consume(n)
	switch {
	case complete:
		x.finish(!rs.untilClose)
	case rerr != nil:
		x.memberFailed(readFailure(rerr, true))
	case cl.io.Queued() > 0:
		mc.stall() // until the client takes it (clientWritable)
	default:
		x.startSpliceDown()
	}
}
