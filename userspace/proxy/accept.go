package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clientListener is a listening socket of the proxy's. Close also ends a
// wait for a connection or a connection slot.
type clientListener struct {
	net.Listener
	done   chan struct{}
	wakefd int // eventfd: Close wakes an accept waiting in poll(2)
	once   sync.Once
}

func newClientListener(ln net.Listener) (*clientListener, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	return &clientListener{Listener: ln, done: make(chan struct{}), wakefd: fd}, nil
}

func (l *clientListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		var one = [8]byte{1}
		unix.Write(l.wakefd, one[:])
	})
	return l.Listener.Close()
}

func (l *clientListener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// acceptFds accepts connections on ln as non-blocking sockets, takes a
// connection slot for each and hands it to adopt, until ln is closed.
//
// At --max-client-conns it stops accepting: new clients wait in the
// kernel's accept queue until a connection ends, as with HAProxy's maxconn
// and nginx's worker_connections, rather than being answered 503 and
// reset. The slot is taken after the accept: waiting first would have
// every listener hold a slot while idle, and at the limit the one holding
// the last would starve the others; this way a listener holds at most one
// connection past the limit, unserved.
//
// Sockets are accepted with accept4(2) on the listener's descriptor,
// waiting in poll(2) for it (Go's poller cannot be asked to, for a
// listener): the connection never becomes a net.Conn, whose goroutine
// and buffers are what the loops save.
func (p *Proxy) acceptFds(cl *clientListener, adopt func(fd int, remote netip.AddrPort)) error {
	defer unix.Close(cl.wakefd)
	sc, ok := cl.Listener.(syscall.Conn)
	if !ok {
		return fmt.Errorf("listener %T has no socket to accept on", cl.Listener)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var fd int
		var sa unix.Sockaddr
		var aerr error
		// Control keeps the descriptor open while it runs, so the poll
		// cannot wait on a number that a Close freed for reuse.
		err := rc.Control(func(lfd uintptr) { fd, sa, aerr = cl.accept(int(lfd)) })
		if err != nil {
			return listenerClosed(err)
		}
		if errors.Is(aerr, errAgain) {
			if cl.closed() {
				return nil
			}
			continue
		}
		if aerr != nil {
			if errors.Is(aerr, unix.EMFILE) || errors.Is(aerr, unix.ENFILE) || errors.Is(aerr, unix.ENOBUFS) || errors.Is(aerr, unix.ENOMEM) {
				p.log.Warn("accept failed; pausing", "addr", cl.Addr().String(), "err", aerr)
				select {
				case <-time.After(50 * time.Millisecond):
				case <-cl.done:
					return nil
				}
			}
			continue // ECONNABORTED and the like: that client is gone
		}
		p.accepted.Add(1)
		select {
		case p.slots <- struct{}{}:
		case <-cl.done:
			unix.Close(fd)
			return nil
		}
		// Responses go out whole: Nagle would only delay them. Keep-alive
		// probes find clients that vanished without a word.
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		adopt(fd, addrPort(sa))
	}
}

// accept accepts a connection on lfd, waiting for one a while: until
// Close, or for pollWait at most, so that the descriptor's reference is
// given back (a listener closed directly, not through l.Close, waits for
// it). errAgain says to wait again.
func (l *clientListener) accept(lfd int) (int, unix.Sockaddr, error) {
	fd, sa, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if !errors.Is(err, unix.EAGAIN) {
		return fd, sa, err
	}
	fds := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}, {Fd: int32(l.wakefd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, int(pollWait/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
		return -1, nil, err
	}
	return -1, nil, errAgain
}

// pollWait bounds one wait for a connection in accept.
const pollWait = 250 * time.Millisecond

var errAgain = errors.New("no connection yet")

// listenerClosed turns the error of a listener closed by Drain into nil.
func listenerClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// releaseSlot frees the connection slot a client held.
func (p *Proxy) releaseSlot() { <-p.slots }

// fdConn turns an accepted socket into a net.Conn, for connections a
// goroutine serves (TLS): Go's poller takes a copy, the original closes.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "socket")
	defer f.Close()
	return net.FileConn(f)
}
