package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/catherd/catherd/userspace/netloop"
)

// memberConn is a connection to a member, on one loop. Between exchanges
// it waits in the loop's pool, where a byte or a close from the member
// takes it out at once: a kept-alive connection the member has closed is
// not handed to the next request.
type memberConn struct {
	lp    *loop
	up    *Upstream
	c     *netloop.Conn
	in    *netloop.Buffer // bytes read from the member and not yet used
	r, w  int
	x     *exchange // the exchange it serves; nil while pooled
	timer *netloop.Timer
	state mcState
	// served counts the exchanges it completed: a failure on a reused
	// connection before any answer may be the member closing it idle
	// just as the request went out (the keep-alive race).
	served int
	since  int64 // when the state began, or the member was last heard
	// stalled: reading paused because the client has not taken what was
	// written to it; the member's silence then is catherd's doing, and
	// the client's send bound applies instead.
	stalled bool
	pipe    *netloop.Pipe
	proto   any // the transport's per-connection state
}

type mcState uint8

const (
	mcDialing mcState = iota
	mcReady           // connected, checking it (AJP CPING) before use
	mcBusy            // serving an exchange
	mcIdle            // in the pool
	mcClosed
)

// dial opens a connection to x's member for x.
func (lp *loop) dial(x *exchange) {
	u := x.up
	ap, err := u.address()
	mc := &memberConn{lp: lp, up: u, x: x, state: mcDialing, since: lp.now()}
	mc.timer = lp.nl.NewTimer(mc.timeout)
	if err == nil {
		mc.c, err = lp.nl.Dial(ap, mc)
	}
	if err != nil {
		x.connFailed(mc, &memberError{failConnect, fmt.Errorf("connect: %w", err)})
		return
	}
	u.conns.Add(1)
	u.opened.Add(1)
	x.mc = mc
	mc.arm()
}

// Connected completes the dial.
func (mc *memberConn) Connected(err error) {
	if err != nil {
		mc.close(nil)
		if x := mc.x; x != nil {
			mc.x = nil
			x.connFailed(mc, &memberError{failConnect, err})
		}
		return
	}
	mc.state, mc.since = mcReady, mc.lp.now()
	mc.up.t.connected(mc)
}

// ready hands a connected, checked connection to its exchange, or to the
// pool when the exchange went away meanwhile.
func (mc *memberConn) ready() {
	x := mc.x
	if x == nil {
		mc.release(true)
		return
	}
	mc.state, mc.since = mcBusy, mc.lp.now()
	x.send(mc)
}

// Readable reads what the member sent.
func (mc *memberConn) Readable() {
	if mc.state == mcClosed {
		return
	}
	if x := mc.x; x != nil && x.down != nil && mc.state == mcBusy {
		x.spliceDown()
		return
	}
	if mc.in == nil {
		mc.in = mc.lp.nl.Buffers.GetSize(mc.up.t.readSize())
		mc.r, mc.w = 0, 0
	}
	if mc.w == len(mc.in.B) {
		if mc.r == 0 {
			mc.c.PauseRead() // full: the exchange takes it first
			mc.deliver(nil)
			return
		}
		mc.w = copy(mc.in.B, mc.in.B[mc.r:mc.w])
		mc.r = 0
	}
	n, err := mc.c.Read(mc.in.B[mc.w:])
	mc.w += n
	if n > 0 {
		mc.since = mc.lp.now()
	}
	if n == 0 && err == nil {
		return
	}
	mc.deliver(err)
}

// deliver hands what was read (and a read error) to whoever uses the
// connection.
func (mc *memberConn) deliver(err error) {
	switch mc.state {
	case mcIdle:
		// A pooled connection that speaks or ends unasked is done for.
		mc.close(nil)
	case mcReady:
		mc.up.t.checked(mc, err)
	case mcBusy:
		if mc.x != nil {
			mc.x.memberData(err)
		}
	}
}

// Writable: the member took what was queued for it.
func (mc *memberConn) Writable() {
	if mc.state == mcBusy && mc.x != nil {
		mc.x.memberWritable()
	}
}

// consume marks n bytes of the read buffer used, and gives the buffer
// back once it holds nothing.
func (mc *memberConn) consume(n int) {
	mc.r += n
	if mc.r == mc.w && mc.in != nil {
		mc.lp.nl.Buffers.Put(mc.in)
		mc.in, mc.r, mc.w = nil, 0, 0
	}
}

// pending is what was read and not yet used.
func (mc *memberConn) pending() []byte {
	if mc.in == nil {
		return nil
	}
	return mc.in.B[mc.r:mc.w]
}

// release ends mc's exchange: it goes back to the pool when reusable and
// nothing of another message was read, or else is closed.
func (mc *memberConn) release(reusable bool) {
	mc.x = nil
	if !reusable || mc.r != mc.w || mc.lp.p.draining.Load() || mc.c.Queued() > 0 || mc.up.removed.Load() {
		mc.close(nil)
		return
	}
	mc.served++
	mc.state, mc.since = mcIdle, mc.lp.now()
	mc.c.ResumeRead()
	lp, i := mc.lp, mc.up.index
	if w := lp.waiting[i]; len(w) > 0 {
		x := w[0]
		lp.waiting[i] = w[1:]
		mc.x, mc.state, mc.since = x, mcBusy, lp.now()
		x.mc = mc
		x.send(mc)
		return
	}
	lp.idle[i] = append(lp.idle[i], mc)
	mc.arm()
}

// takeIdle returns a pooled connection to member i, most recently used
// first, or nil.
func (lp *loop) takeIdle(i int) *memberConn {
	for n := len(lp.idle[i]); n > 0; n = len(lp.idle[i]) {
		mc := lp.idle[i][n-1]
		lp.idle[i] = lp.idle[i][:n-1]
		if mc.state == mcIdle {
			return mc
		}
	}
	return nil
}

// leavePool takes an idle connection out of the loop's pool.
func (mc *memberConn) leavePool() {
	idle := mc.lp.idle[mc.up.index]
	for i, o := range idle {
		if o == mc {
			mc.lp.idle[mc.up.index] = append(idle[:i], idle[i+1:]...)
			return
		}
	}
}

// close closes the connection; a non-nil err counts it as broken by the
// member.
func (mc *memberConn) close(err error) {
	if mc.state == mcClosed {
		return
	}
	wasIdle := mc.state == mcIdle
	mc.state = mcClosed
	if err != nil {
		mc.up.discarded.Add(1)
	}
	mc.timer.Stop()
	if mc.c != nil {
		mc.c.Close()
		mc.up.conns.Add(-1)
	}
	if mc.in != nil {
		mc.lp.nl.Buffers.Put(mc.in)
		mc.in = nil
	}
	if mc.pipe != nil {
		mc.lp.nl.PutPipe(mc.pipe)
		mc.pipe = nil
	}
	if wasIdle {
		mc.leavePool()
	}
}

// arm sets the connection's timer for its state.
func (mc *memberConn) arm() {
	o := &mc.lp.p.opts
	var d time.Duration
	switch mc.state {
	case mcDialing:
		d = o.ConnectTimeout
	case mcReady:
		d = mc.up.t.checkTimeout()
	case mcBusy:
		d = o.BackendTimeout
	case mcIdle:
		d = o.BackendIdleTimeout
		if t := mc.up.t.idleCheck(); t > 0 && t < d {
			d = t
		}
	default:
		return
	}
	mc.timer.SetAt(mc.since + int64(d))
}

// busy notes that the member was heard from or written to, pushing the
// silence bound.
func (mc *memberConn) busy() { mc.since = mc.lp.now() }

// stall pauses reading from the member until the client has taken what
// is queued for it (resume).
func (mc *memberConn) stall() {
	mc.stalled = true
	mc.c.PauseRead()
}

// resume undoes stall.
func (mc *memberConn) resume() {
	if mc.stalled {
		mc.stalled = false
		mc.since = mc.lp.now()
		mc.c.ResumeRead()
	}
}

var errConnectTimeout = errors.New("connect: timed out")

// timeout acts on the bound of the connection's state.
func (mc *memberConn) timeout() {
	now := mc.lp.now()
	o := &mc.lp.p.opts
	switch mc.state {
	case mcDialing:
		if now < mc.since+int64(o.ConnectTimeout) {
			mc.arm()
			return
		}
		x := mc.x
		mc.x = nil
		mc.close(nil)
		if x != nil {
			x.connFailed(mc, &memberError{failConnect, errConnectTimeout})
		}
	case mcReady:
		if now < mc.since+int64(mc.up.t.checkTimeout()) {
			mc.arm()
			return
		}
		mc.up.t.checked(mc, errCheckTimeout)
	case mcBusy:
		if mc.stalled {
			mc.since = now
		}
		if now < mc.since+int64(o.BackendTimeout) {
			mc.arm()
			return
		}
		if mc.x != nil {
			mc.x.memberFailed(&memberError{failTimeout, fmt.Errorf("no answer for %v", o.BackendTimeout)})
		}
	case mcIdle:
		if now >= mc.since+int64(o.BackendIdleTimeout) {
			mc.close(nil)
			return
		}
		if !mc.up.t.idleTimeout(mc, now) {
			mc.arm()
		}
	}
}

var errCheckTimeout = errors.New("no CPONG in time")
