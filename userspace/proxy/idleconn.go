package proxy

import (
	"net"
	"time"
)

// idleConn bounds silence rather than total time: each Read or Write pushes
// its deadline forward, so a multi-gigabyte stream lives as long as bytes
// keep moving, while a peer that stops answering is cut off after timeout.
// The deadline is moved at most every timeout/8 to keep the syscall-free
// fast path cheap; the effective limit is thus between 7/8 and all of it.
type idleConn struct {
	net.Conn
	timeout           time.Duration
	readAt, writeAt   time.Time // last deadline bases
	readSet, writeSet bool
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	return &idleConn{Conn: c, timeout: timeout}
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := time.Now(); !c.readSet || now.Sub(c.readAt) > c.timeout/8 {
		if err := c.Conn.SetReadDeadline(now.Add(c.timeout)); err != nil {
			return 0, err
		}
		c.readAt, c.readSet = now, true
	}
	return c.Conn.Read(b)
}

func (c *idleConn) Write(b []byte) (int, error) {
	if now := time.Now(); !c.writeSet || now.Sub(c.writeAt) > c.timeout/8 {
		if err := c.Conn.SetWriteDeadline(now.Add(c.timeout)); err != nil {
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

// CloseWrite half-closes a TCP connection, so a tunnel can pass on the end
// of one direction while the other still flows.
func (c *idleConn) CloseWrite() error {
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return c.Conn.Close()
}

// idleListener wraps accepted client connections in idleConn.
type idleListener struct {
	net.Listener
	timeout time.Duration
}

func (l idleListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newIdleConn(c, l.timeout), nil
}
