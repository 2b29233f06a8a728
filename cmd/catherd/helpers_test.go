package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/admin"
)

// Helpers the tests of catherd (the command) share: reading its metrics,
// and finding and stopping the catherd processes a test did not start
// itself (successors started by SIGUSR2 or catherd reload).

// scrapeMetrics fetches catherd's metrics page at addr (host:port),
// waiting (bounded) for a catherd just started to listen.
func scrapeMetrics(t *testing.T, client *http.Client, addr string) string {
	t.Helper()
	resp, err := client.Get("http://" + addr + "/metrics")
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		resp, err = client.Get("http://" + addr + "/metrics")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

var metricLine = regexp.MustCompile(`(?m)^(\S+) (\S+)$`)

// metricValue returns the value of the series named exactly (with its
// labels as Prometheus prints them), or -1.
func metricValue(metrics, series string) int {
	for _, m := range metricLine.FindAllStringSubmatch(metrics, -1) {
		if m[1] == series {
			v, err := strconv.ParseFloat(m[2], 64)
			if err == nil {
				return int(v)
			}
		}
	}
	return -1
}

// waitMetric polls catherd's metrics at addr until series reaches want
// (10 s).
func waitMetric(t *testing.T, addr, series string, want int) {
	t.Helper()
	var got int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = metricValue(scrapeMetrics(t, http.DefaultClient, addr), series); got >= want {
			return
		}
	}
	t.Fatalf("%s is %d, want %d", series, got, want)
}

var (
	// servingLine is what a catherd logs once it serves.
	servingLine = regexp.MustCompile(`msg="catherd serving" .*pid=(\d+)`)
	// successorLine is what a catherd logs when SIGUSR2 started a successor.
	successorLine = regexp.MustCompile(`SIGUSR2: successor started.*pid=(\d+)`)
)

// loggedPids reads the PIDs that lines matching re (the PID its first
// group) name in the files, in order (none from a file that cannot be
// read).
func loggedPids(re *regexp.Regexp, files ...string) []int {
	var pids []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, m := range re.FindAllSubmatch(b, -1) {
			pids = append(pids, atoiOr0(string(m[1])))
		}
	}
	return pids
}

// successorPids reads the PIDs of the successors started by SIGUSR2 from
// the log, in order.
func successorPids(logPath string) []int { return loggedPids(successorLine, logPath) }

// reloadedPids reads the PIDs of the processes that served after a
// take-over (started by catherd reload, not by this test) from the
// outputs of the reloads in dir.
func reloadedPids(dir string) []int {
	files, _ := filepath.Glob(filepath.Join(dir, "reload*.err"))
	return loggedPids(servingLine, files...)
}

// waitSuccessor waits for the n-th successor started by SIGUSR2 to appear
// in the log and returns its PID.
func waitSuccessor(t *testing.T, logPath string, n int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if pids := successorPids(logPath); len(pids) >= n {
			return pids[n-1]
		}
	}
	t.Fatalf("successor %d did not start", n)
	return 0
}

// tcProcPid reads the pid of the catherd writing logPath from its log,
// once it serves.
func tcProcPid(t *testing.T, logPath string) int {
	t.Helper()
	return atoiOr0(servingLine.FindStringSubmatch(waitLog(t, logPath, servingLine))[1])
}

// stopPids stops the catherd processes this test started without being
// their parent (a SIGUSR2 successor), by PID.
func stopPids(pids []int) {
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && syscall.Kill(pid, 0) == nil; {
			time.Sleep(20 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func atoiOr0(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// expectNotifications reads what catherd told systemd (a NOTIFY_SOCKET of
// the test's) for a first process and its successors, in order: the first
// says it is the main process and ready; each successor says it is the
// main process before its predecessor stops, and ready once it serves.
func expectNotifications(t *testing.T, notify *net.UnixConn, first int, successors ...int) {
	t.Helper()
	want := []string{fmt.Sprintf("MAINPID=%d\nREADY=1\n", first)}
	for _, pid := range successors {
		want = append(want, fmt.Sprintf("MAINPID=%d\n", pid), fmt.Sprintf("MAINPID=%d\nREADY=1\n", pid))
	}
	buf := make([]byte, 256)
	for _, w := range want {
		notify.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := notify.Read(buf)
		if err != nil || string(buf[:n]) != w {
			t.Errorf("systemd notification %q (%v), want %q", buf[:n], err, w)
			return
		}
	}
}

// poll waits (10 s at most) until cond holds.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 10s", what)
		}
	}
}

// waitMemberState polls a catherd's admin API until member node is in
// state want (bounded by limit); who names the catherd in the failure.
func waitMemberState(t *testing.T, c *adminClient, who, node, want string, limit time.Duration) {
	t.Helper()
	var m admin.Member
	for deadline := time.Now().Add(limit); ; time.Sleep(10 * time.Millisecond) {
		err := c.do("GET", "/api/v1/members/"+node, &m)
		if err == nil && m.State == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not %s within %v (state %q, err %v)", who, node, want, limit, m.State, err)
		}
	}
}
