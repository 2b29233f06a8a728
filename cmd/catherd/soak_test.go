package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	"github.com/catherd/catherd/scripts/rig"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/xdp"
)

// soakDuration is how long TestTomcatSoak runs: CATHERD_SOAK (make soak
// sets 10m), else a short run that still goes through every kind of fault
// once.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("CATHERD_SOAK")
	if v == "" {
		return 90 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("CATHERD_SOAK=%q: want a duration such as 10m", v)
	}
	return d
}

// resUse is a catherd process's resource use at one moment.
type resUse struct {
	pid        int
	rssKiB     int
	goroutines int
	fds        int
}

func (u resUse) String() string {
	return fmt.Sprintf("pid %d: RSS %d MiB, %d goroutines, %d open files", u.pid, u.rssKiB>>10, u.goroutines, u.fds)
}

// measure reads pid's RSS and open files from /proc and its goroutines
// from its /metrics.
func measure(t *testing.T, pid int, metricsAddr string) resUse {
	t.Helper()
	u := resUse{pid: pid}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("catherd %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			u.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	u.fds = len(fds)
	u.goroutines = metricValue(scrapeMetrics(t, http.DefaultClient, metricsAddr), "go_goroutines")
	return u
}

// leaked reports whether the use grew past what load noise explains
// between two moments of the same process under the same load.
func leaked(from, to resUse) bool {
	return to.goroutines > from.goroutines*3/2+50 || to.rssKiB > from.rssKiB*3/2+32<<10 || to.fds > from.fds+64
}

// TestTomcatSoak keeps a 3-node DeltaManager cluster under mixed load
// behind catherd (200 sessions counting, plus 1 MiB downloads outside any
// session) while faults come one after another: a node killed and
// returning, a node restarted the rolling way (evacuate, stop, start,
// enable), operator actions (drain, weight), and catherd itself restarted
// by SIGUSR2 under the load. Every kind comes once, in that order, then
// at random (the seed is logged). It fails on any failed request, lost
// session update, split or flap-back (outside evacuations, as in
// TestTomcatReplicationFailover), and on growth of catherd's goroutines,
// memory or open files over the run. `make soak` runs it for 10 minutes;
// the suite runs 90 seconds.
func TestTomcatSoak(t *testing.T) {
	rig.Require(t)
	duration := soakDuration(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	t.Setenv("CTH_RIG_DOMAIN", "east")
	r := rig.Up(t, 3, true)
	big := bytes.Repeat([]byte("catherd soak\n"), (1<<20)/13)
	for _, n := range r.Nodes {
		if err := writeWebappFile(r.Dir, n.Name, "big.txt", big); err != nil {
			t.Fatal(err)
		}
	}

	front, adminAddr, metricsAddr := tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)
	pins := fmt.Sprintf("/sys/fs/bpf/catherd-soak-%d", os.Getpid())
	t.Cleanup(func() { xdp.Unload(pins) })
	logPath := filepath.Join(tmp, "catherd.log")
	args := []string{"run", "--listen", front, "--admin", adminAddr, "--metrics", metricsAddr,
		"--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "5s",
		"--membership", "228.0.0.4:45564", "--membership-domain", "*", "--membership-drop-time", "3s",
		"--membership-iface", "cth-br0", "--xdp-mode", "generic", "--xdp-pin-dir", pins,
		"--handoff-socket", filepath.Join(tmp, "handoff.sock")}
	for _, n := range r.Nodes {
		args = append(args, "--backend", n.Name+"=http://"+n.HTTP)
	}
	first := tcStartCatherd(t, bin, args, logPath, r.Dir)
	pid := first.Pid
	var successors []int
	t.Cleanup(func() { stopPids(successorPids(logPath)) })
	client := &http.Client{Timeout: 5 * time.Second}
	tcWaitReady(t, client, "http://"+front+"/health.jsp", 20*time.Second)
	ac := adminClient{base: "http://" + adminAddr, http: http.Client{Timeout: 5 * time.Second}}
	state := func(node, want string, limit time.Duration) {
		t.Helper()
		var m admin.Member
		for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
			err := ac.do("GET", "/api/v1/members/"+node, &m)
			if err == nil && m.State == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not %s within %v (state %q, err %v)", node, want, limit, m.State, err)
			}
		}
	}
	for _, n := range r.Nodes {
		state(n.Name, "ok", 10*time.Second)
	}
	member := func(args ...string) {
		t.Helper()
		if code, _, errOut := runCLI(append(append([]string{"member"}, args...), "--admin", adminAddr)...); code != 0 {
			t.Fatalf("catherd member %s: %s", strings.Join(args, " "), errOut)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration+5*time.Minute)
	defer cancel()
	load, err := failover.Start(ctx, failover.Options{Fronts: []string{"http://" + front}, MaxRequests: 1 << 40}, "steady")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	// Downloads outside any session, balanced over the nodes, two at a
	// time: each must arrive whole.
	var downloads, badDownloads atomic.Int64
	var lastBad atomic.Value
	stopDownloads := make(chan struct{})
	var dl sync.WaitGroup
	want := sha256.Sum256(big)
	for range 2 {
		dl.Go(func() {
			for {
				select {
				case <-stopDownloads:
					return
				default:
				}
				resp, err := client.Get("http://" + front + "/big.txt")
				var got [32]byte
				if err == nil {
					h := sha256.New()
					_, err = io.Copy(h, resp.Body)
					resp.Body.Close()
					copy(got[:], h.Sum(nil))
					if err == nil && (resp.StatusCode != 200 || got != want) {
						err = fmt.Errorf("status %d, body %s", resp.StatusCode, map[bool]string{true: "whole", false: "corrupt"}[got == want])
					}
				}
				downloads.Add(1)
				if err != nil {
					badDownloads.Add(1)
					lastBad.Store(err.Error())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}

	time.Sleep(5 * time.Second)
	baseline := measure(t, pid, metricsAddr)
	t.Logf("baseline after 5s of load: %v", baseline)
	var rounds []resUse // each process's use when it is replaced, and at the end
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("soak for %v, seed %d", duration, seed)
	node := func() string { return r.Nodes[rng.IntN(len(r.Nodes))].Name }

	faults := []func(){
		func() { // catherd restarted under the load
			load.Phase("catherd restart")
			before := measure(t, pid, metricsAddr)
			syscall.Kill(pid, syscall.SIGUSR2)
			next := waitSuccessor(t, logPath, len(successors)+1)
			successors = append(successors, next)
			waitStatus(t, adminAddr, next)
			if leaked(baseline, before) {
				t.Errorf("catherd %d grew under load: from %v to %v", pid, baseline, before)
			}
			rounds = append(rounds, before)
			pid = next
			time.Sleep(5 * time.Second)
			baseline = measure(t, pid, metricsAddr)
		},
		func() { // a node killed, then back
			n := node()
			load.Phase("kill -9 " + n)
			load.Out(n)
			if err := r.Kill(n); err != nil {
				t.Fatal(err)
			}
			state(n, "down", 10*time.Second)
			time.Sleep(2 * time.Second)
			load.Phase(n + " back")
			if err := r.Start(n); err != nil {
				t.Fatal(err)
			}
			state(n, "ok", 30*time.Second)
			load.In(n)
		},
		func() { // operator actions
			n := node()
			load.Phase("drain and weight " + n)
			member("drain", n)
			member("weight", n, strconv.Itoa(1+rng.IntN(5)))
			time.Sleep(2 * time.Second)
			member("enable", n)
			state(n, "ok", 10*time.Second)
		},
		func() { // a rolling restart of one node
			n := node()
			load.Phase("evacuate " + n)
			load.Out(n)
			member("evacuate", n, "--wait", "30s")
			load.Phase("restart " + n)
			if err := r.Stop(n); err != nil {
				t.Fatal(err)
			}
			if err := r.Start(n); err != nil {
				t.Fatal(err)
			}
			member("enable", n)
			state(n, "ok", 30*time.Second)
			load.In(n)
		},
	}
	end := time.Now().Add(duration)
	for i := 0; time.Now().Before(end) || i < len(faults); i++ {
		f := i
		if i >= len(faults) {
			f = rng.IntN(len(faults))
		}
		faults[f]()
		time.Sleep(2 * time.Second)
	}
	final := measure(t, pid, metricsAddr)
	close(stopDownloads)
	dl.Wait()
	reports := load.Stop()
	stopped = true

	total := checkReports(t, reports)
	for i, u := range rounds {
		t.Logf("catherd generation %d when replaced: %v", i+1, u)
	}
	t.Logf("last catherd: %v after 5s of load, %v at the end", baseline, final)
	if leaked(baseline, final) {
		t.Errorf("catherd %d grew under load: from %v to %v", pid, baseline, final)
	}
	t.Logf("soak %v: %d session requests (failed %d, lost %d), %d downloads of 1 MiB (%d bad), %d catherd restarts",
		duration, total.Requests, total.Failed, total.Lost, downloads.Load(), badDownloads.Load(), len(successors))
	if n := badDownloads.Load(); n > 0 {
		t.Errorf("%d downloads failed or arrived corrupt; last: %v", n, lastBad.Load())
	}
}
