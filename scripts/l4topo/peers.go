package l4topo

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// ServeBackend listens on port in backend i's namespace. Each connection
// gets the backend's name ("b1", "b2", ...) as its first line; every line
// the client sends after that comes back. Close the listener to stop.
func (t *Topo) ServeBackend(i int, port uint16) (net.Listener, error) {
	var ln net.Listener
	err := t.Do(t.BackendNS(i), func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("backend %d: %w", i, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c, fmt.Sprintf("b%d", i))
		}
	}()
	return ln, nil
}

func echo(c net.Conn, name string) {
	defer c.Close()
	fmt.Fprintln(c, name)
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := c.Write([]byte(line)); err != nil {
			return
		}
	}
}

// Conn is a client connection to a ServeBackend through the VIP.
type Conn struct {
	net.Conn
	r *bufio.Reader
	// Backend names the backend that answered.
	Backend string
}

// Dial connects from address src in the client namespace to VIP:port and
// reads which backend answered.
func (t *Topo) Dial(src netip.Addr, port uint16) (*Conn, error) {
	var c net.Conn
	err := t.Do(t.ClientNS(), func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(VIP, port).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", src, err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("from %s: read greeting: %w", src, err)
	}
	return &Conn{Conn: c, r: r, Backend: strings.TrimSpace(name)}, nil
}

// Echo checks that the connection still carries data both ways.
func (c *Conn) Echo(msg string) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, got)
	}
	return nil
}

// BackendsOf connects once from every source and returns who answered.
func (t *Topo) BackendsOf(sources []netip.Addr, port uint16) (map[netip.Addr]string, error) {
	got := map[netip.Addr]string{}
	for _, src := range sources {
		c, err := t.Dial(src, port)
		if err != nil {
			return nil, err
		}
		got[src] = c.Backend
		c.Close()
	}
	return got, nil
}
