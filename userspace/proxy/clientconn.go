package proxy

import (
	"io"
	"net"
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
}

func (c *clientConn) Read(b []byte) (int, error) {
	n, err := c.idleConn.Read(b)
	if n > 0 {
		c.used = true
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

// readingBody starts the body phase of the request being handled.
func (c *clientConn) readingBody() {
	c.read = silence{timeout: c.bodyTimeout}
}

// clientListener wraps accepted client connections in clientConn.
type clientListener struct {
	net.Listener
	opts *Options
}

func (l *clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &clientConn{
		idleConn:    idleConn{Conn: c, write: silence{timeout: l.opts.ClientSendTimeout}},
		bodyTimeout: l.opts.ClientBodyTimeout,
	}, nil
}
