package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net/netip"
	"time"

	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/httpwire"
	"github.com/catherd/catherd/userspace/netloop"
)

// clientIO is a client connection's byte stream as the loop sees it: a
// socket on the loop (*netloop.Conn), or a TLS connection whose goroutine
// feeds the loop (*bridge).
type clientIO interface {
	Read(b []byte) (int, error)
	Writev(bufs ...[]byte) error
	Queued() int
	Flushed() uint64
	PauseRead()
	ResumeRead()
	CloseWrite() error
	Close()
	// Fd is the socket, for splicing; -1 when bytes cannot go to it
	// without passing through user space (TLS).
	Fd() int
}

// client is one client connection. How long a client may take depends on
// what it is doing, so its one timer follows the request on it:
//
//   - before a request: --client-idle-timeout, then it is closed without
//     a word (a connection's first request gets --client-header-timeout
//     from the accept instead);
//   - sending a head: --client-header-timeout from its first byte, one
//     deadline, so a head trickled a byte at a time (slowloris) cannot
//     outlive it, unlike a silence bound; then 408;
//   - sending a body: a silence bound of --client-body-timeout, so a long
//     upload lives while it moves; then 408;
//   - reading a response that stalls: a silence bound of
//     --client-send-timeout on the writes; then the connection is cut.
type clientConn struct {
	lp     *loop
	io     clientIO
	in     *netloop.Buffer // bytes read and not yet used; nil when none
	r, w   int
	ex     *exchange // the request in flight
	timer  *netloop.Timer
	remote netip.AddrPort
	tls    *tls.ConnectionState // nil for a plain connection
	h2     bool                 // an HTTP/2 stream's request, one per connection
	// slotless: the connection slot is held by what lies under this
	// connection (a TLS connection, an HTTP/2 one), not by it.
	slotless bool

	phase     clientPhase
	since     int64  // when the phase began, or the last byte of a body came
	flushed   uint64 // io.Flushed() when the send bound was last checked
	flushedAt int64
	used      bool // a byte has arrived on the connection
	closing   bool // close once the output is flushed
	// lingering: the answer is out and the write side shut; what the
	// client still sends is read and dropped until it closes, or
	// lingerTime has passed (see linger).
	lingering bool
	eof       bool // the client's stream ended
	closed    bool

	prev, next *clientConn
}

type clientPhase uint8

const (
	phaseIdle     clientPhase = iota // between requests
	phaseHead                        // a head is arriving
	phaseBody                        // an exchange reads the request body
	phaseExchange                    // the member has the request; no client bound
)

func (lp *loop) newClient(remote netip.AddrPort, state *tls.ConnectionState) *clientConn {
	cl := &clientConn{lp: lp, remote: remote, tls: state}
	cl.timer = lp.nl.NewTimer(cl.timeout)
	lp.clients.add(cl)
	return cl
}

// start begins the connection's first wait for a head, bounded by the
// header timeout from now.
func (cl *clientConn) start() {
	cl.phase, cl.since = phaseHead, cl.lp.now()
	cl.arm()
}

func (cl *clientConn) opts() *Options { return &cl.lp.p.opts }

// Readable reads what the client sent and acts on it.
func (cl *clientConn) Readable() {
	if cl.closed {
		return
	}
	if cl.ex != nil && cl.ex.up2 != nil {
		cl.ex.spliceUp()
		return
	}
	if cl.lingering {
		cl.drop()
		return
	}
	if cl.in == nil {
		cl.in = cl.lp.nl.Buffers.Get()
		cl.r, cl.w = 0, 0
	}
	if cl.w == len(cl.in.B) {
		cl.makeRoom()
	}
	if cl.w == len(cl.in.B) {
		// Full: what is there must be used first (a head too large is
		// refused below; a body waits for its member).
		cl.PauseRead()
		cl.advance()
		return
	}
	n, err := cl.io.Read(cl.in.B[cl.w:])
	cl.w += n
	if n > 0 {
		cl.used = true
		if cl.phase == phaseBody {
			cl.since = cl.lp.now()
		}
	}
	if err != nil {
		cl.readFailed(err)
		return
	}
	if n == 0 && cl.r == cl.w {
		cl.releaseIn()
		return
	}
	cl.advance()
}

// readFailed handles the end of the client's stream or a failed read.
func (cl *clientConn) readFailed(err error) {
	cl.eof = true
	if cl.ex != nil {
		cl.ex.clientGone(err)
		return
	}
	if errors.Is(err, io.EOF) && cl.r < cl.w && cl.phase == phaseHead {
		// A head cut short: nothing to answer it with.
		cl.close()
		return
	}
	cl.close()
}

// advance acts on the bytes read: a new request's head, or the body of
// the one in flight.
func (cl *clientConn) advance() {
	for !cl.closed {
		if cl.ex != nil {
			cl.ex.clientData()
			break
		}
		if cl.r == cl.w {
			cl.releaseIn()
			break
		}
		if cl.phase != phaseHead {
			cl.phase, cl.since = phaseHead, cl.lp.now()
		}
		x := acquireExchange(cl)
		n, err := httpwire.ParseRequest(cl.in.B[cl.r:cl.w], &x.req, cl.opts().MaxHeaderBytes)
		if err == nil && n == 0 && cl.w == len(cl.in.B) {
			err = httpwire.ErrHeadTooLarge // the buffer is a head's limit
			if cl.r > 0 {
				releaseExchange(x)
				cl.compact()
				continue
			}
		}
		if err != nil {
			releaseExchange(x)
			cl.refuseHead(err)
			break
		}
		if n == 0 {
			releaseExchange(x)
			cl.ResumeRead()
			break
		}
		cl.ex = x
		x.begin(cl.r, n)
	}
	cl.arm()
}

// makeRoom moves the unused bytes down to make room for more: to the
// buffer's start between requests, to just past the head during one
// (its fields point into the buffer).
func (cl *clientConn) makeRoom() {
	if cl.ex == nil {
		if cl.r > 0 {
			cl.compact()
		}
		return
	}
	if base := cl.ex.headAt + cl.ex.req.Len; cl.r > base {
		cl.w = base + copy(cl.in.B[base:], cl.in.B[cl.r:cl.w])
		cl.r = base
	}
}

// compact moves the unused bytes to the start of the buffer.
func (cl *clientConn) compact() {
	cl.w = copy(cl.in.B, cl.in.B[cl.r:cl.w])
	cl.r = 0
}

// releaseIn gives the read buffer back when it holds nothing.
func (cl *clientConn) releaseIn() {
	if cl.in != nil && cl.r == cl.w && cl.ex == nil {
		cl.lp.nl.Buffers.Put(cl.in)
		cl.in, cl.r, cl.w = nil, 0, 0
	}
}

// Writable: the client took everything written to it.
func (cl *clientConn) Writable() {
	if cl.closed {
		return
	}
	if cl.closing {
		cl.linger()
		return
	}
	if cl.ex != nil {
		cl.ex.clientWritable()
	}
	cl.arm()
}

// PauseRead and ResumeRead stop and restart reading from the client.
func (cl *clientConn) PauseRead() { cl.io.PauseRead() }

func (cl *clientConn) ResumeRead() { cl.io.ResumeRead() }

// write sends bufs to the client; the connection closes on failure.
func (cl *clientConn) write(bufs ...[]byte) bool {
	// Through the loop's own slice: a variadic slice handed to an
	// interface method would be allocated on the heap on every call.
	lp := cl.lp
	lp.bufs = lp.bufs[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			lp.bufs = append(lp.bufs, b)
		}
	}
	err := cl.io.Writev(lp.bufs...)
	clear(lp.bufs)
	if err != nil {
		cl.close()
		return false
	}
	if cl.io.Queued() > 0 {
		cl.arm() // the send bound runs while output waits
	}
	return true
}

// done ends the request in flight: the connection waits for the next
// one, or closes once its output is flushed.
func (cl *clientConn) done(keep bool) {
	cl.ex = nil
	if !keep || cl.h2 {
		cl.closeWhenFlushed()
		return
	}
	// Draining, a connection whose answer did not say close serves one
	// more request, whose answer will; one that stays idle is closed
	// after the grace (Drain).
	cl.phase, cl.since = phaseIdle, cl.lp.now()
	if cl.r < cl.w {
		if cl.r > 0 {
			cl.compact()
		}
	} else {
		cl.releaseIn()
	}
	cl.ResumeRead()
	if cl.r < cl.w {
		cl.advance() // a request the client sent meanwhile
		return
	}
	cl.arm()
}

// closeWhenFlushed closes the connection once what was written to it has
// gone; reads stop now.
func (cl *clientConn) closeWhenFlushed() {
	cl.closing = true
	cl.PauseRead()
	if cl.io.Queued() == 0 {
		cl.linger()
		return
	}
	cl.arm()
}

// lingerTime bounds how long a connection whose last answer has gone out
// reads what the client still sends.
const lingerTime = 2 * time.Second

// linger closes a connection whose last answer has gone, as nginx's
// lingering close does: the write side is shut (the client reads the end
// of the answer), and what the client still sends, say the rest of a body
// catherd did not want, is read and dropped until the client closes or
// lingerTime has passed. Closed at once with unread bytes, the connection
// would be reset, and a client still sending would often lose the answer
// with it.
func (cl *clientConn) linger() {
	if cl.eof || cl.io.Fd() < 0 {
		cl.close() // nothing more will come, or a bridge's owner handles it
		return
	}
	if err := cl.io.CloseWrite(); err != nil {
		cl.close()
		return
	}
	cl.lingering, cl.since = true, cl.lp.now()
	cl.ResumeRead()
	cl.arm()
}

// drop reads and drops what a lingering client sends, until it closes.
func (cl *clientConn) drop() {
	buf := cl.lp.nl.Buffers.Get()
	defer cl.lp.nl.Buffers.Put(buf)
	for {
		n, err := cl.io.Read(buf.B)
		if err != nil {
			cl.close()
			return
		}
		if n < len(buf.B) {
			return
		}
	}
}

// close closes the connection and frees its slot; an exchange in flight
// is abandoned.
func (cl *clientConn) close() {
	if cl.closed {
		return
	}
	cl.closed = true
	if x := cl.ex; x != nil {
		cl.ex = nil
		x.abandon()
	}
	cl.timer.Stop()
	cl.io.Close()
	if cl.in != nil {
		cl.lp.nl.Buffers.Put(cl.in)
		cl.in = nil
	}
	cl.lp.clients.remove(cl)
	if !cl.slotless {
		cl.lp.p.releaseSlot()
	}
}

// arm sets the timer to the earliest bound that applies now.
func (cl *clientConn) arm() {
	if cl.closed {
		return
	}
	if at := cl.deadline(); at > 0 {
		cl.timer.SetAt(at)
	} else {
		cl.timer.Stop()
	}
}

// deadline is when the client's current bound runs out; 0 for none.
func (cl *clientConn) deadline() int64 {
	o := cl.opts()
	var at int64
	if cl.io.Queued() > 0 || cl.ex != nil && cl.ex.down.backlog() {
		if f := cl.io.Flushed(); f != cl.flushed || cl.flushedAt == 0 {
			cl.flushed, cl.flushedAt = f, cl.lp.now()
		}
		at = cl.flushedAt + int64(o.ClientSendTimeout)
	} else {
		cl.flushedAt = 0
	}
	var phase int64
	switch cl.phase {
	case phaseIdle:
		phase = cl.since + int64(o.ClientIdleTimeout)
	case phaseHead:
		phase = cl.since + int64(o.ClientHeaderTimeout)
	case phaseBody:
		if cl.ex == nil || !cl.ex.memberBehind() {
			phase = cl.since + int64(o.ClientBodyTimeout)
		}
	}
	if cl.closing {
		phase = 0
	}
	if cl.lingering {
		return cl.since + int64(lingerTime)
	}
	if at == 0 || (phase > 0 && phase < at) {
		at = phase
	}
	return at
}

// timeout runs when the timer fires: it acts on the bound that ran out,
// or sets the timer again for one that moved.
func (cl *clientConn) timeout() {
	if cl.closed {
		return
	}
	now := cl.lp.now()
	if at := cl.deadline(); at > now {
		cl.timer.SetAt(at)
		return
	}
	if cl.lingering {
		cl.close()
		return
	}
	o := cl.opts()
	if cl.flushedAt > 0 && cl.flushedAt+int64(o.ClientSendTimeout) <= now {
		cl.close() // a reader that stalled: nothing more can reach it
		return
	}
	switch cl.phase {
	case phaseIdle:
		cl.close()
	case phaseHead:
		if !cl.used || cl.r == cl.w {
			// Nothing came: most likely a browser's speculative
			// preconnect, which a 408 would turn into a failed request
			// once it does use the connection.
			cl.close()
			return
		}
		cl.refuseHead(errClientTimeout)
	case phaseBody:
		if cl.ex != nil {
			cl.ex.bodyTimedOut()
		}
	}
}

// errClientTimeout: the client took longer than its bound (408).
var errClientTimeout = &httpwire.Error{Status: 408, Msg: "request timeout"}

// refuseHead answers a head that was refused or timed out, and closes the
// connection: what follows on it cannot be trusted to be framed as the
// client meant.
func (cl *clientConn) refuseHead(err error) {
	code := 400
	var he *httpwire.Error
	if errors.As(err, &he) {
		code = he.Status
	}
	now := time.Unix(0, cl.lp.now())
	cl.lp.p.none.Done(code, now, 0, 0, false)
	if w := cl.lp.alog; w != nil {
		w.Write(&accesslog.Record{At: now, Client: cl.remote.Addr(), Status: code})
	}
	cl.answer(code, statusBody(code, err), false)
}

// answer sends a response of catherd's own and, unless keep, closes the
// connection after it.
func (cl *clientConn) answer(code int, body string, keep bool) {
	head := appendPlainHead(cl.lp.scratch[:0], code, len(body), !keep || cl.lp.p.draining.Load())
	cl.lp.scratch = head
	if !cl.write(head, []byte(body)) {
		return
	}
	if !keep {
		cl.closeWhenFlushed()
	}
}
