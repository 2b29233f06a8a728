package main

// End-to-end test against a real Tomcat 10 DeltaManager cluster: the catherd binary in
// front of three nodes started by scripts/tomcat-rig.sh in network namespaces.
//
// Needs root (namespaces) and Debian's tomcat10. It is skipped when not root unless
// CI=true, where anything missing is a failure instead.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/rig"
)

const (
	tcNodes        = 3
	tcSessions     = 100 // sticky phase: sessions created through catherd
	tcFollowUps    = 3   // requests per session after the one that creates it
	tcLoadRequests = 2000
	tcLoadWorkers  = 4
	tcVictim       = "node2" // killed with SIGKILL in the middle of the load
)

// tcCounterLine is what counter.jsp prints: the node that served the request, the
// session id (with the route of the node that created it) and the session's counter.
var tcCounterLine = regexp.MustCompile(`^node=(\S+) session=(\S+) count=(\d+)\n?$`)

type tcCounter struct {
	node, id string
	count    int
}

// tcSession is one client session followed through the test.
type tcSession struct {
	id, route string
	byURL     bool // send the id as ;jsessionid= path parameter instead of a cookie
	count     int  // last count seen
	uncertain bool // the next count may be count+2 (a request whose outcome is unknown)
	failNode  string
}

func TestTomcatClusterStickyAndFailover(t *testing.T) {
	t0 := time.Now()
	rig.Require(t)
	for _, tool := range []string{"bash", "ip", "curl", "java"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found in PATH: %v", tool, err)
		}
	}
	tmp := t.TempDir()

	bin := tcBuild(t, tmp)
	t.Logf("built catherd in %v", time.Since(t0).Round(time.Millisecond))

	tRig := time.Now()
	r := rig.Up(t, tcNodes, true)
	nodes := r.Nodes
	t.Logf("rig up (%d clustered nodes) in %v", len(nodes), time.Since(tRig).Round(time.Millisecond))

	listen, metricsAddr := tcFreeAddr(t), tcFreeAddr(t)
	args := []string{"run", "--listen", listen, "--metrics", metricsAddr, "--retry", "5s"}
	for _, n := range nodes {
		args = append(args, "--backend", n.Name+"=http://"+n.HTTP)
	}
	logPath := filepath.Join(tmp, "catherd.log")
	tcStartCatherd(t, bin, args, logPath, r.Dir)

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConnsPerHost: 32,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	base := "http://" + listen
	tcWaitReady(t, client, base+"/health.jsp", 15*time.Second)

	// Phase 1: stickiness. Every session is created by a request without an id, then
	// followed by requests that carry it (cookie for even, ;jsessionid= for odd sessions);
	// each must reach the node named by the id's route, with the counter going up by one.
	sessions := make([]*tcSession, tcSessions)
	perNode := map[string]int{}
	var mu sync.Mutex
	tcParallel(8, tcSessions, func(i int) error {
		c, err := tcGetCounter(client, base+"/counter.jsp", "")
		if err != nil {
			return fmt.Errorf("session %d: first request: %w", i, err)
		}
		route, ok := tcRoute(c.id)
		if !ok || c.count != 1 || route != c.node {
			return fmt.Errorf("session %d: first request: want a new session (count=1) with the serving node as route, got %+v", i, c)
		}
		s := &tcSession{id: c.id, route: route, byURL: i%2 == 1, count: 1}
		for k := 0; k < tcFollowUps; k++ {
			c, err := tcSessionGet(client, base, s)
			if err != nil {
				return fmt.Errorf("session %d (%s) follow-up %d: %w", i, s.id, k+1, err)
			}
			if c.node != s.route || c.id != s.id || c.count != s.count+1 {
				return fmt.Errorf("session %d follow-up %d (byURL=%v): want node=%s session=%s count=%d, got node=%s session=%s count=%d",
					i, k+1, s.byURL, s.route, s.id, s.count+1, c.node, c.id, c.count)
			}
			s.count = c.count
		}
		mu.Lock()
		sessions[i] = s
		perNode[route]++
		mu.Unlock()
		return nil
	}, t)
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("phase 1: %d sessions x %d follow-ups sticky; new sessions per node: %v", tcSessions, tcFollowUps, perNode)
	for _, n := range nodes {
		if perNode[n.Name] == 0 {
			t.Errorf("no new session was balanced to %s: %v", n.Name, perNode)
		}
	}
	if perNode[tcVictim] == 0 {
		t.Fatalf("no session lives on %s, the kill phase would prove nothing", tcVictim)
	}

	// Phase 2: SIGKILL one node under load. Requests without a session must all succeed;
	// sessions keep counting, the victim's on one other node each.
	var (
		done      atomic.Int64 // session-less requests finished
		next      atomic.Int64
		loadFails atomic.Int64
		failMsgs  []string
		killStart atomic.Int64 // unix nanos
		killEnd   atomic.Int64
		stop      atomic.Bool
		wg        sync.WaitGroup
	)
	recordFail := func(msg string) {
		mu.Lock()
		if len(failMsgs) < 10 {
			failMsgs = append(failMsgs, msg)
		}
		mu.Unlock()
	}
	paths := []string{"/index.html", "/health.jsp"}
	loadStart := time.Now()
	for w := 0; w < tcLoadWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > tcLoadRequests {
					return
				}
				p := paths[n%2]
				status, _, err := tcGet(client, base+p, "")
				if err != nil || status != 200 {
					loadFails.Add(1)
					recordFail(fmt.Sprintf("GET %s (#%d, %v after start): status %d, err %v", p, n, time.Since(loadStart).Round(time.Millisecond), status, err))
				}
				done.Add(1)
			}
		}()
	}
	// The killer: SIGKILL the victim once half of the load is done (bounded wait).
	var killErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		deadline := time.Now().Add(60 * time.Second)
		for done.Load() < tcLoadRequests/2 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		killStart.Store(time.Now().UnixNano())
		err := r.Kill(tcVictim)
		killEnd.Store(time.Now().UnixNano())
		if err != nil {
			killErr = err
		}
	}()
	// Session clients: two goroutines, each owning half of the sessions, go round until
	// the load and the kill are done (bounded rounds).
	var sessErrs []string
	var sessMu sync.Mutex
	sessErr := func(format string, a ...any) {
		sessMu.Lock()
		sessErrs = append(sessErrs, fmt.Sprintf(format, a...))
		sessMu.Unlock()
	}
	var swg sync.WaitGroup
	for part := 0; part < 2; part++ {
		swg.Add(1)
		go func(part int) {
			defer swg.Done()
			for round := 0; round < 40 && !stop.Load(); round++ {
				for i := part; i < len(sessions) && !stop.Load(); i += 2 {
					tcSessionStep(client, base, sessions[i], &killStart, &killEnd, sessErr)
				}
			}
		}(part)
	}
	wg.Wait()
	stop.Store(true)
	swg.Wait()
	if killErr != nil {
		t.Fatal(killErr)
	}
	t.Logf("phase 2: %d session-less requests in %v, %s killed %v after the load started",
		done.Load(), time.Since(loadStart).Round(time.Millisecond), tcVictim,
		time.Unix(0, killStart.Load()).Sub(loadStart).Round(time.Millisecond))
	if n := loadFails.Load(); n != 0 {
		t.Errorf("%d of %d requests without a session failed across the SIGKILL of %s; first ones:\n  %s",
			n, tcLoadRequests, tcVictim, strings.Join(failMsgs, "\n  "))
	}

	// Final sweep: one more request per session, well after the kill.
	for _, s := range sessions {
		tcSessionStep(client, base, s, &killStart, &killEnd, sessErr)
	}
	moved := 0
	for _, s := range sessions {
		if s.route == tcVictim {
			if s.failNode == "" {
				sessErr("session %s of %s was never served after the kill", s.id, tcVictim)
			} else {
				moved++
			}
		}
	}
	if len(sessErrs) > 0 {
		if len(sessErrs) > 15 {
			sessErrs = append(sessErrs[:15], fmt.Sprintf("... and %d more", len(sessErrs)-15))
		}
		t.Errorf("session checks failed:\n  %s", strings.Join(sessErrs, "\n  "))
	}
	t.Logf("phase 2: %d sessions of %s continued on other nodes with their counts", moved, tcVictim)

	// The metrics endpoint must have seen the failovers.
	if status, body, err := tcGet(client, "http://"+metricsAddr+"/metrics", ""); err != nil || status != 200 {
		t.Errorf("GET /metrics: status %d, err %v", status, err)
	} else if !regexp.MustCompile(`(?m)^catherd_sticky_total\{outcome="failover"\} [1-9]`).MatchString(body) {
		t.Errorf("metrics: want catherd_sticky_total{outcome=\"failover\"} >= 1, got:\n%s", tcGrep(body, "catherd_sticky_total"))
	}

	// Phase 3: the victim comes back. It takes new sessions again, but the
	// sessions that moved stay on their partner (its copy on the returning
	// node would be stale): tcSessionStep fails any that flaps back.
	if err := r.Start(tcVictim); err != nil {
		t.Fatal(err)
	}
	back := false
	for deadline := time.Now().Add(60 * time.Second); !back && time.Now().Before(deadline); {
		if c, err := tcGetCounter(client, base+"/counter.jsp", ""); err == nil && c.node == tcVictim {
			back = true
		} else {
			time.Sleep(200 * time.Millisecond)
		}
	}
	if !back {
		t.Fatalf("%s restarted but got no new session within 60s", tcVictim)
	}
	sessErrs = nil
	for round := 0; round < 2; round++ {
		for _, s := range sessions {
			tcSessionStep(client, base, s, &killStart, &killEnd, sessErr)
		}
	}
	if len(sessErrs) > 0 {
		t.Errorf("after %s returned:\n  %s", tcVictim, strings.Join(sessErrs, "\n  "))
	}
	if _, body, err := tcGet(client, "http://"+metricsAddr+"/metrics", ""); err != nil ||
		!regexp.MustCompile(`(?m)^catherd_sticky_total\{outcome="moved"\} [1-9]`).MatchString(body) {
		t.Errorf("metrics: want catherd_sticky_total{outcome=\"moved\"} >= 1, got:\n%s", tcGrep(body, "catherd_sticky_total"))
	}
	t.Logf("phase 3: %s back, %d moved sessions stayed on their partners", tcVictim, moved)
	t.Logf("whole test: %v", time.Since(t0).Round(time.Millisecond))
}

// tcSessionStep sends one counter request for s and checks it against what came before:
// the count goes up by exactly one (two if the previous outcome was unknown), sessions of
// live nodes stay home, and after the kill the victim's sessions move to one other node.
func tcSessionStep(client *http.Client, base string, s *tcSession, killStart, killEnd *atomic.Int64, fail func(string, ...any)) {
	start := time.Now().UnixNano()
	c, err := tcSessionGet(client, base, s)
	end := time.Now().UnixNano()
	ks, ke := killStart.Load(), killEnd.Load()
	// In flight while the node died: it overlapped [killStart, killEnd],
	// or the kill had begun and not yet returned (killEnd still 0).
	straddles := ks != 0 && end >= ks && (ke == 0 || start <= ke)
	afterKill := ke != 0 && start > ke
	if err != nil {
		if !straddles {
			fail("session %s: %v", s.id, err)
		}
		s.uncertain = true // the node may or may not have counted it
		return
	}
	want := []int{s.count + 1}
	if s.uncertain || straddles {
		// The dying node may have replicated the increment and died before answering;
		// catherd's retry elsewhere then counts it again. Nothing may be lost, though.
		want = append(want, s.count+2)
	}
	if c.id != s.id {
		fail("session %s: answered with session %s (%s)", s.id, c.id, c.node)
	}
	if c.count != want[0] && (len(want) == 1 || c.count != want[1]) {
		fail("session %s (route %s, byURL=%v): want count in %v, got %d on %s (after kill: %v)",
			s.id, s.route, s.byURL, want, c.count, c.node, afterKill)
	}
	s.count, s.uncertain = c.count, false
	switch {
	case s.route != tcVictim:
		if c.node != s.route {
			fail("session %s: want its home %s (alive), got %s", s.id, s.route, c.node)
		}
	case afterKill:
		if c.node == tcVictim {
			fail("session %s: served by %s after it was killed", s.id, tcVictim)
		} else if s.failNode == "" {
			s.failNode = c.node
		} else if c.node != s.failNode {
			fail("session %s: moved from %s to %s after the kill (flapping)", s.id, s.failNode, c.node)
		}
	case !straddles && ks == 0:
		if c.node != s.route {
			fail("session %s: want %s before the kill, got %s", s.id, s.route, c.node)
		}
	}
}

// tcSessionGet requests counter.jsp within session s, by cookie or by path parameter.
func tcSessionGet(client *http.Client, base string, s *tcSession) (tcCounter, error) {
	if s.byURL {
		return tcGetCounter(client, base+"/counter.jsp;jsessionid="+s.id, "")
	}
	return tcGetCounter(client, base+"/counter.jsp", s.id)
}

func tcGetCounter(client *http.Client, url, cookieID string) (tcCounter, error) {
	status, body, err := tcGet(client, url, cookieID)
	if err != nil {
		return tcCounter{}, err
	}
	if status != 200 {
		return tcCounter{}, fmt.Errorf("GET %s: status %d: %q", url, status, tcTrim(body))
	}
	m := tcCounterLine.FindStringSubmatch(body)
	if m == nil {
		return tcCounter{}, fmt.Errorf("GET %s: unexpected body %q", url, tcTrim(body))
	}
	n, _ := strconv.Atoi(m[3])
	return tcCounter{node: m[1], id: m[2], count: n}, nil
}

func tcGet(client *http.Client, url, cookieID string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	if cookieID != "" {
		req.Header.Set("Cookie", "JSESSIONID="+cookieID)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, "", fmt.Errorf("GET %s: reading body: %w", url, err)
	}
	return resp.StatusCode, string(b), nil
}

// tcRoute returns the route of a session id: the text after the first '.'.
func tcRoute(id string) (string, bool) {
	_, route, ok := strings.Cut(id, ".")
	return route, ok && route != ""
}

// tcBuild compiles this package (the catherd command) into dir, with
// extra go build flags, if any.
func tcBuild(t *testing.T, dir string, buildFlags ...string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	bin := filepath.Join(dir, "catherd")
	args := append(append([]string{"build", "-o", bin}, buildFlags...), ".")
	if out, err := tcRun(5*time.Minute, goTool, args...); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// tcProc is a catherd process started by tcStartCatherd.
type tcProc struct {
	*os.Process
	cmd    *exec.Cmd
	exited chan struct{}
}

// Wait waits up to limit for the process to exit and returns its exit
// code, or -1 if it is still running.
func (p *tcProc) Wait(limit time.Duration) int {
	select {
	case <-p.exited:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(limit):
		return -1
	}
}

// tcStartCatherd starts the binary, stops it by PID in cleanup and, if the test failed,
// logs the tail of catherd's log and of every Tomcat log first.
func tcStartCatherd(t *testing.T, bin string, args []string, logPath, rigDir string) *tcProc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644) // appended to by successors too
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--handoff-socket") }) {
		// One hand-off socket per instance: tests run several at once.
		args = append(slices.Clone(args), "--handoff-socket", logPath+".handoff")
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start catherd: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if b, err := os.ReadFile(logPath); err == nil {
			t.Logf("catherd log (tail):\n%s", tcTail(string(b), 40))
		}
		logs, _ := filepath.Glob(filepath.Join(rigDir, "node*", "logs", "catalina.out"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				t.Logf("%s (tail):\n%s", l, tcTail(string(b), 15))
			}
		}
	})
	select {
	case <-exited:
		b, _ := os.ReadFile(logPath)
		t.Fatalf("catherd exited at start-up: %s", b)
	case <-time.After(100 * time.Millisecond):
	}
	return &tcProc{Process: cmd.Process, cmd: cmd, exited: exited}
}

// tcWaitReady polls url through catherd until it answers 200 (bounded).
func tcWaitReady(t *testing.T, client *http.Client, url string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		status, _, err := tcGet(client, url, "")
		if err == nil && status == 200 {
			return
		}
		last = fmt.Errorf("status %d, err %v", status, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("catherd not ready after %v: %v", limit, last)
}

// tcParallel runs fn(0..n-1) on workers goroutines and reports errors (first 10).
func tcParallel(workers, n int, fn func(int) error, t *testing.T) {
	t.Helper()
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		msgs := make([]string, 0, 10)
		for i, e := range errs {
			if i == 10 {
				msgs = append(msgs, fmt.Sprintf("... and %d more", len(errs)-10))
				break
			}
			msgs = append(msgs, e.Error())
		}
		t.Errorf("%d of %d failed:\n  %s", len(errs), n, strings.Join(msgs, "\n  "))
	}
}

// tcRun runs a command with a time limit and returns its stdout and stderr together
// (the rig logs to stderr and prints its node lines on stdout).
func tcRun(limit time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%s: timed out after %v: %w", name, limit, err)
	}
	return out.Bytes(), err
}

// tcFreeAddr returns a loopback address with a port that was free a moment ago.
func tcFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func tcTrim(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func tcTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func tcGrep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
