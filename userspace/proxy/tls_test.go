package proxy

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/ajp/ajptest"
	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/certs/certstest"
)

// tlsFront adds a TLS listener to r's proxy and returns a client for it
// that speaks HTTP/2 (h2) or HTTP/1.1 only.
func (r *rig) tlsFront(h2 bool) (addr string, c *http.Client) {
	r.t.Helper()
	addr, config := r.tlsListener()
	tr := &http.Transport{TLSClientConfig: config, ForceAttemptHTTP2: h2, ResponseHeaderTimeout: 10 * time.Second}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	r.t.Cleanup(tr.CloseIdleConnections)
	return addr, &http.Client{Transport: tr}
}

// tlsListener adds a TLS listener to r's proxy, with a certificate for
// front.test, and returns its address and a client configuration that
// trusts it.
func (r *rig) tlsListener() (addr string, client *tls.Config) {
	r.t.Helper()
	ca, dir := certstest.NewCA(r.t), r.t.TempDir()
	cert, key := ca.Write(r.t, dir, "front", time.Now().Add(time.Hour), "front.test")
	store, err := certs.Load([]certs.Pair{{CertFile: cert, KeyFile: key}})
	if err != nil {
		r.t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.t.Fatal(err)
	}
	go r.px.ServeTLS(ln, store.ServerConfig())
	return ln.Addr().String(), ca.ClientConfig("front.test")
}

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// TestTLSClients sends the same requests over HTTP/2 and over HTTP/1.1 with
// TLS: both reach the member the session names, tell it the client used
// https, stream uploads and downloads, and keep the member's headers.
func TestTLSClients(t *testing.T) {
	const download = 8 << 20
	chunk := bytes.Repeat([]byte("catherd!"), 1024)
	echo := func(name string) *namedBackend {
		return newNamedBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/download" {
				for sent := 0; sent < download; sent += len(chunk) {
					w.Write(chunk)
				}
				return
			}
			sum := sha256.New()
			n, _ := io.Copy(sum, r.Body)
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "JSESSIONID=NEW."+name)
			fmt.Fprintf(w, "%s %s %s proto=%s xff=%s host=%s body=%d %x", name, r.Method, r.RequestURI,
				r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"), r.Host, n, sum.Sum(nil))
		})
	}
	a, b := echo("a"), echo("b")
	r := startRig(t, rigOptions{}, a.spec(), b.spec())
	for _, h2 := range []bool{true, false} {
		addr, c := r.tlsFront(h2)
		wantProto := map[bool]int{true: 2, false: 1}[h2]
		base := "https://" + addr

		req, _ := http.NewRequest("GET", base+"/cart;jsessionid=X.b?x=%20", nil)
		req.Host = "shop.test"
		resp, body := get(t, c, req)
		if resp.ProtoMajor != wantProto || resp.StatusCode != 200 ||
			!strings.HasPrefix(body, "b GET /cart;jsessionid=X.b?x=%20 proto=https xff=127.0.0.1 host=shop.test body=0 ") {
			t.Fatalf("h2=%v: sticky GET: HTTP/%d %d %q", h2, resp.ProtoMajor, resp.StatusCode, body)
		}
		if got := resp.Header.Values("Set-Cookie"); len(got) != 2 || got[1] != "JSESSIONID=NEW.b" {
			t.Errorf("h2=%v: Set-Cookie %q", h2, got)
		}

		req, _ = http.NewRequest("GET", base+"/", nil)
		req.Header.Set("Cookie", "JSESSIONID=Y.a")
		if _, body = get(t, c, req); !strings.HasPrefix(body, "a GET") {
			t.Errorf("h2=%v: cookie stickiness: %q", h2, body)
		}

		// Uploads of 1 KiB (kept for a retry) and 1 MiB (streamed), of
		// known length and not.
		for _, size := range []int{1 << 10, 1 << 20} {
			upload := bytes.Repeat([]byte{'u'}, size)
			want := fmt.Sprintf("body=%d %x", len(upload), sha256.Sum256(upload))
			for _, known := range []bool{true, false} {
				var rd io.Reader = bytes.NewReader(upload)
				if !known {
					rd = io.MultiReader(rd) // hides the length: sent without Content-Length
				}
				req, _ = http.NewRequest("POST", base+"/up", rd)
				if _, body = get(t, c, req); !strings.HasSuffix(body, want) {
					t.Errorf("h2=%v size=%d known=%v: upload arrived as %q", h2, size, known, body)
				}
			}
		}

		resp, err := c.Get(base + "/download")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != download {
			t.Fatalf("h2=%v: download: %d bytes, %v", h2, n, err)
		}
	}
}

// TestHTTP2ClientGoneMidDownload checks that a client resetting its stream
// part way through a streamed download costs the member its connection,
// not the proxy a leak: the next request still works.
func TestHTTP2ClientGoneMidDownload(t *testing.T) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	a := newNamedBackend(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/endless" {
			io.WriteString(w, "ok")
			return
		}
		for i := 0; i < 4096; i++ { // 256 MiB at most
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	r := startRig(t, rigOptions{}, a.spec())
	addr, c := r.tlsFront(true)
	resp, err := c.Get("https://" + addr + "/endless")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // resets the stream
	deadline := time.Now().Add(5 * time.Second)
	for r.pool.Members()[0].Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned download is still in flight on the member")
		}
		time.Sleep(10 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", "https://"+addr+"/after", nil)
	if _, body := get(t, c, req); body != "ok" {
		t.Fatalf("after an abandoned download: %q", body)
	}
}

// TestAJPOverTLS checks what Tomcat learns of the client's TLS connection:
// is_ssl, the cipher suite, its key size and the protocol version.
func TestAJPOverTLS(t *testing.T) {
	seen := make(chan *ajp.ForwardRequest, 1)
	member := ajpMember(t, "a", func(r *ajptest.Request, w *ajptest.ResponseWriter) {
		fr := *r.ForwardRequest
		fr.SSLCipher = bytes.Clone(fr.SSLCipher)
		fr.Attributes = nil
		for _, h := range r.Attributes {
			fr.Attributes = append(fr.Attributes, ajp.Header{Name: bytes.Clone(h.Name), Value: bytes.Clone(h.Value)})
		}
		seen <- &fr
		w.WriteHeader(200, ajp.Header{Name: []byte("Content-Length"), Value: []byte("2")})
		io.WriteString(w, "ok")
	})
	r := startRig(t, rigOptions{ajpSecret: testSecret}, member)
	addr, c := r.tlsFront(true)
	req, _ := http.NewRequest("GET", "https://"+addr+"/", nil)
	if resp, body := get(t, c, req); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET over AJP: %d %q", resp.StatusCode, body)
	}
	fr := <-seen
	if !fr.IsSSL || fr.ServerPort != 443 && !strings.HasSuffix(addr, fmt.Sprint(":", fr.ServerPort)) {
		t.Errorf("is_ssl %v, server port %d", fr.IsSSL, fr.ServerPort)
	}
	if string(fr.SSLCipher) != "TLS_AES_128_GCM_SHA256" || fr.SSLKeySize != 128 {
		t.Errorf("cipher %q key size %d, want TLS_AES_128_GCM_SHA256 and 128", fr.SSLCipher, fr.SSLKeySize)
	}
	var protocol string
	for _, h := range fr.Attributes {
		if string(h.Name) == "AJP_SSL_PROTOCOL" {
			protocol = string(h.Value)
		}
	}
	if protocol != "TLSv1.3" {
		t.Errorf("AJP_SSL_PROTOCOL %q, want TLSv1.3", protocol)
	}
}

// TestTLSHandshakeFailures checks that clients that fail their handshake
// (plain HTTP on the TLS port, a silent client) are cut off and do not
// stop others.
func TestTLSHandshakeFailures(t *testing.T) {
	a := newNamedBackend(t, "a", nil)
	r := startRig(t, rigOptions{}, a.spec())
	addr, c := r.tlsFront(true)
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	io.WriteString(plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	plain.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(plain); err != nil {
		t.Fatalf("plain HTTP on the TLS port: %v, want the connection closed", err)
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	req, _ := http.NewRequest("GET", "https://"+addr+"/x", nil)
	if _, body := get(t, c, req); body != "a /x" {
		t.Fatalf("beside a silent client: %q", body)
	}
}
