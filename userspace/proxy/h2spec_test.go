package proxy

import (
	"go/build"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestH2spec runs h2spec (github.com/summerwind/h2spec), every HTTP/2 and
// HPACK conformance case it has, against a catherd TLS listener, and fails
// on any case that fails or is skipped, printing them. scripts/deps.sh
// test installs it; without it the test is skipped, except under CI=true.
func TestH2spec(t *testing.T) {
	h2spec := requireH2spec(t)
	// Cases that need a response body of 5 bytes or more are skipped
	// without one.
	member := newNamedBackend(t, "a", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "hello from the member\n")
	})
	r := startRig(t, rigOptions{tweak: func(o *Options) {
		// A case passes when the connection closes, so a client timeout
		// shorter than h2spec's wait would pass a case that should fail.
		o.ClientHeaderTimeout, o.ClientIdleTimeout, o.ClientBodyTimeout = time.Minute, time.Minute, time.Minute
		o.MaxHeaderBytes = 16384 // --max-header-bytes' default: the header list size catherd advertises
	}}, member.spec())
	addr, _ := r.tlsListener()
	host, port, _ := net.SplitHostPort(addr)
	// -o: seconds h2spec waits for each frame it expects. Its default of
	// 2 is tight for a proxy under the race detector on a busy machine;
	// only a case that fails waits that long.
	out, err := exec.Command(h2spec, "-t", "-k", "-h", host, "-p", port, "-o", "10").CombinedOutput()
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindStringSubmatch(string(out))
	if summary == nil {
		t.Fatalf("h2spec: %v, no summary in its output:\n%s", err, out)
	}
	t.Log(summary[0])
	if err != nil || summary[3] != "0" || summary[4] != "0" || summary[1] == "0" {
		report := string(out)
		if i := strings.Index(report, "\nFailures:"); i >= 0 {
			report = report[i:]
		}
		t.Fatalf("h2spec: %s (%v)\n%s", summary[0], err, report)
	}
}

// requireH2spec finds the h2spec binary: $H2SPEC, on PATH, or where go
// install puts it ($GOBIN, else the first GOPATH entry's bin).
func requireH2spec(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("H2SPEC")}
	if p, err := exec.LookPath("h2spec"); err == nil {
		candidates = append(candidates, p)
	}
	if gobin := os.Getenv("GOBIN"); gobin != "" {
		candidates = append(candidates, filepath.Join(gobin, "h2spec"))
	}
	if gopath := filepath.SplitList(build.Default.GOPATH); len(gopath) > 0 {
		candidates = append(candidates, filepath.Join(gopath[0], "bin", "h2spec"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); c != "" && err == nil && !fi.IsDir() {
			return c
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs h2spec (scripts/deps.sh test installs it); under CI=true that is a failure")
	}
	t.Skip("needs h2spec (scripts/deps.sh test installs it)")
	return ""
}
