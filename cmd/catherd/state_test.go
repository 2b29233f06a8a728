package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/statefile"
)

// A plain restart (no take-over) with --state-file keeps what operators
// set and the moved sessions: a disabled member stays disabled, a weight
// stays, a session that moved does not go back when its node returns; a
// --backend edited in between wins over the file.
func TestStateFileSurvivesPlainRestart(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	backends := map[string]string{}
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		backends[name] = srv.URL
	}
	stateFile := filepath.Join(tmp, "state.json")
	listen, adminAddr := tcFreeAddr(t), tcFreeAddr(t)
	start := func(run int, weightB string) (*tcProc, admin.Status) {
		logPath := filepath.Join(tmp, "catherd"+string(rune('0'+run))+".log")
		p := tcStartCatherd(t, bin, []string{"run", "--listen", listen, "--admin", adminAddr, "--metrics", "",
			"--state-file", stateFile, "--backend", "a=" + backends["a"], "--backend", "b=" + backends["b"] + weightB}, logPath, tmp)
		tcWaitReady(t, &http.Client{Timeout: 5 * time.Second}, "http://"+listen+"/", 10*time.Second)
		return p, waitStatus(t, adminAddr, tcProcPid(t, logPath))
	}
	stop := func(p *tcProc) {
		p.Signal(syscall.SIGTERM)
		if code := p.Wait(30 * time.Second); code != 0 {
			t.Fatalf("catherd stopped with %d", code)
		}
	}
	member := func(st admin.Status, name string) admin.Member {
		for _, m := range st.Members {
			if m.Name == name {
				return m
			}
		}
		t.Fatalf("no member %s in the status", name)
		return admin.Member{}
	}

	p, _ := start(1, "")
	for _, args := range [][]string{{"member", "disable", "a"}, {"member", "weight", "b", "7"}} {
		if code, _, errOut := runCLI(append(args, "--admin", adminAddr)...); code != 0 {
			t.Fatalf("%v: %s", args, errOut)
		}
	}
	if got := getWithCookie(t, listen, "JSESSIONID=S1.a"); got != "b" {
		t.Fatalf("S1.a with a disabled went to %q, want b", got)
	}
	// Saved within a second or so; polled, not slept for.
	var saved bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !saved; time.Sleep(50 * time.Millisecond) {
		st, ok, err := statefile.Load(stateFile)
		saved = ok && err == nil && len(st.Moved) == 1 && st.Moved[0].Member == "b" && len(st.Members) == 2 && st.Members[1].Weight == 7
	}
	if !saved {
		b, _ := os.ReadFile(stateFile)
		t.Fatalf("the state file does not hold the changes: %s", b)
	}
	stop(p)

	p, st := start(2, "")
	if a, b := member(st, "a"), member(st, "b"); !strings.Contains(a.Flags, "D") || b.Weight != 7 {
		t.Errorf("after a plain restart: a's flags %q, b's weight %d; want D and 7", a.Flags, b.Weight)
	}
	if code, out, _ := runCLI("session", "list", "--moved", "--admin", adminAddr); code != 0 || !regexp.MustCompile(`(?m)^S1\s+b\s`).MatchString(out) {
		t.Errorf("moved sessions after the restart: %d\n%s", code, out)
	}
	runCLI("member", "enable", "a", "--admin", adminAddr)
	if got := getWithCookie(t, listen, "JSESSIONID=S1.a"); got != "b" {
		t.Errorf("S1.a after the restart, a enabled again, went to %q: it flapped back", got)
	}
	runCLI("member", "disable", "a", "--admin", adminAddr)
	stop(p)

	// b's weight edited on the command line: the edit wins; a, not edited,
	// stays disabled.
	p, st = start(3, ",weight=3")
	if a, b := member(st, "a"), member(st, "b"); !strings.Contains(a.Flags, "D") || b.Weight != 3 {
		t.Errorf("after a restart with b's weight edited: a's flags %q, b's weight %d; want D and 3", a.Flags, b.Weight)
	}
	stop(p)

	// A corrupt file: catherd starts without it, and says so; --check
	// reports it.
	os.WriteFile(stateFile, []byte("{"), 0o600)
	if code, _, errOut := runCLI("run", "--check", "--state-file", stateFile, "--backend", "a="+backends["a"]); code != 2 || !strings.Contains(errOut, "--state-file") {
		t.Errorf("run --check with a corrupt state file: %d %q", code, errOut)
	}
	p, st = start(4, "")
	if a := member(st, "a"); strings.Contains(a.Flags, "D") {
		t.Errorf("a corrupt state file applied: a's flags %q", a.Flags)
	}
	waitLog(t, filepath.Join(tmp, "catherd4.log"), regexp.MustCompile(`--state-file: starting without the saved state`))
	stop(p)
}
