package netloop

import (
	"bytes"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func startLoop(t *testing.T) *Loop {
	t.Helper()
	l, err := New(4096)
	if err != nil {
		t.Fatal(err)
	}
	go l.Run()
	t.Cleanup(l.Stop)
	return l
}

// on runs f on l and waits for it.
func on(l *Loop, f func()) {
	done := make(chan struct{})
	l.Post(func() { f(); close(done) })
	<-done
}

// echo copies what its connection reads back to it, pausing reads while
// a write is queued.
type echo struct {
	c   *Conn
	buf []byte
}

func (e *echo) Readable() {
	n, err := e.c.Read(e.buf)
	if err != nil {
		e.c.Close()
		return
	}
	if n == 0 {
		return
	}
	if err := e.c.Write(e.buf[:n]); err != nil {
		e.c.Close()
		return
	}
	if e.c.Queued() > 0 {
		e.c.PauseRead()
	}
}

func (e *echo) Writable() { e.c.ResumeRead() }

// adoptPair returns a client net.Conn whose server end is adopted by l
// with h(c).
func adoptPair(t *testing.T, l *Loop, h func(*Conn) Handler) net.Conn {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	on(l, func() {
		var c *Conn
		c, err = l.Adopt(fds[0], nil)
		if err == nil {
			c.SetHandler(h(c))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	f := fileConn(t, fds[1])
	t.Cleanup(func() { f.Close() })
	return f
}

func fileConn(t *testing.T, fd int) net.Conn {
	t.Helper()
	unix.SetNonblock(fd, false)
	f, err := net.FileConn(osFile(fd))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A large echo through a connection that pauses reading while its writes
// queue arrives whole and in order: backpressure loses nothing.
func TestEchoWithBackpressure(t *testing.T) {
	l := startLoop(t)
	client := adoptPair(t, l, func(c *Conn) Handler { return &echo{c: c, buf: make([]byte, 1000)} })
	data := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz"), 100000) // 3.6 MB
	go client.Write(data)
	got := make([]byte, len(data))
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("echo corrupted")
	}
	on(l, func() {
		if l.Buffers.Lent != 0 {
			t.Errorf("%d buffers still lent after the echo", l.Buffers.Lent)
		}
	})
}

type dialed struct {
	err  chan error
	read chan []byte
	c    *Conn
}

func (d *dialed) Connected(err error) { d.err <- err }
func (d *dialed) Writable()           {}
func (d *dialed) Readable() {
	b := make([]byte, 100)
	n, err := d.c.Read(b)
	if err != nil {
		d.c.Close()
		return
	}
	d.read <- b[:n]
}

func TestDial(t *testing.T) {
	l := startLoop(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.WriteString(c, "hello")
			c.Close()
		}
	}()
	d := &dialed{err: make(chan error, 1), read: make(chan []byte, 4)}
	on(l, func() { d.c, err = l.Dial(netip.MustParseAddrPort(ln.Addr().String()), d) })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-d.err; err != nil {
		t.Fatal(err)
	}
	if got := <-d.read; string(got) != "hello" {
		t.Fatalf("read %q", got)
	}

	// Nothing listens: the failure comes through Connected.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := netip.MustParseAddrPort(dead.Addr().String())
	dead.Close()
	d = &dialed{err: make(chan error, 1), read: make(chan []byte, 1)}
	on(l, func() { d.c, err = l.Dial(addr, d) })
	if err != nil {
		t.Fatal(err)
	}
	if err := <-d.err; err == nil {
		t.Fatal("connected to nothing")
	}
	on(l, func() { d.c.Close() })
}

// Timers fire after their deadline, not before; a timer pushed later
// fires at its new deadline; a stopped one never fires.
func TestTimers(t *testing.T) {
	l := startLoop(t)
	var fired [3]atomic.Int64
	start := time.Now()
	var moved, stopped *Timer
	on(l, func() {
		l.NewTimer(func() { fired[0].Store(time.Since(start).Nanoseconds()) }).Set(50 * time.Millisecond)
		moved = l.NewTimer(func() { fired[1].Store(time.Since(start).Nanoseconds()) })
		moved.Set(30 * time.Millisecond)
		stopped = l.NewTimer(func() { fired[2].Store(1) })
		stopped.Set(20 * time.Millisecond)
	})
	on(l, func() {
		moved.Set(6 * time.Second) // beyond one turn of the wheel
		stopped.Stop()
	})
	deadline := time.Now().Add(20 * time.Second)
	for fired[1].Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d := time.Duration(fired[0].Load()); d < 50*time.Millisecond {
		t.Errorf("50ms timer fired after %v", d)
	}
	if d := time.Duration(fired[1].Load()); d < 6*time.Second {
		t.Errorf("timer moved to 6s fired after %v", d)
	}
	if fired[2].Load() != 0 {
		t.Error("a stopped timer fired")
	}
}

// A wait whose deadline passed before its timer's slot came round (the
// wall clock stepped back) sets the deadline again, and the next wait
// still serves the events that are ready rather than ending at once.
func TestWaitAfterAnEarlyDeadline(t *testing.T) {
	l, err := New(4096) // not running: the test drives wait itself
	if err != nil {
		t.Fatal(err)
	}
	defer l.epoll.Close()
	defer unix.Close(l.wakefd)
	l.NewTimer(func() {}).Set(time.Hour)
	// The deadline as wait sets it, then the poller's clock already past it.
	l.setDeadline(l.timers.due())
	l.epoll.SetReadDeadline(time.Now().Add(-time.Second))
	if n := l.wait(); n != 0 {
		t.Fatalf("nothing ready: %d events", n)
	}
	if l.deadline != -1 {
		t.Fatalf("the deadline is still %d after it passed", l.deadline)
	}
	l.wake()
	if n := l.wait(); n != 1 || int(l.events[0].Fd) != l.wakefd {
		t.Fatalf("after the deadline passed, a wait found %d events, want the eventfd", n)
	}
}

// Splicing through a pipe moves a stream between sockets intact.
func TestPipe(t *testing.T) {
	l := startLoop(t)
	var src, dst *Conn
	done := make(chan error, 1)
	var pipe *Pipe
	var pump func()
	pump = func() {
		for {
			if pipe.Buffered() > 0 {
				if _, err := pipe.Drain(dst); err != nil {
					done <- err
					return
				}
				if pipe.Buffered() > 0 {
					src.PauseRead()
					dst.WaitWritable()
					return
				}
			}
			n, err := pipe.Fill(src, 1<<20)
			if err == io.EOF {
				src.Close()
				dst.CloseWrite()
				done <- nil
				return
			}
			if err != nil {
				done <- err
				return
			}
			if n == 0 {
				src.ResumeRead()
				return
			}
		}
	}
	in := adoptPair(t, l, func(c *Conn) Handler { src = c; return handlerFunc{pump, nil} })
	out := adoptPair(t, l, func(c *Conn) Handler { dst = c; return handlerFunc{nil, pump} })
	on(l, func() {
		var err error
		if pipe, err = l.GetPipe(); err != nil {
			t.Error(err)
		}
	})
	data := bytes.Repeat([]byte("splice!"), 1<<20)
	go func() { in.Write(data); in.(interface{ CloseWrite() error }).CloseWrite() }()
	got, err := io.ReadAll(out)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("spliced %d of %d bytes: %v", len(got), len(data), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type handlerFunc struct{ readable, writable func() }

func (h handlerFunc) Readable() {
	if h.readable != nil {
		h.readable()
	}
}

func (h handlerFunc) Writable() {
	if h.writable != nil {
		h.writable()
	}
}

func osFile(fd int) *os.File { return os.NewFile(uintptr(fd), "socket") }
