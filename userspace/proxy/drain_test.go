package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDrain checks that draining cuts no request: a request in flight
// finishes, a busy keep-alive connection gets its next response with
// "Connection: close", an idle one is closed after the grace, and nothing
// new is accepted.
func TestDrain(t *testing.T) {
	release := make(chan struct{})
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	})
	r := startRig(t, rigOptions{}, a.spec())

	request := func(c net.Conn, br *bufio.Reader, path string) *http.Response {
		t.Helper()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "done "+path {
			t.Fatalf("GET %s: %q", path, b)
		}
		return resp
	}
	busy, idle, slow := r.rawConn(), r.rawConn(), r.rawConn()
	busyR, idleR, slowR := bufio.NewReader(busy), bufio.NewReader(idle), bufio.NewReader(slow)
	request(busy, busyR, "/1")
	request(idle, idleR, "/1")
	slowDone := make(chan *http.Response)
	go func() { slowDone <- request(slow, slowR, "/slow") }()
	for r.pool.Members()[0].Active() == 0 {
		time.Sleep(5 * time.Millisecond)
	}

	drained := make(chan error)
	start := time.Now()
	go func() { drained <- r.px.Drain(context.Background()) }()
	time.Sleep(100 * time.Millisecond)
	if c, err := net.DialTimeout("tcp", r.addr, time.Second); err == nil {
		c.Close()
		t.Error("a new connection was accepted while draining")
	}
	if resp := request(busy, busyR, "/2"); !resp.Close {
		t.Error("the busy connection's next response did not close it")
	}
	if _, err := busyR.ReadByte(); err != io.EOF {
		t.Errorf("busy connection after its last response: %v, want EOF", err)
	}
	close(release)
	if resp := <-slowDone; resp.StatusCode != 200 {
		t.Errorf("the request in flight: %d", resp.StatusCode)
	}
	if _, err := idleR.ReadByte(); err != io.EOF {
		t.Errorf("idle connection: %v, want EOF", err)
	}
	if idleFor := time.Since(start); idleFor < drainIdle/2 {
		t.Errorf("the idle connection was closed after %v, before the grace", idleFor)
	}
	select {
	case err := <-drained:
		if err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain did not return")
	}
}
