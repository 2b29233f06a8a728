package netloop

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Handler receives a connection's events, on its loop's goroutine.
type Handler interface {
	// Readable: bytes, an end of stream or an error wait to be read. With
	// reading paused, it is called only for a hang-up or an error.
	Readable()
	// Writable: what Write queued has all been written, and with it the
	// backpressure the handler may have applied is over. A failed flush
	// reaches the handler as an error from its next Write, or Readable.
	Writable()
}

// Conn is a non-blocking socket on a loop.
type Conn struct {
	l       *Loop
	fd      int
	h       Handler
	events  uint32
	paused  bool   // reading paused by the handler
	out     []byte // written by Write but not yet by the kernel
	outBuf  *Buffer
	werr    error // a failed flush, for the next Write
	closed  bool
	flushed bool   // the queue drained since Writable was last called
	dialing Dialer // set while a Dial is in progress
	written uint64 // bytes the kernel took
}

// Adopt puts a connected, non-blocking socket on the loop; the loop owns
// fd from now on and closes it with the Conn.
func (l *Loop) Adopt(fd int, h Handler) (*Conn, error) {
	c := &Conn{l: l, fd: fd, h: h}
	if err := l.register(c, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// Fd is the socket, for socket options and splicing.
func (c *Conn) Fd() int { return c.fd }

// Loop is the loop c runs on.
func (c *Conn) Loop() *Loop { return c.l }

// SetHandler hands c's events to h from now on.
func (c *Conn) SetHandler(h Handler) { c.h = h }

func (c *Conn) dispatch(ev uint32) {
	if c.dialing != nil {
		c.connected()
		return
	}
	if ev&unix.EPOLLOUT != 0 {
		switch {
		case len(c.out) > 0:
			c.flush()
		case c.events&unix.EPOLLOUT != 0: // WaitWritable
			c.l.modify(c, c.events&^unix.EPOLLOUT)
			c.flushed = true
		}
	}
	if c.closed {
		return
	}
	if c.flushed {
		c.flushed = false
		c.h.Writable()
		if c.closed {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 && (!c.paused || ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0) {
		c.h.Readable()
	}
}

// ErrClosed is returned by the I/O methods of a closed Conn.
var ErrClosed = errors.New("netloop: connection closed")

// Read reads what the socket holds into b. It returns 0, nil when nothing
// is there yet (the handler waits for its next Readable), and io.EOF at
// the end of the stream.
func (c *Conn) Read(b []byte) (int, error) {
	if c.closed {
		return 0, ErrClosed
	}
	for {
		n, err := readRaw(c.fd, b)
		switch {
		case err == nil && n == 0 && len(b) > 0:
			return 0, io.EOF
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EAGAIN):
			return 0, nil
		case errors.Is(err, unix.EINTR):
			continue
		}
		return 0, opError("read", err)
	}
}

// Write writes b, or queues what the kernel does not take yet (copied: b
// may be reused at once). Writes are in order; Queued says how much waits.
func (c *Conn) Write(b []byte) error {
	return c.Writev(b)
}

// Writev writes the buffers in order, with one writev(2) when nothing is
// queued, and queues what the kernel does not take.
func (c *Conn) Writev(bufs ...[]byte) error {
	if c.closed {
		return ErrClosed
	}
	if c.werr != nil {
		return c.werr
	}
	if len(c.out) > 0 {
		for _, b := range bufs {
			c.queue(b)
		}
		return nil
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total == 0 {
		return nil
	}
	var n int
	var err error
	for {
		if len(bufs) == 1 {
			n, err = writeRaw(c.fd, bufs[0])
		} else {
			n, err = c.l.writev(c.fd, bufs)
		}
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		n = 0
	case err != nil:
		c.werr = opError("write", err)
		return c.werr
	}
	c.written += uint64(n)
	if n == total {
		return nil
	}
	for _, b := range bufs {
		if n >= len(b) {
			n -= len(b)
			continue
		}
		c.queue(b[n:])
		n = 0
	}
	c.l.modify(c, c.events|unix.EPOLLOUT)
	return nil
}

// queue appends b to what waits to be written.
func (c *Conn) queue(b []byte) {
	if len(b) == 0 {
		return
	}
	if c.outBuf == nil {
		c.outBuf = c.l.Buffers.Get()
		c.out = c.outBuf.B[:0]
	}
	c.out = append(c.out, b...)
}

func (c *Conn) flush() {
	for len(c.out) > 0 {
		n, err := writeRaw(c.fd, c.out)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil:
			c.werr = opError("write", err)
			c.dropQueue()
			c.l.modify(c, c.events&^unix.EPOLLOUT)
			c.h.Readable() // the handler learns of it from its I/O
			return
		}
		c.out = c.out[n:]
		c.written += uint64(n)
	}
	c.dropQueue()
	c.l.modify(c, c.events&^unix.EPOLLOUT)
	c.flushed = true
}

func (c *Conn) dropQueue() {
	c.out = nil
	if c.outBuf != nil {
		c.l.Buffers.Put(c.outBuf)
		c.outBuf = nil
	}
}

// WaitWritable asks for a Writable call once the socket can take bytes
// again, after a write the caller made itself (a splice) could not
// complete.
func (c *Conn) WaitWritable() {
	if !c.closed {
		c.l.modify(c, c.events|unix.EPOLLOUT)
	}
}

// Flushed is the number of bytes the kernel has taken so far: a writer
// bounding a peer's silence compares it over time.
func (c *Conn) Flushed() uint64 { return c.written }

// Queued is the number of bytes written but not yet taken by the kernel.
func (c *Conn) Queued() int { return len(c.out) }

// PauseRead stops Readable calls (but for hang-ups and errors) until
// ResumeRead: the handler stops taking bytes from a peer whose bytes it
// cannot pass on yet, and the kernel's buffers then slow the peer down.
func (c *Conn) PauseRead() {
	if !c.paused && !c.closed {
		c.paused = true
		c.l.modify(c, c.events&^(unix.EPOLLIN|unix.EPOLLRDHUP))
	}
}

// ResumeRead undoes PauseRead.
func (c *Conn) ResumeRead() {
	if c.paused && !c.closed {
		c.paused = false
		c.l.modify(c, c.events|unix.EPOLLIN|unix.EPOLLRDHUP)
	}
}

// CloseWrite sends FIN: the peer reads an end of stream, and may still
// send.
func (c *Conn) CloseWrite() error {
	if c.closed {
		return ErrClosed
	}
	return unix.Shutdown(c.fd, unix.SHUT_WR)
}

// Close removes c from its loop and closes the socket at once; what is
// still queued is dropped.
func (c *Conn) Close() {
	if c.closed {
		return
	}
	c.closed = true
	c.l.unregister(c)
	c.dropQueue()
	unix.Close(c.fd)
}

// Closed reports whether Close was called.
func (c *Conn) Closed() bool { return c.closed }

// Detach removes c from its loop without closing the socket, and returns
// it: its owner serves it elsewhere (a goroutine) from now on. Nothing may
// be queued.
func (c *Conn) Detach() (int, error) {
	if c.closed {
		return -1, ErrClosed
	}
	if len(c.out) > 0 {
		return -1, errors.New("netloop: detach with output queued")
	}
	c.closed = true
	c.l.unregister(c)
	return c.fd, nil
}

func opError(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }
