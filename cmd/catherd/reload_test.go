package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// catherd reload hands over to a process started with new flags (what
// systemctl reload runs with an edited /etc/default/catherd): a weight
// changed and a listener added take effect, the old process drains and
// exits 0, and systemd is told the new main PID. A successor that cannot
// start changes nothing and makes reload fail; so do bad flags.
func TestReloadPicksUpNewFlags(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	var backends []string
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		backends = append(backends, name+"="+srv.URL)
	}
	front, added, adminAddr := tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)
	socket, logPath := filepath.Join(tmp, "handoff.sock"), filepath.Join(tmp, "catherd.log")
	notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(tmp, "notify.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer notify.Close()
	t.Setenv("NOTIFY_SOCKET", filepath.Join(tmp, "notify.sock"))
	common := []string{"--admin", adminAddr, "--metrics", "", "--health-interval", "0", "--handoff-socket", socket}
	first := tcStartCatherd(t, bin, append(append([]string{"run", "--listen", front}, common...),
		"--backend", backends[0], "--backend", backends[1]), logPath, tmp)
	waitStatus(t, adminAddr, first.Pid)

	// reload runs catherd reload as systemd's ExecReload would. The
	// successor writes where reload does (under systemd, the journal):
	// here a file per run, which outlives reload as the journal does.
	runs := 0
	reload := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		runs++
		files := [2]*os.File{}
		for i, name := range []string{"out", "err"} {
			f, err := os.Create(filepath.Join(tmp, fmt.Sprintf("reload%d.%s", runs, name)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			files[i] = f
		}
		cmd := exec.Command(bin, append([]string{"reload"}, args...)...)
		cmd.Stdout, cmd.Stderr = files[0], files[1]
		if err := cmd.Run(); err != nil {
			if _, ok := err.(*exec.ExitError); !ok {
				t.Fatalf("catherd reload: %v", err)
			}
		}
		out, _ := os.ReadFile(files[0].Name())
		errOut, _ := os.ReadFile(files[1].Name())
		return cmd.ProcessState.ExitCode(), string(out), string(errOut)
	}
	t.Cleanup(func() { stopPids(reloadedPids(tmp)) })

	// New flags: a weighs 5, and a second listener.
	newArgs := append(append([]string{"--listen", front, "--listen", added}, common...),
		"--backend", backends[0]+",weight=5", "--backend", backends[1])
	code, out, errOut := reload(newArgs...)
	m := regexp.MustCompile(`pid (\d+) serves with the new flags`).FindStringSubmatch(out)
	if code != 0 || m == nil {
		t.Fatalf("catherd reload: exit %d\n%s%s", code, out, errOut)
	}
	second := atoiOr0(m[1])
	st := waitStatus(t, adminAddr, second)
	if st.Members[0].Name != "a" || st.Members[0].Weight != 5 {
		t.Errorf("after the reload a weighs %d, want 5", st.Members[0].Weight)
	}
	for _, addr := range []string{front, added} {
		if code, body := httpGet(t, "http://"+addr+"/"); code != 200 || (body != "a" && body != "b") {
			t.Errorf("%s after the reload: %d %q", addr, code, body)
		}
	}
	if code := first.Wait(20 * time.Second); code != 0 {
		t.Errorf("the first catherd exited %d after the reload, want 0", code)
	}
	expectNotifications(t, notify, first.Pid, second)

	// A successor that cannot start (its new listener is taken) fails
	// the reload; the running catherd serves on, unchanged.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, errOut = reload(append(slices.Clone(newArgs), "--listen", busy.Addr().String())...)
	if code != 1 || !strings.Contains(errOut, "did not start") || !strings.Contains(errOut, "the running one serves on") {
		t.Errorf("reload onto a busy port: exit %d, stderr %q; want 1", code, errOut)
	}
	if st := waitStatus(t, adminAddr, second); st.Members[0].Weight != 5 {
		t.Errorf("after a failed reload: %+v", st.Members[0])
	}

	// Bad flags, or nothing to take over from: usage errors, nothing started.
	if code, _, errOut := reload(append(slices.Clone(newArgs), "--lbmethod", "random")...); code != 2 || !strings.Contains(errOut, "--lbmethod") {
		t.Errorf("reload with a bad flag: exit %d, %q", code, errOut)
	}
	if code, _, errOut := reload("--backend", backends[0], "--handoff-socket", filepath.Join(tmp, "none.sock")); code != 2 ||
		!strings.Contains(errOut, "no catherd serves") {
		t.Errorf("reload with nothing running: exit %d, %q", code, errOut)
	}
}
