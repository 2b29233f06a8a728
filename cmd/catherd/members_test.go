package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

// Members added and removed while catherd serves: an added member serves
// at once and stays through a take-over and a plain restart (with
// --state-file); a removal waits for the member's requests in flight,
// and its sessions go to their partners; the last member stays.
func TestMembersAtRunTime(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	release := make(chan struct{})
	urls := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/slow" {
				<-release
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		urls[name] = srv.URL
	}
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	listen, adminAddr := tcFreeAddr(t), tcFreeAddr(t)
	args := []string{"run", "--listen", listen, "--admin", adminAddr, "--metrics", "", "--handoff-socket", filepath.Join(tmp, "h.sock"),
		"--state-file", filepath.Join(tmp, "state.json"), "--backend", "a=" + urls["a"], "--backend", "b=" + urls["b"]}
	start := func(log string, extra ...string) *tcProc {
		logPath := filepath.Join(tmp, log)
		p := tcStartCatherd(t, bin, append(append([]string(nil), args...), extra...), logPath, tmp)
		waitStatus(t, adminAddr, tcProcPid(t, logPath))
		return p
	}
	members := func() map[string]admin.Member {
		code, out, errOut := runCLI("member", "list", "--json", "--admin", adminAddr)
		var ms []admin.Member
		if code != 0 || json.Unmarshal([]byte(out), &ms) != nil {
			t.Fatalf("member list: %d %s", code, errOut)
		}
		byName := map[string]admin.Member{}
		for _, m := range ms {
			byName[m.Name] = m
		}
		return byName
	}
	names := func() string {
		var ns []string
		for n := range members() {
			ns = append(ns, n)
		}
		slices.Sort(ns)
		return strings.Join(ns, " ")
	}

	first := start("first.log")
	tcWaitReady(t, &http.Client{Timeout: 5 * time.Second}, "http://"+listen+"/", 10*time.Second)
	if code, out, errOut := runCLI("member", "add", "c="+urls["c"]+",weight=2", "--admin", adminAddr); code != 0 || !strings.Contains(out, "c ") {
		t.Fatalf("member add: %d %q %q", code, out, errOut)
	}
	if got := getWithCookie(t, listen, "JSESSIONID=S.c"); got != "c" {
		t.Errorf("a session of the added member went to %q", got)
	}
	for _, bad := range []string{"c=" + urls["a"], "d=" + urls["a"], "e=ftp://x:1"} {
		if code, _, errOut := runCLI("member", "add", bad, "--admin", adminAddr); code != 1 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("member add %s: %d %q, want 1 and one line", bad, code, errOut)
		}
	}

	// A successor takes the added member over.
	second := start("second.log", "--takeover")
	if code := first.Wait(30 * time.Second); code != 0 {
		t.Fatalf("the first catherd exited %d after the take-over", code)
	}
	if got := names(); got != "a b c" {
		t.Errorf("members after the take-over: %q, want a b c", got)
	}

	// A removal waits for the request in flight to c.
	slow := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+listen+"/slow", nil)
		req.Header.Set("Cookie", "JSESSIONID=S.c")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	poll(t, "the slow request in flight on c", func() bool { return members()["c"].InFlight == 1 })
	removed := make(chan int, 1)
	go func() {
		code, _, _ := runCLI("member", "remove", "c", "--admin", adminAddr)
		removed <- code
	}()
	poll(t, "c evacuated", func() bool { return strings.Contains(members()["c"].Flags, "D") })
	select {
	case code := <-removed:
		t.Fatalf("member remove returned (%d) with a request in flight", code)
	default:
	}
	close(release)
	if got := <-slow; got != "c" {
		t.Errorf("the request in flight during the removal: %q", got)
	}
	if code := <-removed; code != 0 {
		t.Fatalf("member remove c: %d", code)
	}
	if got := names(); got != "a b" {
		t.Errorf("members after the removal: %q", got)
	}
	if got := getWithCookie(t, listen, "JSESSIONID=S.c"); got != "a" && got != "b" {
		t.Errorf("a session of the removed member went to %q", got)
	}

	// Added again, then a plain restart: the state file keeps it.
	runCLI("member", "add", "c="+urls["c"], "--admin", adminAddr)
	second.Signal(syscall.SIGTERM)
	if code := second.Wait(30 * time.Second); code != 0 {
		t.Fatalf("the second catherd exited %d on SIGTERM", code)
	}
	start("third.log")
	if got := names(); got != "a b c" {
		t.Errorf("members after a plain restart: %q, want a b c", got)
	}
	if code, _, _ := runCLI("member", "remove", "c", "--drain=false", "--admin", adminAddr); code != 0 {
		t.Errorf("member remove c --drain=false: %d", code)
	}
	runCLI("member", "remove", "b", "--drain=false", "--admin", adminAddr)
	if code, _, errOut := runCLI("member", "remove", "a", "--drain=false", "--admin", adminAddr); code != 1 || !strings.Contains(errOut, "last member") {
		t.Errorf("removing the last member: %d %q", code, errOut)
	}
}
