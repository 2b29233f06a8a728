package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/ajp"
)

// ErrSecretRefused: the AJP container refused catherd's secret. Tomcat
// then answers 403 to every request and closes the connection, unlike an
// application's own 403.
var ErrSecretRefused = errors.New("AJP secret refused by the container (it answers 403 to every request)")

// probeBodyLimit bounds what a probe reads of a response body.
const probeBodyLimit = 64 << 10

// Probe returns a health probe for member i: a GET of uri over the
// member's own transport that fails on a connect error, a timeout, a 5xx,
// or a refused AJP secret.
func (p *Proxy) Probe(i int, uri string) func(context.Context) error {
	b := p.backends[i]
	if b.ajp != nil {
		return func(ctx context.Context) error { return b.probeAJP(ctx, uri) }
	}
	return func(ctx context.Context) error { return b.probeHTTP(ctx, uri) }
}

func (b *backend) probeHTTP(ctx context.Context, uri string) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(uri)
	req.Header.SetHost(b.addr)
	req.Header.Set(fasthttp.HeaderUserAgent, "catherd-health")
	deadline, _ := ctx.Deadline()
	if err := b.client.DoDeadline(req, resp, deadline); err != nil {
		return err
	}
	if s := resp.BodyStream(); s != nil {
		io.Copy(io.Discard, io.LimitReader(s, probeBodyLimit))
	}
	return statusError(resp.StatusCode())
}

func (b *backend) probeAJP(ctx context.Context, uri string) error {
	fr := ajp.ForwardRequest{
		Method: []byte("GET"), Protocol: []byte("HTTP/1.1"), URI: []byte(uri),
		RemoteAddr: []byte("127.0.0.1"), RemoteHost: []byte("127.0.0.1"), ServerName: []byte("catherd-health"), ServerPort: 80,
		Headers: []ajp.Header{{Name: []byte("Host"), Value: []byte(b.addr)}, {Name: []byte("User-Agent"), Value: []byte("catherd-health")}},
	}
	timeout := time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	resp, err := b.ajp.Do(&fr, nil, 0, timeout)
	if err != nil {
		return err
	}
	defer resp.Close()
	if _, err := io.Copy(io.Discard, io.LimitReader(resp, probeBodyLimit)); err != nil {
		return err
	}
	if resp.Status == fasthttp.StatusForbidden && !resp.Reused() {
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
