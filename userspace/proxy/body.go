package proxy

import (
	"errors"

	"github.com/catherd/catherd/userspace/httpwire"
	"github.com/catherd/catherd/userspace/netloop"
)

// requestBody is a request's body on its way from the client: taken from
// the client's buffer as the framing allows, held whole before a member
// is chosen when it is small enough, or sent on as it comes.
//
// A body held whole was checked before any member saw a byte of it (its
// chunk framing, its end), can be sent again after a failure, and keeps a
// slow client from holding a member's thread (Tomcat's) for as long as it
// takes to upload.
type requestBody struct {
	chunked bool
	left    int64                 // bytes of a Content-Length body still to come
	cs      httpwire.ChunkScanner // follows a chunked body as it arrives
	in      bool                  // the whole body has arrived
	// holding: the body is read whole before a member is chosen, up to
	// limit bytes; reserved of them are counted against bufferBudget.
	holding  bool
	limit    int64
	reserved int64
	held     []*netloop.Buffer // the held bytes, as the client sent them
	heldLen  int64
	// sending: the rest goes to the member as it comes from the client;
	// streamed: some of it did, so it cannot be sent again.
	sending  bool
	streamed bool
	// sent counts the body bytes sent to the member of this attempt.
	sent int64
	// discarding: read and dropped (the member answered without it);
	// gaveUp: past discardLimit, or broken, it was left unread.
	discarding bool
	discarded  int64
	gaveUp     bool
}

// init decides how the body of x's request is read.
func (b *requestBody) init(x *exchange) {
	r := &x.req
	switch {
	case r.Chunked:
		b.chunked = true
	case r.ContentLength > 0:
		b.left = r.ContentLength
	default:
		b.in = true
		return
	}
	// Up to replayLimit, always; up to --buffer-requests while the
	// memory all requests hold allows (a chunked body's length is unknown:
	// it may need all of it).
	b.limit = replayLimit
	want := x.opts().BufferRequests
	need := want - replayLimit
	if !b.chunked {
		need = r.ContentLength - replayLimit
	}
	if need > 0 && r.ContentLength <= want && x.p().reserve(need) {
		b.limit, b.reserved = want, need
	}
	b.holding = b.chunked || r.ContentLength <= b.limit
	b.sending = !b.holding
}

// reserve counts n more bytes of held bodies against bufferBudget, if they
// fit.
func (p *Proxy) reserve(n int64) bool {
	if p.held.Add(n) > bufferBudget {
		p.held.Add(-n)
		return false
	}
	return true
}

// take returns up to max of the body's bytes waiting in the client's
// buffer, as the client sent them, and marks them used.
func (b *requestBody) take(x *exchange, max int) ([]byte, error) {
	cl := x.cl
	avail := cl.in.B[cl.r:cl.w]
	if len(avail) > max {
		avail = avail[:max]
	}
	var n int
	if b.chunked {
		var err error
		if n, err = b.cs.Body(avail); err != nil {
			return nil, err
		}
		b.in = b.cs.Done()
	} else {
		n = int(min(int64(len(avail)), b.left))
		b.left -= int64(n)
		b.in = b.left == 0
	}
	cl.r += n
	return avail[:n], nil
}

// hold moves the body bytes the client sent into the held body. It stops
// holding once the body is whole, or past the limit: the rest is then sent
// as it comes, after the held part.
func (b *requestBody) hold(x *exchange) error {
	for x.cl.r < x.cl.w && !b.in && b.heldLen < b.limit {
		piece, err := b.take(x, int(b.limit-b.heldLen))
		if err != nil {
			return err
		}
		b.append(x, piece)
	}
	if b.in || b.heldLen >= b.limit {
		b.holding = false
		b.sending = !b.in
	}
	return nil
}

// append copies p to the end of the held bytes.
func (b *requestBody) append(x *exchange, p []byte) {
	pool := &x.lp().nl.Buffers
	for len(p) > 0 {
		var last *netloop.Buffer
		used := int(b.heldLen % int64(pool.Size()))
		if len(b.held) == 0 || used == 0 {
			last = pool.Get()
			b.held = append(b.held, last)
		} else {
			last = b.held[len(b.held)-1]
		}
		n := copy(last.B[used:], p)
		p = p[n:]
		b.heldLen += int64(n)
	}
}

// heldBytes calls f for each piece of the held body, in order.
func (b *requestBody) heldBytes(f func([]byte) bool) {
	left := b.heldLen
	for _, buf := range b.held {
		n := min(left, int64(len(buf.B)))
		if !f(buf.B[:n]) {
			return
		}
		left -= n
	}
}

// errDiscardLimit: the rest of an unwanted body is too large to read and
// drop; the connection closes instead.
var errDiscardLimit = errors.New("unread body past the discard limit")

// discard reads and drops body bytes.
func (b *requestBody) discard(x *exchange) error {
	for x.cl.r < x.cl.w && !b.in {
		piece, err := b.take(x, x.cl.w-x.cl.r)
		if err != nil {
			return err
		}
		if b.discarded += int64(len(piece)); b.discarded > discardLimit {
			return errDiscardLimit
		}
	}
	return nil
}

// replayable reports whether the body can be sent again to another
// member: none of it went to a member straight from the client.
func (b *requestBody) replayable() bool { return !b.streamed }

// rewind prepares the body to be sent again from its start.
func (b *requestBody) rewind() { b.sent = 0 }

// release gives back the held bytes and their budget.
func (b *requestBody) release(lp *loop) {
	for _, buf := range b.held {
		lp.nl.Buffers.Put(buf)
	}
	if b.reserved > 0 {
		lp.p.held.Add(-b.reserved)
	}
}
