package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp/ajptest"
	"github.com/catherd/catherd/userspace/httpwire"
)

// recBackend is a backend that records the bytes of every request it gets
// and answers each with a small 200 (one request per connection).
type recBackend struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string
}

func newRecBackend(t *testing.T) *recBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recBackend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *recBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(c)
	var req strings.Builder
	for {
		line, err := br.ReadString('\n')
		req.WriteString(line)
		if err != nil || line == "\r\n" {
			break
		}
	}
	// What follows the head within a short while is the body as sent.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	rest, _ := io.ReadAll(br)
	req.Write(rest)
	b.mu.Lock()
	b.seen = append(b.seen, req.String())
	b.mu.Unlock()
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
}

func (b *recBackend) requests() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen...)
}

// rawCase is a request as bytes on the socket and what must come of it.
type rawCase struct {
	name, raw string
	status    string // the status line's code
	// forwarded is what the member must have seen, in order, as
	// substrings of its one request; nil when nothing may reach it.
	forwarded []string
}

// Hostile and malformed requests, sent as bytes: each is refused with the
// right code and reaches no member, or reaches it in one unambiguous form.
// The shapes are those of request smuggling (RFC 9112 section 11.2) and of
// the parser differentials behind it.
func TestRawRequests(t *testing.T) {
	many := func(n int) string { return strings.Repeat("X-A: b\r\n", n) }
	cases := []rawCase{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", "400", nil},
		{"TE identity and CL", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd", "400", nil},
		{"two different CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde", "400", nil},
		{"two equal CL", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", "400", nil},
		{"CL list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd", "400", nil},
		{"CL with sign", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", "400", nil},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "400", nil},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "400", nil},
		{"TE twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400", nil},
		{"space before colon", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "400", nil},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400", nil},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n", "400", []string{}},
		{"negative chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n", "400", []string{}},
		{"bare LF in chunks", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\n0\n\n", "400", []string{}},
		{"bare LF in head", "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n", "400", nil},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", "400", nil},
		{"space in a name", "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n", "400", nil},
		{"NUL in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\x00c\r\n\r\n", "400", nil},
		{"CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: b\rc\r\n\r\n", "400", nil},
		{"NUL in the URI", "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n", "400", nil},
		{"space in the URI", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", "400", nil},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", "400", nil},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", "400", nil},
		{"bad version", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", "400", nil},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400", nil},
		{"URI over the head limit", "GET /" + strings.Repeat("a", 20000) + " HTTP/1.1\r\nHost: x\r\n\r\n", "414", nil},
		{"header over the head limit", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 20000) + "\r\n\r\n", "431", nil},
		{"URI and headers over the head limit", "GET /" + strings.Repeat("a", 5000) + " HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 5000) + "\r\n\r\n", "431", nil},
		{"too many headers", "GET / HTTP/1.1\r\nHost: x\r\n" + many(httpwire.MaxFields) + "\r\n", "431", nil},
		// A client must not be able to have catherd remove framing or
		// routing fields by naming them in Connection.
		{"Connection names Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello", "400", nil},
		{"Connection names Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400", nil},
		{"Connection names Host", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Host\r\n\r\n", "400", nil},
		{"second Connection names Cookie", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nConnection: x,Cookie\r\nCookie: JSESSIONID=a.a\r\n\r\n", "400", nil},
		// h2c would have the member speak HTTP/2 to the client through
		// a tunnel, whatever Connection says of HTTP2-Settings.
		{"h2c upgrade", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "400", nil},
		{"h2c upgrade, odd Connection", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, X-HTTP2-Settings\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", "400", nil},
		{"h2c among upgrades", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo/2, h2c\r\n\r\n", "400", nil},
		// Versions catherd does not speak are answered, not forwarded.
		{"HTTP/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", "505", nil},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", "505", nil},
		{"HTTP/3.0", "GET / HTTP/3.0\r\nHost: x\r\n\r\n", "505", nil},
		{"HTTP/0.9 with a version", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", "505", nil},
		// Well-formed, if unusual: forwarded as they are.
		{"as many headers as allowed", "GET / HTTP/1.1\r\nHost: x\r\n" + many(httpwire.MaxFields-1) + "\r\n", "200", []string{"GET / HTTP/1.1\r\n"}},
		// An upgrade catherd does not tunnel reaches the member as a
		// plain request.
		{"upgrade other than WebSocket", "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: foo/2\r\n\r\n", "200",
			[]string{"GET / HTTP/1.1\r\n"}},
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", "200", []string{"GET / HTTP/1.0\r\n"}},
		{"chunk extension", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4;a=b\r\nabcd\r\n0\r\n\r\n", "200",
			[]string{"Transfer-Encoding: chunked\r\n", "\r\n\r\n4;a=b\r\nabcd\r\n0\r\n\r\n"}},
		{"trailer", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n", "200",
			[]string{"\r\n\r\n4\r\nabcd\r\n0\r\n"}},
		{"extension method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", "200", []string{"get / HTTP/1.1\r\n"}},
	}
	// What the member's request must not hold.
	absent := map[string][]string{"upgrade other than WebSocket": {"foo/2", "Upgrade"}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := newRecBackend(t)
			r := startRig(t, rigOptions{}, [2]string{"a", b.ln.Addr().String()})
			conn := r.rawConn()
			io.WriteString(conn, c.raw)
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			var resp []byte
			if c.status == "200" {
				// Kept alive: read one response.
				if r, err := http.ReadResponse(bufio.NewReader(conn), nil); err == nil {
					resp = []byte(fmt.Sprintf("HTTP/1.1 %s\r\n", r.Status))
				}
			} else {
				resp, _ = io.ReadAll(conn) // refusals close the connection
			}
			line, _, _ := strings.Cut(string(resp), "\r\n")
			if !strings.HasPrefix(line, "HTTP/1.1 "+c.status+" ") {
				t.Fatalf("status line %q, want %s", line, c.status)
			}
			if strings.Contains(string(resp), "/smuggled") || strings.Count(string(resp), "HTTP/1.1 ") > 1 {
				t.Fatalf("more than one answer: %q", resp)
			}
			seen := b.requests()
			switch {
			case c.forwarded == nil && len(seen) != 0:
				t.Fatalf("refused, yet the member saw %q", seen)
			case len(c.forwarded) > 0:
				if len(seen) != 1 {
					t.Fatalf("the member saw %d requests: %q", len(seen), seen)
				}
				at := 0
				for _, want := range c.forwarded {
					i := strings.Index(seen[0][at:], want)
					if i < 0 {
						t.Fatalf("the member saw %q, without %q (in order)", seen[0], want)
					}
					at += i + len(want)
				}
				for _, bad := range absent[c.name] {
					if strings.Contains(seen[0], bad) {
						t.Fatalf("the member saw %q, with %q", seen[0], bad)
					}
				}
			}
			// forwarded == []string{}: the body broke mid-stream; the
			// member may have seen an incomplete request, never a whole one.
			for _, s := range seen {
				if c.status != "200" && strings.Contains(s, "\r\n0\r\n\r\n") {
					t.Fatalf("refused, yet the member got a complete request: %q", s)
				}
			}
		})
	}
}

// completeRequest reports whether a request as a member saw it carries all
// of the body its head announces.
func completeRequest(raw string) bool {
	head, body, _ := strings.Cut(raw, "\r\n\r\n")
	if strings.Contains(head, "Transfer-Encoding: chunked") {
		return strings.Contains(body, "\r\n0\r\n\r\n") || strings.HasPrefix(body, "0\r\n\r\n")
	}
	for _, line := range strings.Split(head, "\r\n") {
		if v, ok := strings.CutPrefix(line, "Content-Length: "); ok {
			n, err := strconv.Atoi(v)
			return err == nil && len(body) >= n
		}
	}
	return true
}

// A client that goes away halfway through its body gets 400 and no member
// sees a complete request, whichever way catherd reads the body: whole
// before the handler (small), whole to keep it for a retry (up to 64 KiB),
// or streamed (larger, or chunked); over HTTP and over AJP.
func TestCutShortBodies(t *testing.T) {
	for _, n := range []int{100, 20000, 100000, -1} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			b := newRecBackend(t)
			var ajpComplete atomic.Int64
			ajpB := ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
				got, err := io.Copy(io.Discard, r.Body)
				if want, _ := strconv.ParseInt(string(r.Header("content-length")), 10, 64); err == nil && (want < 0 || got == want) {
					ajpComplete.Add(1)
				}
				w.WriteHeader(200)
			})
			for _, r := range []*rig{
				startRig(t, rigOptions{}, [2]string{"a", b.ln.Addr().String()}),
				startRig(t, rigOptions{ajpSecret: testSecret}, ajpB),
			} {
				conn := r.rawConn()
				if n < 0 {
					io.WriteString(conn, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1000\r\n"+strings.Repeat("a", 2000))
				} else {
					fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", n, strings.Repeat("a", n/2))
				}
				conn.(*net.TCPConn).CloseWrite()
				resp, _ := io.ReadAll(conn)
				if line, _, _ := strings.Cut(string(resp), "\r\n"); !strings.HasPrefix(line, "HTTP/1.1 400 ") {
					t.Fatalf("status line %q, want 400", line)
				}
			}
			time.Sleep(200 * time.Millisecond) // the HTTP member records what came within 100ms
			for _, seen := range b.requests() {
				if completeRequest(seen) {
					t.Fatalf("the HTTP member got a complete request: %.300q", seen)
				}
			}
			if ajpComplete.Load() != 0 {
				t.Fatal("the AJP member read a complete body")
			}
		})
	}
}

// A request line over the head limit is told from large headers on a
// kept-alive connection too, after a request whose head or body held the
// line ends that a new head is scanned for.
func TestLongRequestLineAfterRequests(t *testing.T) {
	a, _ := bodyBackend(t)
	r := startRig(t, rigOptions{}, a.spec())
	conn := r.rawConn()
	br := bufio.NewReader(conn)
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	body := strings.Repeat("line\n", 20000) // streamed: read in the handler
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for range 2 {
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("request before: %v %v", resp, err)
		} else {
			io.Copy(io.Discard, resp.Body)
		}
	}
	io.WriteString(conn, "GET /"+strings.Repeat("a", 20000)+" HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 414 {
		t.Fatalf("long request line: %v %v, want 414", resp, err)
	}
}
