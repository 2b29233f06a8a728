package netloop

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Dialer is the Handler of a connection being dialed: Connected tells it
// the outcome, nil when the connection is established.
type Dialer interface {
	Handler
	Connected(err error)
}

// Dial starts connecting to addr without blocking; h.Connected follows on
// the loop. A failure to even start (no socket, no route) is returned at
// once. The connection does not read until it is connected.
func (l *Loop) Dial(addr netip.AddrPort, h Dialer) (*Conn, error) {
	family := unix.AF_INET
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	// Requests are written whole: Nagle would only delay the next one.
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	err = unix.Connect(fd, sa)
	if err != nil && !errors.Is(err, unix.EINPROGRESS) {
		unix.Close(fd)
		return nil, fmt.Errorf("connect: %w", err)
	}
	c := &Conn{l: l, fd: fd, h: h, dialing: h, paused: true}
	if err := l.register(c, unix.EPOLLOUT); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// connected completes a dial: epoll said the socket is writable (or
// failed), and SO_ERROR says which.
func (c *Conn) connected() {
	d := c.dialing
	c.dialing = nil
	soerr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err == nil && soerr != 0 {
		err = unix.Errno(soerr)
	}
	if err != nil {
		d.Connected(fmt.Errorf("connect: %w", err))
		return
	}
	c.paused = false
	c.l.modify(c, unix.EPOLLIN|unix.EPOLLRDHUP)
	d.Connected(nil)
}
