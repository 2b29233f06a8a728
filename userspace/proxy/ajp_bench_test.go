package proxy

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/ajp/ajptest"
	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
)

// benchPage is what the benchmark container serves: the ~150-byte static
// page of `make bench`, with the headers Tomcat's DefaultServlet sends.
var (
	benchPage    = bytes.Repeat([]byte("p"), 150)
	benchHeaders = []ajp.Header{
		{Name: []byte("Accept-Ranges"), Value: []byte("bytes")},
		{Name: []byte("ETag"), Value: []byte(`W/"150-1700000000000"`)},
		{Name: []byte("Last-Modified"), Value: []byte("Tue, 14 Nov 2023 22:13:20 GMT")},
		{Name: []byte("Content-Type"), Value: []byte("text/html")},
		{Name: []byte("Content-Length"), Value: []byte(strconv.Itoa(len(benchPage)))},
	}
)

// benchRequests are the client requests the benchmarks replay: wrk's own
// (the load of `make bench`), a browser's, and a small form POST.
var benchRequests = []struct{ name, raw string }{
	{"wrk", "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
	{"browser", "GET /shop/index.html?item=7&lang=en HTTP/1.1\r\nHost: shop.example:8080\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Referer: http://shop.example:8080/shop/\r\nCookie: JSESSIONID=4F2A9C1B7E.a; theme=dark\r\n" +
		"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nPriority: u=0, i\r\n\r\n"},
	{"post", "POST /shop/cart HTTP/1.1\r\nHost: shop.example\r\nContent-Type: application/x-www-form-urlencoded\r\n" +
		"Content-Length: 40\r\nCookie: JSESSIONID=4F2A9C1B7E.a\r\n\r\nitem=7&quantity=2&colour=blue&size=large"},
}

// BenchmarkForwardAJP runs the proxy's handler end to end over AJP: a
// parsed client request through serve and forwardAJP, over loopback to a
// container, and the response back into the fasthttp context. The
// containers run in this process, so allocs/op include theirs: ajptest's
// (about 20 per request), the canned container's none. ns/op is latency;
// cpu-ns/op is the process's CPU time (user and system) per request, the
// figure `make bench` compares, with the container's share included.
func BenchmarkForwardAJP(b *testing.B) {
	containers := []struct {
		name  string
		start func(*testing.B) string
	}{{"ajptest", ajptestContainer}, {"canned", cannedContainer}}
	for _, c := range containers {
		b.Run(c.name, func(b *testing.B) {
			px := benchProxy(b, c.start(b))
			for _, br := range benchRequests {
				b.Run(br.name, func(b *testing.B) {
					var req fasthttp.Request
					if err := req.Read(bufio.NewReader(strings.NewReader(br.raw))); err != nil {
						b.Fatal(err)
					}
					var ctx fasthttp.RequestCtx
					ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 50123}, nil)
					b.ReportAllocs()
					cpu := cpuTime()
					for b.Loop() {
						req.CopyTo(&ctx.Request)
						ctx.Response.Reset()
						px.serve(&ctx)
						if ctx.Response.StatusCode() != 200 || !bytes.Equal(ctx.Response.Body(), benchPage) {
							b.Fatalf("status %d, body %q", ctx.Response.StatusCode(), ctx.Response.Body())
						}
					}
					b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
				})
			}
		})
	}
}

// cpuTime is the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchProxy is a proxy with one AJP member at addr, not listening: the
// benchmark calls its handler directly.
func benchProxy(b *testing.B, addr string) *Proxy {
	members := []*balancer.Member{balancer.NewMember("a", "a", 1, 0)}
	pool, err := balancer.NewPool(members, "byrequests", balancer.Options{Retry: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	px := New(pool, []Target{{Addr: addr, AJP: &ajp.ClientOptions{Secret: testSecret}}}, metrics.New(pool), Options{
		Sticky: session.Default, MaxAttempts: 1,
		ConnectTimeout: 2 * time.Second, BackendTimeout: 5 * time.Second, BackendIdleTimeout: time.Minute,
		MaxConnsPerBackend: 4, MaxHeaderBytes: 8192,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Cleanup(func() { px.Shutdown() })
	return px
}

// ajptestContainer serves benchPage from the test container. It asks for
// a body of unknown length with GET_BODY_CHUNK where Tomcat would not, and
// writes each message separately: a round trip and three writes more per
// request than Tomcat.
func ajptestContainer(b *testing.B) string {
	srv, err := ajptest.NewServer(testSecret, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200, benchHeaders...)
		w.Write(benchPage)
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv.Addr
}

// cannedContainer answers every FORWARD_REQUEST with benchPage in one
// write, as Tomcat flushes SEND_HEADERS, SEND_BODY_CHUNK and END_RESPONSE
// of a small static page together, and allocates nothing per request. It
// skips body packets, telling them from requests by their first byte: the
// benchmark's bodies are under 512 bytes, so that byte is 0 or 1.
func cannedContainer(b *testing.B) string {
	answer, err := ajp.AppendSendHeaders(nil, 200, "OK", benchHeaders, ajp.DefaultPacketSize)
	if err == nil {
		answer, err = ajp.AppendSendBodyChunk(answer, benchPage, ajp.DefaultPacketSize)
	}
	if err != nil {
		b.Fatal(err)
	}
	answer = ajp.AppendEndResponse(answer, true)
	return rawBackend(b, "canned", func(c net.Conn) {
		pr := ajp.NewProxyReader(c, ajp.DefaultPacketSize)
		for {
			p, err := pr.Next()
			if err != nil {
				return
			}
			if len(p) > 0 && p[0] == ajp.TypeForwardRequest {
				if _, err := c.Write(answer); err != nil {
					return
				}
			}
		}
	})[1]
}
