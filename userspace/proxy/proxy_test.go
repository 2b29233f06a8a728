package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/metrics"
)

// rig is a proxy listening on loopback in front of test backends.
type rig struct {
	t       *testing.T
	addr    string // proxy host:port
	pool    *balancer.Pool
	px      *Proxy
	metrics *metrics.Metrics
}

type rigOptions struct {
	method     string
	noFailover bool
	tweak      func(*Options)
	ajpSecret  string // members speak AJP with this secret
	ajpPacket  int    // and packets this large (default ajp.DefaultPacketSize)
	listen     string // the proxy's address; default 127.0.0.1:0
}

// startRig runs a proxy over backends given as name -> address.
func startRig(t *testing.T, ro rigOptions, backends ...[2]string) *rig {
	t.Helper()
	var members []*balancer.Member
	var ups []*Upstream
	for _, b := range backends {
		m := balancer.NewMember(b[0], b[0], 1, 0)
		t := Target{Addr: b[1]}
		if ro.ajpSecret != "" {
			t.AJP = &ajp.ClientOptions{Secret: ro.ajpSecret, PacketSize: cmp.Or(ro.ajpPacket, ajp.DefaultPacketSize)}
		}
		members = append(members, m)
		ups = append(ups, NewUpstream(m, t))
	}
	if ro.method == "" {
		ro.method = "byrequests"
	}
	pool, err := balancer.NewPool(members, ro.method, balancer.Options{Retry: time.Minute, NoFailover: ro.noFailover})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Sticky: session.Default, MaxAttempts: len(members),
		ConnectTimeout: 2 * time.Second, BackendTimeout: 5 * time.Second, BackendIdleTimeout: 10 * time.Second,
		MaxConnsPerBackend: 64, MaxHeaderBytes: 8192, MaxClientConns: 1000,
		ClientHeaderTimeout: 5 * time.Second, ClientBodyTimeout: 5 * time.Second, ClientIdleTimeout: 5 * time.Second, ClientSendTimeout: 5 * time.Second,
	}
	if ro.tweak != nil {
		ro.tweak(&opts)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var outcomes []string
	for _, o := range balancer.Outcomes {
		outcomes = append(outcomes, o.String())
	}
	m := metrics.New(metrics.Build{}, outcomes)
	px := New(pool, ups, m, opts, log)
	if ro.listen == "" {
		ro.listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", ro.listen)
	if err != nil {
		t.Fatal(err)
	}
	go px.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // no grace: what is left is closed at once
		px.Drain(ctx)
	})
	return &rig{t: t, addr: ln.Addr().String(), pool: pool, px: px, metrics: m}
}

// scrape returns the proxy's metrics in the exposition format.
func (r *rig) scrape() string {
	rec := httptest.NewRecorder()
	r.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// rawConn opens a plain TCP connection to the proxy, for requests that an
// http.Client would not send; it closes when the test ends.
func (r *rig) rawConn() net.Conn {
	r.t.Helper()
	conn, err := net.Dial("tcp", r.addr)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	return conn
}

// namedBackend answers every request with "name path" and records what it saw.
type namedBackend struct {
	*httptest.Server
	name  string
	mu    sync.Mutex
	last  *http.Request
	hits  atomic.Int64
	conns atomic.Int64
}

func newNamedBackend(t *testing.T, name string, h http.HandlerFunc) *namedBackend {
	nb := &namedBackend{name: name}
	nb.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nb.hits.Add(1)
		nb.mu.Lock()
		nb.last = r
		nb.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s", name, r.RequestURI)
	}))
	nb.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			nb.conns.Add(1)
		}
	}
	nb.Start()
	t.Cleanup(nb.Close)
	return nb
}

func (nb *namedBackend) spec() [2]string { return [2]string{nb.name, nb.Listener.Addr().String()} }

func (nb *namedBackend) lastRequest() *http.Request {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.last
}

// deadAddr is a loopback address with nothing listening.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// client waits a bounded time for a response head, not for a whole
// response: a large body under the race detector on a busy machine may
// take any time, and the proxy's own timeouts bound its silences.
var client = &http.Client{Transport: headTimeoutTransport(), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// headTimeoutTransport is the default transport with a bound on the wait
// for a response head.
func headTimeoutTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 10 * time.Second
	return tr
}

func (r *rig) do(method, path string, body io.Reader, header ...string) (*http.Response, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, "http://"+r.addr+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, string(b)
}

func TestStickyByCookieAndPath(t *testing.T) {
	a, b := newNamedBackend(t, "a", nil), newNamedBackend(t, "b", nil)
	r := startRig(t, rigOptions{}, a.spec(), b.spec())
	for i := 0; i < 4; i++ {
		if _, body := r.do("GET", "/x", nil, "Cookie", "other=1; JSESSIONID=ABC.b"); body != "b /x" {
			t.Fatalf("cookie route b: got %q", body)
		}
		if _, body := r.do("GET", "/app;jsessionid=ABC.a?q=1", nil); body != "a /app;jsessionid=ABC.a?q=1" {
			t.Fatalf("path route a: got %q", body)
		}
		// The cookie wins over the path parameter, as in Tomcat.
		if _, body := r.do("GET", "/p;jsessionid=Z.a", nil, "Cookie", "JSESSIONID=Z.b"); !strings.HasPrefix(body, "b ") {
			t.Fatalf("cookie over path: got %q", body)
		}
	}
}

func TestRequestTargetPassesVerbatim(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, a.spec())
	for _, target := range []string{"/a/../b;jsessionid=X.a?x=%20y&z", "/%E2%9C%93/caf%C3%A9", "/a//b/"} {
		if _, body := r.do("GET", target, nil); body != "a "+target {
			t.Errorf("target %q reached the backend as %q", target, strings.TrimPrefix(body, "a "))
		}
	}
}

func TestNewSessionsAreBalanced(t *testing.T) {
	a, b := newNamedBackend(t, "a", nil), newNamedBackend(t, "b", nil)
	r := startRig(t, rigOptions{}, a.spec(), b.spec())
	for i := 0; i < 10; i++ {
		r.do("GET", "/", nil)
	}
	if a.hits.Load() != 5 || b.hits.Load() != 5 {
		t.Fatalf("byrequests split %d/%d, want 5/5", a.hits.Load(), b.hits.Load())
	}
	// Unknown routes are balanced like new sessions.
	r.do("GET", "/", nil, "Cookie", "JSESSIONID=X.nosuch")
	if a.hits.Load()+b.hits.Load() != 11 {
		t.Fatal("unknown route not served")
	}
}

func TestFailoverOnConnectError(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, [2]string{"dead", deadAddr(t)}, a.spec())
	for i := 0; i < 20; i++ {
		if resp, body := r.do("GET", "/", nil); resp.StatusCode != 200 || body != "a /" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	// A session whose member is down moves, POSTs included: nothing was sent.
	resp, body := r.do("POST", "/form", strings.NewReader("x=1"), "Cookie", "JSESSIONID=S.dead")
	if resp.StatusCode != 200 || body != "a /form" {
		t.Fatalf("sticky failover: %d %q", resp.StatusCode, body)
	}
	dead := r.pool.Member("dead")
	if dead.State(time.Now()) != balancer.StateError {
		t.Fatalf("dead member state %v, want error", dead.State(time.Now()))
	}
}

func TestStreamedUploadFailsOverOnConnectError(t *testing.T) {
	sum := make(chan string, 1)
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		sum <- fmt.Sprintf("%d %x", n, h.Sum(nil))
	})
	r := startRig(t, rigOptions{}, [2]string{"dead", deadAddr(t)}, a.spec())
	r.pool.Member("a").SetFlags(balancer.Standby) // make sure dead is tried first
	data := make([]byte, 3<<20)
	rand.Read(data)
	want := fmt.Sprintf("%d %x", len(data), sha256.Sum256(data))
	// A reader hides the length: the client sends it chunked.
	resp, _ := r.do("PUT", "/up", io.MultiReader(bytes.NewReader(data)), "Cookie", "JSESSIONID=S.dead")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := <-sum; got != want {
		t.Fatalf("backend got %s, want %s", got, want)
	}
}

func TestNoFailover(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{noFailover: true}, [2]string{"dead", deadAddr(t)}, a.spec())
	r.pool.Member("dead").SetFlags(balancer.Stopped)
	resp, _ := r.do("GET", "/", nil, "Cookie", "JSESSIONID=S.dead")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
}

func TestAllMembersDown(t *testing.T) {
	r := startRig(t, rigOptions{}, [2]string{"d1", deadAddr(t)}, [2]string{"d2", deadAddr(t)})
	start := time.Now()
	resp, body := r.do("GET", "/", nil)
	if resp.StatusCode != 503 || !strings.Contains(body, "no backend") {
		t.Fatalf("got %d %q, want 503", resp.StatusCode, body)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("503 took %v", time.Since(start))
	}
	// Both in error now: forced recovery tries them again, still 503, fast.
	if resp, _ := r.do("GET", "/", nil); resp.StatusCode != 503 {
		t.Fatalf("second request: %d", resp.StatusCode)
	}
}

// closingBackend reads a request head and closes the connection unanswered.
func closingBackend(t *testing.T, name string) ([2]string, *atomic.Int64) {
	var seen atomic.Int64
	return rawBackend(t, name, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		seen.Add(1)
	}), &seen
}

// rawBackend serves each connection with handle, then closes it: for
// backends that misbehave below HTTP.
func rawBackend(t testing.TB, name string, handle func(net.Conn)) [2]string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return [2]string{name, ln.Addr().String()}
}

func TestResetRetriesOnlyIdempotent(t *testing.T) {
	bad, seen := closingBackend(t, "bad")
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, bad, a.spec())
	resp, body := r.do("GET", "/", nil, "Cookie", "JSESSIONID=S.bad")
	if resp.StatusCode != 200 || body != "a /" {
		t.Fatalf("GET after reset: %d %q", resp.StatusCode, body)
	}
	before := a.hits.Load()
	resp, _ = r.do("POST", "/pay", strings.NewReader("amount=1"), "Cookie", "JSESSIONID=S.bad")
	if resp.StatusCode != 502 {
		t.Fatalf("POST after reset: %d, want 502", resp.StatusCode)
	}
	if a.hits.Load() != before {
		t.Fatal("POST was sent again to another member")
	}
	if seen.Load() != 2 {
		t.Fatalf("bad backend saw %d requests, want 2", seen.Load())
	}
}

func TestForwardedAndHopByHopHeaders(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, a.spec())
	r.do("GET", "/", nil, "Connection", "X-Secret-Hop", "X-Secret-Hop", "1", "Keep-Alive", "timeout=5",
		"X-Forwarded-For", "6.6.6.6", "Proxy-Authorization", "Basic eA==", "X-Kept", "yes")
	got := a.lastRequest().Header
	if v := got.Get("X-Forwarded-For"); v != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want the client address only", v)
	}
	if v := got.Get("X-Forwarded-Proto"); v != "http" {
		t.Errorf("X-Forwarded-Proto %q", v)
	}
	if v := got.Get("X-Forwarded-Host"); v != r.addr {
		t.Errorf("X-Forwarded-Host %q, want %q", v, r.addr)
	}
	for _, h := range []string{"X-Secret-Hop", "Keep-Alive", "Proxy-Authorization"} {
		if got.Get(h) != "" {
			t.Errorf("hop-by-hop %s forwarded", h)
		}
	}
	if got.Get("X-Kept") != "yes" {
		t.Error("end-to-end header dropped")
	}
	if host := a.lastRequest().Host; host != r.addr {
		t.Errorf("Host %q, want the client's %q", host, r.addr)
	}
}

func TestLocationRewrite(t *testing.T) {
	var self string
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "http://"+self+"/login?x=1")
		w.Header().Set("Content-Location", "http://"+self)
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.WriteHeader(302)
	})
	self = a.Listener.Addr().String()
	r := startRig(t, rigOptions{}, a.spec())
	resp, _ := r.do("GET", "/", nil)
	if loc := resp.Header.Get("Location"); loc != "http://"+r.addr+"/login?x=1" {
		t.Errorf("Location %q", loc)
	}
	if loc := resp.Header.Get("Content-Location"); loc != "http://"+r.addr {
		t.Errorf("Content-Location %q", loc)
	}
	if resp.Header.Get("X-Internal") != "" {
		t.Error("header named by Connection passed to the client")
	}
}

func TestBackendKeepAlive(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, a.spec())
	for i := 0; i < 200; i++ {
		r.do("GET", "/", nil)
	}
	if n := a.conns.Load(); n > 2 {
		t.Fatalf("200 sequential requests used %d backend connections", n)
	}
}

// TestLargeDownloadStreams checks a body much larger than any buffer passes
// intact while the proxy's heap stays small.
func TestLargeDownloadStreams(t *testing.T) {
	const size = 256 << 20
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("len") == "1" {
			w.Header().Set("Content-Length", fmt.Sprint(size))
		}
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := startRig(t, rigOptions{}, a.spec())
	for _, q := range []string{"?len=1", "?len=0"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp, err := client.Get("http://" + r.addr + "/big" + q)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		if err != nil || n != size {
			t.Fatalf("%s: got %d bytes, %v", q, n, err)
		}
		want := sha256.New()
		for sent := 0; sent < size; sent += len(chunk) {
			want.Write(chunk)
		}
		if !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
			t.Fatalf("%s: body corrupted", q)
		}
		runtime.ReadMemStats(&after)
		// The test's own client and backend share this heap; 32 MiB is far
		// below the 256 MiB a buffering proxy would need.
		if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
			t.Fatalf("%s: heap grew by %d MiB", q, grew>>20)
		}
	}
}

func TestExpectContinueUpload(t *testing.T) {
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d expect=%q", n, r.Header.Get("Expect"))
	})
	r := startRig(t, rigOptions{}, a.spec())
	conn := r.rawConn()
	fmt.Fprintf(conn, "POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue first, got %q %v", line, err)
	}
	br.ReadString('\n') // blank line after the interim response
	conn.Write(bytes.Repeat([]byte("x"), 100000))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != `got 100000 expect=""` {
		t.Fatalf("body %q", body)
	}
}

func TestWebSocketUpgradeTunnels(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil || req.Header.Get("Upgrade") != "websocket" {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, c) // echo
	}()
	r := startRig(t, rigOptions{}, [2]string{"ws", ln.Addr().String()})
	conn := r.rawConn()
	io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	for _, msg := range []string{"hello", "world"} {
		io.WriteString(conn, msg)
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q %v", msg, buf, err)
		}
	}
}

func TestBadClientRequests(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, a.spec())
	send := func(raw string) string {
		conn := r.rawConn()
		io.WriteString(conn, raw)
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return line
	}
	if line := send("GARBAGE\r\n\r\n"); !strings.Contains(line, " 400 ") {
		t.Errorf("garbage request line: %q", line)
	}
	if line := send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n"); !strings.Contains(line, " 431 ") {
		t.Errorf("oversized head: %q", line)
	}
	if a.hits.Load() != 0 {
		t.Error("a bad request reached the backend")
	}
}

func TestBodilessResponsesKeepTheirHeaders(t *testing.T) {
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/304":
			w.Header().Set("ETag", `"v1"`)
			w.WriteHeader(304)
		case "/204":
			w.WriteHeader(204)
		default:
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Length", "1234")
			if r.Method != "HEAD" {
				w.Write(bytes.Repeat([]byte("x"), 1234))
			}
		}
	})
	r := startRig(t, rigOptions{}, a.spec())
	resp, body := r.do("HEAD", "/page", nil)
	if resp.StatusCode != 200 || resp.ContentLength != 1234 || body != "" || resp.Header.Get("Content-Type") != "text/html" {
		t.Errorf("HEAD: %d length %d body %q type %q", resp.StatusCode, resp.ContentLength, body, resp.Header.Get("Content-Type"))
	}
	if resp, _ := r.do("GET", "/304", nil); resp.StatusCode != 304 || resp.Header.Get("ETag") != `"v1"` {
		t.Errorf("304: %d etag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	if resp, _ := r.do("GET", "/204", nil); resp.StatusCode != 204 {
		t.Errorf("204: %d", resp.StatusCode)
	}
	// The connection still works after bodiless responses.
	if resp, body := r.do("GET", "/page", nil); resp.StatusCode != 200 || len(body) != 1234 {
		t.Errorf("GET after: %d %d bytes", resp.StatusCode, len(body))
	}
}

// truncatingBackend promises a body of declared bytes and closes after 10.
func truncatingBackend(t *testing.T, declared int) [2]string {
	return rawBackend(t, "trunc", func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n0123456789", declared)
	})
}

func TestTruncatedResponses(t *testing.T) {
	// Small bodies are read before the client is answered: a short one
	// becomes a 502, never a 200 with a cut body.
	r := startRig(t, rigOptions{}, truncatingBackend(t, 1000))
	if resp, _ := r.do("GET", "/", nil); resp.StatusCode != 502 {
		t.Fatalf("small truncated body: status %d, want 502", resp.StatusCode)
	}
	// Large bodies stream: the head is already out, so the client must see
	// the connection end before the declared length, not a silent short body.
	r = startRig(t, rigOptions{}, truncatingBackend(t, 10<<20))
	resp, err := client.Get("http://" + r.addr + "/")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("a truncated stream reached the client as a complete response")
	}
}

// TestLargeUploadStreams: a body much larger than any buffer, of known
// length and chunked, reaches the member intact.
func TestLargeUploadStreams(t *testing.T) {
	sums := make(chan string, 1)
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		sums <- fmt.Sprintf("%d %x", n, h.Sum(nil))
	})
	r := startRig(t, rigOptions{}, a.spec())
	data := make([]byte, 32<<20)
	rand.Read(data)
	want := fmt.Sprintf("%d %x", len(data), sha256.Sum256(data))
	for _, body := range []io.Reader{bytes.NewReader(data), io.MultiReader(bytes.NewReader(data))} {
		if resp, _ := r.do("PUT", "/up", body); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := <-sums; got != want {
			t.Fatalf("the member got %s, want %s", got, want)
		}
	}
}
