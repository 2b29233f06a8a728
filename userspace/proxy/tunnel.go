package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"

	"github.com/valyala/fasthttp"
)

// tunnel forwards a protocol upgrade (WebSocket): it sends the request head
// to the member over a fresh connection, reads the member's answer, and
// then splices client and member together until either side closes. An
// error is returned only while the client can still get a 502/503.
func (p *Proxy) tunnel(c *call, b *backend) error {
	ctx := c.ctx
	conn, err := b.dial()
	if err != nil {
		return fmt.Errorf("%s %s: %w", b.member.Name, b.addr, err)
	}
	var head fasthttp.RequestHeader
	ctx.Request.Header.CopyTo(&head)
	p.rewriteRequestHeader(c, &head, true)
	br := bufio.NewReader(conn)
	var resp fasthttp.ResponseHeader
	if _, err = conn.Write(head.Header()); err == nil {
		err = resp.Read(br)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("%s %s: upgrade: %w", b.member.Name, b.addr, err)
	}
	code := resp.StatusCode()
	b.member.Begin()
	b.metrics.Begin()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer conn.Close()
		var up, down int64
		_, err := client.Write(resp.Header())
		switch {
		case err != nil:
		case code != fasthttp.StatusSwitchingProtocols:
			// Refused: relay the answer's body, then end the connection.
			if n := resp.ContentLength(); n >= 0 {
				down, _ = io.Copy(client, io.LimitReader(br, int64(n)))
			} else {
				down, _ = io.Copy(client, br)
			}
		default:
			done := make(chan struct{})
			go func() {
				up, _ = io.Copy(conn, client)
				if tc, ok := conn.(interface{ CloseWrite() error }); ok {
					tc.CloseWrite()
				}
				close(done)
			}()
			down, _ = io.Copy(client, br)
			client.Close()
			<-done
		}
		b.member.End(uint64(up), uint64(down))
		b.metrics.Done(code, c.start, up, down, true)
	})
	return nil
}
