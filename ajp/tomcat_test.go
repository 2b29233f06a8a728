package ajp_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/scripts/rig"
)

// exchange sends one request head over conn and collects the container's
// answer until END_RESPONSE.
func exchange(t *testing.T, conn net.Conn, pr *ajp.PacketReader, req *ajp.ForwardRequest) (ajp.SendHeaders, []byte, bool) {
	t.Helper()
	pkt, err := ajp.AppendForwardRequest(nil, req, ajp.DefaultPacketSize)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(pkt); err != nil {
		t.Fatal(err)
	}
	var sh ajp.SendHeaders
	var body []byte
	for {
		p, err := pr.Next()
		if err != nil {
			t.Fatalf("reading the container's answer: %v", err)
		}
		switch p[0] {
		case ajp.TypeSendHeaders:
			if err := ajp.ParseSendHeaders(p, &sh); err != nil {
				t.Fatal(err)
			}
			sh.Headers = append([]ajp.Header(nil), sh.Headers...) // outlive the packet
			for i := range sh.Headers {
				sh.Headers[i] = ajp.Header{Name: bytes.Clone(sh.Headers[i].Name), Value: bytes.Clone(sh.Headers[i].Value)}
			}
			sh.Message = bytes.Clone(sh.Message)
		case ajp.TypeSendBodyChunk:
			data, err := ajp.ParseBodyChunk(p)
			if err != nil {
				t.Fatal(err)
			}
			body = append(body, data...)
		case ajp.TypeEndResponse:
			reuse, err := ajp.ParseEndResponse(p)
			if err != nil {
				t.Fatal(err)
			}
			return sh, body, reuse
		default:
			t.Fatalf("unexpected message type %d", p[0])
		}
	}
}

func header(sh ajp.SendHeaders, name string) string {
	for _, h := range sh.Headers {
		if strings.EqualFold(string(h.Name), name) {
			return string(h.Value)
		}
	}
	return ""
}

func get(uri, secret string, headers ...ajp.Header) *ajp.ForwardRequest {
	return &ajp.ForwardRequest{
		Method: []byte("GET"), Protocol: []byte("HTTP/1.1"), URI: []byte(uri),
		RemoteAddr: []byte("127.0.0.1"), RemoteHost: []byte("127.0.0.1"), ServerName: []byte("catherd.test"),
		ServerPort: 80, Secret: []byte(secret),
		Headers: append([]ajp.Header{{Name: []byte("Host"), Value: []byte("catherd.test")}}, headers...),
	}
}

// TestCodecAgainstTomcat speaks the codec to Tomcat 10's AJP connector with
// secretRequired: CPING, requests on one reused connection, a session with
// the node's jvmRoute, and a refused secret.
func TestCodecAgainstTomcat(t *testing.T) {
	r := rig.Up(t, 1, false)
	node := r.Nodes[0]
	conn, err := net.DialTimeout("tcp", node.AJP, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pr := ajp.NewContainerReader(conn, ajp.DefaultPacketSize)

	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(ajp.AppendCPing(nil))
	if p, err := pr.Next(); err != nil || len(p) != 1 || p[0] != ajp.TypeCPong {
		t.Fatalf("CPING: got % x, %v", p, err)
	}

	sh, body, reuse := exchange(t, conn, pr, get("/health.jsp", rig.Secret))
	if sh.Status != 200 || !strings.Contains(string(body), "ok node="+node.Name) || !reuse {
		t.Fatalf("health: %d %q reuse=%v", sh.Status, body, reuse)
	}

	// The same connection again: a session is created with the jvmRoute.
	sh, body, reuse = exchange(t, conn, pr, get("/counter.jsp", rig.Secret))
	cookie := header(sh, "Set-Cookie")
	m := regexp.MustCompile(`JSESSIONID=([0-9A-F]{32}\.` + node.Name + `)`).FindStringSubmatch(cookie)
	if sh.Status != 200 || m == nil || !strings.Contains(string(body), "count=1") || !reuse {
		t.Fatalf("counter: %d cookie %q body %q reuse=%v", sh.Status, cookie, body, reuse)
	}
	_, body, _ = exchange(t, conn, pr, get("/counter.jsp", rig.Secret, ajp.Header{Name: []byte("Cookie"), Value: []byte("JSESSIONID=" + m[1])}))
	if !strings.Contains(string(body), "count=2") {
		t.Fatalf("session over AJP: %q", body)
	}

	// HEAD: headers only.
	head := get("/index.html", rig.Secret)
	head.Method = []byte("HEAD")
	if sh, body, _ := exchange(t, conn, pr, head); sh.Status != 200 || len(body) != 0 || header(sh, "Content-Length") == "" {
		t.Fatalf("HEAD: %d, %d body bytes, length %q", sh.Status, len(body), header(sh, "Content-Length"))
	}

	// A wrong secret: Tomcat answers 403 (and closes the connection).
	wrong, err := net.DialTimeout("tcp", node.AJP, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer wrong.Close()
	sh, _, _ = exchange(t, wrong, ajp.NewContainerReader(wrong, ajp.DefaultPacketSize), get("/index.html", "not-the-secret"))
	if sh.Status != 403 {
		t.Fatalf("wrong secret: status %d, want 403", sh.Status)
	}
}

// TestClientAgainstTomcat runs the pooled client against Tomcat 10: CPING on
// connect, uploads of known and unknown length (Tomcat asks for every chunk
// with GET_BODY_CHUNK to drain what the page does not read), and one
// connection reused throughout.
func TestClientAgainstTomcat(t *testing.T) {
	r := rig.Up(t, 1, false)
	node := r.Nodes[0]
	c := ajp.NewClient(ajp.ClientOptions{Addr: node.AJP, Secret: rig.Secret, Ping: ajp.PingConnect | ajp.PingPrepost})
	defer c.Close()
	do := func(fr *ajp.ForwardRequest, body []byte, length int64) (*ajp.Response, string) {
		t.Helper()
		var rd io.Reader // nil: no body
		if body != nil {
			rd = bytes.NewReader(body)
		}
		resp, err := c.Do(fr, rd, length, 10*time.Second)
		if err != nil {
			t.Fatalf("%s %s: %v", fr.Method, fr.URI, err)
		}
		defer resp.Close()
		var out bytes.Buffer
		if _, err := out.ReadFrom(resp); err != nil {
			t.Fatalf("%s %s: body: %v", fr.Method, fr.URI, err)
		}
		return resp, out.String()
	}
	if resp, body := do(get("/health.jsp", ""), nil, 0); resp.Status != 200 || !strings.Contains(body, node.Name) {
		t.Fatalf("GET: %d %q", resp.Status, body)
	}
	upload := bytes.Repeat([]byte("catherd!"), 128<<10) // 1 MiB
	post := get("/counter.jsp", "")
	post.Method = []byte("POST")
	post.Headers = append(post.Headers, ajp.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(len(upload)))},
		ajp.Header{Name: []byte("Content-Type"), Value: []byte("application/octet-stream")})
	if resp, body := do(post, upload, int64(len(upload))); resp.Status != 200 || !strings.Contains(body, "count=1") {
		t.Fatalf("POST 1 MiB: %d %q", resp.Status, body)
	}
	chunked := get("/counter.jsp", "")
	chunked.Method = []byte("PUT")
	chunked.Headers = append(chunked.Headers, ajp.Header{Name: []byte("Transfer-Encoding"), Value: []byte("chunked")})
	if resp, _ := do(chunked, upload, -1); resp.Status >= 500 {
		t.Fatalf("PUT of unknown length: %d", resp.Status)
	}
	if resp, _ := do(get("/index.html", ""), nil, 0); resp.Status != 200 || !resp.Reused() {
		t.Fatalf("GET after uploads: %d reuse=%v", resp.Status, resp.Reused())
	}
	if n := c.Opened.Load(); n != 1 {
		t.Fatalf("%d connections opened, want 1 reused throughout", n)
	}
}
