package ajp

import (
	"fmt"
	"io"
	"slices"
	"sync"
	"time"
)

// Response is a container's answer whose body is still on the wire. Read
// the body, then Close: the connection returns to the pool only after a
// clean END_RESPONSE that allows reuse. A caller that is done with it may
// then Release it, so that a later Do reuses it and its buffers.
type Response struct {
	Status  int
	Message []byte
	Headers []Header

	c       *Client
	cn      *conn
	body    io.Reader // request body, for GET_BODY_CHUNK during the response
	pending []byte    // body data read but not yet returned
	arena   []byte    // owns Message and the Headers' bytes
	ended   bool      // END_RESPONSE seen
	reuse   bool      // ... and it allowed reuse
	err     error
	timeout time.Duration
}

// responses holds released Responses. Their Headers and arena keep their
// capacity: a container sends much the same head every time.
var responses = sync.Pool{New: func() any { return new(Response) }}

// Release returns r to be reused by a later Do. Call it after Close, when
// nothing reads r or the slices it handed out (Message, Headers) any more:
// they are overwritten by the next response. Not calling it is fine; r is
// then garbage-collected.
func (r *Response) Release() {
	*r = Response{Headers: r.Headers[:0], arena: r.arena[:0]}
	responses.Put(r)
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
	req.Secret = c.secret
	buf, err := AppendForwardRequest(cn.wbuf[:0], req, c.opts.PacketSize)
	if err != nil {
		c.release(cn, true) // nothing was sent
		return nil, err
	}
	r := responses.Get().(*Response)
	r.c, r.cn, r.body, r.timeout = c, cn, body, timeout
	if body == nil {
		r.body = eofReader{}
	}
	// Like mod_jk, send the first body chunk right behind the head when
	// the length is known: Tomcat expects it without asking.
	if contentLength > 0 {
		if buf, err = r.appendBodyChunk(buf, MaxBodyChunk(c.opts.PacketSize)); err != nil {
			c.release(cn, false)
			r.Release()
			return nil, err
		}
	}
	cn.wbuf = buf[:0]
	// The read deadline is next's to set, once the head is sent.
	cn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := cn.Write(buf); err != nil {
		c.discard(cn)
		<-c.tokens
		r.Release()
		return nil, fmt.Errorf("ajp write (reused connection: %v): %w", reused, err)
	}
	// next answers GET_BODY_CHUNKs itself: the first other message must be
	// the response head.
	p, err := r.next()
	if err == nil && p[0] != TypeSendHeaders {
		err = r.fail(malformed("message type %d before SEND_HEADERS", p[0]))
	}
	sh := SendHeaders{Headers: r.Headers[:0]} // decoded into r's storage
	if err == nil {
		if err = ParseSendHeaders(p, &sh); err != nil {
			r.fail(err)
		}
	}
	if err != nil {
		r.Close()
		r.Release()
		return nil, err
	}
	r.keep(&sh)
	return r, nil
}

// next returns the next packet that is not a GET_BODY_CHUNK, answering
// those on the way. The read deadline bounds a silence of the container,
// so it is moved only when a read will wait for one: a packet that came
// in with an earlier read is taken at once.
func (r *Response) next() ([]byte, error) {
	for {
		if !r.cn.r.nextBuffered() {
			r.cn.SetReadDeadline(time.Now().Add(r.timeout))
		}
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
	m, err := readFull(r.body, data)
	if err != nil {
		return dst[:start], fmt.Errorf("reading the request body: %w", err)
	}
	return appendBodyHeader(dst, m), nil
}

// readFull fills buf from r, stopping early only at r's io.EOF (the end of
// the body: the next packet is the empty one). Unlike io.ReadFull it keeps
// io.ErrUnexpectedEOF from r an error: a body reader returns it when its
// client went away mid-body, and sent on as the body's end it would give
// the container a truncated body as if it were whole.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// keep copies the head out of the packet buffer, which the body will
// reuse, into r's arena. sh.Headers is r's header storage: the copies
// replace the decoded headers in place.
func (r *Response) keep(sh *SendHeaders) {
	size := len(sh.Message)
	for _, h := range sh.Headers {
		size += len(h.Name) + len(h.Value)
	}
	r.arena = slices.Grow(r.arena[:0], size)
	take := func(b []byte) []byte {
		r.arena = append(r.arena, b...)
		return r.arena[len(r.arena)-len(b) : len(r.arena) : len(r.arena)]
	}
	r.Status = sh.Status
	r.Message = take(sh.Message)
	r.Headers = sh.Headers
	for i, h := range r.Headers {
		r.Headers[i] = Header{Name: take(h.Name), Value: take(h.Value)}
	}
}

// Read returns response body bytes; io.EOF after END_RESPONSE.
func (r *Response) Read(b []byte) (int, error) {
	if err := r.fill(); err != nil {
		return 0, err
	}
	n := copy(b, r.pending)
	r.pending = r.pending[n:]
	return n, nil
}

// fill reads messages until body data is pending: io.EOF after
// END_RESPONSE, or the error that broke the exchange.
func (r *Response) fill() error {
	for len(r.pending) == 0 {
		if r.err != nil {
			return r.err
		}
		if r.ended {
			return io.EOF
		}
		p, err := r.next()
		if err != nil {
			return err
		}
		switch p[0] {
		case TypeSendBodyChunk:
			if r.pending, err = ParseBodyChunk(p); err != nil {
				return r.fail(err)
			}
		case TypeEndResponse:
			if r.reuse, err = ParseEndResponse(p); err != nil {
				return r.fail(err)
			}
			r.ended = true
		default:
			return r.fail(malformed("message type %d in a response body", p[0]))
		}
	}
	return nil
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
// (body streams that tell the end of a copy). With a non-nil error (say, the client went
// away) the rest of the body is not wanted: the connection is closed
// rather than drained, and not counted as broken.
func (r *Response) CloseWithError(err error) error { return r.close(err == nil) }

func (r *Response) close(drain bool) error {
	if r.cn == nil {
		return nil
	}
	if drain {
		// Drop the data where it lies rather than copy it out.
		for left := drainLimit; left > 0 && r.fill() == nil; {
			n := min(left, len(r.pending))
			r.pending, left = r.pending[n:], left-n
		}
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
