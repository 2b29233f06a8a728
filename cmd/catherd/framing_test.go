package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/scripts/rig"
)

// framingRig is the catherd binary in front of one real Tomcat node,
// reached over HTTP (route h) and over AJP with its secret (route a), so
// that a request's cookie picks the protocol; extraArgs go to catherd run.
type framingRig struct {
	t           *testing.T
	front       string // catherd's client address
	metricsAddr string
	client      *http.Client
}

func startFramingRig(t *testing.T, extraArgs ...string) *framingRig {
	t.Helper()
	rig.Require(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	// Few threads, so that clients holding them (slow uploads) show.
	t.Setenv("CTH_RIG_MAX_THREADS", strconv.Itoa(framingThreads))
	r := rig.Up(t, 1, false)
	node := r.Nodes[0]
	f := &framingRig{t: t, front: tcFreeAddr(t), metricsAddr: tcFreeAddr(t), client: &http.Client{Timeout: 30 * time.Second}}
	args := []string{"run", "--listen", f.front, "--metrics", f.metricsAddr, "--admin", "",
		"--health-interval", "500ms", "--health-uri", "/health.jsp",
		"--backend", "h=http://" + node.HTTP + ",route=h",
		"--backend", "a=ajp://" + node.AJP + ",secret=" + rig.Secret + ",route=a"}
	args = append(args, extraArgs...)
	tcStartCatherd(t, bin, args, filepath.Join(tmp, "catherd.log"), r.Dir)
	for _, route := range []string{"h", "a"} {
		tcWaitReady(t, f.client, "http://"+f.front+"/health.jsp;jsessionid=X."+route, 30*time.Second)
	}
	return f
}

// framingThreads is the rig's Tomcat threads per connector.
const framingThreads = 8

// raw sends a request as bytes on a fresh connection and returns what
// came back until catherd closed the connection or went quiet.
func (f *framingRig) raw(req string) string {
	f.t.Helper()
	conn, err := net.Dial("tcp", f.front)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "no response: " + err.Error()
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// healthy checks that the next n clients of route are served as they
// should be: nothing a framing probe left on a pooled connection reaches
// them.
func (f *framingRig) healthy(what, route string, n int) {
	f.t.Helper()
	for i := range n {
		code, body, err := tcGet(f.client, "http://"+f.front+"/health.jsp;jsessionid=X."+route, "")
		if err != nil || code != 200 || body != "ok node=node1\n" {
			f.t.Fatalf("after %s: client %d of route %s got %d %.300q %v", what, i, route, code, body, err)
		}
	}
}

// slowUploads starts more slow uploads than Tomcat has threads (bodies
// of known length larger than the 64 KiB always read whole, and chunked
// ones), each stalled after its first bytes, then checks that other
// clients are served: catherd holds the bodies (--buffer-requests) until
// they are whole, instead of handing Tomcat a thread-holding trickle.
func (f *framingRig) slowUploads(route string) {
	f.t.Helper()
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	for i := range 2 * framingThreads {
		conn, err := net.Dial("tcp", f.front)
		if err != nil {
			f.t.Fatal(err)
		}
		stalled = append(stalled, conn)
		framing := "Content-Length: 200000\r\n\r\n" + strings.Repeat("s", 1000)
		if i%2 == 1 {
			framing = "Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + strings.Repeat("s", 1000) + "\r\n"
		}
		fmt.Fprintf(conn, "POST /echo.jsp HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\n%s", route, framing)
	}
	f.healthy(fmt.Sprintf("%d stalled uploads", len(stalled)), route, 5)
}

// injectedAJP is a request body that an AJP container reads as a request
// of its own if it is sent as a body packet the container did not ask
// for: a body packet's payload starts with its data length, and 514 is
// 0x0202, FORWARD_REQUEST's type and GET's method code; the data is the
// rest of a FORWARD_REQUEST, from a forged client address, with the
// connector's secret (the worst case: a secret the attacker learnt).
func injectedAJP(t *testing.T) []byte {
	pkt, err := ajp.AppendForwardRequest(nil, &ajp.ForwardRequest{
		Method: []byte("GET"), Protocol: []byte("HTTP/1.1"), URI: []byte("/echo.jsp"),
		RemoteAddr: []byte("6.6.6.6"), RemoteHost: []byte("6.6.6.6"), ServerName: []byte("x"), ServerPort: 80,
		Headers:     []ajp.Header{{Name: []byte("Host"), Value: []byte("x")}},
		QueryString: []byte("injected=1"), Secret: []byte(rig.Secret),
	}, ajp.DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	rest := pkt[4+2:] // after the packet header, the type and the method
	if len(rest) > 514 {
		t.Fatalf("injected request of %d bytes", len(rest))
	}
	return append(rest, make([]byte, 514-len(rest))...)
}

// TestTomcatFraming sends what external probes used to take catherd's
// framing apart through it to a real Tomcat over HTTP and over AJP: each
// is refused or answered correctly, and no later, unrelated client sees a
// trace of it.
func TestTomcatFraming(t *testing.T) {
	f := startFramingRig(t)
	body := injectedAJP(t)
	for _, route := range []string{"a", "h"} {
		for _, target := range []string{"/health.jsp", "/echo.jsp"} { // the body unread, read
			// A client naming Content-Length in Connection must not make
			// catherd drop it and send the body anyway: to an AJP
			// container told of no body, the body is the next request
			// on the pooled connection.
			req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\nConnection: Content-Length\r\nContent-Length: %d\r\n\r\n%s",
				target, route, len(body), body)
			if got := f.raw(req); !strings.HasPrefix(got, "400 ") {
				t.Errorf("route %s, %s: Connection naming Content-Length answered %.80q, want 400", route, target, got)
			}
			f.healthy("Connection: Content-Length to "+target, route, 10)
		}
		for _, named := range []string{"Host", "Transfer-Encoding"} {
			req := fmt.Sprintf("GET /health.jsp HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\nConnection: %s\r\n\r\n", route, named)
			if got := f.raw(req); !strings.HasPrefix(got, "400 ") {
				t.Errorf("route %s: Connection naming %s answered %.80q, want 400", route, named, got)
			}
		}
		// Tomcat takes any Connection value that contains
		// HTTP2-Settings as an h2c upgrade and would switch.
		h2c := fmt.Sprintf("GET /health.jsp HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\nConnection: Upgrade, X-HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n", route)
		if got := f.raw(h2c); !strings.HasPrefix(got, "400 ") {
			t.Errorf("route %s: h2c upgrade answered %.80q, want 400", route, got)
		}
		f.healthy("an h2c upgrade", route, 3)
		// Versions catherd does not speak: Tomcat would answer 505 and
		// close without a word, leaving a dead pooled connection.
		for _, version := range []string{"HTTP/1.2", "HTTP/2.0", "HTTP/3.0"} {
			req := fmt.Sprintf("GET /health.jsp %s\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\n\r\n", version, route)
			if got := f.raw(req); !strings.HasPrefix(got, "505 ") {
				t.Errorf("route %s: %s answered %.80q, want 505", route, version, got)
			}
			f.healthy(version, route, 15)
		}
		// Broken chunk framing is refused, never re-framed into a whole
		// body for Tomcat.
		for _, body := range []string{"5\r\nhello\rX3\r\nabc\r\n0\r\n\r\n", "5\r\nhelloabc\r\n0\r\n\r\n"} {
			req := fmt.Sprintf("POST /echo.jsp HTTP/1.1\r\nHost: x\r\nCookie: JSESSIONID=X.%s\r\nTransfer-Encoding: chunked\r\n\r\n%s", route, body)
			if got := f.raw(req); !strings.HasPrefix(got, "400 ") {
				t.Errorf("route %s: chunks %q answered %.80q, want 400", route, body, got)
			}
		}
		f.healthy("broken chunks", route, 3)
		f.slowUploads(route)
	}
	// None of it was the members' fault.
	metrics := scrapeMetrics(t, f.client, f.metricsAddr)
	if bytes.Contains([]byte(metrics), []byte("catherd_backend_errors_total{")) {
		t.Errorf("framing probes counted as member errors:\n%s", tcGrep(metrics, "catherd_backend_errors_total"))
	}
}
