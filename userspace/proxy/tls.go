package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/netip"
	"sync"
)

// ServeTLS accepts TLS clients on ln until Drain. Each connection's
// handshake (in a goroutine, bounded by --client-header-timeout) decides
// who serves it: HTTP/1.1 goes to a loop
// through a bridge, HTTP/2 through a frameGuard to net/http's HTTP/2
// server, whose streams come to a loop one request each (serveHTTP2). A connection holds one of
// --max-client-conns from its accept on, as a plain one does.
func (p *Proxy) ServeTLS(ln net.Listener, config *tls.Config) error {
	cl, err := newClientListener(ln)
	if err != nil {
		return err
	}
	if !p.addListener(cl) {
		return nil
	}
	p.h2Once.Do(p.startHTTP2)
	if p.h2 == nil { // Drain came first
		cl.Close()
		return nil
	}
	h2 := newConnQueue(cl)
	h2done := make(chan struct{})
	go func() {
		p.h2.Serve(h2)
		close(h2done)
	}()
	err = p.acceptFds(cl, func(fd int, remote netip.AddrPort) {
		c, err := fdConn(fd)
		if err != nil {
			p.log.Warn("TLS client connection not served", "client", remote.String(), "err", err)
			p.releaseSlot()
			return
		}
		go p.handshake(&slotConn{Conn: c, release: p.releaseSlot}, remote, config, h2)
	})
	h2.Close()
	<-h2done
	return err
}

// handshake completes a TLS handshake and hands the connection over by
// the protocol the client chose.
func (p *Proxy) handshake(c *slotConn, remote netip.AddrPort, config *tls.Config, h2 *connQueue) {
	tc := tls.Server(c, config)
	// The handshake comes before the first request's head and is bounded
	// the same way, however slowly it trickles in.
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.ClientHeaderTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		p.metrics.TLSHandshakeFailed()
		p.log.Debug("TLS handshake failed", "client", remote.String(), "err", err)
		tc.Close()
		return
	}
	state := tc.ConnectionState()
	if state.NegotiatedProtocol == "h2" {
		h2.push(newFrameGuard(tc, state, p.opts.MaxHeaderBytes, p.metrics.HTTP2ResetUnforwarded))
		return
	}
	lp := p.pickLoop()
	b := newBridge(lp)
	b.onClose = func() { tc.Close() }
	lp.nl.Post(func() {
		cl := lp.newClient(remote, &state)
		cl.io, b.cl = b, cl
		cl.slotless = true // the slotConn frees the slot when it closes
		cl.start()
		go b.readFrom(tc)
		go b.writeTo(tc)
	})
}

// slotConn is a client connection that frees its connection slot when it
// is closed, once however often (TLS and the HTTP/2 server both close).
type slotConn struct {
	net.Conn
	release func()
	once    sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// CloseWrite half-closes the TCP connection under TLS.
func (c *slotConn) CloseWrite() error {
	if tc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return tc.CloseWrite()
	}
	return nil
}

// connQueue is a net.Listener fed with connections whose TLS handshake is
// done, for the HTTP/2 server. Closing it closes the listener the
// connections came from.
type connQueue struct {
	ln     net.Listener
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(ln net.Listener) *connQueue {
	return &connQueue{ln: ln, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.closed:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() {
		close(q.closed)
		q.ln.Close()
	})
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.ln.Addr() }
