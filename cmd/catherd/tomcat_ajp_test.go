package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/rig"
)

// TestTomcatOverAJP runs the catherd binary with ajp:// members in front of
// two Tomcat 10 nodes whose AJP connectors require a secret (and a third
// configured with the wrong one): sessions stick
// to their jvmRoute over AJP, both URL forms work, uploads of known and
// unknown length arrive, the servlet sees the query, the client address,
// many and long headers, UTF-8 paths and each method, a 100 MiB download
// streams through, and a member with the wrong secret is taken out.
func TestTomcatOverAJP(t *testing.T) {
	rig.Require(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	r := rig.Up(t, 3, false)
	nodes, spare := r.Nodes[:2], r.Nodes[2]
	listen, metricsAddr := tcFreeAddr(t), tcFreeAddr(t)
	args := []string{"run", "--listen", listen, "--metrics", metricsAddr, "--health-interval", "200ms", "--health-uri", "/health.jsp"}
	for _, n := range nodes {
		args = append(args, "--backend", n.Name+"=ajp://"+n.AJP+",secret="+rig.Secret+",ping=CP")
	}
	// A member configured with the wrong secret: its Tomcat (a third
	// node: one Tomcat may not be two members) answers 403 to everything.
	// The health check must take it out, with one log line.
	args = append(args, "--backend", "misconfigured=ajp://"+spare.AJP+",secret=not-the-secret")
	logPath := filepath.Join(tmp, "catherd.log")
	tcStartCatherd(t, bin, args, logPath, r.Dir)
	// A bound on each response head, not on whole responses: the 100 MiB
	// download below may take any time on a busy machine.
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 10 * time.Second}}
	base := "http://" + listen
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(scrapeMetrics(t, client, metricsAddr), `catherd_member_state{member="misconfigured",state="down"} 1`) {
		if time.Now().After(deadline) {
			t.Fatal("member with the wrong AJP secret not marked down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	logs, _ := os.ReadFile(logPath)
	if n := strings.Count(string(logs), "member=misconfigured"); n != 1 || !strings.Contains(string(logs), "secret refused") {
		t.Fatalf("want one log line naming the member and the refused secret, got:\n%s", logs)
	}
	tcWaitReady(t, client, base+"/health.jsp", 15*time.Second)

	perNode := map[string]int{}
	for i := 0; i < 20; i++ {
		first, err := tcGetCounter(client, base+"/counter.jsp", "")
		if err != nil {
			t.Fatal(err)
		}
		route, _ := tcRoute(first.id)
		perNode[route]++
		for n := 2; n <= 3; n++ {
			url, cookie := base+"/counter.jsp", first.id
			if i%2 == 1 {
				url, cookie = base+"/counter.jsp;jsessionid="+first.id, ""
			}
			c, err := tcGetCounter(client, url, cookie)
			if err != nil || c.node != route || c.count != n {
				t.Fatalf("session %s request %d: got %+v, %v; want node %s count %d", first.id, n, c, err, route, n)
			}
		}
	}
	if len(perNode) != 2 {
		t.Errorf("new sessions not balanced over both good nodes: %v", perNode)
	}

	upload := bytes.Repeat([]byte("ajp!"), 256<<10) // 1 MiB
	for _, body := range []io.Reader{bytes.NewReader(upload), io.MultiReader(bytes.NewReader(upload))} {
		resp, err := client.Post(base+"/counter.jsp", "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(got), "count=1") {
			t.Fatalf("upload: %d %q", resp.StatusCode, got)
		}
	}

	// What the servlet sees over AJP: method, query, client address and
	// port, many and long headers, body bytes of known and unknown length.
	echo := func(method, target string, body io.Reader, header ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+target, body)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(got)
	}
	code, got := echo("POST", "/echo.jsp?a=1&b=%C3%A9", bytes.NewReader(upload))
	if code != 200 || !strings.Contains(got, "method=POST uri=/echo.jsp query=a=1&b=%C3%A9") ||
		!strings.Contains(got, fmt.Sprintf("body=%d remote=127.0.0.1:", len(upload))) {
		t.Fatalf("POST echo: %d %q", code, got)
	}
	if code, got := echo("POST", "/echo.jsp", io.MultiReader(bytes.NewReader(upload))); code != 200 || !strings.Contains(got, fmt.Sprintf("body=%d ", len(upload))) {
		t.Fatalf("chunked POST echo: %d %q", code, got)
	}
	var many []string
	for i := 0; i < 60; i++ {
		many = append(many, fmt.Sprintf("X-Header-%d", i), strings.Repeat("v", 40))
	}
	many = append(many, "X-Long", strings.Repeat("L", 4000))
	if code, got := echo("GET", "/echo.jsp", nil, many...); code != 200 || !strings.Contains(got, "long=4000") || !regexp.MustCompile(`headers=(6[1-9]|[7-9]\d)`).MatchString(got) {
		t.Fatalf("many and long headers: %d %q", code, got)
	}
	for _, method := range []string{"PUT", "DELETE"} {
		// Jasper refuses these methods itself: the 405 proves they arrived.
		if code, got := echo(method, "/echo.jsp", strings.NewReader("x")); code != 405 || !strings.Contains(got, "JSP") {
			t.Fatalf("%s: %d %q", method, code, got)
		}
	}
	if code, got := echo("GET", "/caf%C3%A9.txt", nil); code != 200 || got != "utf-8 path ok\n" {
		t.Fatalf("UTF-8 path: %d %q", code, got)
	}
	req, _ := http.NewRequest("HEAD", base+"/index.html", nil)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// Pooled AJP connections were reused: about 50 requests so far, each
	// member opening at most a few connections (2 clients at most at once).
	opened := regexp.MustCompile(`catherd_backend_connections_opened_total\{member="node\d"\} (\d+)`)
	for _, m := range opened.FindAllStringSubmatch(scrapeMetrics(t, client, metricsAddr), -1) {
		if n, _ := strconv.Atoi(m[1]); n > 4 {
			t.Errorf("%s: AJP connections are not reused", m[0])
		}
	}

	// A 100 MiB download streams through.
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<16)
	for _, n := range nodes {
		if err := writeWebappFile(r.Dir, n.Name, "big.bin", big); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := client.Get(base + "/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.New()
	n, err := io.Copy(sum, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != int64(len(big)) || !bytes.Equal(sum.Sum(nil), sha256Of(big)) {
		t.Fatalf("100 MiB download: %d, %d bytes, %v", resp.StatusCode, n, err)
	}
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// writeWebappFile puts a static file into a node's ROOT webapp.
func writeWebappFile(rigDir, node, name string, data []byte) error {
	path := filepath.Join(rigDir, node, "webapps", "ROOT", name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
