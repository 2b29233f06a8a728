package proxy

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// silence bounds the silence in one direction of a connection rather than
// total time: each Read (or Write) pushes the deadline forward, so a
// multi-gigabyte stream lives as long as bytes keep moving, while a peer
// that stops answering is cut off after timeout.
//
// Moving a deadline on every call would cost a clock read and a timer
// update per syscall, and reading the clock is slow on virtual machines.
// So each call only compares a coarse clock (updated every coarseTick) with
// the time the deadline was last set, and sets a new one once timeout/8 has
// passed. The effective limit is thus at least 7/8 of timeout, less one tick.
type silence struct {
	timeout time.Duration // 0: no bound here; the connection's owner sets deadlines
	at      int64         // coarse time the deadline was last set
	set     bool          // the deadline is ours, set at at
}

// due reports whether the deadline must be moved before the next call, and
// if so records that it is.
func (s *silence) due() bool {
	if s.timeout == 0 {
		return false
	}
	if now := coarseNow(); !s.set || time.Duration(now-s.at) > s.timeout/8 {
		s.at, s.set = now, true
		return true
	}
	return false
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

// idleConn bounds the silence of each direction of a connection (see
// silence). Backend connections bound both with --backend-timeout.
type idleConn struct {
	net.Conn
	read, write silence
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, read: silence{timeout: timeout}, write: silence{timeout: timeout}}
}

func (c *idleConn) Read(b []byte) (int, error) {
	if c.read.due() {
		if err := c.Conn.SetReadDeadline(time.Now().Add(c.read.timeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	if c.write.due() {
		if err := c.Conn.SetWriteDeadline(time.Now().Add(c.write.timeout)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// SetReadDeadline lets the owner (fasthttp) set its own deadline; the next
// Read starts counting silence again from there.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.read.set = false
	return c.Conn.SetReadDeadline(t)
}

// SetWriteDeadline is SetReadDeadline's twin for writes.
func (c *idleConn) SetWriteDeadline(t time.Time) error {
	c.write.set = false
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline is both; fasthttp clears the deadlines with it before it
// hands a connection over to a tunnel.
func (c *idleConn) SetDeadline(t time.Time) error {
	c.read.set, c.write.set = false, false
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes a TCP connection, so a tunnel can pass on the end
// of one direction while the other still flows.
func (c *idleConn) CloseWrite() error {
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return c.Conn.Close()
}
