package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Client speaks HTTP/2 to catherd frame by frame, so that a test can
// send what net/http's client never would: fields HTTP/2 forbids, repeated
// settings, oversized frames, streams reset as soon as they are opened.
type h2Client struct {
	t    *testing.T
	conn *tls.Conn
	bw   *bufio.Writer
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

// h2Wait bounds how long a test waits for a frame: it only keeps a broken
// test from hanging, so it is generous.
const h2Wait = 30 * time.Second

// dialH2 opens an HTTP/2 connection to a TLS listener and sends the
// client preface with the given settings (none: the defaults).
func dialH2(t *testing.T, addr string, config *tls.Config, settings ...http2.Setting) *h2Client {
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
	c := &h2Client{t: t, conn: conn, bw: bufio.NewWriter(conn)}
	c.fr = http2.NewFramer(c.bw, conn)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.bw.WriteString(http2.ClientPreface)
	c.fr.WriteSettings(settings...)
	c.flush()
	return c
}

func (c *h2Client) flush() {
	c.t.Helper()
	if err := c.bw.Flush(); err != nil {
		c.t.Fatalf("writing to catherd: %v", err)
	}
}

// headerBlock encodes fields, given as name, value pairs, with the
// connection's HPACK encoder (which indexes them, as browsers do).
func (c *h2Client) headerBlock(fields ...string) []byte {
	c.hbuf.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(c.hbuf.Bytes())
}

// request opens stream id with a HEADERS frame of fields and, when body is
// not nil, sends it in one DATA frame that ends the stream.
func (c *h2Client) request(id uint32, body []byte, fields ...string) {
	c.t.Helper()
	c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.headerBlock(fields...),
		EndHeaders: true, EndStream: body == nil})
	if body != nil {
		c.fr.WriteData(id, true, body)
	}
	c.flush()
}

// get is a request with the usual pseudo-header fields for path.
func (c *h2Client) get(id uint32, path string) {
	c.request(id, nil, ":method", "GET", ":scheme", "https", ":authority", "front.test", ":path", path)
}

// result reads frames until stream id ends, and tells how it ended: the
// response's status ("200"), "RST_STREAM <code>", "GOAWAY <code>" or
// "closed"; and the response body that came before. It answers the
// server's SETTINGS and PINGs, and returns flow-control credit for the
// body it reads.
func (c *h2Client) result(id uint32) (outcome, body string) {
	c.t.Helper()
	var status string
	var data []byte
	for {
		f, err := c.readFrame()
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
				c.fr.WriteWindowUpdate(0, n)
				if !f.StreamEnded() {
					c.fr.WriteWindowUpdate(f.StreamID, n)
				}
				c.flush()
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

// readFrame reads the next frame that is not the server's SETTINGS or
// PING, which it answers. It waits h2Wait at most.
func (c *h2Client) readFrame() (http2.Frame, error) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(h2Wait))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				return f, nil
			}
			c.fr.WriteSettingsAck()
		case *http2.PingFrame:
			if f.IsAck() {
				return f, nil
			}
			c.fr.WritePing(true, f.Data)
		default:
			return f, nil
		}
		c.flush()
	}
}
