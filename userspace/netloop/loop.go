// Package netloop runs non-blocking sockets on epoll event loops: one
// goroutine per loop owns its connections, their timers and their buffers,
// so that the work of a request never crosses goroutines and never takes a
// lock. It is the ground the L7 proxy stands on; it knows nothing of HTTP.
//
// Why not a library: gnet, the closest, cannot pause reading a connection
// (backpressure), has no deadlines, no TLS, and binds its own listeners,
// while catherd must adopt the sockets it accepts itself (connection slots,
// the hand-off of listening sockets to a successor). Why not Go's net
// package: it gives every connection a goroutine and its buffers, about
// 20 KiB of memory per idle client where an event loop needs under one.
//
// Epoll is used level-triggered: a readable connection is read once per
// wakeup, so a request that arrives whole costs one read(2) rather than a
// read and a second one that finds nothing (EAGAIN), as edge-triggered
// readers must do. A loop does not block its thread waiting for events:
// it parks on Go's poller (Loop.wait), and its reads and writes are raw
// system calls, which keep its P (sys.go).
package netloop

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Loop is one event loop. Everything it runs (handlers, timers, posted
// functions) runs on its goroutine, one at a time.
type Loop struct {
	epfd   int
	wakefd int // eventfd: Post wakes a loop blocked in epoll_wait
	// epoll is epfd as Go's poller sees it: the loop parks there, as
	// any goroutine waiting for a socket does, rather than blocking its
	// thread in epoll_wait (see wait).
	epoll    *os.File
	epollRaw syscall.RawConn
	deadline int64 // epoll's read deadline as last set, unix nanoseconds; 0: none, -1: to be set
	conns    []*Conn
	events   []unix.EpollEvent
	now      int64 // unix nanoseconds at the last wakeup
	timers   wheel
	// Buffers is the loop's free list of I/O buffers.
	Buffers BufferPool
	pipes   *Pipe        // free list of empty pipes
	iov     []unix.Iovec // writev's vector, reused

	mu       sync.Mutex
	ended    bool // Run has returned and closed wakefd
	posted   []func()
	running  []func() // the batch being run; reused
	sleeping atomic.Bool
	stopped  atomic.Bool
	done     chan struct{}
}

// New creates a loop whose buffers are bufSize bytes.
func New(bufSize int) (*Loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	// Non-blocking, so that os.NewFile hands it to Go's poller: an epoll
	// instance is readable while it has events ready.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	epoll := os.NewFile(uintptr(epfd), "netloop-epoll")
	raw, err := epoll.SyscallConn()
	if err == nil {
		// Fails unless Go's poller took the descriptor.
		err = epoll.SetReadDeadline(time.Time{})
	}
	if err != nil {
		epoll.Close()
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll fd: %w", err)
	}
	l := &Loop{epfd: epfd, wakefd: wakefd, epoll: epoll, epollRaw: raw, events: make([]unix.EpollEvent, 256), done: make(chan struct{}),
		Buffers: BufferPool{size: bufSize}}
	l.now = time.Now().UnixNano()
	l.timers.init(l.now)
	return l, nil
}

// Now is the time of the loop's last wakeup, in unix nanoseconds: the clock
// handlers and timers go by, read once per wakeup rather than per call.
func (l *Loop) Now() int64 { return l.now }

// Post runs f on the loop's goroutine, soon. It is the only Loop method
// that may be called from another goroutine (with Stop).
func (l *Loop) Post(f func()) {
	l.mu.Lock()
	l.posted = append(l.posted, f)
	l.mu.Unlock()
	if l.sleeping.Load() {
		l.wake()
	}
}

// wake makes a parked loop look at its events, unless it has ended (a
// Post or Stop racing with the end of Run, whose eventfd's number may
// belong to another descriptor by then).
func (l *Loop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return
	}
	var one = [8]byte{1}
	unix.Write(l.wakefd, one[:]) // EAGAIN: a wakeup is pending anyway
}

// Stop ends Run after the current iteration; connections are left as they
// are (their owner closes them first).
func (l *Loop) Stop() {
	l.stopped.Store(true)
	l.wake()
	<-l.done
}

// Run serves the loop until Stop.
func (l *Loop) Run() {
	defer close(l.done)
	defer l.epoll.Close()
	defer func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.ended = true
		unix.Close(l.wakefd)
	}()
	for !l.stopped.Load() {
		n := l.wait()
		l.now = time.Now().UnixNano()
		for i := range n {
			ev := &l.events[i]
			if int(ev.Fd) == l.wakefd {
				var buf [8]byte
				readRaw(l.wakefd, buf[:])
				continue
			}
			if c := l.conn(int(ev.Fd)); c != nil {
				c.dispatch(ev.Events)
			}
		}
		l.runPosted()
		l.timers.advance(l.now)
	}
}

// wait returns the number of events ready in l.events, waiting for one
// until the next timer is due. It does not block the thread: it looks
// with a non-blocking epoll_wait and, finding nothing, parks the goroutine
// on Go's poller until the epoll instance is readable or the deadline
// passes. A thread blocked in epoll_wait instead is one the runtime takes
// its P from (sysmon retakes it within 20 us and then wakes every 20 us
// while that keeps happening) and must find another for on return, which
// costs context switches, dear on a virtual machine (BENCHMARKS.md, issue
// 14).
func (l *Loop) wait() int {
	l.setDeadline(l.timers.due())
	n := 0
	err := l.epollRaw.Read(func(uintptr) bool {
		if n = l.poll(); n > 0 {
			return true
		}
		// About to park: Post from now on writes the eventfd, which
		// makes the epoll instance readable.
		l.sleeping.Store(true)
		if l.hasPosted() || l.stopped.Load() {
			l.sleeping.Store(false)
			return true
		}
		return false
	})
	l.sleeping.Store(false)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Set it again next time, even to the same instant: the poller
		// goes by the monotonic clock and the wheel by the wall clock,
		// so after the wall clock steps back the timer is not due yet
		// and its deadline must be moved, or every wait would end at
		// once without looking at the events (an expired deadline ends
		// Read before it calls the function).
		l.deadline = -1
	case err != nil:
		panic(fmt.Sprintf("netloop: waiting on epoll: %v", err))
	}
	return n
}

// poll is a non-blocking epoll_wait into l.events.
func (l *Loop) poll() int {
	for {
		n, err := pollRaw(l.epfd, l.events)
		switch {
		case err == nil:
			return n
		case !errors.Is(err, unix.EINTR):
			panic(fmt.Sprintf("netloop: epoll_wait: %v", err)) // EBADF/EINVAL: a bug of ours
		}
	}
}

// setDeadline makes the wait end at the unix nanosecond at (0: never),
// touching the poller's deadline only when it changes.
func (l *Loop) setDeadline(at int64) {
	if at == l.deadline {
		return
	}
	l.deadline = at
	t := time.Time{}
	if at != 0 {
		t = time.Unix(0, at)
	}
	l.epoll.SetReadDeadline(t)
}

func (l *Loop) hasPosted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.posted) > 0
}

func (l *Loop) runPosted() {
	l.mu.Lock()
	l.running, l.posted = l.posted, l.running[:0]
	l.mu.Unlock()
	for i, f := range l.running {
		f()
		l.running[i] = nil
	}
}

// writev writes bufs with one writev(2), through the loop's own vector:
// x/sys's Writev allocates one per call.
func (l *Loop) writev(fd int, bufs [][]byte) (int, error) {
	iov := l.iov[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			iov = append(iov, unix.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	l.iov = iov
	if len(iov) == 0 {
		return 0, nil
	}
	n, err := writevRaw(fd, iov)
	clear(iov) // hold no buffer past the call
	return n, err
}

func (l *Loop) conn(fd int) *Conn {
	if fd < len(l.conns) {
		return l.conns[fd]
	}
	return nil
}

func (l *Loop) register(c *Conn, events uint32) error {
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)}); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*Conn, max(64, len(l.conns)))...)
	}
	l.conns[c.fd] = c
	c.events = events
	return nil
}

func (l *Loop) modify(c *Conn, events uint32) {
	if events == c.events {
		return
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: events, Fd: int32(c.fd)}); err != nil {
		panic(fmt.Sprintf("netloop: epoll_ctl mod fd %d: %v", c.fd, err)) // the fd is ours and registered
	}
	c.events = events
}

func (l *Loop) unregister(c *Conn) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	if c.fd < len(l.conns) && l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
}
