package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/xdp"
)

// backendsOf connects once from every source and returns who answered.
func backendsOf(t *testing.T, topo *l4topo.Topo, sources []netip.Addr) map[netip.Addr]string {
	t.Helper()
	got, err := topo.BackendsOf(sources, 80)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// startL4Catherd runs catherd steering VIP:80/tcp to backends, with fast
// health checks, and stops it when the test ends. The extra flags come
// first: a --l4 among them is declared before VIP:80.
func startL4Catherd(t *testing.T, bin string, topo *l4topo.Topo, pins string, log io.Writer, backends []netip.Addr, extra ...string) *l4run.Catherd {
	t.Helper()
	return startL4CatherdIn(t, topo.BalancerNS(), bin, pins, log, backends, extra...)
}

// startL4CatherdIn is startL4Catherd in namespace ns.
func startL4CatherdIn(t *testing.T, ns, bin, pins string, log io.Writer, backends []netip.Addr, extra ...string) *l4run.Catherd {
	t.Helper()
	args := append(slices.Clone(extra), "--metrics", "127.0.0.1:9180", "--l4", l4run.L4Flag(80, "tcp", backends),
		"--health-interval", "200ms", "--health-timeout", "200ms", "--health-fall", "1", "--health-rise", "1")
	c, err := l4run.StartIn(ns, bin, pins, log, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(syscall.SIGTERM) })
	return c
}

func waitUsable(t *testing.T, pins string, want ...netip.Addr) {
	t.Helper()
	if err := l4run.WaitUsable(pins, want...); err != nil {
		t.Fatal(err)
	}
}

// l4Harness is what an end-to-end L4 test needs: a topology with backends
// serving on port 80, the catherd binary, a pin directory and a log file
// (shown when the test fails), all removed when it ends.
type l4Harness struct {
	topo      *l4topo.Topo
	listeners []net.Listener
	bin, pins string
	log       *os.File
	dir       string
}

func newL4Harness(t *testing.T, prefix string, backends, sources int) *l4Harness {
	t.Helper()
	return newL4HarnessFront(t, prefix, backends, sources, l4topo.Single)
}

// newL4HarnessFront is newL4Harness with the balancers of front.
func newL4HarnessFront(t *testing.T, prefix string, backends, sources int, front l4topo.Front) *l4Harness {
	t.Helper()
	l4topo.Require(t)
	topo, err := l4topo.UpFront(fmt.Sprintf("%s%d", prefix, os.Getpid()%10000), backends, sources, front)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Down() })
	h := &l4Harness{topo: topo, dir: t.TempDir()}
	for i := 1; i <= backends; i++ {
		ln, err := topo.ServeBackend(i, 80)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		h.listeners = append(h.listeners, ln)
	}
	h.bin = tcBuild(t, h.dir)
	h.pins = fmt.Sprintf("/sys/fs/bpf/catherd-%s-%d", prefix, os.Getpid())
	t.Cleanup(func() { xdp.Unload(h.pins) })
	h.log = h.newLog(t, "catherd.log")
	return h
}

// newLog creates a log file for a process of the test, shown (its tail)
// when the test fails.
func (h *l4Harness) newLog(t *testing.T, name string) *os.File {
	t.Helper()
	path := filepath.Join(h.dir, name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(path)
			t.Logf("%s:\n%s", name, tcTail(string(b), 60))
		}
	})
	return f
}

// TestL4SteeringEndToEnd runs the real binary against real kernels paths:
// veth pairs, a bridge, native XDP on the balancer and DSR backends.
func TestL4SteeringEndToEnd(t *testing.T) {
	h := newL4Harness(t, "cx", 4, 200)
	topo, listeners, bin, pins, logf := h.topo, h.listeners, h.bin, h.pins, h.log
	three := topo.Backends[:3]
	cd := startL4Catherd(t, bin, topo, pins, logf, three)
	waitUsable(t, pins, three...)

	// 200 client addresses: each always meets the same backend, and the
	// three backends share them.
	first := backendsOf(t, topo, topo.Sources)
	share := map[string]int{}
	for _, b := range first {
		share[b]++
	}
	for _, name := range []string{"b1", "b2", "b3"} {
		if share[name] < 30 {
			t.Fatalf("backend %s got %d of 200 clients: %v", name, share[name], share)
		}
	}
	if again := backendsOf(t, topo, topo.Sources); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("clients changed backends between two rounds")
	}

	// A long-lived connection survives kill -9 of catherd (the pinned
	// program keeps steering) and a restart that adds a backend.
	long, err := topo.Dial(l4topo.Client, 80)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := long.Echo("before"); err != nil {
		t.Fatal(err)
	}
	cd.Stop(syscall.SIGKILL)
	if err := long.Echo("catherd dead"); err != nil {
		t.Fatalf("while catherd was dead: %v", err)
	}
	if c, err := topo.Dial(topo.Sources[0], 80); err != nil || c.Backend != first[topo.Sources[0]] {
		t.Fatalf("new connection while catherd was dead: %v (backend %v, want %s)", err, c, first[topo.Sources[0]])
	} else {
		c.Close()
	}
	restarted := startL4Catherd(t, bin, topo, pins, logf, topo.Backends)
	waitUsable(t, pins, topo.Backends...)
	if err := long.Echo("after restart with a backend added"); err != nil {
		t.Fatalf("long-lived connection broken by restart: %v", err)
	}
	if again := backendsOf(t, topo, topo.Sources); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("clients changed backends when a backend was added")
	}

	// A take-over: both processes hold the pinned maps and link for a
	// moment, then the old one exits by itself; nothing moves. The maps
	// have one writer at a time: the old process stops writing them
	// before the new one starts.
	startL4Catherd(t, bin, topo, pins, logf, topo.Backends, "--takeover")
	if code := restarted.Wait(20 * time.Second); code != 0 {
		t.Fatalf("the catherd taken over from exited %d, want 0", code)
	}
	waitLog(t, logf.Name(), regexp.MustCompile(`taking over: XDP maps written`))
	logged, _ := os.ReadFile(logf.Name())
	stopped := strings.Index(string(logged), "XDP maps left to the successor")
	written := strings.Index(string(logged), "taking over: XDP maps written")
	if stopped < 0 || written < stopped {
		t.Fatalf("the new process wrote the maps (at %d in the log) before the old one stopped writing them (at %d)", written, stopped)
	}
	if err := long.Echo("after a take-over"); err != nil {
		t.Fatalf("long-lived connection broken by a take-over: %v", err)
	}
	if again := backendsOf(t, topo, topo.Sources); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("clients changed backends in a take-over")
	}

	// A second catherd on the same pin directory, started on its own
	// (no --takeover), refuses to start and changes nothing.
	var intruderLog strings.Builder
	intruder, err := l4run.StartIn(topo.BalancerNS(), bin, pins, &intruderLog, "--metrics", "", "--admin", "",
		"--handoff-socket", filepath.Join(t.TempDir(), "intruder.sock"), "--l4", l4run.L4Flag(80, "tcp", topo.Backends[:1]))
	if err != nil {
		t.Fatal(err)
	}
	if code := intruder.Wait(30 * time.Second); code == 0 || !strings.Contains(intruderLog.String(), "another catherd writes the maps pinned there") {
		t.Fatalf("a second catherd on the pin directory exited %d:\n%s", code, intruderLog.String())
	}
	if again := backendsOf(t, topo, topo.Sources); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("clients changed backends when a second catherd tried the pin directory")
	}

	// Backend 2 fails its health check: its clients, and only they, move.
	listeners[1].Close()
	waitUsable(t, pins, topo.Backends[0], topo.Backends[2], topo.Backends[3])
	after := backendsOf(t, topo, topo.Sources)
	moved := 0
	for src, b := range first {
		switch {
		case b == "b2" && after[src] == "b2":
			t.Fatalf("client %s still sent to the failed backend", src)
		case b == "b2":
			moved++
		case after[src] != b:
			t.Fatalf("client %s moved from %s to %s though its backend is fine", src, b, after[src])
		}
	}
	if moved != share["b2"] {
		t.Fatalf("%d clients moved, backend 2 had %d", moved, share["b2"])
	}

	st, err := xdp.ReadPinnedStats(pins)
	if err != nil {
		t.Fatal(err)
	}
	s := st.Services[0]
	if s.ConnHits == 0 || s.ConnMisses == 0 || st.Verdicts["forwarded"] < uint64(4*200) {
		t.Fatalf("counters do not show the traffic: %+v, verdicts %v", s, st.Verdicts)
	}
	out, err := exec.Command(bin, "status", "--admin", "127.0.0.1:1", "--xdp-pin-dir", pins).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.99.0.250:80/tcp") || !strings.Contains(string(out), "forwarded") {
		t.Fatalf("catherd status: %v\n%s", err, out)
	}
	var js admin.Status
	out, err = exec.Command(bin, "status", "--json", "--admin", "127.0.0.1:1", "--xdp-pin-dir", pins).Output()
	if err != nil || json.Unmarshal(out, &js) != nil || js.XDP == nil || len(js.XDP.Services) != 1 {
		t.Fatalf("catherd status --json: %v\n%s", err, out)
	}
}
