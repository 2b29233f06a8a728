package proxy

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/accesslog"
)

// accessLines waits (bounded) for n lines in the access log at path.
func accessLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(b) > 0 && len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d access log lines, want %d:\n%s", len(lines), n, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every request gets its line, whoever answered it: a member (with how it
// was chosen and how many were tried), or catherd (a refusal, no member).
func TestAccessLog(t *testing.T) {
	for _, format := range []accesslog.Format{accesslog.JSON, accesslog.Combined} {
		path := filepath.Join(t.TempDir(), "access.log")
		alog, err := accesslog.Open(path, format)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(alog.Close)
		a := newNamedBackend(t, "a", nil)
		r := startRig(t, rigOptions{tweak: func(o *Options) { o.AccessLog = alog }}, [2]string{"dead", deadAddr(t)}, a.spec())
		// Each line is awaited before the next request: connections may
		// land on different loops, whose lines reach the file in any order.
		r.do("GET", "/one?x=1", nil, "Cookie", "JSESSIONID=S.a", "User-Agent", "tester \"1\"", "Referer", "http://ref/")
		accessLines(t, path, 1)
		r.do("POST", "/two", strings.NewReader("hello"), "Cookie", "JSESSIONID=S.dead") // fails over after a connect error
		accessLines(t, path, 2)
		conn := r.rawConn()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n") // refused: 400
		http.ReadResponse(bufio.NewReader(conn), nil)
		lines := accessLines(t, path, 3)
		if format == accesslog.Combined {
			for _, re := range []string{
				`^127\.0\.0\.1 - - \[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} \+0000\] "GET /one\?x=1 HTTP/1\.1" 200 10 "http://ref/" "tester \\"1\\"" member=a sticky=hit attempts=1 in=0 member_ms=[0-9.]+ total_ms=[0-9.]+$`,
				`^127\.0\.0\.1 .* "POST /two HTTP/1\.1" 200 6 "-" "Go-http-client/1\.1" member=a sticky=failover attempts=2 in=5 `,
				`^127\.0\.0\.1 .* "-" 400 - "-" "-" member=- sticky=- attempts=0 in=0 `,
			} {
				if !slices.ContainsFunc(lines, regexp.MustCompile(re).MatchString) {
					t.Errorf("no combined line matches %s in:\n%s", re, strings.Join(lines, "\n"))
				}
			}
			continue
		}
		got := make([]map[string]any, 3) // by request: GET /one, POST /two, the refused one
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("JSON line %q: %v", l, err)
			}
			switch m["method"] {
			case "GET":
				got[0] = m
			case "POST":
				got[1] = m
			default:
				got[2] = m
			}
		}
		if g := got[0]; g["method"] != "GET" || g["target"] != "/one?x=1" || g["status"] != 200.0 || g["member"] != "a" ||
			g["sticky"] != "hit" || g["attempts"] != 1.0 || g["user_agent"] != `tester "1"` || g["bytes_out"] != 10.0 {
			t.Errorf("first line %v", g)
		}
		if g := got[1]; g["sticky"] != "failover" || g["attempts"] != 2.0 || g["bytes_in"] != 5.0 || g["member"] != "a" {
			t.Errorf("failover line %v", g)
		}
		if g := got[2]; g["status"] != 400.0 || g["member"] != "" {
			t.Errorf("refused line %v", g)
		}
	}
}
