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
// readers must do.
package netloop

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Loop is one event loop. Everything it runs (handlers, timers, posted
// functions) runs on its goroutine, one at a time.
type Loop struct {
	epfd   int
	wakefd int // eventfd: Post wakes a loop blocked in epoll_wait
	conns  []*Conn
	events []unix.EpollEvent
	now    int64 // unix nanoseconds at the last wakeup
	timers wheel
	// Buffers is the loop's free list of I/O buffers.
	Buffers BufferPool
	pipes   *Pipe        // free list of empty pipes
	iov     []unix.Iovec // writev's vector, reused

	mu       sync.Mutex
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
	l := &Loop{epfd: epfd, wakefd: wakefd, events: make([]unix.EpollEvent, 256), done: make(chan struct{}),
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

func (l *Loop) wake() {
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
	defer unix.Close(l.epfd)
	defer unix.Close(l.wakefd)
	busy := false // the last wait found events
	for !l.stopped.Load() {
		wait := l.timers.wait(l.now)
		if busy {
			// Under load more events are likely already there: look
			// without blocking, which keeps the loop's thread and its P
			// (a blocking epoll_wait hands both back to the scheduler,
			// and taking them again costs more than the call).
			wait = 0
		}
		l.sleeping.Store(wait != 0)
		if l.hasPosted() {
			wait = 0
		}
		n, err := unix.EpollWait(l.epfd, l.events, wait)
		l.sleeping.Store(false)
		if n <= 0 && busy {
			// Nothing yet: let other goroutines run, then block.
			busy = false
			runtime.Gosched()
			continue
		}
		busy = n > 0
		l.now = time.Now().UnixNano()
		if err != nil && !errors.Is(err, unix.EINTR) {
			panic(fmt.Sprintf("netloop: epoll_wait: %v", err)) // EBADF/EINVAL: a bug of ours
		}
		for i := range max(n, 0) {
			ev := &l.events[i]
			if int(ev.Fd) == l.wakefd {
				var buf [8]byte
				unix.Read(l.wakefd, buf[:])
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
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	clear(iov) // hold no buffer past the call
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
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
