package ajp_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/ajp/ajptest"
)

const secret = "s3cret"

func startContainer(t *testing.T, h ajptest.Handler) *ajptest.Server {
	t.Helper()
	s, err := ajptest.NewServer(secret, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newClient(t *testing.T, s *ajptest.Server, tweak func(*ajp.ClientOptions)) *ajp.Client {
	o := ajp.ClientOptions{Addr: s.Addr, Secret: secret, MaxConns: 4, ConnectTimeout: time.Second}
	if tweak != nil {
		tweak(&o)
	}
	c := ajp.NewClient(o)
	t.Cleanup(c.Close)
	return c
}

func request(method, uri string, headers ...string) *ajp.ForwardRequest {
	r := &ajp.ForwardRequest{Method: []byte(method), Protocol: []byte("HTTP/1.1"), URI: []byte(uri),
		RemoteAddr: []byte("127.0.0.1"), RemoteHost: []byte("127.0.0.1"), ServerName: []byte("test"), ServerPort: 80}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Headers = append(r.Headers, ajp.Header{Name: []byte(headers[i]), Value: []byte(headers[i+1])})
	}
	return r
}

// roundTrip runs one exchange and reads the whole body.
func roundTrip(t *testing.T, c *ajp.Client, r *ajp.ForwardRequest, body io.Reader, length int64) (*ajp.Response, []byte, error) {
	t.Helper()
	resp, err := c.Do(r, body, length, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Close()
	data, err := io.ReadAll(resp)
	return resp, data, err
}

// echo answers with the method, the URI and the body's length and hash.
func echo(r *ajptest.Request, w *ajptest.ResponseWriter) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	w.WriteHeader(200, ajp.Header{Name: []byte("Content-Type"), Value: []byte("text/plain")}, ajp.Header{Name: []byte("X-Echo"), Value: []byte("yes")})
	fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URI, n, h.Sum(nil))
}

func TestRoundTripAndPooling(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, nil)
	for i := 0; i < 20; i++ {
		resp, body, err := roundTrip(t, c, request("GET", "/a"), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Status != 200 || !strings.HasPrefix(string(body), "GET /a 0 ") || string(resp.Headers[1].Value) != "yes" || !resp.Reused() {
			t.Fatalf("got %d %q %v", resp.Status, body, resp.Headers)
		}
	}
	if n := s.Conns.Load(); n != 1 {
		t.Fatalf("20 sequential requests opened %d connections", n)
	}
}

func TestUploads(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, nil)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB: many GET_BODY_CHUNKs
	want := fmt.Sprintf("POST /up %d %x", len(data), sha256.Sum256(data))
	// Known length: the first chunk goes with the head, the rest on demand.
	_, body, err := roundTrip(t, c, request("POST", "/up", "Content-Length", fmt.Sprint(len(data))), bytes.NewReader(data), int64(len(data)))
	if err != nil || string(body) != want {
		t.Fatalf("known length: %q %v", body, err)
	}
	// Unknown length (a chunked client upload): every chunk on demand,
	// then the empty packet.
	_, body, err = roundTrip(t, c, request("POST", "/up"), io.MultiReader(bytes.NewReader(data)), -1)
	if err != nil || string(body) != want {
		t.Fatalf("unknown length: %q %v", body, err)
	}
}

// cutBody is a request body whose client went away: some data, then
// io.ErrUnexpectedEOF, as an HTTP server's body stream reports it.
type cutBody struct{ data io.Reader }

func (c cutBody) Read(b []byte) (int, error) {
	n, err := c.data.Read(b)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// A body that breaks is an error for Do, never sent on as the body's end.
func TestBrokenBodyIsNotEnded(t *testing.T) {
	var completed []int64
	var mu sync.Mutex
	s := startContainer(t, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		n, err := io.Copy(io.Discard, r.Body)
		if err == nil {
			mu.Lock()
			completed = append(completed, n)
			mu.Unlock()
		}
		w.WriteHeader(200)
	})
	c := newClient(t, s, nil)
	data := bytes.Repeat([]byte("x"), 100000)
	for _, length := range []int64{200000, -1} {
		_, _, err := roundTrip(t, c, request("POST", "/up"), cutBody{bytes.NewReader(data)}, length)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("length %d: got %v, want the body's error", length, err)
		}
	}
	time.Sleep(100 * time.Millisecond) // the container's handlers end
	mu.Lock()
	defer mu.Unlock()
	if len(completed) > 0 {
		t.Fatalf("the container read whole bodies of %v bytes", completed)
	}
}

func TestLargeDownloadStreams(t *testing.T) {
	const size = 64 << 20
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	s := startContainer(t, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		for sent := 0; sent < size; sent += len(chunk) {
			w.Write(chunk)
		}
	})
	c := newClient(t, s, nil)
	resp, err := c.Do(request("GET", "/big"), nil, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp)
	resp.Close()
	if err != nil || n != size {
		t.Fatalf("got %d bytes, %v", n, err)
	}
}

func TestWrongSecretIs403(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, func(o *ajp.ClientOptions) { o.Secret = "wrong" })
	resp, _, err := roundTrip(t, c, request("GET", "/"), nil, 0)
	if err != nil || resp.Status != 403 || resp.Reused() {
		t.Fatalf("got %v %v", resp, err)
	}
}

func TestPingModes(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, func(o *ajp.ClientOptions) {
		o.Ping = ajp.PingConnect | ajp.PingPrepost
		o.PingIdle = 50 * time.Millisecond
	})
	roundTrip(t, c, request("GET", "/"), nil, 0)
	if n := s.CPings.Load(); n != 1 {
		t.Fatalf("after connect: %d CPINGs, want 1", n)
	}
	roundTrip(t, c, request("GET", "/"), nil, 0) // reused at once: no ping
	time.Sleep(100 * time.Millisecond)
	roundTrip(t, c, request("GET", "/"), nil, 0) // idle past PingIdle: ping
	if n := s.CPings.Load(); n != 2 {
		t.Fatalf("after an idle reuse: %d CPINGs, want 2", n)
	}
}

func TestIntervalPingDropsDeadConnections(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, func(o *ajp.ClientOptions) {
		o.Ping = ajp.PingInterval
		o.PingIdle = 30 * time.Millisecond
	})
	roundTrip(t, c, request("GET", "/"), nil, 0)
	deadline := time.Now().Add(2 * time.Second)
	for s.CPings.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if s.CPings.Load() < 2 {
		t.Fatal("idle connection not pinged in the background")
	}
}

func TestIdleTTLClosesOldConnections(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, func(o *ajp.ClientOptions) { o.IdleTTL = 30 * time.Millisecond })
	roundTrip(t, c, request("GET", "/"), nil, 0)
	time.Sleep(60 * time.Millisecond)
	roundTrip(t, c, request("GET", "/"), nil, 0)
	if n := s.Conns.Load(); n != 2 {
		t.Fatalf("%d connections, want a new one after the idle TTL", n)
	}
}

func TestBoundedPool(t *testing.T) {
	release := make(chan struct{})
	s := startContainer(t, func(r *ajptest.Request, w *ajptest.ResponseWriter) { <-release })
	c := newClient(t, s, func(o *ajp.ClientOptions) { o.MaxConns = 1; o.ConnectTimeout = 100 * time.Millisecond })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		roundTrip(t, c, request("GET", "/slow"), nil, 0)
	}()
	time.Sleep(50 * time.Millisecond)
	_, err := c.Do(request("GET", "/second"), nil, 0, time.Second)
	var de *ajp.DialError
	if !errors.As(err, &de) || !errors.Is(err, ajp.ErrPoolExhausted) {
		t.Fatalf("second request with the pool full: %v", err)
	}
	close(release)
	wg.Wait()
}

func TestBrokenContainers(t *testing.T) {
	tests := map[string]struct {
		h          ajptest.Handler
		beforeHead bool // the error comes from Do, not from reading the body
		kind       error
	}{
		"garbage magic": {func(r *ajptest.Request, w *ajptest.ResponseWriter) {
			w.Raw([]byte("HTTP/1.1 200 OK\r\n\r\n"))
			w.Abort()
		}, true, ajp.ErrMalformed},
		"truncated head":     {func(r *ajptest.Request, w *ajptest.ResponseWriter) { w.Raw([]byte{'A', 'B', 0, 20, 4, 0}); w.Abort() }, true, io.ErrUnexpectedEOF},
		"closed before head": {func(r *ajptest.Request, w *ajptest.ResponseWriter) { w.Abort() }, true, io.ErrUnexpectedEOF},
		"length past packet": {func(r *ajptest.Request, w *ajptest.ResponseWriter) { w.Raw([]byte{'A', 'B', 0xFF, 0xF0}); w.Abort() }, true, ajp.ErrMalformed},
		"closed mid-body": {func(r *ajptest.Request, w *ajptest.ResponseWriter) {
			w.WriteHeader(200)
			w.Write([]byte("partial"))
			w.Abort()
		}, false, io.ErrUnexpectedEOF},
		"CPONG in body": {func(r *ajptest.Request, w *ajptest.ResponseWriter) {
			w.WriteHeader(200)
			w.Raw(ajp.AppendCPong(nil))
		}, false, ajp.ErrMalformed},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			s := startContainer(t, tt.h)
			c := newClient(t, s, nil)
			resp, _, err := roundTrip(t, c, request("GET", "/"), nil, 0)
			if (resp == nil) != tt.beforeHead || !errors.Is(err, tt.kind) {
				t.Fatalf("got response %v, error %v; want error %v", resp != nil, err, tt.kind)
			}
			if c.Discarded.Load() == 0 {
				t.Fatal("broken connection not counted as discarded")
			}
			// The pool recovers: the next request opens a fresh connection.
			s.SetHandler(echo)
			if _, body, err := roundTrip(t, c, request("GET", "/after"), nil, 0); err != nil || !strings.HasPrefix(string(body), "GET /after") {
				t.Fatalf("after the failure: %q %v", body, err)
			}
		})
	}
}

func TestDialErrorBeforeAnyByte(t *testing.T) {
	s := startContainer(t, echo)
	addr := s.Addr
	s.Close()
	c := ajp.NewClient(ajp.ClientOptions{Addr: addr, ConnectTimeout: time.Second})
	defer c.Close()
	_, err := c.Do(request("POST", "/"), strings.NewReader("x"), 1, time.Second)
	var de *ajp.DialError
	if !errors.As(err, &de) {
		t.Fatalf("got %v, want a DialError", err)
	}
}

func TestHeadTooLargeFailsCleanly(t *testing.T) {
	s := startContainer(t, echo)
	c := newClient(t, s, nil)
	_, err := c.Do(request("GET", "/", "X-Big", strings.Repeat("a", 9000)), nil, 0, time.Second)
	if !errors.Is(err, ajp.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if _, _, err := roundTrip(t, c, request("GET", "/ok"), nil, 0); err != nil {
		t.Fatalf("pool after a too-large head: %v", err)
	}
}

// TestTimeoutBoundsSilence: the timeout bounds each wait for the
// container, not the exchange: a body trickling in outlives it, silence
// before the head or mid-body is cut near it, and a pooled connection
// whose last deadline passed while idle serves the next request.
func TestTimeoutBoundsSilence(t *testing.T) {
	const timeout = 200 * time.Millisecond
	s := startContainer(t, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		switch string(r.URI) {
		case "/trickle": // 5 x 80ms: twice the timeout in all
			for i := 0; i < 5; i++ {
				time.Sleep(80 * time.Millisecond)
				w.Write([]byte("x"))
			}
		case "/slow-head":
			time.Sleep(5 * timeout)
		case "/stall": // the first chunk comes with the head, then silence
			w.Write([]byte("x"))
			time.Sleep(5 * timeout)
		}
	})
	c := newClient(t, s, nil)
	do := func(uri string) (*ajp.Response, []byte, error) {
		resp, err := c.Do(request("GET", uri), nil, 0, timeout)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Close()
		body, err := io.ReadAll(resp)
		return resp, body, err
	}
	if _, body, err := do("/trickle"); err != nil || string(body) != "xxxxx" {
		t.Fatalf("trickling body: %q %v", body, err)
	}
	time.Sleep(2 * timeout) // the pooled connection's deadlines pass
	if _, body, err := do("/trickle"); err != nil || string(body) != "xxxxx" || s.Conns.Load() != 1 {
		t.Fatalf("after idling past the deadline: %q %v, %d connections", body, err, s.Conns.Load())
	}
	for _, uri := range []string{"/slow-head", "/stall"} {
		start := time.Now()
		_, _, err := do(uri)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%s: got %v, want a timeout", uri, err)
		}
		if d := time.Since(start); d > 3*timeout {
			t.Fatalf("%s: silence tolerated for %v with a %v timeout", uri, d, timeout)
		}
	}
}

// TestReleasedResponsesAreReused: Responses and their buffers go back to a
// pool; concurrent exchanges with heads and bodies of varied sizes must
// each see their own.
func TestReleasedResponsesAreReused(t *testing.T) {
	s := startContainer(t, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200, ajp.Header{Name: []byte("Content-Type"), Value: []byte("text/plain")},
			ajp.Header{Name: []byte("X-Uri"), Value: r.URI})
		w.Write(r.URI)
	})
	c := newClient(t, s, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				uri := fmt.Sprintf("/%d/%s", g, strings.Repeat("u", (g*50+i)%300))
				resp, err := c.Do(request("GET", uri), nil, 0, 5*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				body, err := io.ReadAll(resp)
				resp.Close()
				if err != nil || string(body) != uri || len(resp.Headers) != 2 ||
					string(resp.Headers[0].Name) != "Content-Type" || string(resp.Headers[1].Value) != uri {
					t.Errorf("%s: body %q, headers %q, %v", uri, body, resp.Headers, err)
				}
				resp.Release()
			}
		}()
	}
	wg.Wait()
}
