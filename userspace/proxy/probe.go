package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/httpwire"
)

// ErrSecretRefused: the AJP container refused catherd's secret. Tomcat
// then answers 403 to every request and closes the connection, unlike an
// application's own 403.
var ErrSecretRefused = errors.New("AJP secret refused by the container (it answers 403 to every request)")

// probeBodyLimit bounds what a probe reads of a response body.
const probeBodyLimit = 64 << 10

// Probe returns a health probe of the member: a GET of uri over its own
// protocol that fails on a connect error, a timeout, a 5xx, or a refused
// AJP secret. Probes run in the health checker's goroutines, blocking, on
// connections of their own. u must be served by a proxy (New).
func (u *Upstream) Probe(uri string) func(context.Context) error {
	if u.t == nil {
		panic("proxy: Probe of an upstream that no proxy serves (New starts it)")
	}
	if u.ajpProbe != nil {
		return func(ctx context.Context) error { return u.probeAJP(ctx, uri) }
	}
	return func(ctx context.Context) error { return u.probeHTTP(ctx, uri, u.maxHead) }
}

// probeHTTP sends one GET on a new connection and reads the answer's head
// (and up to probeBodyLimit of its body).
func (u *Upstream) probeHTTP(ctx context.Context, uri string, maxHead int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		c.SetDeadline(deadline)
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: catherd-health\r\nConnection: close\r\n\r\n", uri, u.addr)
	if _, err := io.WriteString(c, req); err != nil {
		return err
	}
	buf := make([]byte, max(maxHead, 4096)+probeBodyLimit)
	var resp httpwire.Response
	for have := 0; ; {
		n, err := c.Read(buf[have:])
		have += n
		if m, perr := httpwire.ParseResponse(buf[:have], &resp, maxHead); perr != nil {
			return fmt.Errorf("health check: %w", perr)
		} else if m > 0 {
			return statusError(resp.Status)
		}
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		if have == len(buf) {
			return fmt.Errorf("health check: %w", httpwire.ErrBadResponseHead)
		}
	}
}

func (u *Upstream) probeAJP(ctx context.Context, uri string) error {
	fr := ajp.ForwardRequest{
		Method: []byte("GET"), Protocol: []byte("HTTP/1.1"), URI: []byte(uri),
		RemoteAddr: []byte("127.0.0.1"), RemoteHost: []byte("127.0.0.1"), ServerName: []byte("catherd-health"), ServerPort: 80,
		Headers: []ajp.Header{{Name: []byte("Host"), Value: []byte(u.addr)}, {Name: []byte("User-Agent"), Value: []byte("catherd-health")}},
	}
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	resp, err := u.ajpProbe.Do(&fr, nil, 0, timeout)
	if err != nil {
		return err
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp, probeBodyLimit)); err != nil {
		return err
	}
	if resp.Status == 403 && !resp.Reused() {
		return ErrSecretRefused
	}
	return statusError(resp.Status)
}

func statusError(code int) error {
	if code >= 500 {
		return fmt.Errorf("health check answered %d", code)
	}
	return nil
}
