package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp/ajptest"
)

// Timed tests use short timeouts and generous bounds: the answer must come
// no sooner than most of the timeout (so the timeout, not something else,
// ended it) and within seconds (a shared 2-core machine can be slow).

// readAll reads conn until it closes and returns what came and when the
// first byte (or the close, when nothing came) arrived.
func readAll(conn net.Conn) (string, time.Time) {
	var first time.Time
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if first.IsZero() && (n > 0 || err != nil) {
			first = time.Now()
		}
		got = append(got, buf[:n]...)
		if err != nil {
			return string(got), first
		}
	}
}

// within fails the test unless d is in [lo, hi].
func within(t *testing.T, what string, d, lo, hi time.Duration) {
	t.Helper()
	if d < lo || d > hi {
		t.Fatalf("%s after %v, want between %v and %v", what, d, lo, hi)
	}
}

// trickle writes s to conn one byte every interval until it is written or
// a write fails; it runs in the background.
func trickle(conn net.Conn, s string, interval time.Duration) {
	go func() {
		for i := range len(s) {
			if _, err := conn.Write([]byte{s[i]}); err != nil {
				return
			}
			time.Sleep(interval)
		}
	}()
}

// A request head trickled one byte at a time gets 408 once
// --client-header-timeout has passed since its first byte, whether it is a
// connection's first request or a later one after an idle wait longer than
// the header timeout; it reaches no member and is counted.
func TestSlowHeadGets408(t *testing.T) {
	b := newRecBackend(t)
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientHeaderTimeout = 300 * time.Millisecond }},
		[2]string{"a", b.ln.Addr().String()})
	head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n" // 10 s at 50 ms a byte
	for _, later := range []bool{false, true} {
		conn := r.rawConn()
		if later {
			io.WriteString(conn, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first request: %v %v", resp, err)
			}
			time.Sleep(400 * time.Millisecond) // idle, longer than the header timeout
		}
		start := time.Now()
		trickle(conn, head, 50*time.Millisecond)
		got, at := readAll(conn)
		if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
			t.Fatalf("later=%v: got %q, want 408", later, got)
		}
		within(t, "408", at.Sub(start), 250*time.Millisecond, 5*time.Second)
	}
	if seen := b.requests(); len(seen) != 1 { // the first request only
		t.Fatalf("the member saw %q", seen)
	}
	if want := `catherd_requests_total{code="408",member="none"} 2`; !strings.Contains(r.scrape(), want) {
		t.Fatalf("metrics lack %s", want)
	}
}

// A connection that never sends a byte is closed, without a response,
// once the header timeout has passed.
func TestSilentConnectionClosedQuietly(t *testing.T) {
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientHeaderTimeout = 300 * time.Millisecond }}, newNamedBackend(t, "a", nil).spec())
	start := time.Now()
	got, at := readAll(r.rawConn())
	if got != "" {
		t.Fatalf("got %q, want a close without a response", got)
	}
	within(t, "close", at.Sub(start), 250*time.Millisecond, 5*time.Second)
}

// A kept-alive connection is closed, without a response, after
// --client-idle-timeout with no request, and not before.
func TestIdleKeepAliveClosedQuietly(t *testing.T) {
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientIdleTimeout = 300 * time.Millisecond }}, newNamedBackend(t, "a", nil).spec())
	conn := r.rawConn()
	br := bufio.NewReader(conn)
	var sent time.Time // the last request: its response comes after
	for range 2 {      // the idle time counts from each response
		sent = time.Now()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		time.Sleep(150 * time.Millisecond)
	}
	rest, err := io.ReadAll(br)
	if len(rest) > 0 || err != nil {
		t.Fatalf("got %q %v, want a close without a response", rest, err)
	}
	within(t, "close", time.Since(sent), 250*time.Millisecond, 5*time.Second)
}

// bodyBackend reads each request's body whole, as an application does, and
// answers with its length; it counts bodies that broke off.
func bodyBackend(t *testing.T) (*namedBackend, *atomic.Int64) {
	var broken atomic.Int64
	return newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			broken.Add(1)
			return
		}
		fmt.Fprintf(w, "%d", n)
	}), &broken
}

// A body that stalls for --client-body-timeout gets 408, whichever way
// catherd reads it; the member saw an incomplete request and is not
// blamed (no error state, no error counted, no 502).
func TestStalledBodyGets408(t *testing.T) {
	a, broken := bodyBackend(t)
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientBodyTimeout = 400 * time.Millisecond }}, a.spec())
	for _, n := range []int{100, 20000, 100000, -1} {
		conn := r.rawConn()
		if n < 0 {
			io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"+strings.Repeat("a", 2000))
		} else {
			fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("a", n/2))
		}
		start := time.Now()
		got, at := readAll(conn)
		if !strings.HasPrefix(got, "HTTP/1.1 408 ") {
			t.Fatalf("body of %d: got %.200q, want 408", n, got)
		}
		within(t, fmt.Sprintf("body of %d: 408", n), at.Sub(start), 250*time.Millisecond, 5*time.Second)
	}
	if m := r.pool.Member("a"); m.LastError() != nil || m.InError(time.Now()) {
		t.Fatalf("the member was blamed: %+v", m.LastError())
	}
	metrics := r.scrape()
	if strings.Contains(metrics, "catherd_backend_errors_total{") {
		t.Fatalf("backend errors counted:\n%s", metrics)
	}
	if want := `catherd_requests_total{code="408",member="none"} 4`; !strings.Contains(metrics, want) {
		t.Fatalf("metrics lack %s", want)
	}
	if a.hits.Load() > 0 && broken.Load() != a.hits.Load() {
		t.Fatalf("the member read %d bodies whole", a.hits.Load()-broken.Load())
	}
}

// The body timeout bounds silence, not the whole upload: a body that keeps
// coming, slowly, for longer than the timeout is served.
func TestSlowMovingBodyIsServed(t *testing.T) {
	a, _ := bodyBackend(t)
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientBodyTimeout = 400 * time.Millisecond }}, a.spec())
	for _, chunked := range []bool{false, true} {
		conn := r.rawConn()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		var want int
		if chunked {
			io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
			for range 20 { // 20 x 50 ms: 1 s in all
				io.WriteString(conn, "3\r\nabc\r\n")
				want += 3
				time.Sleep(50 * time.Millisecond)
			}
			io.WriteString(conn, "0\r\n\r\n")
		} else {
			// The first 8 KiB at once, then the rest in small pieces.
			want = 8192 + 20*600
			fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", want, strings.Repeat("a", 8192))
			for range 20 {
				io.WriteString(conn, strings.Repeat("b", 600))
				time.Sleep(50 * time.Millisecond)
			}
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("chunked=%v: %v", chunked, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != fmt.Sprint(want) {
			t.Fatalf("chunked=%v: %d %q, want 200 %d", chunked, resp.StatusCode, body, want)
		}
	}
}

// Past --max-client-conns, counted across listeners, a new client is not
// refused: it waits in the accept queue (or accepted, one per listener)
// and is served once a connection ends.
func TestMaxClientConnsQueues(t *testing.T) {
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.MaxClientConns = 2 }}, newNamedBackend(t, "a", nil).spec())
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.px.Serve(ln2)
	dial := func(addr string) (net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		return conn, bufio.NewReader(conn)
	}
	served := func(conn net.Conn, br *bufio.Reader, within time.Duration) error {
		conn.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(br, nil)
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		return err
	}
	// Both listeners' accept loops idle: neither may hold a slot for a
	// connection it has yet to accept, or two connections to one listener
	// would not fit.
	time.Sleep(100 * time.Millisecond)
	first, br1 := dial(r.addr)
	second, br2 := dial(r.addr)
	for _, c := range []struct {
		conn net.Conn
		br   *bufio.Reader
	}{{first, br1}, {second, br2}} {
		if err := served(c.conn, c.br, 5*time.Second); err != nil {
			t.Fatalf("within the limit: %v", err)
		}
	}
	third, br3 := dial(ln2.Addr().String())
	if err := served(third, br3, 500*time.Millisecond); !isTimeout(err) {
		t.Fatalf("past the limit: got %v, want to wait", err)
	}
	// What operators see: every slot taken; the third accepted, waiting.
	if open, accepted, limit := r.px.ClientConns(); open != 2 || accepted != 3 || limit != 2 {
		t.Errorf("ClientConns at the limit: open %d, accepted %d, limit %d; want 2, 3, 2", open, accepted, limit)
	}
	first.Close()
	if err := served(third, br3, 5*time.Second); err != nil {
		t.Fatalf("after a connection ended: %v", err)
	}
}

// A member that takes a request and never answers gets the client a 504
// after --backend-timeout, over HTTP and AJP, and the request is not sent
// to another member, idempotent or not: the first may still be working on
// it.
func TestSlowBackendGets504NotRetried(t *testing.T) {
	for _, overAJP := range []bool{false, true} {
		var slowSeen, otherSeen atomic.Int64
		var slow, other [2]string
		ro := rigOptions{tweak: func(o *Options) { o.BackendTimeout = 300 * time.Millisecond }}
		if overAJP {
			ro.ajpSecret = testSecret
			slow = ajpMember(t, "slow", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
				slowSeen.Add(1)
				time.Sleep(2 * time.Second)
			})
			other = ajpMember(t, "other", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
				otherSeen.Add(1)
				w.WriteHeader(200)
			})
		} else {
			slow = rawBackend(t, "slow", func(c net.Conn) {
				http.ReadRequest(bufio.NewReader(c))
				slowSeen.Add(1)
				io.Copy(io.Discard, c) // until catherd gives up on it
			})
			nb := newNamedBackend(t, "other", func(http.ResponseWriter, *http.Request) { otherSeen.Add(1) })
			other = nb.spec()
		}
		r := startRig(t, ro, slow, other)
		for _, method := range []string{"GET", "POST"} {
			start := time.Now()
			resp, _ := r.do(method, "/", strings.NewReader("x=1"), "Cookie", "JSESSIONID=S.slow")
			if resp.StatusCode != 504 {
				t.Fatalf("ajp=%v %s: status %d, want 504", overAJP, method, resp.StatusCode)
			}
			within(t, fmt.Sprintf("ajp=%v %s: 504", overAJP, method), time.Since(start), 250*time.Millisecond, 5*time.Second)
		}
		if slowSeen.Load() != 2 || otherSeen.Load() != 0 {
			t.Fatalf("ajp=%v: the slow member saw %d requests, the other %d; want 2 and 0", overAJP, slowSeen.Load(), otherSeen.Load())
		}
		if want := `catherd_backend_errors_total{kind="timeout",member="slow"} 2`; !strings.Contains(r.scrape(), want) {
			t.Fatalf("ajp=%v: metrics lack %s", overAJP, want)
		}
	}
}

// After an upgrade, the client side of the tunnel is bounded by
// --client-body-timeout of silence: it lives while messages flow, longer
// than the timeout in all, and ends once the client goes quiet.
func TestSilentTunnelEnds(t *testing.T) {
	ws := rawBackend(t, "ws", func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, c) // echo, until catherd closes its side
	})
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientBodyTimeout = 400 * time.Millisecond }}, ws)
	conn := r.rawConn()
	io.WriteString(conn, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	var sent time.Time // the client's last message: the silence counts from it
	for range 6 {      // 6 x 150 ms: twice the timeout in all
		sent = time.Now()
		io.WriteString(conn, "ping")
		buf := make([]byte, 4)
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil {
		t.Fatalf("after silence: %q %v, want the tunnel closed", rest, err)
	}
	within(t, "close", time.Since(sent), 350*time.Millisecond, 5*time.Second)
}

// A client that stops reading a response is cut off after
// --client-send-timeout of stalled writing, rather than holding its
// connection and the member's for as long as it likes.
func TestStalledReaderCutOff(t *testing.T) {
	const size = 64 << 20
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(size))
		chunk := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.ClientSendTimeout = 400 * time.Millisecond }}, a.spec())
	conn := r.rawConn()
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(2 * time.Second) // reading nothing: buffers fill, catherd's write stalls
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, conn)
	if isTimeout(err) || n >= size {
		t.Fatalf("read %d bytes, then %v; want the connection cut short of %d", n, err, size)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// A member that takes longer than the client's bounds to answer (within
// --backend-timeout) is waited for: the client's head, body and idle
// timeouts bound the client, not the member.
func TestSlowMemberOutlastsClientBounds(t *testing.T) {
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		time.Sleep(700 * time.Millisecond)
		fmt.Fprintf(w, "got %d", n)
	})
	r := startRig(t, rigOptions{tweak: func(o *Options) {
		o.ClientHeaderTimeout, o.ClientBodyTimeout, o.ClientIdleTimeout = 200*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		o.BackendTimeout = 5 * time.Second
	}}, a.spec())
	for _, size := range []int{0, 10, 200 << 10} { // no body, held, streamed
		resp, body := r.do("POST", "/slow", strings.NewReader(strings.Repeat("b", size)))
		if resp.StatusCode != 200 || body != fmt.Sprintf("got %d", size) {
			t.Fatalf("body of %d: %d %q", size, resp.StatusCode, body)
		}
	}
}
