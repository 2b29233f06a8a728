package proxy

import (
	"errors"
	"io"
	"sync"
)

// bridge is a client connection whose bytes a goroutine reads and another
// writes, on the loop's behalf: TLS (Go has no non-blocking TLS), and
// HTTP/2 streams, which net/http's server hands over as a request and a
// ResponseWriter. The loop sees a clientIO like a socket: Readable when
// bytes came, Writable when what it wrote has gone. Each side holds at
// most one buffer of bytes in flight, so a slow peer on either side slows
// the other down as a socket's would.
type bridge struct {
	lp *loop
	cl *clientConn

	mu       sync.Mutex
	in       []byte // read by the reader, not yet by the loop
	inErr    error  // how the reader's stream ended
	more     chan struct{}
	out      []byte // written by the loop, not yet by the writer
	writing  int    // bytes the writer is writing now
	spare    []byte
	flushed  uint64
	outErr   error
	shutdown bool // CloseWrite: end the stream once out is written
	closed   bool
	wake     chan struct{}
	done     chan struct{} // closed by Close: both goroutines end
	// onClose ends the streams the goroutines may be blocked on (a TLS
	// connection's Close).
	onClose func()

	// Loop-side state.
	paused bool
	posted bool // a delivery is posted and not yet run
}

// bridgeBufSize is what the reader reads at a time.
const bridgeBufSize = 16 << 10

func newBridge(lp *loop) *bridge {
	return &bridge{lp: lp, more: make(chan struct{}, 1), wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// readFrom feeds the loop what src yields, one buffer at a time, until
// src ends or the bridge closes. It runs in a goroutine of its own.
func (b *bridge) readFrom(src io.Reader) {
	buf := make([]byte, bridgeBufSize)
	for {
		n, err := src.Read(buf)
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return
		}
		b.in = append(b.in, buf[:n]...)
		if err != nil {
			b.inErr = err
		}
		b.mu.Unlock()
		b.lp.nl.Post(b.deliver)
		if err != nil {
			return
		}
		select {
		case <-b.more:
		case <-b.done:
			return
		}
	}
}

// writeTo writes to dst what the loop writes, until the loop closes the
// bridge or dst fails; it runs in a goroutine that may block (a handler's).
func (b *bridge) writeTo(dst io.Writer) {
	for {
		select {
		case <-b.wake:
		case <-b.done:
			return
		}
		for {
			b.mu.Lock()
			data := b.out
			b.out, b.spare = b.spare[:0], nil
			b.writing = len(data)
			shutdown := b.shutdown && len(data) == 0
			b.mu.Unlock()
			if shutdown {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				break
			}
			if len(data) == 0 {
				break
			}
			n, err := dst.Write(data)
			b.mu.Lock()
			b.flushed += uint64(n)
			b.writing = 0
			b.spare = data[:0]
			if err != nil {
				b.outErr = err
			}
			drained := len(b.out) == 0
			b.mu.Unlock()
			if err != nil {
				b.lp.nl.Post(b.deliver) // the loop learns of it from its next Write or Read
				return
			}
			if drained {
				b.lp.nl.Post(b.writable)
			}
		}
	}
}

// deliver runs on the loop: the client has something to say.
func (b *bridge) deliver() {
	b.posted = false
	if b.cl != nil && !b.cl.closed && (!b.paused || b.failed()) {
		b.cl.Readable()
	}
}

func (b *bridge) failed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.outErr != nil || (b.inErr != nil && !errors.Is(b.inErr, io.EOF))
}

func (b *bridge) writable() {
	if b.cl != nil && !b.cl.closed {
		b.cl.Writable()
	}
}

// The clientIO methods, called on the loop.

func (b *bridge) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errBridgeClosed
	}
	if b.outErr != nil {
		return 0, b.outErr
	}
	n := copy(p, b.in)
	b.in = b.in[:copy(b.in, b.in[n:])]
	if len(b.in) > 0 && !b.posted {
		// Like a level-triggered socket: more is there, so Readable
		// comes again.
		b.posted = true
		b.lp.nl.Post(b.deliver)
	}
	if len(b.in) == 0 {
		if b.inErr != nil && n == 0 {
			return 0, b.inErr
		}
		select {
		case b.more <- struct{}{}:
		default:
		}
	}
	return n, nil
}

var errBridgeClosed = errors.New("client connection closed")

func (b *bridge) Writev(bufs ...[]byte) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errBridgeClosed
	}
	if b.outErr != nil {
		err := b.outErr
		b.mu.Unlock()
		return err
	}
	for _, p := range bufs {
		b.out = append(b.out, p...)
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

func (b *bridge) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.out) + b.writing
}

func (b *bridge) Flushed() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushed
}

func (b *bridge) PauseRead() { b.paused = true }

func (b *bridge) ResumeRead() {
	if !b.paused {
		return
	}
	b.paused = false
	b.mu.Lock()
	pending := len(b.in) > 0 || b.inErr != nil
	b.mu.Unlock()
	if pending && !b.posted {
		b.posted = true
		b.lp.nl.Post(b.deliver)
	}
}

// CloseWrite ends the stream to the client once what was written has
// gone.
func (b *bridge) CloseWrite() error {
	b.mu.Lock()
	b.shutdown = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close stops both goroutines, and closes the streams (onClose).
func (b *bridge) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()
	close(b.done)
	if b.onClose != nil {
		b.onClose()
	}
}

// Fd: a bridged connection cannot be spliced to.
func (b *bridge) Fd() int { return -1 }
