package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/ajp/ajptest"
)

const testSecret = "s3cret"

// ajpMember runs a test container answering with what it received.
func ajpMember(t *testing.T, name string, h ajptest.Handler) [2]string {
	t.Helper()
	if h == nil {
		h = func(r *ajptest.Request, w *ajptest.ResponseWriter) {
			sum := sha256.New()
			n, _ := io.Copy(sum, r.Body)
			body := fmt.Sprintf("%s %s %s?%s q=%q route=%s xff=%s host=%s:%d len=%s body=%d %x",
				name, r.Method, r.URI, r.QueryString, r.QueryString, r.Route, r.Header("X-Forwarded-For"),
				r.ServerName, r.ServerPort, r.Header("content-length"), n, sum.Sum(nil))
			w.WriteHeader(200, ajp.Header{Name: []byte("Content-Type"), Value: []byte("text/plain")},
				ajp.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(len(body)))},
				ajp.Header{Name: []byte("Set-Cookie"), Value: []byte("JSESSIONID=NEW." + name + "; Path=/; HttpOnly")})
			io.WriteString(w, body)
		}
	}
	s, err := ajptest.NewServer(testSecret, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return [2]string{name, s.Addr}
}

func TestAJPMembers(t *testing.T) {
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", nil), ajpMember(t, "b", nil))
	resp, body := r.do("GET", "/shop/cart;jsessionid=X.b?item=7&x=%20", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "b GET /shop/cart;jsessionid=X.b?item=7&x=%20 ") {
		t.Fatalf("sticky GET over AJP: %d %q", resp.StatusCode, body)
	}
	for _, want := range []string{"route=b", "xff=127.0.0.1", "host=127.0.0.1:"} {
		if !strings.Contains(body, want) {
			t.Errorf("container saw %q, missing %s", body, want)
		}
	}
	if c := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(c, "JSESSIONID=NEW.b") {
		t.Errorf("Set-Cookie %q", c)
	}
	// Cookie stickiness, several requests on pooled connections.
	for i := 0; i < 5; i++ {
		if _, body := r.do("GET", "/x", nil, "Cookie", "JSESSIONID=Y.a"); !strings.HasPrefix(body, "a GET /x") {
			t.Fatalf("cookie route a: %q", body)
		}
	}
	// Sequential requests share one connection per member: the small-body
	// path reads exactly Content-Length bytes, and closing the response
	// must still reach END_RESPONSE and pool the connection.
	for _, m := range r.px.pool.Members() {
		if n := r.px.upstreams[m.Index()].Load().opened.Load(); n != 1 {
			t.Errorf("member %s: %d AJP connections opened, want 1 reused", m.Name, n)
		}
	}
}

func TestAJPUploads(t *testing.T) {
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", nil))
	for _, size := range []int{11, 100 << 10, 1 << 20} {
		data := bytes.Repeat([]byte("u"), size)
		want := fmt.Sprintf("body=%d %x", size, sha256.Sum256(data))
		// Known length (buffered or streamed by size) and chunked.
		if _, body := r.do("POST", "/up", bytes.NewReader(data)); !strings.HasSuffix(body, want) || !strings.Contains(body, fmt.Sprintf("len=%d", size)) {
			t.Fatalf("POST %d bytes: %q", size, body)
		}
		if _, body := r.do("PUT", "/up", io.MultiReader(bytes.NewReader(data))); !strings.HasSuffix(body, want) {
			t.Fatalf("chunked PUT %d bytes: %q", size, body)
		}
	}
}

func TestAJPDownloadAndHead(t *testing.T) {
	const size = 32 << 20
	chunk := bytes.Repeat([]byte("d"), 64<<10)
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(size))})
		if string(r.Method) == "HEAD" {
			return
		}
		for sent := 0; sent < size; sent += len(chunk) {
			w.Write(chunk)
		}
	}))
	resp, body := r.do("GET", "/big", nil)
	if resp.StatusCode != 200 || len(body) != size {
		t.Fatalf("download: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, body = r.do("HEAD", "/big", nil)
	if resp.StatusCode != 200 || body != "" || resp.ContentLength != size {
		t.Fatalf("HEAD: %d, %q, length %d", resp.StatusCode, body, resp.ContentLength)
	}
	// The connection survived the HEAD: another request works.
	if resp, _ := r.do("HEAD", "/big", nil); resp.StatusCode != 200 {
		t.Fatalf("second HEAD: %d", resp.StatusCode)
	}
}

// A container whose packets are larger than the loops' buffers
// (packet-size up to 65536) is served: its connections read into buffers
// that hold a whole packet, both ways.
func TestAJPLargePackets(t *testing.T) {
	body := bytes.Repeat([]byte("p"), 40<<10) // one SEND_BODY_CHUNK, over 16 KiB
	s, err := ajptest.NewServerPackets(testSecret, ajp.MaxPacketSize, func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		n, _ := io.Copy(io.Discard, r.Body)
		if n > 0 {
			fmt.Fprintf(w, "read %d", n)
			return
		}
		w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(len(body)))})
		w.Write(body)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r := startRig(t, rigOptions{ajpSecret: testSecret, ajpPacket: ajp.MaxPacketSize}, [2]string{"a", s.Addr})
	for range 2 { // the second on the pooled connection
		if resp, got := r.do("GET", "/big-packets", nil); resp.StatusCode != 200 || got != string(body) {
			t.Fatalf("a body in one 64 KiB packet: %d, %d bytes", resp.StatusCode, len(got))
		}
	}
	up := bytes.Repeat([]byte("u"), 200<<10)
	if _, got := r.do("POST", "/upload", bytes.NewReader(up)); got != fmt.Sprintf("read %d", len(up)) {
		t.Fatalf("an upload in 64 KiB packets: %q", got)
	}
}

// TestAJPStreamedHead: the head of an answer of unknown length is held
// only while more of the same read may go out with it. A container that
// sends such a head and then waits (a servlet that flushed) has the head
// reach the client at once.
func TestAJPStreamedHead(t *testing.T) {
	release := make(chan struct{})
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200)
		<-release
		io.WriteString(w, "done")
	}))
	defer close(release)
	c := r.rawConn()
	if _, err := io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
		t.Fatalf("status line before the body was sent: %q, %v", line, err)
	}
	for {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatalf("head: %v", err)
		}
		if line == "\r\n" {
			break
		}
	}
	release <- struct{}{}
	chunk := make([]byte, len("4\r\ndone\r\n"))
	if _, err := io.ReadFull(br, chunk); err != nil || string(chunk) != "4\r\ndone\r\n" {
		t.Fatalf("body %q, %v", chunk, err)
	}
}

// TestAJPSmallAnswerWhole: the head of a small answer of known length
// waits for its body, as over HTTP, however the container's packets are
// cut up: one answer, whole, or a 502 when the container breaks off.
func TestAJPSmallAnswerWhole(t *testing.T) {
	release := make(chan struct{})
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		switch string(r.URI) {
		case "/flushed": // the head flushed on its own, the body later
			w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("4")})
			<-release
			io.WriteString(w, "done")
		case "/cut": // 4 bytes of 10, then the connection closes
			w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("10")})
			io.WriteString(w, "half")
			w.Abort()
		case "/crumbs": // a byte per packet: more packets than the read buffer holds
			w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("4000")})
			for i := range 4000 {
				w.Write([]byte{'a' + byte(i%26)})
			}
		}
	}))
	c := r.rawConn()
	if _, err := io.WriteString(c, "GET /flushed HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the head went out before its 4-byte body: %d bytes, %v", n, err)
	}
	close(release)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(body) != "done" || err != nil {
		t.Fatalf("flushed head: %d %q, %v", resp.StatusCode, body, err)
	}
	if resp, body := r.do("GET", "/cut", nil); resp.StatusCode != 502 {
		t.Fatalf("an answer cut short: %d %q, want 502", resp.StatusCode, body)
	}
	want := make([]byte, 4000)
	for i := range want {
		want[i] = 'a' + byte(i%26)
	}
	if resp, body := r.do("GET", "/crumbs", nil); resp.StatusCode != 200 || body != string(want) {
		t.Fatalf("4000 one-byte packets: %d, %d bytes", resp.StatusCode, len(body))
	}
}

// TestAJPChunksTogether: body chunks that arrive together go to the
// client together, in its framing: one HTTP chunk of them all when the
// container gave no length, the data alone when it did.
func TestAJPChunksTogether(t *testing.T) {
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		if r.URI[1] == 'k' { // known length
			w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("9")})
		} else {
			w.WriteHeader(200)
		}
		var pkts []byte
		for _, piece := range []string{"abc", "", "def", "ghi"} {
			pkts, _ = ajp.AppendSendBodyChunk(pkts, []byte(piece), ajp.DefaultPacketSize)
		}
		w.Raw(pkts) // one segment: every chunk in one read
	}))
	for _, path := range []string{"/known", "/unknown"} {
		resp, body := r.do("GET", path, nil)
		if resp.StatusCode != 200 || body != "abcdefghi" {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, body)
		}
		if chunked := len(resp.TransferEncoding) > 0; chunked != (path == "/unknown") {
			t.Errorf("%s: Transfer-Encoding %v", path, resp.TransferEncoding)
		}
	}
	c := r.rawConn()
	if _, err := io.WriteString(c, "GET /unknown HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	want := "\r\n\r\n9\r\nabcdefghi\r\n0\r\n\r\n"
	got := make([]byte, 0, 512)
	for !strings.HasSuffix(string(got), "0\r\n\r\n") {
		b := make([]byte, 512)
		n, err := c.Read(b)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, b[:n]...)
	}
	if !strings.HasSuffix(string(got), want) {
		t.Fatalf("chunked answer %q, want it to end %q", got, want)
	}
}

func TestAJPFailures(t *testing.T) {
	garbage := ajpMember(t, "bad", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.Raw([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		w.Abort()
	})
	r := startRig(t, rigOptions{ajpSecret: testSecret}, garbage)
	before := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		if resp, _ := r.do("GET", "/", nil); resp.StatusCode != 502 {
			t.Fatalf("garbage from the container: %d, want 502", resp.StatusCode)
		}
	}
	if got := r.px.upstreams[0].Load().discarded.Load(); got != 20 {
		t.Errorf("%d broken connections counted, want 20", got)
	}
	time.Sleep(50 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Errorf("goroutines grew from %d to %d over 20 broken exchanges", before, after)
	}
	// A body chunk whose length overruns its packet: the exchange breaks,
	// the connection is discarded, and no answer reaches the client whole.
	overrun := ajpMember(t, "overrun", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200)
		w.Raw([]byte{'A', 'B', 0, 6, ajp.TypeSendBodyChunk, 0, 100, 'a', 'b', 'c'})
		w.Abort()
	})
	r = startRig(t, rigOptions{ajpSecret: testSecret}, overrun)
	if resp, err := client.Get("http://" + r.addr + "/"); err == nil {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 502 {
			t.Fatalf("a malformed body chunk: %d %q, want 502 or a cut answer", resp.StatusCode, body)
		}
	}
	if got := r.px.upstreams[0].Load().discarded.Load(); got != 1 {
		t.Errorf("%d broken connections counted after a malformed body chunk, want 1", got)
	}
	// A dead member: the request moves to a live one.
	r = startRig(t, rigOptions{ajpSecret: testSecret}, [2]string{"dead", deadAddr(t)}, ajpMember(t, "a", nil))
	if resp, body := r.do("POST", "/p", strings.NewReader("x=1"), "Cookie", "JSESSIONID=S.dead"); resp.StatusCode != 200 || !strings.HasPrefix(body, "a POST") {
		t.Fatalf("failover from a dead AJP member: %d %q", resp.StatusCode, body)
	}
	// A head AJP cannot carry: 400, no member blamed.
	if resp, _ := r.do("GET", "/", nil, "X-Big", strings.Repeat("h", 8000)); resp.StatusCode != 400 {
		t.Fatalf("oversized head over AJP: %d, want 400", resp.StatusCode)
	}
}

func TestProbes(t *testing.T) {
	good := ajpMember(t, "good", nil)
	r := startRig(t, rigOptions{ajpSecret: testSecret}, good)
	if err := r.px.upstreams[0].Load().Probe("/")(context.Background()); err != nil {
		t.Fatalf("healthy AJP member: %v", err)
	}
	// The same container, but catherd holds the wrong secret.
	r = startRig(t, rigOptions{ajpSecret: "wrong"}, good)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := r.px.upstreams[0].Load().Probe("/")(ctx); !errors.Is(err, ErrSecretRefused) {
		t.Fatalf("wrong secret: %v, want ErrSecretRefused", err)
	}
	// An application's own 403 keeps the connection: not a refused secret.
	app403 := ajpMember(t, "app403", func(r *ajptest.Request, w *ajptest.ResponseWriter) { w.WriteHeader(403) })
	r = startRig(t, rigOptions{ajpSecret: testSecret}, app403)
	if err := r.px.upstreams[0].Load().Probe("/")(ctx); err != nil {
		t.Fatalf("application 403: %v", err)
	}
	// HTTP members: a 5xx fails the probe, a 404 does not.
	h := newNamedBackend(t, "h", func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/broken" {
			w.WriteHeader(503)
		} else {
			w.WriteHeader(404)
		}
	})
	r = startRig(t, rigOptions{}, h.spec())
	if err := r.px.upstreams[0].Load().Probe("/anything")(ctx); err != nil {
		t.Fatalf("HTTP 404: %v", err)
	}
	if err := r.px.upstreams[0].Load().Probe("/broken")(ctx); err == nil {
		t.Fatal("HTTP 503 passed the probe")
	}
}

// TestUnreadUploads: a member that answers without reading an upload
// leaves it on the client connection. catherd reads and drops it (up to
// discardLimit) so the client gets its answer and keeps the connection;
// past the limit the answer says Connection: close.
func TestUnreadUploads(t *testing.T) {
	ignoring := ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("2")})
		io.WriteString(w, "ok")
	})
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ignoring)
	big := bytes.Repeat([]byte("z"), 1<<20)
	for i := 0; i < 3; i++ {
		for _, body := range []io.Reader{bytes.NewReader(big), io.MultiReader(bytes.NewReader(big))} {
			resp, got := r.do("POST", "/ignore", body)
			if resp.StatusCode != 200 || got != "ok" || resp.Close {
				t.Fatalf("1 MiB ignored: status %d body %q close=%v; want 200 ok, connection kept", resp.StatusCode, got, resp.Close)
			}
		}
	}
	huge := io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("z"), discardLimit+(1<<20))))
	if resp, got := r.do("POST", "/ignore", huge); resp.StatusCode != 200 || got != "ok" || !resp.Close {
		t.Fatalf("past the discard limit: status %d body %q close=%v; want Connection: close", resp.StatusCode, got, resp.Close)
	}
}

// TestAJPConcurrentRequests: forwardAJP's state and the AJP responses are
// pooled; concurrent requests with heads and bodies of varied sizes must
// each reach the container, and come back, as they were.
func TestAJPConcurrentRequests(t *testing.T) {
	r := startRig(t, rigOptions{ajpSecret: testSecret}, ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		body, _ := io.ReadAll(r.Body)
		echo := fmt.Sprintf("%s %s?%s id=%s host=%s:%d remote=%s port=%s body=%s",
			r.Method, r.URI, r.QueryString, r.Header("X-Id"), r.ServerName, r.ServerPort, r.RemoteAddr, r.Attributes[0].Value, body)
		w.WriteHeader(200, ajp.Header{Name: []byte("X-Id"), Value: r.Header("X-Id")},
			ajp.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(len(echo)))})
		io.WriteString(w, echo)
	}))
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				id := fmt.Sprintf("%d-%d-%s", g, i, strings.Repeat("i", (g*25+i)%200))
				path, body, method := "/p/"+id, strings.Repeat("b", i*g), "POST"
				if i%2 == 0 {
					path, body, method = "/g/"+id+"?q="+id, "", "GET"
				}
				req, _ := http.NewRequest(method, "http://"+r.addr+path, strings.NewReader(body))
				req.Header.Set("X-Id", id)
				resp, err := client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				got := string(b)
				if err != nil {
					t.Error(err)
					return
				}
				uri, query, _ := strings.Cut(path, "?")
				want := fmt.Sprintf("%s %s?%s id=%s host=%s remote=127.0.0.1 port=", method, uri, query, id, r.addr)
				if resp.StatusCode != 200 || resp.Header.Get("X-Id") != id || !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " body="+body) {
					t.Errorf("%s %s: %d X-Id %q, body %q; want %q... body=%s", method, path, resp.StatusCode, resp.Header.Get("X-Id"), got, want, body)
				}
			}
		}()
	}
	wg.Wait()
}

// TestServerNamePort: the name and port come from net.SplitHostPort's
// reading of Host; a Host it rejects is the name whole, on the scheme's port.
func TestServerNamePort(t *testing.T) {
	for _, tt := range []struct {
		host, name string
		tls        bool
		port       int
	}{
		{"shop.example", "shop.example", false, 80},
		{"shop.example", "shop.example", true, 443},
		{"shop.example:8080", "shop.example", false, 8080},
		{"10.0.0.1:8443", "10.0.0.1", true, 8443},
		{"[2001:db8::1]:8080", "2001:db8::1", false, 8080},
		{"[2001:db8::1]", "[2001:db8::1]", false, 80},
		{"a:b:c", "a:b:c", false, 80},
		{"shop.example:", "shop.example", false, 80},
		{"shop.example:x", "shop.example", false, 80},
		{"", "", false, 80},
	} {
		if name, port := serverNamePort([]byte(tt.host), tt.tls); string(name) != tt.name || port != tt.port {
			t.Errorf("Host %q (TLS %v): %q %d, want %q %d", tt.host, tt.tls, name, port, tt.name, tt.port)
		}
	}
}
