package ajp

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// PingMode says when the client checks a connection with CPING before
// trusting it with a request, as mod_jk's ping_mode does.
type PingMode uint8

const (
	// PingConnect (C): after opening a connection.
	PingConnect PingMode = 1 << iota
	// PingPrepost (P): before reusing a connection idle longer than
	// ClientOptions.PingIdle.
	PingPrepost
	// PingInterval (I): idle connections are pinged every PingIdle in the
	// background, so that dead ones leave the pool before a request meets
	// them.
	PingInterval
)

// ParsePingMode reads mod_jk's letters: any of C, P, I; A for all three;
// "none" or "" for none.
func ParsePingMode(s string) (PingMode, error) {
	var m PingMode
	if s == "none" {
		return 0, nil
	}
	for _, c := range strings.ToUpper(s) {
		switch c {
		case 'C':
			m |= PingConnect
		case 'P':
			m |= PingPrepost
		case 'I':
			m |= PingInterval
		case 'A':
			m |= PingConnect | PingPrepost | PingInterval
		default:
			return 0, fmt.Errorf("ping mode %q: want letters C, P, I, A or none", s)
		}
	}
	return m, nil
}

// ClientOptions configure a Client.
type ClientOptions struct {
	Addr           string
	Secret         string
	PacketSize     int           // both ends must agree; default 8192
	MaxConns       int           // connections open at most; default 64
	ConnectTimeout time.Duration // connect, and wait for a free connection; default 5s
	IdleTTL        time.Duration // close pooled connections idle this long; default 60s
	Ping           PingMode
	PingTimeout    time.Duration // longest wait for CPONG; default 2s
	PingIdle       time.Duration // PingPrepost threshold and PingInterval period; default 10s
	// Dial opens connections; nil dials TCP with ConnectTimeout. Its errors
	// are wrapped in DialError.
	Dial func() (net.Conn, error)
}

// DialError is a failure before any byte of a request left: the request
// may go to another backend whatever its method.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "ajp connect: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// ErrPoolExhausted: every connection stayed busy for ConnectTimeout.
var ErrPoolExhausted = errors.New("ajp: no free connection")

// Client is a pool of connections to one AJP container.
type Client struct {
	opts ClientOptions
	// secret is opts.Secret, converted once rather than per request. Its
	// capacity is its length, so that appending to a request's Secret
	// copies it.
	secret []byte
	tokens chan struct{} // one per connection that may be open
	mu     sync.Mutex
	idle   []*conn // most recently used last
	done   chan struct{}
	closed atomic.Bool

	// Counters, for metrics.
	Opened    atomic.Uint64 // connections opened
	Discarded atomic.Uint64 // connections closed because they failed or broke protocol
}

type conn struct {
	net.Conn
	r        *PacketReader
	wbuf     []byte
	lastUsed time.Time
}

// NewClient returns a client; Close stops its background pinger.
func NewClient(o ClientOptions) *Client {
	if o.PacketSize == 0 {
		o.PacketSize = DefaultPacketSize
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 64
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.IdleTTL <= 0 {
		o.IdleTTL = 60 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 2 * time.Second
	}
	if o.PingIdle <= 0 {
		o.PingIdle = 10 * time.Second
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
		o.Dial = func() (net.Conn, error) { return d.Dial("tcp", o.Addr) }
	}
	secret := []byte(o.Secret)
	c := &Client{opts: o, secret: secret[:len(secret):len(secret)], tokens: make(chan struct{}, o.MaxConns), done: make(chan struct{})}
	if o.Ping&PingInterval != 0 {
		go c.pingLoop()
	}
	return c
}

// Close closes idle connections and stops background pings; connections
// in use close when their exchange ends.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	close(c.done)
	c.mu.Lock()
	idle := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, cn := range idle {
		cn.Close()
	}
}

// acquire returns a connection that passed the configured checks, and
// whether it was reused from the pool.
func (c *Client) acquire() (*conn, bool, error) {
	select {
	case c.tokens <- struct{}{}:
	default:
		t := time.NewTimer(c.opts.ConnectTimeout)
		defer t.Stop()
		select {
		case c.tokens <- struct{}{}:
		case <-t.C:
			return nil, false, &DialError{ErrPoolExhausted}
		}
	}
	for {
		cn := c.popIdle()
		if cn == nil {
			break
		}
		idle := time.Since(cn.lastUsed)
		if idle > c.opts.IdleTTL {
			cn.Close()
			continue
		}
		if c.opts.Ping&PingPrepost != 0 && idle > c.opts.PingIdle {
			if err := c.ping(cn); err != nil {
				c.discard(cn)
				continue
			}
		}
		return cn, true, nil
	}
	nc, err := c.opts.Dial()
	if err != nil {
		<-c.tokens
		return nil, false, &DialError{err}
	}
	c.Opened.Add(1)
	cn := &conn{Conn: nc, r: NewContainerReader(nc, c.opts.PacketSize), wbuf: make([]byte, 0, c.opts.PacketSize)}
	if c.opts.Ping&PingConnect != 0 {
		if err := c.ping(cn); err != nil {
			c.discard(cn)
			<-c.tokens
			return nil, false, &DialError{fmt.Errorf("CPING after connect: %w", err)}
		}
	}
	return cn, false, nil
}

func (c *Client) popIdle() *conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.idle); n > 0 {
		cn := c.idle[n-1]
		c.idle = c.idle[:n-1]
		return cn
	}
	return nil
}

// release ends a connection's turn: back to the pool when it is known
// clean, closed otherwise. A pooled connection keeps its last deadlines:
// whoever uses it next sets its own before any I/O (Do, ping), so clearing
// them would only cost a timer update per request.
func (c *Client) release(cn *conn, reusable bool) {
	if reusable && !c.closed.Load() {
		cn.lastUsed = time.Now()
		c.mu.Lock()
		c.idle = append(c.idle, cn)
		c.mu.Unlock()
	} else {
		cn.Close()
	}
	<-c.tokens
}

func (c *Client) discard(cn *conn) {
	c.Discarded.Add(1)
	cn.Close()
}

// ping sends CPING and waits PingTimeout for CPONG.
func (c *Client) ping(cn *conn) error {
	cn.SetDeadline(time.Now().Add(c.opts.PingTimeout))
	defer cn.SetDeadline(time.Time{})
	if _, err := cn.Write(AppendCPing(cn.wbuf[:0])); err != nil {
		return err
	}
	p, err := cn.r.Next()
	if err != nil {
		return err
	}
	if len(p) != 1 || p[0] != TypeCPong {
		return malformed("answer to CPING is not CPONG")
	}
	return nil
}

// pingLoop pings idle connections every PingIdle (PingInterval).
func (c *Client) pingLoop() {
	t := time.NewTicker(c.opts.PingIdle)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		c.mu.Lock()
		idle := c.idle
		c.idle = nil
		c.mu.Unlock()
		var alive []*conn
		for _, cn := range idle {
			if time.Since(cn.lastUsed) > c.opts.IdleTTL {
				cn.Close()
			} else if err := c.ping(cn); err != nil {
				c.discard(cn)
			} else {
				alive = append(alive, cn)
			}
		}
		c.mu.Lock()
		c.idle = append(alive, c.idle...)
		c.mu.Unlock()
	}
}
