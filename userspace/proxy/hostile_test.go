package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hostileMember serves its n-th connection with behaviours[min(n,
// len-1)], called for each request read on it until it returns false: a
// member that breaks the rules of HTTP/1.1 on purpose.
type hostileMember struct {
	addr  string
	conns atomic.Int64 // connections accepted
	seen  atomic.Int64 // requests read
}

type behaviour func(c net.Conn, req *http.Request) bool

func newHostileMember(t *testing.T, behaviours ...behaviour) *hostileMember {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	m := &hostileMember{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			serve := behaviours[min(int(m.conns.Add(1))-1, len(behaviours)-1)]
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					m.seen.Add(1)
					if !serve(c, req) {
						return
					}
					io.Copy(io.Discard, req.Body)
				}
			}()
		}
	}()
	return m
}

func (m *hostileMember) spec(name string) [2]string { return [2]string{name, m.addr} }

// answer answers with a small 200 and keeps the connection.
func answer(body string) behaviour {
	return func(c net.Conn, req *http.Request) bool {
		io.Copy(io.Discard, req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		return true
	}
}

// get sends one request on a fresh client connection and returns the
// status code and body.
func (r *rig) get(method, path string, body string) (int, string) {
	r.t.Helper()
	req, _ := http.NewRequest(method, "http://"+r.addr+path, strings.NewReader(body))
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// healthyAfter checks that the next n clients are served by the member:
// nothing a broken exchange left behind reaches them.
func (r *rig) healthyAfter(what string, n int) {
	r.t.Helper()
	for i := range n {
		if code, body := r.get("GET", "/", ""); code != 200 || body != "fine" {
			r.t.Fatalf("after %s: client %d got %d %q", what, i, code, body)
		}
	}
}

// A member that switches protocols on a request that did not ask to: the
// client gets 502, never the member's bytes, and the connection is not
// used again.
func TestUnaskedSwitchingProtocols(t *testing.T) {
	m := newHostileMember(t,
		func(c net.Conn, _ *http.Request) bool {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00")
			return true
		},
		answer("fine"))
	r := startRig(t, rigOptions{}, m.spec("a"))
	if code, body := r.get("GET", "/", ""); code != 502 || strings.Contains(body, "\x04") {
		t.Fatalf("unasked 101: %d %q, want 502", code, body)
	}
	r.healthyAfter("an unasked 101", 15)
}

// A member that answers an error and closes without saying so (Tomcat
// does after 505 and 400): the connection is not handed to the next
// client, or if the close is not seen in time, the next request goes on
// a fresh connection.
func TestSilentCloseAfterAnswer(t *testing.T) {
	for _, status := range []string{"505 HTTP Version Not Supported", "400 Bad Request", "200 OK"} {
		m := newHostileMember(t,
			func(c net.Conn, _ *http.Request) bool {
				io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 0\r\n\r\n")
				return false // closes, without Connection: close
			},
			answer("fine"))
		r := startRig(t, rigOptions{}, m.spec("a"))
		for range 15 {
			if code, _ := r.get("GET", "/", ""); code == 502 {
				t.Fatalf("%s: a client got 502 from a connection the member had closed", status)
			}
		}
		r.healthyAfter(status+" and a silent close", 3)
	}
}

// The keep-alive race: a member that closes a kept-alive connection just
// as the next request arrives on it, unread. The request goes again, once,
// on a fresh connection, whatever its method: no byte of it can have been
// acted on.
func TestRetryOnFreshConnection(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		var first atomic.Bool
		m := newHostileMember(t,
			func(c net.Conn, req *http.Request) bool {
				if first.CompareAndSwap(false, true) {
					io.Copy(io.Discard, req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
					return true
				}
				return false // the next request on it: closed unanswered
			},
			answer("fine"))
		r := startRig(t, rigOptions{}, m.spec("a"))
		conn := r.rawConn()
		br := bufio.NewReader(conn)
		for i, want := range []string{"first", "fine"} {
			fmt.Fprintf(conn, "%s /%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc", method, i)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%s request %d: %v", method, i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("%s request %d: %d %q, want 200 %q", method, i, resp.StatusCode, body, want)
			}
		}
		if n := m.conns.Load(); n != 2 {
			t.Fatalf("%s: %d member connections, want 2 (the retry's fresh one)", method, n)
		}
	}
}

// A member that answers an upload before reading it: the client gets the
// member's answer at once, not a 504 after --backend-timeout, and the
// member's connection is not used again.
func TestEarlyAnswerToUpload(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	m := newHostileMember(t,
		func(c net.Conn, req *http.Request) bool {
			io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!")
			<-stop // and never reads the body
			return false
		},
		answer("fine"))
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.BackendTimeout = time.Minute }}, m.spec("a"))
	// More than the kernel's socket buffers take: the answer comes while
	// the body is still on its way, whatever the machine's speed.
	body := strings.Repeat("u", 24<<20)
	start := time.Now()
	code, got := r.get("POST", "/upload", body)
	if code != 413 || got != "big!" {
		t.Fatalf("early answer: %d %q, want 413 big!", code, got)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("early answer took %v", d)
	}
	r.healthyAfter("an early answer", 3)
}

// A member that stalls after the head of a large answer: the client gets
// the head and what came of the body at once, as nginx sends them, not
// nothing until a timeout.
func TestStalledAnswerHeadGoesOut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	m := newHostileMember(t, func(c net.Conn, _ *http.Request) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\nX-Head: yes\r\n\r\nfirst bytes")
		<-release
		return false
	})
	r := startRig(t, rigOptions{tweak: func(o *Options) { o.BackendTimeout = time.Minute }}, m.spec("a"))
	conn := r.rawConn()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.Header.Get("X-Head") != "yes" {
		t.Fatalf("head of a stalled answer: %v %v", resp, err)
	}
	got := make([]byte, len("first bytes"))
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "first bytes" {
		t.Fatalf("first bytes of a stalled answer: %q %v", got, err)
	}
}

// An upgrade request's body reaches the member, as any request's does.
func TestUpgradeRequestBody(t *testing.T) {
	got := make(chan string, 1)
	m := newHostileMember(t, func(c net.Conn, req *http.Request) bool {
		b, _ := io.ReadAll(req.Body)
		got <- string(b)
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return true
	})
	r := startRig(t, rigOptions{}, m.spec("a"))
	conn := r.rawConn()
	io.WriteString(conn, "POST /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 5\r\n\r\nhello")
	select {
	case body := <-got:
		if body != "hello" {
			t.Fatalf("the member got the body %q", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upgrade request's body never reached the member")
	}
	if resp, err := http.ReadResponse(bufio.NewReader(conn), nil); err != nil || resp.StatusCode != 400 {
		t.Fatalf("refused upgrade: %v %v", resp, err)
	}
}

// Broken chunk framing in a body is refused and never reaches a member
// as a whole request, re-framed: small bodies are checked whole before a
// member is chosen; a large one that breaks later cuts the member off.
func TestBrokenChunksNeverReachAMember(t *testing.T) {
	for _, tail := range []string{"5\r\nhello\rX3\r\nabc\r\n0\r\n\r\n", "5\r\nhelloabc\r\n0\r\n\r\n", "5\r\nhello\r\n3\r\nabc0\r\n\r\n"} {
		for _, lead := range []int{0, 100 << 10} { // a body checked whole, a streamed one
			b := newRecBackend(t)
			r := startRig(t, rigOptions{}, [2]string{"a", b.ln.Addr().String()})
			conn := r.rawConn()
			head := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			if lead > 0 {
				head += strconv.FormatInt(int64(lead), 16) + "\r\n" + strings.Repeat("l", lead) + "\r\n"
			}
			io.WriteString(conn, head+tail)
			resp, _ := io.ReadAll(conn)
			if !strings.HasPrefix(string(resp), "HTTP/1.1 400 ") {
				t.Fatalf("%q after %d bytes: %.100q, want 400", tail, lead, resp)
			}
			time.Sleep(150 * time.Millisecond) // the member records what came within 100ms
			for _, seen := range b.requests() {
				if lead == 0 || completeRequest(seen) {
					t.Fatalf("%q after %d bytes: the member got %.200q", tail, lead, seen)
				}
			}
		}
	}
}

// Bodies are forwarded as they came: no Content-Type is added to a
// request body without one, or to an answer without one (a page left to
// sniffing, or a 204, keeps its meaning).
func TestNoContentTypeAdded(t *testing.T) {
	seen := make(chan http.Header, 1)
	m := newHostileMember(t, func(c net.Conn, req *http.Request) bool {
		io.Copy(io.Discard, req.Body)
		seen <- req.Header
		if req.URL.Path == "/204" {
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		} else {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>")
		}
		return true
	})
	r := startRig(t, rigOptions{}, m.spec("a"))
	for _, path := range []string{"/page", "/204"} {
		conn := r.rawConn()
		io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		if h := <-seen; h.Get("Content-Type") != "" {
			t.Errorf("%s: the member got Content-Type %q", path, h.Get("Content-Type"))
		}
		if _, typed := resp.Header["Content-Type"]; typed {
			t.Errorf("%s: the client got Content-Type %q", path, resp.Header.Get("Content-Type"))
		}
	}
}
