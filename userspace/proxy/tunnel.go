package proxy

import (
	"errors"
	"io"

	"github.com/catherd/catherd/userspace/httpwire"
)

// A WebSocket handshake the member accepts (101) turns the exchange into
// a tunnel: from then on the loop copies bytes each way as they come,
// with the same backpressure as a body (a side that does not take its
// bytes stops the other being read), until both sides have ended. The
// client's side is bounded by --client-body-timeout of silence, as a
// body is.

// tunnelState is a tunnel's progress.
type tunnelState struct {
	on         bool
	up, down   int64 // bytes client to member, member to client
	clientDone bool  // the client's stream ended (passed on as a half-close)
	memberDone bool
}

// tunnel completes the handshake whose 101 head is the first n bytes of
// the member's buffer.
func (x *exchange) tunnel(n int) {
	cl, mc, lp := x.cl, x.mc, x.lp()
	h := &x.resp.head
	if _, err := httpwire.ParseResponse(mc.pending()[:n], h, x.opts().MaxHeaderBytes); err != nil {
		x.memberFailed(&memberError{failProtocol, err})
		return
	}
	x.resp.status, x.resp.headDone, x.resp.headSent = 101, true, true
	dst := append(lp.scratch[:0], h.Line...)
	for i := range h.Fields {
		f := &h.Fields[i]
		if httpwire.EqualFold(f.Name, "upgrade") {
			dst = append(dst, f.Line...)
			continue
		}
		dst = x.responseField(dst, f.Name, f.Value, f.Line, h.IsNamed)
	}
	dst = append(dst, "Connection: Upgrade\r\n\r\n"...)
	lp.scratch = dst
	mc.consume(n)
	x.tun.on = true
	x.resp.noReuse = true
	cl.phase, cl.since = phaseBody, lp.now()
	mc.timer.Stop() // the client's silence bounds the tunnel
	if !cl.write(dst) {
		return
	}
	cl.ResumeRead()
	x.tunnelDown(nil)
	if cl.ex == x && x.tun.on {
		x.tunnelUp(nil)
	}
}

// tunnelUp passes on what the client sent (err: how its stream ended).
func (x *exchange) tunnelUp(err error) {
	cl, mc := x.cl, x.mc
	if cl.r < cl.w {
		if werr := mc.c.Write(cl.in.B[cl.r:cl.w]); werr != nil {
			x.endTunnel()
			return
		}
		x.tun.up += int64(cl.w - cl.r)
		cl.r, cl.w = 0, 0
		cl.releaseTunnelBuffer()
		if mc.c.Queued() > 0 {
			cl.PauseRead() // until the member takes it
		}
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			x.endTunnel()
			return
		}
		x.tun.clientDone = true
		mc.c.CloseWrite()
		cl.PauseRead()
		if x.tun.memberDone {
			x.endTunnel()
		}
	}
}

// tunnelDown passes on what the member sent.
func (x *exchange) tunnelDown(err error) {
	cl, mc := x.cl, x.mc
	if p := mc.pending(); len(p) > 0 {
		if !cl.write(p) {
			return
		}
		x.tun.down += int64(len(p))
		mc.consume(len(p))
		if cl.io.Queued() > 0 {
			mc.stall()
		}
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			x.endTunnel()
			return
		}
		x.tun.memberDone = true
		cl.io.CloseWrite()
		mc.c.PauseRead()
		if x.tun.clientDone {
			x.endTunnel()
		}
	}
}

// endTunnel closes both sides and counts the tunnel as one request.
func (x *exchange) endTunnel() {
	cl, mc := x.cl, x.mc
	x.mc = nil
	if mc != nil {
		mc.x = nil
		mc.close(nil)
	}
	x.body.sent, x.resp.bytes = x.tun.up, x.tun.down
	x.end()
	x.release()
	cl.closeWhenFlushed()
}

// releaseTunnelBuffer gives the read buffer back between the client's
// messages: a quiet tunnel holds none, as an idle connection does not.
func (cl *clientConn) releaseTunnelBuffer() {
	if cl.in != nil && cl.r == cl.w {
		cl.lp.nl.Buffers.Put(cl.in)
		cl.in = nil
	}
}
