package ajp

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// Response is a container's answer whose body is still on the wire. Read
// the body, then Close: the connection returns to the pool only after a
// clean END_RESPONSE that allows reuse.
type Response struct {
	Status  int
	Message []byte
	Headers []Header

	c       *Client
	cn      *conn
	body    io.Reader // request body, for GET_BODY_CHUNK during the response
	pending []byte    // body data read but not yet returned
	arena   []byte    // owns Message and Headers
	ended   bool      // END_RESPONSE seen
	reuse   bool      // ... and it allowed reuse
	err     error
	timeout time.Duration
}

// Do sends req and its body (contentLength < 0: unknown, sent on demand
// until body's EOF) and returns the response head. The client's secret is
// set on req. Errors before any byte left are *DialError; a request head
// that does not fit the packet size is ErrTooLarge; a malformed answer
// wraps ErrMalformed. timeout bounds each silence from the container.
func (c *Client) Do(req *ForwardRequest, body io.Reader, contentLength int64, timeout time.Duration) (*Response, error) {
	cn, reused, err := c.acquire()
	if err != nil {
		return nil, err
	}
	req.Secret = []byte(c.opts.Secret)
	buf, err := AppendForwardRequest(cn.wbuf[:0], req, c.opts.PacketSize)
	if err != nil {
		c.release(cn, true) // nothing was sent
		return nil, err
	}
	r := &Response{c: c, cn: cn, body: body, timeout: timeout}
	if body == nil {
		r.body = eofReader{}
	}
	// Like mod_jk, send the first body chunk right behind the head when
	// the length is known: Tomcat expects it without asking.
	if contentLength > 0 {
		if buf, err = r.appendBodyChunk(buf, MaxBodyChunk(c.opts.PacketSize)); err != nil {
			c.release(cn, false)
			return nil, err
		}
	}
	cn.wbuf = buf[:0]
	cn.SetDeadline(time.Now().Add(timeout))
	if _, err := cn.Write(buf); err != nil {
		c.discard(cn)
		<-c.tokens
		return nil, fmt.Errorf("ajp write (reused connection: %v): %w", reused, err)
	}
	// next answers GET_BODY_CHUNKs itself: the first other message must be
	// the response head.
	p, err := r.next()
	if err == nil && p[0] != TypeSendHeaders {
		err = r.fail(malformed("message type %d before SEND_HEADERS", p[0]))
	}
	var sh SendHeaders
	if err == nil {
		if err = ParseSendHeaders(p, &sh); err != nil {
			r.fail(err)
		}
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	r.keep(&sh)
	return r, nil
}

// next returns the next packet that is not a GET_BODY_CHUNK, answering
// those on the way.
func (r *Response) next() ([]byte, error) {
	for {
		r.cn.SetReadDeadline(time.Now().Add(r.timeout))
		p, err := r.cn.r.Next()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF // the container closed mid-exchange
			}
			return nil, r.fail(err)
		}
		if len(p) == 0 {
			return nil, r.fail(malformed("empty packet"))
		}
		if p[0] != TypeGetBodyChunk {
			return p, nil
		}
		n, err := ParseGetBodyChunk(p)
		if err != nil {
			return nil, r.fail(err)
		}
		max := MaxBodyChunk(r.c.opts.PacketSize)
		if n > max {
			n = max
		}
		buf, err := r.appendBodyChunk(r.cn.wbuf[:0], n)
		if err != nil {
			return nil, r.fail(err)
		}
		r.cn.SetWriteDeadline(time.Now().Add(r.timeout))
		if _, err := r.cn.Write(buf); err != nil {
			return nil, r.fail(err)
		}
	}
}

// appendBodyChunk appends one body packet of up to n bytes read straight
// from the request body into dst; at the body's end it is the empty packet.
func (r *Response) appendBodyChunk(dst []byte, n int) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, bodyHeaderLen+n)
	data := dst[start+bodyHeaderLen : start+bodyHeaderLen+n]
	m, err := io.ReadFull(r.body, data)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return dst[:start], fmt.Errorf("reading the request body: %w", err)
	}
	return appendBodyHeader(dst, m), nil
}

// keep copies the head out of the packet buffer, which the body will reuse.
func (r *Response) keep(sh *SendHeaders) {
	size := len(sh.Message)
	for _, h := range sh.Headers {
		size += len(h.Name) + len(h.Value)
	}
	r.arena = make([]byte, 0, size)
	take := func(b []byte) []byte {
		r.arena = append(r.arena, b...)
		return r.arena[len(r.arena)-len(b) : len(r.arena) : len(r.arena)]
	}
	r.Status = sh.Status
	r.Message = take(sh.Message)
	r.Headers = make([]Header, len(sh.Headers))
	for i, h := range sh.Headers {
		r.Headers[i] = Header{Name: take(h.Name), Value: take(h.Value)}
	}
}

// Read returns response body bytes; io.EOF after END_RESPONSE.
func (r *Response) Read(b []byte) (int, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.ended {
			return 0, io.EOF
		}
		p, err := r.next()
		if err != nil {
			return 0, err
		}
		switch p[0] {
		case TypeSendBodyChunk:
			if r.pending, err = ParseBodyChunk(p); err != nil {
				return 0, r.fail(err)
			}
		case TypeEndResponse:
			if r.reuse, err = ParseEndResponse(p); err != nil {
				return 0, r.fail(err)
			}
			r.ended = true
		default:
			return 0, r.fail(malformed("message type %d in a response body", p[0]))
		}
	}
	n := copy(b, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

func (r *Response) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// drainLimit is how much unread body Close reads to reach END_RESPONSE
// and keep the connection; past it, closing the connection is cheaper.
const drainLimit = 64 << 10

// Close ends the exchange. A caller that read exactly the declared body
// has not yet seen END_RESPONSE: Close reads on, up to drainLimit bytes,
// to reach it. The connection is pooled again only if the response ended
// cleanly, the container allowed reuse, and no stray byte followed.
func (r *Response) Close() error { return r.close(true) }

// CloseWithError is Close for callers that report why they stopped reading
// (fasthttp's body streams). With a non-nil error (say, the client went
// away) the rest of the body is not wanted: the connection is closed
// rather than drained, and not counted as broken.
func (r *Response) CloseWithError(err error) error { return r.close(err == nil) }

func (r *Response) close(drain bool) error {
	if r.cn == nil {
		return nil
	}
	if drain && r.err == nil && !r.ended {
		io.Copy(io.Discard, io.LimitReader(r, drainLimit))
	}
	clean := r.err == nil && r.ended && r.reuse && r.cn.r.Buffered() == 0
	if r.err != nil { // the container broke the exchange
		r.c.Discarded.Add(1)
	}
	r.c.release(r.cn, clean)
	r.cn = nil
	return nil
}

// Reused reports whether the container allowed the connection to be reused;
// valid after the body was read to io.EOF.
func (r *Response) Reused() bool { return r.reuse }

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }
