package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

// TestRestartUnderLoad restarts catherd twice while wrk keeps 32
// connections busy: once by starting a new process with --takeover, once
// by SIGUSR2 (the process starts its own successor). No request may fail,
// each predecessor must drain and exit 0, and the operators' changes and
// the moved sessions must survive both restarts.
func TestRestartUnderLoad(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("wrk is not installed (scripts/deps.sh test installs it)")
		}
		t.Skip("wrk is not installed")
	}
	backend := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := backend("a"), backend("b")
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	front, adminAddr := tcFreeAddr(t), tcFreeAddr(t)
	socket := filepath.Join(tmp, "handoff.sock")
	logPath := filepath.Join(tmp, "catherd.log")
	// systemd's notification socket: each generation must say it is the
	// service's main process once ready.
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(tmp, "notify.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", filepath.Join(tmp, "notify.sock"))
	args := []string{"run", "--listen", front, "--admin", adminAddr, "--metrics", "", "--health-interval", "0",
		"--handoff-socket", socket, "--backend", "a=" + a.URL, "--backend", "b=" + b.URL}
	first := tcStartCatherd(t, bin, args, logPath, tmp)
	waitStatus(t, adminAddr, first.Pid)

	// Operators' changes, and a session moved off b by an evacuation.
	if code, _, errOut := runCLI("member", "weight", "a", "7", "--admin", adminAddr); code != 0 {
		t.Fatalf("weight: %s", errOut)
	}
	if code, _, errOut := runCLI("member", "evacuate", "b", "--admin", adminAddr); code != 0 {
		t.Fatalf("evacuate: %s", errOut)
	}
	if got := getWithCookie(t, front, "JSESSIONID=s1.b"); got != "a" {
		t.Fatalf("b's session while b is evacuated went to %q", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	load := exec.CommandContext(ctx, wrk, "-t2", "-c32", "-d8s", "http://"+front+"/")
	loadOut := make(chan string, 1)
	go func() {
		out, err := load.CombinedOutput()
		loadOut <- fmt.Sprintf("%s\n(err: %v)", out, err)
	}()

	// Restart 1: a new process started by hand.
	time.Sleep(1500 * time.Millisecond)
	second := exec.Command(bin, append(args[:len(args):len(args)], "--takeover")...)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	second.Stdout, second.Stderr = logf, logf
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	// The processes this test started without being their parent (a
	// SIGUSR2 successor) are stopped by PID, whatever happens to it.
	t.Cleanup(func() { stopPids(append([]int{second.Process.Pid}, successorPids(logPath)...)) })
	if code := first.Wait(20 * time.Second); code != 0 {
		t.Fatalf("the first catherd exited %d after the take-over, want 0", code)
	}
	waitStatus(t, adminAddr, second.Process.Pid)

	// Restart 2: SIGUSR2 makes the process start its own successor.
	time.Sleep(1500 * time.Millisecond)
	second.Process.Signal(syscall.SIGUSR2)
	if err := second.Wait(); err != nil {
		t.Fatalf("the second catherd after SIGUSR2: %v", err)
	}
	third := waitSuccessor(t, logPath, 1)
	st := waitStatus(t, adminAddr, third)

	out := <-loadOut
	t.Logf("wrk across two restarts:\n%s", out)
	if m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(out); m == nil || atoiOr0(m[1]) < 1000 {
		t.Fatalf("wrk did not run a load")
	}
	for _, bad := range []string{"Socket errors", "Non-2xx"} {
		if strings.Contains(out, bad) {
			t.Errorf("wrk reports failed requests (%s)", bad)
		}
	}

	for _, m := range st.Members {
		if m.Name == "a" && m.Weight != 7 || m.Name == "b" && m.Flags != "D" {
			t.Errorf("after two restarts %s has weight %d, flags %q; want a's weight 7 and b disabled", m.Name, m.Weight, m.Flags)
		}
	}
	if st.Moved == nil || st.Moved.Size != 1 {
		t.Errorf("moved sessions after two restarts: %+v, want the one moved before", st.Moved)
	}
	expectNotifications(t, notify, first.Pid, second.Process.Pid, third)
	if code, _, errOut := runCLI("member", "enable", "b", "--admin", adminAddr); code != 0 {
		t.Fatalf("enable: %s", errOut)
	}
	if got := getWithCookie(t, front, "JSESSIONID=s1.b"); got != "a" {
		t.Errorf("the moved session went to %q after b returned, want a (where its state now is)", got)
	}
}

func runCLI(args ...string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := dispatch(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func getWithCookie(t *testing.T, front, cookie string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+front+"/", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitStatus polls the admin API until process pid answers (10 s).
func waitStatus(t *testing.T, adminAddr string, pid int) admin.Status {
	t.Helper()
	var st admin.Status
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + adminAddr + "/api/v1/status")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && st.Pid == pid {
			return st
		}
	}
	t.Fatalf("the admin API is not answered by pid %d (last: pid %d)", pid, st.Pid)
	return st
}

// A session the old process moves while it drains after a hand-off
// reaches its successor, which then sends the session where it went
// rather than home: a request in flight to member a when the successor
// takes over loses its connection (a dies), and the old process retries
// it on b, moving the session as it drains.
func TestHandoffPassesOnDrainMoves(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	arrived, tookOver := make(chan struct{}, 1), make(chan struct{})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Cookie"), "s1.a") {
			select {
			case arrived <- struct{}{}:
			default:
			}
			select {
			case <-tookOver:
			case <-time.After(20 * time.Second): // the test failed before
			}
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close() // a dies with the request unanswered
			return
		}
		io.WriteString(w, "a")
	}))
	t.Cleanup(a.Close)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") }))
	t.Cleanup(b.Close)
	front, adminAddr := tcFreeAddr(t), tcFreeAddr(t)
	args := []string{"run", "--listen", front, "--admin", adminAddr, "--metrics", "", "--health-interval", "0",
		"--handoff-socket", filepath.Join(tmp, "handoff.sock"), "--backend", "a=" + a.URL, "--backend", "b=" + b.URL}
	old := tcStartCatherd(t, bin, args, filepath.Join(tmp, "old.log"), tmp)
	waitStatus(t, adminAddr, old.Pid)

	answered := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+front+"/", nil)
		req.Header.Set("Cookie", "JSESSIONID=s1.a")
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			answered <- err.Error()
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		answered <- string(body)
	}()
	select { // in flight through the old process, before any successor accepts
	case <-arrived:
	case got := <-answered:
		t.Fatalf("the request did not reach a: %q", got)
	}
	tcStartCatherd(t, bin, append(args, "--takeover"), filepath.Join(tmp, "new.log"), tmp)
	// (Not waitStatus: its kept-alive connection to the old process's
	// admin API stays the old process's until that one has drained.)
	waitLog(t, filepath.Join(tmp, "new.log"), servingLine)
	close(tookOver)
	if got := <-answered; got != "b" {
		t.Fatalf("the request in flight through the old process: %q, want b's answer", got)
	}
	var out string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, out, _ = runCLI("session", "s1.a", "--admin", adminAddr) // a new connection: the successor's
		if strings.Contains(out, "moved to  b") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the successor does not hold the move made by the draining process:\n%s", out)
		}
	}
	if code := old.Wait(20 * time.Second); code != 0 {
		t.Errorf("the old process exited with %d", code)
	}
	waitLog(t, filepath.Join(tmp, "new.log"), regexp.MustCompile(`took over the sessions the predecessor moved while draining.*moved_sessions=1`))
}
