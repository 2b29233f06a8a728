package main

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/certs/certstest"
)

// TestTLSReloadOnSIGHUP runs catherd with --tls-listen and renews its
// certificate under it: connections opened before SIGHUP, HTTP/1.1 and
// HTTP/2, go on with the old certificate; new ones get the new
// certificate; a broken renewal keeps the current one. curl checks HTTP/2
// from outside Go.
func TestTLSReloadOnSIGHUP(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "a %s proto=%s", r.URL.Path, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()
	tmp := t.TempDir()
	ca := certstest.NewCA(t)
	cert, key := ca.Write(t, tmp, "site", time.Now().Add(time.Hour), "old.test")
	bin := tcBuild(t, tmp)
	front, metricsAddr := tcFreeAddr(t), tcFreeAddr(t)
	proc := tcStartCatherd(t, bin, []string{"run", "--tls-listen", front, "--tls-cert", cert, "--tls-key", key,
		"--backend", "a=" + backend.URL, "--admin", tcFreeAddr(t), "--metrics", metricsAddr, "--health-interval", "0"},
		filepath.Join(tmp, "catherd.log"), tmp)

	// An HTTP/1.1 keep-alive connection, driven by hand so that it is
	// certainly the same connection before and after the reload.
	var h1 *tls.Conn
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if h1, err = tls.Dial("tcp", front, ca.ClientConfig("old.test", "http/1.1")); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer h1.Close()
	h1r := bufio.NewReader(h1)
	h1Get := func(path string) string {
		t.Helper()
		h1.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(h1, "GET %s HTTP/1.1\r\nHost: old.test\r\n\r\n", path)
		resp, err := http.ReadResponse(h1r, nil)
		if err != nil {
			t.Fatalf("HTTP/1.1 GET %s on the kept connection: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return string(b)
	}
	if got := h1Get("/before"); got != "a /before proto=https" {
		t.Fatalf("HTTP/1.1 over TLS: %q", got)
	}

	h2 := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: ca.ClientConfig("old.test"), ForceAttemptHTTP2: true}}
	// h2Get returns the body, whether the connection was reused, and the
	// certificate's name.
	h2Get := func(path string) (string, bool, string) {
		t.Helper()
		var reused bool
		req, _ := http.NewRequest("GET", "https://"+front+path, nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}))
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("HTTP/2 GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Fatalf("HTTP/2 GET %s answered over HTTP/%d", path, resp.ProtoMajor)
		}
		return string(b), reused, resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if body, _, name := h2Get("/before"); body != "a /before proto=https" || name != "old.test" {
		t.Fatalf("HTTP/2: %q from %s", body, name)
	}

	ca.Write(t, tmp, "site", time.Now().Add(2*time.Hour), "new.test")
	proc.Signal(syscall.SIGHUP)
	waitMetric(t, metricsAddr, `catherd_tls_reloads_total{result="ok"}`, 1)

	if got := h1Get("/after"); got != "a /after proto=https" {
		t.Fatalf("the HTTP/1.1 connection opened before the reload: %q", got)
	}
	if body, reused, name := h2Get("/after"); body != "a /after proto=https" || !reused || name != "old.test" {
		t.Fatalf("the HTTP/2 connection opened before the reload: %q, reused %v, certificate %s", body, reused, name)
	}
	if name := servedName(t, ca, front); name != "new.test" {
		t.Fatalf("a new connection got %s, want the reloaded new.test", name)
	}

	// A renewal caught halfway (the key not yet written) must not take
	// the site down.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	proc.Signal(syscall.SIGHUP)
	waitMetric(t, metricsAddr, `catherd_tls_reloads_total{result="error"}`, 1)
	if name := servedName(t, ca, front); name != "new.test" {
		t.Fatalf("after a failed reload a new connection got %s, want new.test still", name)
	}

	caFile := ca.WriteCA(t, tmp)
	_, port, _ := net.SplitHostPort(front)
	out, err := exec.Command("curl", "-sS", "--http2", "--cacert", caFile, "--resolve", "new.test:"+port+":127.0.0.1",
		"-w", " %{http_version}", "https://new.test:"+port+"/curl").CombinedOutput()
	if err != nil || string(out) != "a /curl proto=https 2" {
		t.Fatalf("curl --http2: %v: %q", err, out)
	}
}

// servedName is the name on the certificate a new connection to addr gets.
func servedName(t *testing.T, ca *certstest.CA, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, ca.ClientConfig("new.test"))
	if err != nil {
		t.Fatalf("TLS dial: %v", err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}
