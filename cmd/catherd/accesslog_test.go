package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The access log of a running catherd: a JSON line per request, and
// SIGUSR1 (logrotate's postrotate) makes it open the path again, so the
// lines after a rotation go to the new file.
func TestAccessLogRotation(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	t.Cleanup(backend.Close)
	front := tcFreeAddr(t)
	logPath, accessPath := filepath.Join(tmp, "catherd.log"), filepath.Join(tmp, "access.log")
	proc := tcStartCatherd(t, bin, []string{"run", "--listen", front, "--admin", "", "--metrics", "", "--health-interval", "0",
		"--backend", "a=" + backend.URL, "--access-log", accessPath, "--access-log-format", "json"}, logPath, tmp)
	client := &http.Client{Timeout: 10 * time.Second}
	tcWaitReady(t, client, "http://"+front+"/ready", 10*time.Second)
	lines := func(path string, want string) int {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			b, _ := os.ReadFile(path)
			if strings.Contains(string(b), want) {
				return strings.Count(string(b), "\n")
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has no line for %s:\n%s", path, want, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, _, err := tcGet(client, "http://"+front+"/before", ""); err != nil {
		t.Fatal(err)
	}
	lines(accessPath, `"target":"/before"`)
	if err := os.Rename(accessPath, accessPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// The reopen is the writer's next step: requests until one lands in
	// the new file (a line already handed over may still go to the old).
	deadline := time.Now().Add(10 * time.Second)
	for {
		tcGet(client, "http://"+front+"/after", "")
		if b, _ := os.ReadFile(accessPath); strings.Contains(string(b), `"target":"/after"`) {
			var line map[string]any
			if err := json.Unmarshal([]byte(strings.SplitN(string(b), "\n", 2)[0]), &line); err != nil || line["status"] != 200.0 || line["member"] != "a" {
				t.Fatalf("line %q: %v", b, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no line in the new access log after SIGUSR1")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "SIGUSR1: access log reopened") {
		t.Errorf("catherd's log does not say the access log was reopened:\n%s", b)
	}
}
