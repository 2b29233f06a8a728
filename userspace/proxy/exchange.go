package proxy

import (
	"io"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// exchange is one request/response with a member. When the response has a
// body, the exchange is the body stream handed to the client side: it reads
// from the backend, counts bytes, and on close returns the backend
// connection to its pool (or drops it when the body was cut short) and
// records the request.
type exchange struct {
	b     *backend
	start time.Time
	code  int
	sent  countingReader
	resp  *fasthttp.Response // the HTTP member's response; nil for AJP
	body  io.Reader          // the member's response body
	recvd int64
	// streamErr is why the HTTP/2 adapter stopped streaming the body
	// (fasthttp passes its own to CloseWithError instead).
	streamErr error
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

func acquireExchange(b *backend, start time.Time) *exchange {
	x := exchangePool.Get().(*exchange)
	x.b, x.start = b, start
	return x
}

func (x *exchange) release() {
	*x = exchange{}
	exchangePool.Put(x)
}

func (x *exchange) Read(b []byte) (int, error) {
	n, err := x.body.Read(b)
	x.recvd += int64(n)
	return n, err
}

// CloseWithError is called by fasthttp once the body was written to the
// client, or failed to be (err != nil: the backend connection is then not
// reused).
func (x *exchange) CloseWithError(err error) error {
	if err == nil {
		err = x.streamErr
	}
	if c, ok := x.body.(fasthttp.ReadCloserWithError); ok {
		c.CloseWithError(err)
	}
	if x.resp != nil {
		fasthttp.ReleaseResponse(x.resp)
	}
	x.finish(err)
	return nil
}

// abort ends an exchange that produced no response for the client: the
// backend connection, if any, is dropped and nothing is counted as served.
func (x *exchange) abort(err error) {
	if c, ok := x.body.(fasthttp.ReadCloserWithError); ok {
		c.CloseWithError(err)
	}
	if x.resp != nil {
		fasthttp.ReleaseResponse(x.resp)
	}
	x.b.member.End(uint64(x.sent.n), uint64(x.recvd))
	x.b.metrics.Abort()
	x.release()
}

func (x *exchange) finish(err error) {
	x.b.member.End(uint64(x.sent.n), uint64(x.recvd))
	x.b.metrics.Done(x.code, x.start, x.sent.n, x.recvd, true)
	if err != nil {
		x.b.metrics.Error(errorKind(err))
	}
	x.release()
}
