package main

import (
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/certs/certstest"
	"github.com/catherd/catherd/userspace/proxy/h2test"
)

// TestTomcatHTTP2Framing sends HTTP/2 requests that catherd used to turn
// into another request for its member, frame by frame, through it to a
// real Tomcat over HTTP and over AJP: a host field beside :authority, a
// space in :path, two content-lengths, te other than trailers. catherd
// refuses each itself, Tomcat sees the authority the client meant, and the
// clients after them are served.
func TestTomcatHTTP2Framing(t *testing.T) {
	tmp := t.TempDir()
	ca := certstest.NewCA(t)
	cert, key := ca.Write(t, tmp, "front", time.Now().Add(time.Hour), "front.test")
	tlsFront := tcFreeAddr(t)
	f := startFramingRig(t, "--tls-listen", tlsFront, "--tls-cert", cert, "--tls-key", key)
	for _, route := range []string{"h", "a"} {
		c := h2test.Dial(t, tlsFront, ca.ClientConfig("front.test"))
		id := uint32(1)
		send := func(body []byte, method, authority, path string, fields ...string) (string, string) {
			t.Helper()
			req := []string{":method", method, ":scheme", "https"}
			if authority != "" {
				req = append(req, ":authority", authority)
			}
			req = append(req, ":path", path, "cookie", "JSESSIONID=X."+route)
			c.Request(id, body, append(req, fields...)...)
			got, answer := c.Result(id)
			id += 2
			return got, answer
		}
		for _, refused := range []struct {
			name                    string
			body                    []byte
			method, authority, path string
			fields                  []string
		}{
			{"a host field beside :authority", nil, "GET", "front.test", "/echo.jsp", []string{"host", "evil.test"}},
			{"a space in :path", nil, "GET", "front.test", "/echo.jsp x", nil},
			{"two content-lengths", []byte("hello"), "POST", "front.test", "/echo.jsp", []string{"content-length", "5", "content-length", "40"}},
			{"te other than trailers", nil, "GET", "front.test", "/echo.jsp", []string{"te", "gzip"}},
		} {
			got, answer := send(refused.body, refused.method, refused.authority, refused.path, refused.fields...)
			// catherd's 400 says why in plain text; Tomcat's would be a page.
			if !(got == "400" && strings.HasPrefix(answer, "400 ")) && got != "RST_STREAM PROTOCOL_ERROR" {
				t.Errorf("route %s, %s: %s %.120q, want catherd's 400 or a stream error", route, refused.name, got, answer)
			}
			f.healthy(refused.name, route, 3)
		}
		if got, answer := send(nil, "GET", "", "/echo.jsp", "host", "only.test"); got != "200" ||
			!strings.Contains(answer, " host=only.test xfhost=only.test\n") {
			t.Errorf("route %s, a lone host field: %s %q, want it as Host and X-Forwarded-Host", route, got, answer)
		}
		if got, answer := send(nil, "GET", "front.test", "/echo.jsp", "host", "FRONT.test"); got != "200" ||
			!strings.Contains(answer, " host=front.test xfhost=front.test\n") {
			t.Errorf("route %s, host repeating :authority: %s %q, want :authority as Host", route, got, answer)
		}
	}
	metrics := scrapeMetrics(t, f.client, f.metricsAddr)
	if strings.Contains(metrics, "catherd_backend_errors_total{") {
		t.Errorf("HTTP/2 probes counted as member errors:\n%s", tcGrep(metrics, "catherd_backend_errors_total"))
	}
}
