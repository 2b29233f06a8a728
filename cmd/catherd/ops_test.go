package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session"
	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/certs/certstest"
)

// httpGet returns the status and body of a GET (status 0 on error).
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitLog polls a log file until it matches re (10 s).
func waitLog(t *testing.T, path string, re *regexp.Regexp) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if m := re.Find(b); m != nil {
			return string(m)
		}
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("the log never matched %s:\n%s", re, tcTail(string(b), 20))
	return ""
}

// What an operator reaches for on a running catherd: its version (the
// binary, the metrics, the status), the process's liveness and readiness
// on both addresses, client and health-check series, where a session goes,
// and the main log naming who changed a member from where.
func TestOperatorSurface(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp, "-ldflags", "-X github.com/catherd/catherd/userspace/version.stamped=9.9.9-test "+
		"-X github.com/catherd/catherd/userspace/version.stampedRevision=0123456789abcdef")
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "catherd 9.9.9-test (revision 0123456789ab, go") {
		t.Fatalf("catherd --version: %q %v", out, err)
	}
	if out2, _ := exec.Command(bin, "version").CombinedOutput(); string(out2) != string(out) {
		t.Errorf("catherd version %q differs from --version %q", out2, out)
	}
	var args []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		args = append(args, "--backend", name+"="+srv.URL)
	}
	listen, adminAddr, metricsAddr := tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)
	logPath := filepath.Join(tmp, "catherd.log")
	tcStartCatherd(t, bin, append([]string{"run", "--listen", listen, "--admin", adminAddr, "--metrics", metricsAddr,
		"--health-interval", "100ms", "--max-client-conns", "500"}, args...), logPath, tmp)
	tcWaitReady(t, &http.Client{Timeout: 5 * time.Second}, "http://"+listen+"/", 10*time.Second)

	for _, addr := range []string{adminAddr, metricsAddr} {
		if code, body := httpGet(t, "http://"+addr+"/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s/healthz: %d %q", addr, code, body)
		}
		if code, body := httpGet(t, "http://"+addr+"/readyz"); code != 200 || body != "ready\n" {
			t.Errorf("%s/readyz: %d %q", addr, code, body)
		}
	}
	var metrics string
	checkedBoth := func() bool {
		return strings.Contains(metrics, `catherd_health_checks_total{member="a",result="pass"}`) &&
			strings.Contains(metrics, `catherd_health_checks_total{member="b",result="pass"}`)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !checkedBoth(); time.Sleep(50 * time.Millisecond) {
		_, metrics = httpGet(t, "http://"+metricsAddr+"/metrics")
	}
	for _, re := range []string{`catherd_build_info\{goversion="go[^"]+",revision="0123456789abcdef",version="9\.9\.9-test"\} 1`,
		`catherd_client_connections_limit 500`, `catherd_client_connections_accepted_total [1-9]`, `catherd_client_connections_open \d`,
		`catherd_health_checks_total\{member="a",result="pass"\} [1-9]`, `catherd_health_check_duration_seconds_count\{member="b"\} [1-9]`} {
		if !regexp.MustCompile(re).MatchString(metrics) {
			t.Errorf("metrics lack %s", re)
		}
	}
	st := waitStatus(t, adminAddr, tcProcPid(t, logPath))
	if st.Version.Version != "9.9.9-test" || st.UptimeSeconds <= 0 || st.Clients == nil || st.Clients.Limit != 500 {
		t.Errorf("status: version %+v, uptime %v, clients %+v", st.Version, st.UptimeSeconds, st.Clients)
	}
	if h := st.Members[0].Health; h == nil || h.Result != "pass" || h.Fall != 2 {
		t.Errorf("a's health check in the status: %+v", h)
	}

	// Both members disabled: alive, but not ready; and the log says who.
	for _, name := range []string{"a", "b"} {
		if code, _, errOut := runCLI("member", "disable", name, "--admin", adminAddr); code != 0 {
			t.Fatalf("disable %s: %s", name, errOut)
		}
	}
	if code, body := httpGet(t, "http://"+adminAddr+"/readyz"); code != 503 || !strings.Contains(body, "no member can take a request") {
		t.Errorf("/readyz with every member disabled: %d %q", code, body)
	}
	if code, _ := httpGet(t, "http://"+metricsAddr+"/healthz"); code != 200 {
		t.Errorf("/healthz with every member disabled: %d", code)
	}
	waitLog(t, logPath, regexp.MustCompile(`msg="admin action" action=disable member=b peer=127\.0\.0\.1:\d+ via=api result=done`))

	// catherd session: nobody can take it; then a, b's partner, can.
	code, sout, serr := runCLI("session", "S1.b", "--admin", adminAddr)
	if code != 0 || !regexp.MustCompile(`goes to\s+- \(unusable\)`).MatchString(sout) {
		t.Errorf("session with every member disabled: %d %q %q", code, sout, serr)
	}
	runCLI("member", "enable", "a", "--admin", adminAddr)
	code, sout, serr = runCLI("session", "S1.b", "--admin", adminAddr)
	if code != 0 || !regexp.MustCompile(`goes to\s+a \(failover\)`).MatchString(sout) || !strings.Contains(sout, "b is disabled: failover partner a") {
		t.Errorf("catherd session S1.b: %d\n%s%s", code, sout, serr)
	}
}

// catherd session against an admin API: one session explained, moved
// sessions listed, usage errors in one line.
func TestSessionCommand(t *testing.T) {
	table := moved.New(time.Hour, 100)
	a, b := balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{Moved: table})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(admin.Handler(admin.Sources{Pool: pool, MovedTable: table, Sticky: session.Default}, ""))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	if code, out, _ := runCLI("session", "ABC.a", "--admin", addr); code != 0 || !regexp.MustCompile(`goes to\s+a \(hit\)`).MatchString(out) {
		t.Fatalf("session ABC.a: %d\n%s", code, out)
	}
	a.SetFlags(balancer.Disabled)
	pool.Pick(&balancer.Request{Route: []byte("a"), SessionKey: []byte("ABC")}) // moves it to b
	if code, out, _ := runCLI("session", "list", "--moved", "--admin", addr); code != 0 || !regexp.MustCompile(`(?m)^ABC\s+b\s+evacuated\s`).MatchString(out) {
		t.Fatalf("session list --moved: %d\n%s", code, out)
	}
	var list admin.MovedSessions
	if code, out, _ := runCLI("session", "list", "--moved", "--json", "--admin", addr); code != 0 || json.Unmarshal([]byte(out), &list) != nil || list.Total != 1 {
		t.Fatalf("session list --moved --json: %d\n%s", code, out)
	}
	for _, args := range [][]string{{"session"}, {"session", "list"}, {"session", "a", "b"}} {
		if code, _, errOut := runCLI(args...); code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: %d %q, want 2 and one line", args, code, errOut)
		}
	}
}

// catherd run --check checks what a start would, binds nothing, and
// answers in one line: the port of a running catherd is no error.
func TestRunCheck(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	cert, key := certstest.NewCA(t).Write(t, dir, "site", time.Now().Add(time.Hour), "site.example")
	ok := []string{"run", "--check", "--backend", "a=http://127.0.0.1:1", "--listen", busy.Addr().String()}
	var stdout, stderr bytes.Buffer
	if code := dispatch(ok, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "catherd run: configuration OK (1 members, 1 listeners)") {
		t.Fatalf("--check of a good configuration on a busy port: %d %q %q", code, stdout.String(), stderr.String())
	}
	if c, err := net.Dial("tcp", busy.Addr().String()); err == nil {
		c.Close() // still ours: --check took nothing
	}
	withTLS := append(ok, "--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	stdout.Reset()
	if code := dispatch(withTLS, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "1 certificates") {
		t.Fatalf("--check with a certificate: %d %q %q", code, stdout.String(), stderr.String())
	}
	keyFile, badKey := filepath.Join(dir, "peer.key"), filepath.Join(dir, "bad.key")
	os.WriteFile(keyFile, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	os.WriteFile(badKey, []byte("c2hvcnQ=\n"), 0o600)
	inTier := append(ok, "--peer-listen", "10.0.0.1:7946", "--peer-key-file", keyFile, "--peer-name", "lb1", "--peer", "10.0.0.2:7946")
	stdout.Reset()
	if code := dispatch(inTier, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "in a tier as lb1 on 10.0.0.1:7946, 1 --peer to join") {
		t.Fatalf("--check in a tier: %d %q %q", code, stdout.String(), stderr.String())
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{append(ok, "--peer-listen", "10.0.0.1:7946", "--peer-key-file", filepath.Join(dir, "none.key")), "catherd run: --peer-key-file: "},
		{append(ok, "--peer-listen", "10.0.0.1:7946", "--peer-key-file", badKey), "the key is 5 bytes; it must be 16, 24 or 32"},
		{append(ok, "--tls-listen", "127.0.0.1:0", "--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", key), "catherd run: --tls-cert: "},
		{append(ok, "--metrics", "no-such-host.invalid:9180"), "catherd run: --metrics no-such-host.invalid:9180: "},
		{append(ok, "--connect-timeout", "5"), `want a duration such as 5s`},
		{append(ok, "--membership", "228.0.0.4:45564", "--membership-iface", "nope0"), "--membership-iface nope0: no such interface"},
	} {
		var stdout, stderr bytes.Buffer
		code := dispatch(tt.args, &stdout, &stderr)
		if code != 2 || !strings.Contains(stderr.String(), tt.want) || strings.Count(stderr.String(), "\n") != 1 || stdout.Len() != 0 {
			t.Errorf("%v: %d %q, want 2 and one line with %q", tt.args[len(ok):], code, stderr.String(), tt.want)
		}
	}
	// The XDP program is loaded into the kernel (verified), not attached.
	if !requireRoot(t) {
		return
	}
	xdpArgs := append(ok, "--membership", "228.0.0.4:45564", "--membership-iface", "lo", "--xdp-mode", "generic")
	stdout.Reset()
	stderr.Reset()
	if code := dispatch(xdpArgs, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "the XDP program passes the kernel's verifier") {
		t.Fatalf("--check with XDP: %d %q %q", code, stdout.String(), stderr.String())
	}
	if out, _ := exec.Command("ip", "link", "show", "lo").CombinedOutput(); strings.Contains(string(out), "xdp") {
		t.Errorf("--check attached XDP to lo:\n%s", out)
	}
}

// requireRoot says whether the test runs as root; without root it skips,
// except under CI=true, where that is a failure.
func requireRoot(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() == 0 {
		return true
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root; under CI=true that is a failure")
	}
	t.Skip("needs root")
	return false
}

// The bash completion script completes commands, actions, flags and the
// values of flags, in a real bash.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	var script bytes.Buffer
	if code := dispatch([]string{"completion", "bash"}, &script, io.Discard); code != 0 {
		t.Fatal("catherd completion bash failed")
	}
	path := filepath.Join(t.TempDir(), "catherd.bash")
	if err := os.WriteFile(path, script.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	complete := func(words ...string) string {
		t.Helper()
		quoted := make([]string, len(words))
		for i, w := range words {
			quoted[i] = "'" + w + "'"
		}
		prog := "source " + path + "; COMP_WORDS=(" + strings.Join(quoted, " ") + "); COMP_CWORD=" + strconv.Itoa(len(words)-1) + `; _catherd; echo "${COMPREPLY[*]}"`
		out, err := exec.Command(bash, "-c", prog).CombinedOutput()
		if err != nil {
			t.Fatalf("bash: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tt := range []struct {
		words []string
		want  string
	}{
		{[]string{"catherd", "me"}, "member"},
		{[]string{"catherd", "member", "ev"}, "evacuate"},
		{[]string{"catherd", "run", "--lbm"}, "--lbmethod"},
		{[]string{"catherd", "run", "--lbmethod", "by"}, "byrequests bytraffic bybusyness"},
		{[]string{"catherd", "session", "--mo"}, "--moved"},
		{[]string{"catherd", "reload", "--health-fa"}, "--health-fall --health-fast-interval"},
	} {
		if got := complete(tt.words...); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.words, got, tt.want)
		}
	}
}
