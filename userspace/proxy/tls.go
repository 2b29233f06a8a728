package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
)

// ServeTLS accepts TLS clients on ln until Shutdown or Drain. Each
// connection's handshake decides who serves it: HTTP/1.1 goes to the same
// fasthttp server as plain clients (upgrades and all), HTTP/2 through a
// frameGuard to net/http's HTTP/2 server, whose requests an adapter hands
// to the same request path.
// A connection holds one of --max-client-conns from its accept on, as a
// plain one does.
func (p *Proxy) ServeTLS(ln net.Listener, config *tls.Config) error {
	cl := p.clientListener(ln)
	h1 := newConnQueue(cl)
	h2 := newConnQueue(cl)
	p.h2Once.Do(p.startHTTP2)
	if p.h2 == nil { // Drain or Shutdown came first
		cl.Close()
		return nil
	}
	h2done := make(chan struct{})
	go func() {
		p.h2.Serve(h2)
		close(h2done)
	}()
	go p.handshakes(cl, config, h1, h2)
	err := p.server.Serve(h1)
	h2.Close()
	<-h2done
	return err
}

// handshakes accepts connections on cl and completes their handshakes,
// each in its own goroutine.
func (p *Proxy) handshakes(cl *clientListener, config *tls.Config, h1, h2 *connQueue) {
	defer h1.Close()
	defer h2.Close()
	for {
		c, err := cl.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("TLS listener failed", "addr", cl.Addr().String(), "err", err)
			}
			return
		}
		go func() {
			// The client connection sits under TLS, so that its
			// deadlines and slot work however it is served.
			tc := tls.Server(c, config)
			// The handshake comes before the first request's head and
			// is bounded the same way, however slowly it trickles in.
			ctx, cancel := context.WithTimeout(context.Background(), p.opts.ClientHeaderTimeout)
			err := tc.HandshakeContext(ctx)
			cancel()
			if err != nil {
				p.metrics.TLSHandshakeFailed()
				p.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err)
				tc.Close()
				return
			}
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				h2.push(newFrameGuard(tc, tc.ConnectionState(), p.opts.MaxHeaderBytes, p.metrics.HTTP2ResetUnforwarded))
				return
			}
			h1.push(tc)
		}()
	}
}

// connQueue is a net.Listener fed with connections whose TLS handshake is
// done. Closing it closes the listener the connections came from, so that
// a server's Shutdown stops accepting on both queues.
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
