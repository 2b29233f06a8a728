package proxy

import (
	"errors"
	"io"

	"github.com/catherd/catherd/userspace/httpwire"
	"github.com/catherd/catherd/userspace/netloop"
)

// Large bodies of known length between an HTTP member and a plain client
// do not pass through user space: once the head has gone, the rest moves
// socket to pipe to socket (splice(2)), on the loop, with the same
// backpressure as the buffered path (a full receiver stops the sender
// being read). Copying costs more than the two calls per pipeful only for
// large bodies; below spliceMin they go through the loop's buffers.
const spliceMin = 256 << 10

// splice is a body being spliced: which way, and how much is left.
type splice struct {
	pipe     *netloop.Pipe
	src, dst *netloop.Conn
	left     int64
	moved    int64
}

// step moves what it can. It reports done at the body's end; otherwise
// the caller waits for src to be readable (srcDry) or dst writable. An
// error says which side failed.
func (s *splice) step() (done, srcDry bool, srcErr, dstErr error) {
	for {
		if s.pipe.Buffered() > 0 {
			if _, err := s.pipe.Drain(s.dst); err != nil {
				return false, false, nil, err
			}
			if s.pipe.Buffered() > 0 {
				return false, false, nil, nil // dst is full
			}
		}
		if s.left == 0 {
			return true, false, nil, nil
		}
		n, err := s.pipe.Fill(s.src, int(min(s.left, 1<<20)))
		if err != nil {
			return false, false, err, nil
		}
		if n == 0 {
			return false, true, nil, nil
		}
		s.left -= int64(n)
		s.moved += int64(n)
	}
}

// backlog reports bytes in the pipe that the receiver has not taken.
func (s *splice) backlog() bool { return s != nil && s.pipe.Buffered() > 0 }

// release gives the pipe back (closed, when it still holds bytes).
func (s *splice) release(lp *loop) {
	if s != nil {
		lp.nl.PutPipe(s.pipe)
	}
}

// spliceable returns the client's socket when a body can be spliced to
// or from it: a plain connection with nothing of its own waiting.
func (x *exchange) spliceable() (*netloop.Conn, bool) {
	c, ok := x.cl.io.(*netloop.Conn)
	return c, ok && c.Queued() == 0 && x.up.t == transport(httpTransport{})
}

// startSpliceDown moves the rest of the answer's body (rs.left bytes) from
// the member to the client through a pipe, once the head went out.
func (x *exchange) startSpliceDown() bool {
	c, ok := x.spliceable()
	rs := &x.resp
	if !ok || rs.out != outRaw || rs.chunked || rs.untilClose || rs.left < spliceMin || len(x.mc.pending()) > 0 {
		return false
	}
	pipe, err := x.lp().nl.GetPipe()
	if err != nil {
		return false // the buffered path works too
	}
	x.down = &splice{pipe: pipe, src: x.mc.c, dst: c, left: rs.left}
	x.spliceDown()
	return true
}

// spliceDown runs when the member has bytes or the client has room.
func (x *exchange) spliceDown() {
	s, mc := x.down, x.mc
	before := s.moved
	done, dry, memberErr, clientErr := s.step()
	x.resp.bytes += s.moved - before
	x.resp.left = s.left
	if s.moved > before {
		mc.busy()
	}
	switch {
	case clientErr != nil:
		x.cl.close() // gone: nothing more can reach it
	case memberErr != nil:
		x.memberFailed(readFailure(memberErr, true))
	case done:
		x.down.release(x.lp())
		x.down = nil
		x.finish(true)
	case dry:
		mc.resume()
	default: // the client is full
		mc.stall()
		s.dst.WaitWritable()
		x.cl.arm()
	}
}

// startSpliceUp sends the rest of a large request body (of known length)
// from the client to the member through a pipe.
func (x *exchange) startSpliceUp() bool {
	c, ok := x.spliceable()
	cl := x.cl
	if !ok || x.body.chunked || x.body.left < spliceMin || cl.r != cl.w || x.mc.c.Queued() > 0 {
		return false
	}
	pipe, err := x.lp().nl.GetPipe()
	if err != nil {
		return false
	}
	x.body.streamed = true
	x.up2 = &splice{pipe: pipe, src: c, dst: x.mc.c, left: x.body.left}
	x.spliceUp()
	return true
}

// spliceUp runs when the client has bytes or the member has room.
func (x *exchange) spliceUp() {
	s, cl := x.up2, x.cl
	before := s.moved
	done, dry, clientErr, memberErr := s.step()
	x.body.sent += s.moved - before
	x.body.left = s.left
	if s.moved > before {
		cl.since = cl.lp.now()
		x.mc.busy()
	}
	switch {
	case errors.Is(clientErr, io.EOF):
		x.refuseBody(httpwire.ErrChunk) // cut short: the member saw an incomplete body
	case clientErr != nil:
		x.cl.close()
	case memberErr != nil:
		x.memberFailed(writeFailure(memberErr))
	case done:
		x.body.in = true
		x.up2.release(x.lp())
		x.up2 = nil
		cl.phase = phaseExchange
		cl.ResumeRead() // a next request waits in the buffer
	case dry:
		cl.ResumeRead()
	default: // the member is full
		cl.PauseRead()
		s.dst.WaitWritable()
	}
}
