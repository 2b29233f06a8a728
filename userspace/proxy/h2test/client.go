// Package h2test is an HTTP/2 client for tests that speaks frame by frame
// (golang.org/x/net/http2's Framer and HPACK encoder), so that a test can
// send what net/http's client never would: fields HTTP/2 forbids,
// repeated settings, oversized frames, streams reset as soon as they are
// opened.
package h2test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Client is one HTTP/2 connection over TLS. Frames written with Framer
// go out on Flush.
type Client struct {
	Framer *http2.Framer
	t      testing.TB
	conn   *tls.Conn
	bw     *bufio.Writer
	hbuf   bytes.Buffer
	henc   *hpack.Encoder
}

// Wait bounds how long a Client waits for a frame: it only keeps a broken
// test from hanging, so it is generous.
const Wait = 30 * time.Second

// Dial opens an HTTP/2 connection to a TLS listener and sends the client
// preface with the given settings (none: the defaults). The connection
// closes when the test ends.
func Dial(t testing.TB, addr string, config *tls.Config, settings ...http2.Setting) *Client {
	t.Helper()
	config = config.Clone()
	config.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", addr, config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q, want h2", p)
	}
	c := &Client{t: t, conn: conn, bw: bufio.NewWriter(conn)}
	c.Framer = http2.NewFramer(c.bw, conn)
	c.Framer.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.bw.WriteString(http2.ClientPreface)
	c.Framer.WriteSettings(settings...)
	c.Flush()
	return c
}

// Flush sends the frames written so far, in one TLS record when they fit.
func (c *Client) Flush() {
	c.t.Helper()
	if err := c.bw.Flush(); err != nil {
		c.t.Fatalf("writing to catherd: %v", err)
	}
}

// HeaderBlock encodes fields, given as name, value pairs, with the
// connection's HPACK encoder (which indexes them, as browsers do).
func (c *Client) HeaderBlock(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// Request opens stream id with a HEADERS frame of fields and, when body is
// not nil, sends it in one DATA frame that ends the stream.
func (c *Client) Request(id uint32, body []byte, fields ...string) {
	c.t.Helper()
	c.Framer.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.HeaderBlock(fields...),
		EndHeaders: true, EndStream: body == nil})
	if body != nil {
		c.Framer.WriteData(id, true, body)
	}
	c.Flush()
}

// Get is a GET of path from authority, on stream id.
func (c *Client) Get(id uint32, authority, path string) {
	c.Request(id, nil, ":method", "GET", ":scheme", "https", ":authority", authority, ":path", path)
}

// Result reads frames until stream id ends, and tells how it ended: the
// response's status ("200"), "RST_STREAM <code>", "GOAWAY <code>" or
// "closed"; and the response body that came before. It answers the
// server's SETTINGS and PINGs, and returns flow-control credit for the
// body it reads.
func (c *Client) Result(id uint32) (outcome, body string) {
	c.t.Helper()
	var status string
	var data []byte
	for {
		f, err := c.ReadFrame()
		if err != nil {
			return "closed", string(data)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String(), string(data)
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "RST_STREAM " + f.ErrCode.String(), string(data)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				if s := f.PseudoValue("status"); status == "" && s != "" && s[0] != '1' {
					status = s
				}
				if f.StreamEnded() {
					return status, string(data)
				}
			}
		case *http2.DataFrame:
			if n := uint32(len(f.Data())); n > 0 {
				c.Framer.WriteWindowUpdate(0, n)
				if !f.StreamEnded() {
					c.Framer.WriteWindowUpdate(f.StreamID, n)
				}
				c.Flush()
			}
			if f.StreamID == id {
				data = append(data, f.Data()...)
				if f.StreamEnded() {
					return status, string(data)
				}
			}
		}
	}
}

// ReadFrame reads the next frame that is not the server's SETTINGS or
// PING, which it answers. It waits Wait at most.
func (c *Client) ReadFrame() (http2.Frame, error) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(Wait))
	for {
		f, err := c.Framer.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				return f, nil
			}
			c.Framer.WriteSettingsAck()
		case *http2.PingFrame:
			if f.IsAck() {
				return f, nil
			}
			c.Framer.WritePing(true, f.Data)
		default:
			return f, nil
		}
		c.Flush()
	}
}

// FirstData reads frames until the first DATA frame of stream id and
// returns its length, without returning flow-control credit.
func (c *Client) FirstData(id uint32) int {
	c.t.Helper()
	for {
		f, err := c.ReadFrame()
		if err != nil {
			c.t.Fatalf("waiting for DATA on stream %d: %v", id, err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			c.t.Fatalf("waiting for DATA on stream %d: GOAWAY %v", id, f.ErrCode)
		case *http2.RSTStreamFrame:
			c.t.Fatalf("waiting for DATA on stream %d: RST_STREAM %v", f.StreamID, f.ErrCode)
		case *http2.DataFrame:
			if f.StreamID == id {
				return len(f.Data())
			}
		}
	}
}
