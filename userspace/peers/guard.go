package peers

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// guard is the transport memberlist runs on: memberlist's own NetTransport
// (UDP and TCP sockets) with a check in front. Every packet, and the first
// message of every stream, must be sealed with the tier's key before
// memberlist sees it; what is not is dropped and counted as refused.
//
// Why not let memberlist refuse it: it does (ingestPacket and handleConn in
// its net.go), but only says so in a log line, "Decrypt packet failed" or
// "failed to receive": no counter, no callback, no error anyone can read,
// and parsing log text breaks on any rewording. So the guard opens each one
// itself with the same key, in memberlist's format (security.go): a version
// byte (0 or 1), a 12-byte nonce, then the AES-GCM ciphertext and tag; on a
// stream, preceded by the encryptMsg type byte (10) and a 4-byte length,
// both authenticated as additional data. That format is memberlist's wire
// protocol, fixed across versions; if an upgrade changed it, every packet
// would be refused here, loudly and in every test, not silently uncounted.
// What passes goes on unchanged, and memberlist decrypts it again.
//
// Without a key (a loopback-only tier) everything passes.
//
// The guard also dials with a context cancelled at Shutdown and closes
// every connection it handed out, so that Close ends memberlist's stream
// goroutines at once rather than when their timeouts run out.
type guard struct {
	inner      *memberlist.NetTransport
	aead       cipher.AEAD
	tcpTimeout time.Duration
	refused    func()
	contact    func(addr string)

	packets   chan *memberlist.Packet
	streams   chan net.Conn
	ctx       context.Context
	stop      context.CancelFunc
	innerDone chan struct{}
	wg        sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Constants of memberlist's wire protocol (net.go, security.go).
const (
	mlEncryptMsg      = 10
	mlNonceSize       = 12
	mlSealedMin       = 1 + mlNonceSize + 16 // version, nonce, tag
	mlMaxStreamLength = 20 << 20             // maxPushStateBytes
)

var errClosed = errors.New("peers: member closed")

// newGuard wraps inner. refused is called for each packet or stream that
// fails the check; contact with the source address of each packet that
// passes.
func newGuard(inner *memberlist.NetTransport, key []byte, tcpTimeout time.Duration, refused func(), contact func(string)) (*guard, error) {
	g := &guard{
		inner:      inner,
		tcpTimeout: tcpTimeout,
		refused:    refused,
		contact:    contact,
		packets:    make(chan *memberlist.Packet),
		streams:    make(chan net.Conn),
		innerDone:  make(chan struct{}),
		conns:      map[net.Conn]struct{}{},
	}
	if key != nil {
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("peers: key: %w", err)
		}
		if g.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("peers: key: %w", err)
		}
	}
	g.ctx, g.stop = context.WithCancel(context.Background())
	g.wg.Add(2)
	go g.forwardPackets()
	go g.forwardStreams()
	return g, nil
}

var _ memberlist.NodeAwareTransport = (*guard)(nil)

func (g *guard) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return g.inner.FinalAdvertiseAddr(ip, port)
}

func (g *guard) WriteTo(b []byte, addr string) (time.Time, error) { return g.inner.WriteTo(b, addr) }

func (g *guard) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return g.inner.WriteToAddress(b, a)
}

func (g *guard) PacketCh() <-chan *memberlist.Packet { return g.packets }

func (g *guard) StreamCh() <-chan net.Conn { return g.streams }

func (g *guard) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return g.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (g *guard) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(g.ctx, "tcp", a.Addr)
	if err != nil {
		return nil, err
	}
	// memberlist sets no deadline on a user message it sends (sendUserMsg),
	// so a peer that stopped reading would hold the sender forever; where
	// memberlist sets deadlines of its own, they replace this one.
	if err := c.SetDeadline(time.Now().Add(g.tcpTimeout)); err != nil {
		c.Close()
		return nil, err
	}
	return g.adopt(c)
}

// adopt tracks c so Shutdown can close it, and checks what it reads.
func (g *guard) adopt(c net.Conn) (net.Conn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		c.Close()
		return nil, errClosed
	}
	g.conns[c] = struct{}{}
	return &guardedConn{Conn: c, g: g}, nil
}

func (g *guard) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

// Shutdown stops the sockets and the forwarding goroutines. The forwarders
// keep draining the inner transport while it shuts down, because its
// listeners block on handing over a packet or connection and it waits for
// them.
func (g *guard) Shutdown() error {
	g.stop()
	g.mu.Lock()
	g.closed = true
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	err := g.inner.Shutdown()
	close(g.innerDone)
	g.wg.Wait()
	return err
}

func (g *guard) forwardPackets() {
	defer g.wg.Done()
	in := g.inner.PacketCh()
	for {
		select {
		case p := <-in:
			if g.aead != nil && !g.opens(p.Buf, nil) {
				g.refused()
				continue
			}
			g.contact(p.From.String())
			select {
			case g.packets <- p:
			case <-g.ctx.Done():
			}
		case <-g.innerDone:
			return
		}
	}
}

func (g *guard) forwardStreams() {
	defer g.wg.Done()
	in := g.inner.StreamCh()
	for {
		select {
		case c := <-in:
			gc, err := g.adopt(c)
			if err != nil {
				continue
			}
			select {
			case g.streams <- gc:
			case <-g.ctx.Done():
				gc.Close()
			}
		case <-g.innerDone:
			return
		}
	}
}

// opens reports whether sealed is memberlist's encryption of something
// under the key, with ad as additional data.
func (g *guard) opens(sealed, ad []byte) bool {
	if len(sealed) < mlSealedMin || sealed[0] > 1 {
		return false
	}
	_, err := g.aead.Open(nil, sealed[1:1+mlNonceSize], sealed[1+mlNonceSize:], ad)
	return err == nil
}

// firstMessage reads and checks the first message of a stream, returning
// its bytes for memberlist to read.
func (g *guard) firstMessage(r io.Reader) ([]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(r, head[:1]); err != nil {
		return nil, err // nothing sent: nothing to refuse
	}
	if head[0] != mlEncryptMsg {
		g.refused()
		return nil, fmt.Errorf("peers: refused a stream that is not encrypted (message type %d)", head[0])
	}
	if _, err := io.ReadFull(r, head[1:]); err != nil {
		return nil, fmt.Errorf("peers: stream: %w", err)
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > mlMaxStreamLength {
		g.refused()
		return nil, fmt.Errorf("peers: refused a stream message of %d bytes", n)
	}
	// Grown as bytes arrive, so a length alone reserves nothing.
	var buf bytes.Buffer
	buf.Write(head[:])
	if _, err := io.CopyN(&buf, r, int64(n)); err != nil {
		return nil, fmt.Errorf("peers: stream: %w", err)
	}
	if !g.opens(buf.Bytes()[len(head):], head[:]) {
		g.refused()
		return nil, errors.New("peers: refused a stream that fails authentication with the key")
	}
	return buf.Bytes(), nil
}

// guardedConn is a connection whose first message (what memberlist reads
// first, in either direction) is checked before memberlist reads it.
type guardedConn struct {
	net.Conn
	g       *guard
	checked bool
	first   []byte // the checked first message, still to be read
	err     error
}

func (c *guardedConn) Read(p []byte) (int, error) {
	if !c.checked {
		c.checked = true
		if c.g.aead != nil {
			c.first, c.err = c.g.firstMessage(c.Conn)
		}
	}
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}

func (c *guardedConn) Close() error {
	c.g.untrack(c.Conn)
	return c.Conn.Close()
}
