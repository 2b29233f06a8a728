package netloop

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// Pipe moves bytes from one socket to another through the kernel
// (splice(2)), never copying them into user space: for large bodies, where
// copying costs more than the two extra system calls per pipeful.
type Pipe struct {
	r, w int
	n    int // bytes in the pipe
	next *Pipe
}

// pipeSize is asked of the kernel for each pipe: larger pipes move a body
// in fewer calls (the default is 64 KiB).
const pipeSize = 1 << 20

// GetPipe lends an empty pipe from the loop's free list, or makes one.
func (l *Loop) GetPipe() (*Pipe, error) {
	if p := l.pipes; p != nil {
		l.pipes, p.next = p.next, nil
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize) // a smaller pipe still works
	return &Pipe{r: fds[0], w: fds[1]}, nil
}

// PutPipe gives p back; a pipe that still holds bytes is closed instead.
func (l *Loop) PutPipe(p *Pipe) {
	if p.n > 0 {
		p.Close()
		return
	}
	p.next = l.pipes
	l.pipes = p
}

// Close closes both ends of p.
func (p *Pipe) Close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// Buffered is the number of bytes in p.
func (p *Pipe) Buffered() int { return p.n }

// Fill moves up to max bytes from c's socket into p. It returns 0, nil
// when c has none ready, io.EOF at its end of stream.
func (p *Pipe) Fill(c *Conn, max int) (int, error) {
	for {
		n, err := spliceRaw(c.fd, p.w, max)
		switch {
		case err == nil && n == 0:
			return 0, io.EOF
		case err == nil:
			p.n += int(n)
			return int(n), nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, nil
		}
		return 0, opError("splice from socket", err)
	}
}

// Drain moves what p holds into c's socket, as much as it takes; the rest
// stays (the caller waits with c.WaitWritable).
func (p *Pipe) Drain(c *Conn) (int, error) {
	total := 0
	for p.n > 0 {
		n, err := spliceRaw(p.r, c.fd, p.n)
		switch {
		case err == nil:
			p.n -= int(n)
			total += int(n)
			c.written += uint64(n)
			continue
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return total, nil
		}
		return total, opError("splice to socket", err)
	}
	return total, nil
}
