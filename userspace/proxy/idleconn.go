package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// idleConn bounds silence rather than total time: Reads and Writes push
// its deadline forward, so a multi-gigabyte stream lives as long as bytes
// keep moving, while a peer that stops answering is cut off after timeout.
//
// Moving a deadline on every call would cost a clock read and a timer
// update per syscall, and reading the clock is slow on virtual machines.
// So each call only compares a coarse clock (updated every coarseTick) with
// the time the deadline was last set, and sets a new one once timeout/8 has
// passed. The effective limit is thus at least 7/8 of timeout, less one tick.
type idleConn struct {
	net.Conn
	timeout           time.Duration
	readAt, writeAt   int64 // coarse time the deadlines were last set; 0: unset
	readSet, writeSet bool
	// open, for a client connection, counts the proxy's open client
	// connections (Drain waits for it to reach 0); nil for members.
	open   *atomic.Int64
	closed atomic.Bool
}

const coarseTick = 50 * time.Millisecond

var (
	coarseNanos     atomic.Int64
	coarseClockOnce sync.Once
)

// coarseNow returns the time in unix nanoseconds, at most coarseTick old.
func coarseNow() int64 {
	coarseClockOnce.Do(func() {
		coarseNanos.Store(time.Now().UnixNano())
		go func() {
			for t := range time.Tick(coarseTick) {
				coarseNanos.Store(t.UnixNano())
			}
		}()
	})
	return coarseNanos.Load()
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, timeout: timeout}
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := coarseNow(); !c.readSet || time.Duration(now-c.readAt) > c.timeout/8 {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		c.readAt, c.readSet = now, true
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	if now := coarseNow(); !c.writeSet || time.Duration(now-c.writeAt) > c.timeout/8 {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
			return 0, err
		}
		c.writeAt, c.writeSet = now, true
	}
	return c.Conn.Write(b)
}

// SetReadDeadline lets the owner (fasthttp) set its own deadline; the next
// Read starts counting silence again from there.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.readSet = false
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline is SetReadDeadline's twin for writes.
func (c *idleConn) SetWriteDeadline(t time.Time) error {
	c.writeSet = false
	return c.Conn.SetWriteDeadline(t)
}

// Close closes the connection, and counts it closed once.
func (c *idleConn) Close() error {
	if c.open != nil && c.closed.CompareAndSwap(false, true) {
		c.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite half-closes a TCP connection, so a tunnel can pass on the end
// of one direction while the other still flows.
func (c *idleConn) CloseWrite() error {
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return c.Conn.Close()
}

// clientConn wraps a client connection in an idleConn that counts it
// among the open ones.
func (p *Proxy) clientConn(c net.Conn) *idleConn {
	ic := newIdleConn(c, p.opts.ClientTimeout)
	ic.open = &p.openConns
	p.openConns.Add(1)
	return ic
}

// clientListener wraps the connections ln accepts with clientConn.
type clientListener struct {
	net.Listener
	p *Proxy
}

func (l clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.p.clientConn(c), nil
}
