package ajp_test

import (
	"bytes"
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
