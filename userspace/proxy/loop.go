package proxy

import (
	"errors"
	"net/netip"

	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/netloop"
)

// loop is the proxy's state on one event loop: its client connections,
// and per member the kept-alive connections it may reuse. Only the loop's
// goroutine touches it.
type loop struct {
	p  *Proxy
	nl *netloop.Loop
	// idle holds, per member index, the member connections waiting for
	// a request, most recently used last.
	idle [][]*memberConn
	// waiting holds, per member index, exchanges waiting for a connection
	// because the member is at --max-conns-per-backend.
	waiting [][]*exchange
	clients clientList
	// scratch is where a head is built before it is written; a write
	// copies what the kernel does not take, so it is free again after.
	scratch []byte
	bufs    [][]byte    // the pieces of a write to a client, reused
	free    []*exchange // exchanges to reuse
	// alog is the loop's end of the access log (nil: none), record the
	// line being written, and flush the timer that hands lines over.
	alog   *accesslog.Writer
	record accesslog.Record
	flush  *netloop.Timer
}

func newLoop(p *Proxy, nl *netloop.Loop) *loop {
	lp := &loop{p: p, nl: nl, idle: make([][]*memberConn, len(p.upstreams)),
		waiting: make([][]*exchange, len(p.upstreams)), scratch: make([]byte, 0, 4096)}
	if p.opts.AccessLog != nil {
		lp.alog = p.opts.AccessLog.Writer()
		lp.flush = nl.NewTimer(lp.flushLog)
		nl.Post(func() { lp.flush.Set(accesslog.FlushEvery()) })
	}
	return lp
}

// flushLog hands the access log lines written lately to the log's writer.
func (lp *loop) flushLog() {
	lp.alog.Flush(lp.now())
	lp.flush.Set(accesslog.FlushEvery())
}

// now is the loop's clock, read once per wakeup.
func (lp *loop) now() int64 { return lp.nl.Now() }

// adopt takes an accepted plain client socket onto the loop.
func (lp *loop) adopt(fd int, remote netip.AddrPort) {
	cl := lp.newClient(remote, nil)
	c, err := lp.nl.Adopt(fd, cl)
	if err != nil {
		lp.p.loopLog.Warn("client connection not served", "client", remote.String(), "err", err)
		lp.p.releaseSlot()
		return
	}
	cl.io = c
	cl.start()
}

// closeIdle closes the client connections between requests, for Drain.
func (lp *loop) closeIdle() {
	for cl := lp.clients.first; cl != nil; {
		next := cl.next
		if cl.ex == nil && cl.r == cl.w {
			cl.close()
		}
		cl = next
	}
}

// forget drops what the loop holds of a removed upstream: its idle
// connections close, and requests waiting for one fail (and are retried
// on another member by the usual rules).
func (lp *loop) forget(u *Upstream) {
	for i := len(lp.idle[u.index]) - 1; i >= 0; i-- {
		if mc := lp.idle[u.index][i]; mc.up == u {
			mc.close(nil)
		}
	}
	w := lp.waiting[u.index]
	lp.waiting[u.index] = nil
	for _, x := range w {
		if x.up == u {
			x.waitTimer.Stop()
			x.failed(&memberError{failConnect, errors.New("member removed")})
		} else {
			lp.waiting[u.index] = append(lp.waiting[u.index], x)
		}
	}
}

// closeAll closes every connection of the loop, at the end.
func (lp *loop) closeAll() {
	for lp.clients.first != nil {
		lp.clients.first.close()
	}
	for i := range lp.idle {
		for len(lp.idle[i]) > 0 {
			lp.idle[i][len(lp.idle[i])-1].close(nil)
		}
	}
}

// clientList is the loop's client connections, linked through them: an
// idle connection costs two pointers here rather than a map entry.
type clientList struct{ first *clientConn }

func (l *clientList) add(cl *clientConn) {
	cl.next = l.first
	if l.first != nil {
		l.first.prev = cl
	}
	l.first = cl
}

func (l *clientList) remove(cl *clientConn) {
	if cl.prev != nil {
		cl.prev.next = cl.next
	} else if l.first == cl {
		l.first = cl.next
	}
	if cl.next != nil {
		cl.next.prev = cl.prev
	}
	cl.prev, cl.next = nil, nil
}
