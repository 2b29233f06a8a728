package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/scripts/sysd"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/xdp"
)

// capabilityBits are the capabilities the unit may name, by their name in
// capabilities(7).
var capabilityBits = map[string]uint{
	"CAP_BPF":              unix.CAP_BPF,
	"CAP_NET_ADMIN":        unix.CAP_NET_ADMIN,
	"CAP_NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE,
	"CAP_SYS_ADMIN":        unix.CAP_SYS_ADMIN,
	"CAP_PERFMON":          unix.CAP_PERFMON,
}

// unitCapabilities reads CapabilityBoundingSet from the systemd unit.
func unitCapabilities(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../scripts/systemd/catherd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if v, ok := strings.CutPrefix(sc.Text(), "CapabilityBoundingSet="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("the unit has no CapabilityBoundingSet")
	return nil
}

// setpriv is the wrapper that runs a command as root with only caps, as
// the unit does (bounding, inheritable and ambient sets; no new privileges).
func setpriv(t *testing.T, caps []string) (wrapper []string, mask uint64) {
	t.Helper()
	set := "-all"
	for _, c := range caps {
		bit, ok := capabilityBits[c]
		if !ok {
			t.Fatalf("capability %s: not one this test knows", c)
		}
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		mask |= 1 << bit
	}
	return []string{"setpriv", "--no-new-privs", "--bounding-set=" + set, "--inh-caps=" + set, "--ambient-caps=" + set, "--"}, mask
}

// effectiveCaps reads a process's effective capability mask.
func effectiveCaps(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapEff in /proc/%d/status", pid)
}

// The systemd unit's capabilities are enough for what catherd does as a
// service: load and attach XDP, pin its maps, steer L4 flows, listen on
// port 80. And each of them is needed.
func TestRunsWithTheUnitsCapabilities(t *testing.T) {
	caps := unitCapabilities(t)
	h := newL4Harness(t, "cs", 2, 20)
	topo, bin, pins, logf := h.topo, h.bin, h.pins, h.log
	args := []string{"--l4", l4run.L4Flag(80, "tcp", topo.Backends), "--listen", ":80",
		"--backend", "web=http://" + topo.Backends[0].String() + ":80", "--health-interval", "200ms"}

	wrapper, mask := setpriv(t, caps)
	c, err := l4run.StartWrapped(topo, wrapper, bin, pins, logf, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop(syscall.SIGTERM) })
	waitUsable(t, pins, topo.Backends...)
	if got, err := effectiveCaps(c.Pid()); err != nil || got != mask {
		t.Fatalf("catherd's effective capabilities: %x (%v), want exactly %x (%v)", got, err, mask, caps)
	}
	if got := backendsOf(t, topo, topo.Sources); len(got) != len(topo.Sources) {
		t.Fatalf("%d of %d clients steered", len(got), len(topo.Sources))
	}
	err = topo.Do(topo.BalancerNS(), func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:80", time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		t.Fatalf("catherd does not listen on port 80: %v", err)
	}
	c.Stop(syscall.SIGTERM)

	// Each capability is needed: without it, catherd stops at start-up
	// with one line saying what failed, not half-running.
	for _, drop := range caps {
		var fewer []string
		for _, c := range caps {
			if c != drop {
				fewer = append(fewer, c)
			}
		}
		wrapper, _ = setpriv(t, fewer)
		var out strings.Builder
		c, err = l4run.StartWrapped(topo, wrapper, bin, pins+"-less", &out, args...)
		if err != nil {
			t.Fatal(err)
		}
		want := "(catherd needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)"
		if drop == "CAP_NET_BIND_SERVICE" {
			want = "--listen :80: listen tcp :80: bind: permission denied"
		}
		code := c.Wait(10 * time.Second)
		line := firstLine(out.String(), "catherd run:")
		if code != 2 || !strings.Contains(line, want) {
			t.Errorf("without %s: exit %d, want 2 and a line with %q; output:\n%s", drop, code, want, tcTail(out.String(), 5))
		} else {
			t.Logf("without %s: %s", drop, line)
		}
		xdp.Unload(pins + "-less")
	}
}

// firstLine returns the first line of s that starts with prefix.
func firstLine(s, prefix string) string {
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// The unit under a real systemd (a private one: scripts/sysd), hardening
// and all, with catherd steering L4 flows in XDP and serving HTTP: it
// starts after its ExecStartPre check; systemctl reload with edited flags
// checks them and hands over to a process started with them (systemd
// follows the new main PID, flows keep their backends); a reload with a
// bad flag is refused and changes nothing; SIGUSR2 restarts it in place;
// stop stops it.
func TestUnitUnderSystemd(t *testing.T) {
	h := newL4Harness(t, "sd", 2, 20)
	topo, bin, pins := h.topo, h.bin, h.pins
	unit, err := os.ReadFile("../../scripts/systemd/catherd.service")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	defaults := filepath.Join(dir, "default")
	if err := os.Mkdir(defaults, 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "catherd.log")
	// The state file in the unit's StateDirectory, the only place under
	// /var it may write: a name of this test's own, removed after it, with
	// the directory if the test made it.
	stateFile := fmt.Sprintf("/var/lib/catherd/test-%d.json", os.Getpid())
	if _, err := os.Stat(filepath.Dir(stateFile)); err != nil {
		t.Cleanup(func() { os.Remove(filepath.Dir(stateFile)) })
	}
	t.Cleanup(func() { os.Remove(stateFile) })
	setArgs := func(extra ...string) {
		t.Helper()
		args := append([]string{"--xdp-iface", "eth0", "--xdp-pin-dir", pins, "--l4", l4run.L4Flag(80, "tcp", topo.Backends),
			"--listen", ":80", "--health-interval", "200ms", "--state-file", stateFile}, extra...)
		if err := os.WriteFile(filepath.Join(defaults, "catherd"), []byte("CATHERD_ARGS="+strings.Join(args, " ")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	web := "web=http://" + topo.Backends[0].String() + ":80"
	setArgs("--backend", web)
	sd, err := sysd.Boot(sysd.Options{Dir: dir,
		Units: map[string]string{
			"catherd.service": string(unit),
			// For the test only: nothing of the host's boot, catherd in
			// the topology's balancer namespace, its output in a file.
			"catherd.service.d/test.conf": "[Unit]\nDefaultDependencies=no\n[Service]\nNetworkNamespacePath=" +
				l4topo.NetnsPath(topo.BalancerNS()) + "\nStandardOutput=append:" + logPath + "\nStandardError=inherit\n",
		},
		Masked: []string{"network-online.target"},
		Files:  map[string]string{"/usr/local/bin/catherd": bin},
		Dirs:   map[string]string{"/etc/default": defaults},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sd.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("catherd under systemd:\n%s", tcTail(string(b), 60))
			out, _ := sd.Systemctl("status", "--no-pager", "catherd")
			t.Logf("systemctl status catherd:\n%s", out)
		}
	})
	systemctl := func(args ...string) error {
		t.Helper()
		out, err := sd.Systemctl(args...)
		if err != nil {
			return fmt.Errorf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	status := func() admin.Status {
		t.Helper()
		var st admin.Status
		// Dialled on the namespace's thread; an http.Client would dial
		// from another one, in the host's namespace.
		err := topo.Do(topo.BalancerNS(), func() error {
			conn, err := net.DialTimeout("tcp", config.DefaultAdmin, 10*time.Second)
			if err != nil {
				return err
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			io.WriteString(conn, "GET /api/v1/status HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			return json.NewDecoder(resp.Body).Decode(&st)
		})
		if err != nil {
			t.Fatalf("admin API: %v", err)
		}
		return st
	}
	mainPid := func() int { return atoiOr0(sd.Show("catherd", "MainPID")) }
	gone := func(pid int) bool {
		for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if _, err := sd.Run("test", "-d", fmt.Sprintf("/proc/%d", pid)); err != nil {
				return true
			}
		}
		return false
	}

	if err := systemctl("start", "catherd"); err != nil {
		t.Fatal(err)
	}
	first := mainPid()
	waitUsable(t, pins, topo.Backends...)
	if st := status(); st.Pid != first {
		t.Fatalf("the admin API is answered by pid %d, systemd's main PID is %d", st.Pid, first)
	}
	before := backendsOf(t, topo, topo.Sources)
	if len(before) != len(topo.Sources) {
		t.Fatalf("%d of %d clients steered under systemd", len(before), len(topo.Sources))
	}
	caps, _ := sd.Run("grep", "^CapEff:", fmt.Sprintf("/proc/%d/status", first))
	_, mask := setpriv(t, unitCapabilities(t))
	if got, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(string(caps), "CapEff:")), 16, 64); err != nil || got != mask {
		t.Errorf("effective capabilities under systemd: %q, want %x", caps, mask)
	}

	// The sandbox lets catherd keep its state file.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = os.Stat(stateFile); err == nil {
			break
		}
	}
	if err != nil {
		t.Errorf("no state file under systemd: %v", err)
	}

	// An edited /etc/default/catherd: a weight and a listener more.
	setArgs("--backend", web+",weight=3", "--listen", ":81")
	if err := systemctl("reload", "catherd"); err != nil {
		t.Fatal(err)
	}
	second := mainPid()
	if second == first || sd.Show("catherd", "ActiveState") != "active" {
		t.Fatalf("after reload: main PID %d (was %d), %s", second, first, sd.Show("catherd", "ActiveState"))
	}
	if st := status(); st.Pid != second || st.Members[0].Weight != 3 {
		t.Fatalf("after reload: the admin API's pid %d, web weighs %d; want %d and 3", st.Pid, st.Members[0].Weight, second)
	}
	err = topo.Do(topo.BalancerNS(), func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:81", 5*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("the listener added by the reload: %v", err)
	}
	if !gone(first) {
		t.Errorf("the first catherd (pid %d) still runs after the reload", first)
	}
	if after := backendsOf(t, topo, topo.Sources); !maps.Equal(after, before) {
		t.Errorf("clients changed backends across the reload: %v -> %v", before, after)
	}

	// A bad flag: ExecReload's check refuses it; nothing changes.
	setArgs("--backend", web+",weight=3", "--listen", ":81", "--lbmethod", "random")
	if err := systemctl("reload", "catherd"); err == nil {
		t.Error("reload with --lbmethod random succeeded")
	}
	if pid := mainPid(); pid != second || sd.Show("catherd", "ActiveState") != "active" {
		t.Errorf("after a refused reload: main PID %d (want %d), %s", pid, second, sd.Show("catherd", "ActiveState"))
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "catherd run: --lbmethod:") {
		t.Errorf("the refused reload's reason is not in the log")
	}

	// SIGUSR2 to the main process (not to the whole service, whose next
	// process could be a successor too young to handle it): a successor
	// with the running flags; systemd follows it.
	setArgs("--backend", web+",weight=3", "--listen", ":81")
	if err := systemctl("kill", "--kill-whom=main", "-s", "USR2", "catherd"); err != nil {
		t.Fatal(err)
	}
	third := second
	for deadline := time.Now().Add(30 * time.Second); third == second && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		third = mainPid()
	}
	if third == second || !gone(second) || status().Pid != third {
		t.Errorf("after SIGUSR2: main PID %d (was %d)", third, second)
	}

	// SIGTERM, as systemctl stop sends it: catherd drains and exits 0.
	// (Not systemctl stop itself: the main process is now a successor
	// catherd started, not systemd, and a systemd that cannot rely on its
	// cgroup's empty notifications, as a nested one cannot, sends such an
	// "alien" main process SIGKILL right after SIGTERM instead of waiting.)
	if err := systemctl("kill", "--kill-whom=main", "-s", "TERM", "catherd"); err != nil {
		t.Fatal(err)
	}
	state := sd.Show("catherd", "ActiveState")
	for deadline := time.Now().Add(30 * time.Second); state != "inactive" && state != "failed" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		state = sd.Show("catherd", "ActiveState")
	}
	if result := sd.Show("catherd", "Result"); state != "inactive" || result != "success" {
		t.Errorf("after SIGTERM: %s, result %s; want inactive after a clean exit", state, result)
	}
	if err := systemctl("stop", "catherd"); err != nil {
		t.Fatal(err)
	}
}

// systemd-analyze security rates the unit's sandbox; it was 5.3 before
// the hardening, and may not get worse than this.
func TestUnitExposure(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed")
		}
		t.Skip("systemd-analyze is not installed")
	}
	out, _ := exec.Command(analyze, "security", "--offline=yes", "../../scripts/systemd/catherd.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for catherd\.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security said:\n%s", out)
	}
	const limit = 2.5
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > limit {
		t.Errorf("exposure %.1f, want at most %.1f:\n%s", level, limit, out)
	} else {
		t.Logf("systemd-analyze security: exposure %.1f", level)
	}
}
