package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// clientConn is a client connection. How long a client may take depends
// on what it is doing, so its read deadline follows the request on it:
//
//   - waiting for a request on a kept-alive connection: fasthttp's
//     IdleTimeout (--client-idle-timeout), after which it closes the
//     connection without a word;
//   - sending a request head: fasthttp's ReadTimeout
//     (--client-header-timeout), set once, at the connection's start or a
//     later request's first byte, so a head trickled a byte at a time
//     (slowloris) cannot outlive it, unlike a silence bound; then 408;
//   - sending a body: from the handler on (readingBody), a silence bound
//     of --client-body-timeout, so a long upload lives while it moves;
//     then 408. fasthttp reads up to 8 KiB of a body before the handler
//     runs; headerReceived gives that read the body timeout too. After an
//     upgrade the bound stays on the tunnel's client side.
//
// fasthttp setting a read deadline (idle, head, body's first bytes) ends
// the body phase. Writes are bounded by --client-send-timeout of silence.
type clientConn struct {
	idleConn
	bodyTimeout time.Duration
	used        bool // a byte has arrived on the connection
	// lineEnded: the request line of the head being read is complete.
	// When a head outgrows the read buffer, fasthttp only says so; this
	// tells a request line too long (414) from too many header bytes
	// (431). Reads are scanned for it only while a head is read (fasthttp's
	// deadlines govern) and only until found, so a request costs one
	// IndexByte over its first read.
	lineEnded bool
	slots     chan struct{} // the proxy's connection slots; Close frees one
	closed    atomic.Bool
}

func (c *clientConn) Read(b []byte) (int, error) {
	n, err := c.idleConn.Read(b)
	if n > 0 {
		c.used = true
		if !c.lineEnded && c.read.timeout == 0 {
			c.lineEnded = bytes.IndexByte(b[:n], '\n') >= 0
		}
	} else if !c.used && isTimeout(err) {
		// Nothing ever came: most likely a browser's speculative
		// preconnect. A 408 on it would surface in the browser as a
		// failed request once it does use the connection; fasthttp
		// closes quietly on a connection the client closed.
		return 0, io.EOF
	}
	return n, err
}

// SetReadDeadline is fasthttp's deadline for the next request or its head:
// it replaces the body phase's silence bound.
func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.read = silence{}
	return c.Conn.SetReadDeadline(t)
}

// readingBody starts the body phase of the request being handled; the
// next head is read from the start.
func (c *clientConn) readingBody() {
	c.read = silence{timeout: c.bodyTimeout}
	c.lineEnded = false
}

// clientConnOf returns the clientConn under a request's connection, which
// fasthttp hands over as it got it: the clientConn itself, or a TLS
// connection over one. It fails only for a connection that did not come
// from a clientListener.
func clientConnOf(c net.Conn) (*clientConn, bool) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn()
	}
	cc, ok := c.(*clientConn)
	return cc, ok
}

// Close frees the connection's slot, once however often it is called (a
// tunnel and fasthttp both close a hijacked connection).
func (c *clientConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		<-c.slots
	}
	return c.Conn.Close()
}

// clientListener wraps accepted client connections in clientConn, and
// admits at most cap(slots) of them at once (--max-client-conns), across
// all the proxy's listeners, tunnels included. At the limit it stops
// accepting: new clients wait in the kernel's accept queue until a
// connection ends, as with HAProxy's maxconn and nginx's
// worker_connections. fasthttp's own limit would instead answer them 503
// at once and close, usually with their request unread, which resets the
// connection before the client reads the answer.
type clientListener struct {
	net.Listener
	opts      *Options
	slots     chan struct{}
	accepted  *atomic.Uint64 // the proxy's count of connections accepted
	done      chan struct{}  // closed by Close: stop waiting for a slot
	closeOnce sync.Once
}

func newClientListener(ln net.Listener, opts *Options, slots chan struct{}, accepted *atomic.Uint64) *clientListener {
	return &clientListener{Listener: ln, opts: opts, slots: slots, accepted: accepted, done: make(chan struct{})}
}

// Accept accepts a connection and then waits for a slot. Waiting first
// would have every listener hold a slot while idle in Accept, and at the
// limit the one holding the last slot would starve the others; this way
// a listener holds at most one connection past the limit, unserved.
func (l *clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		c.Close()
		return nil, net.ErrClosed
	}
	return &clientConn{
		idleConn:    idleConn{Conn: c, write: silence{timeout: l.opts.ClientSendTimeout}},
		bodyTimeout: l.opts.ClientBodyTimeout,
		slots:       l.slots,
	}, nil
}

func (l *clientListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}
