package main

// Balancer failover: catherd hosts as a tier, in front of which keepalived
// moves a VIP (L7), or a router spreads it by ECMP (L4 in XDP).

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/net/ipv4"

	"github.com/catherd/catherd/scripts/keepalived"
	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/xdp"
)

// TestL4TierBehindECMP runs two catherd XDP hosts with the same --l4
// service behind a router's ECMP route, as Katran hosts sit behind their
// routers: a client's connections reach either host and both send them to
// the same backend, because each host builds the same Maglev table from
// the same backends and hashes a client to the same slot. When a host dies
// and the router withdraws it, its connections, long-lived ones included,
// go on through the other host to the backends they had.
func TestL4TierBehindECMP(t *testing.T) {
	h := newL4HarnessFront(t, "ce", 3, 40, l4topo.ECMP)
	topo := h.topo
	pins2 := h.pins + "-2"
	t.Cleanup(func() { xdp.Unload(pins2) }) // runs after catherd has stopped
	host1 := startL4Catherd(t, h.bin, topo, h.pins, h.log, topo.Backends)
	// Host 2 declares another service first (UDP, whose backends' health
	// is checked on the same TCP port), so VIP:80/tcp has another place
	// in its tables than on host 1: that must not change the slot a
	// client hashes to.
	startL4CatherdIn(t, topo.Balancer2NS(), h.bin, pins2, h.newLog(t, "catherd2.log"), topo.Backends,
		"--l4", l4run.L4Flag(80, "udp", topo.Backends))
	waitUsable(t, h.pins, topo.Backends...)
	waitUsable(t, pins2, topo.Backends...)

	// Two connections from each client address, kept open: the router
	// hashes each on its ports too, so many clients reach both hosts.
	type flow struct {
		src  netip.Addr
		conn *l4topo.Conn
	}
	var flows []flow
	backendOf := map[netip.Addr]string{}
	for _, src := range topo.Sources {
		for range 2 {
			c, err := topo.Dial(src, 80)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if b, ok := backendOf[src]; ok && b != c.Backend {
				t.Fatalf("client %s met backends %s and %s", src, b, c.Backend)
			}
			backendOf[src] = c.Backend
			flows = append(flows, flow{src, c})
		}
	}
	// A host looks a client up in Maglev on its first packet there (the
	// connection table has the rest; rarely twice, when two packets of a
	// new client meet on two CPUs): both hosts must have carried clients.
	misses := func(pins string) uint64 {
		t.Helper()
		st, err := xdp.ReadPinnedStats(pins)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Services {
			if s.Service == netip.AddrPortFrom(l4topo.VIP, 80).String()+"/tcp" {
				return s.ConnMisses
			}
		}
		t.Fatalf("%s: no service on port 80 in %+v", pins, st.Services)
		return 0
	}
	a, b := misses(h.pins), misses(pins2)
	if a < 5 || b < 5 {
		t.Fatalf("Maglev lookups: host 1 %d, host 2 %d for %d clients: ECMP did not spread them", a, b, len(topo.Sources))
	}
	t.Logf("Maglev lookups: host 1 %d, host 2 %d for %d clients", a, b, len(topo.Sources))

	// Host 1's datapath dies: catherd killed, its program unloaded, so
	// what still reaches host 1 meets its kernel, which resets it. (Not
	// its link going down: the switch would then flood frames for host
	// 1's address to host 2, which would steer them, withdrawn or not.)
	// The router withdraws host 1, as a routing daemon does when the
	// host's announcement of the VIP goes.
	host1.Stop(syscall.SIGKILL)
	if err := xdp.Unload(h.pins); err != nil {
		t.Fatal(err)
	}
	if err := topo.SetNextHops(l4topo.Balancer2); err != nil {
		t.Fatal(err)
	}

	// Every connection goes on, through host 2, to its backend: one that
	// reached another backend would be reset by it.
	for _, f := range flows {
		if err := f.conn.Echo("after host 1 died"); err != nil {
			t.Fatalf("connection from %s (backend %s) broken when host 1 died: %v", f.src, f.conn.Backend, err)
		}
	}
	if after := backendsOf(t, topo, topo.Sources); fmt.Sprint(after) != fmt.Sprint(backendOf) {
		t.Fatalf("clients changed backends when host 1 died:\nbefore %v\nafter  %v", backendOf, after)
	}
}

// TestKeepalivedFailover runs two catherd edge hosts (L7) in front of two
// nginx backends, and keepalived on each holding the VIP by VRRP: a
// hand-off on the host holding the VIP leaves it there; kill -9 of catherd
// there moves the VIP to the other host, where clients are served again
// (sessions still reach their route's backend); the first host's return
// does not move it back.
func TestKeepalivedFailover(t *testing.T) {
	l4topo.Require(t)
	for _, tool := range []string{"keepalived", "nginx", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("needs %s (scripts/deps.sh test); under CI=true that is a failure", tool)
			}
			t.Skipf("needs %s (scripts/deps.sh test)", tool)
		}
	}
	topo, err := l4topo.UpFront(fmt.Sprintf("ck%d", os.Getpid()%10000), 2, 0, l4topo.VRRP)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Down() }) // runs after every process has stopped
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nginx's workers drop to nobody
	bin := tcBuild(t, dir)

	catherdArgv := []string{bin, "run", "--listen", ":80", "--metrics", "127.0.0.1:9180", "--admin", "127.0.0.1:9181",
		"--health-interval", "500ms"}
	for i, b := range topo.Backends {
		name := fmt.Sprintf("b%d", i+1)
		startNginx(t, topo.BackendNS(i+1), filepath.Join(dir, name), name, netip.AddrPortFrom(b, 8080))
		catherdArgv = append(catherdArgv, "--backend", fmt.Sprintf("%s=http://%s:8080,route=%s", name, b, name))
	}
	hosts := []string{topo.BalancerNS(), topo.Balancer2NS()}
	startCatherd := func(host int, log string) *nsDaemon {
		handoff := filepath.Join(dir, fmt.Sprintf("catherd%d.handoff", host+1))
		return startDaemon(t, hosts[host], filepath.Join(dir, log), append(slices.Clone(catherdArgv), "--handoff-socket", handoff)...)
	}
	client := nsHTTPClient(topo.ClientNS())
	vip := "http://" + l4topo.VIP.String() + "/"
	vrrp := watchVRRP(t, topo.ClientNS())
	catherds := []*nsDaemon{startCatherd(0, "catherd1.log"), startCatherd(1, "catherd2.log")}
	for i, c := range catherds {
		if err := pollUntil(10*time.Second, func() error { return readyIn(hosts[i]) }); err != nil {
			t.Fatalf("catherd on host %d: %v\n%s", i+1, err, c.logTail())
		}
	}

	// Host 1 starts first and takes the VIP; host 2 then joins as backup
	// and stays one: it hears host 1.
	kas := make([]*nsDaemon, 2)
	for i, prio := range []int{150, 100} {
		kas[i] = startKeepalived(t, hosts[i], filepath.Join(dir, fmt.Sprintf("keepalived%d", i+1)), keepalived.Host{ID: fmt.Sprintf("host%d", i+1),
			Priority: prio, VIP: l4topo.VIP.String() + "/32", Check: "http://127.0.0.1:9180/readyz", Rise: 2})
		want := "Entering MASTER STATE"
		if i == 1 {
			want = "Entering BACKUP STATE"
		}
		if err := pollUntil(15*time.Second, func() error { return kas[i].logged(want, 1) }); err != nil {
			t.Fatalf("keepalived on host %d: %v", i+1, err)
		}
	}
	if err := vrrp.soleMaster(l4topo.Balancer); err != nil {
		t.Fatal(err)
	}
	wantVIPOn(t, topo, hosts, 0)
	served := func() error { return servedBoth(client, vip) }
	if err := pollUntil(5*time.Second, served); err != nil {
		t.Fatalf("through the VIP on host 1: %v", err)
	}

	// A hand-off on host 1 (SIGUSR2: a successor takes over the sockets,
	// the old process drains and exits) is no failure: the VIP stays.
	catherds[0].cmd.Process.Signal(syscall.SIGUSR2)
	successor := waitSuccessor(t, filepath.Join(dir, "catherd1.log"), 1)
	t.Cleanup(func() { stopPids([]int{successor}) })
	select {
	case <-catherds[0].exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the catherd handed over from did not exit within 20s")
	}
	if err := vrrp.soleMaster(l4topo.Balancer); err != nil {
		t.Fatalf("after a hand-off on host 1: %v", err)
	}
	if err := kas[0].logged("Entering FAULT STATE", 1); err == nil {
		t.Fatal("keepalived on host 1 went to FAULT during a hand-off")
	}
	if err := served(); err != nil {
		t.Fatalf("through the VIP on host 1 after a hand-off: %v", err)
	}

	// kill -9 catherd on host 1 (the successor): its check fails,
	// keepalived gives the VIP up, host 2 takes it and serves.
	killed := time.Now()
	if err := syscall.Kill(successor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := pollUntil(20*time.Second, served); err != nil {
		t.Fatalf("not served through the VIP within 20s of kill -9 of the catherd holding it: %v", err)
	}
	t.Logf("served again through the VIP %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
	wantVIPOn(t, topo, hosts, 1)
	if err := kas[0].logged("Entering FAULT STATE", 1); err != nil {
		t.Fatalf("keepalived on host 1: %v", err)
	}

	// catherd returns on host 1: keepalived there leaves FAULT for BACKUP
	// (its second time, after the start) and, not preempting, leaves the
	// VIP where it is.
	startCatherd(0, "catherd1-restarted.log")
	if err := pollUntil(15*time.Second, func() error { return kas[0].logged("Entering BACKUP STATE", 2) }); err != nil {
		t.Fatalf("keepalived on host 1 after catherd returned: %v", err)
	}
	if err := vrrp.soleMaster(l4topo.Balancer2); err != nil {
		t.Fatal(err)
	}
	wantVIPOn(t, topo, hosts, 1)
	if err := served(); err != nil {
		t.Fatalf("through the VIP on host 2 after host 1 returned: %v", err)
	}
}

// servedBoth checks that a request through url with a session of each
// backend's route (b1, b2) reaches that backend: both edge hosts route a
// session alike, whichever holds the VIP.
func servedBoth(client *http.Client, url string) error {
	for _, route := range []string{"b1", "b2"} {
		req, err := http.NewRequest("GET", url, nil)
		if err != nil {
			return err
		}
		req.AddCookie(&http.Cookie{Name: "JSESSIONID", Value: "5EC0DE." + route})
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != route {
			return fmt.Errorf("session of route %s: %s %q", route, resp.Status, body)
		}
	}
	return nil
}

// wantVIPOn fails the test unless the VIP is on hosts[holder]'s eth0, and
// on no other host's.
func wantVIPOn(t *testing.T, topo *l4topo.Topo, hosts []string, holder int) {
	t.Helper()
	for i, ns := range hosts {
		var has bool
		err := topo.Do(ns, func() error {
			addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
			for _, a := range addrs {
				has = has || a.IP.Equal(l4topo.VIP.AsSlice())
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if has != (i == holder) {
			t.Fatalf("VIP on host %d: %v, want it on host %d only", i+1, has, holder+1)
		}
	}
}

// vrrpWatch records the VRRP advertisements on the segment, as a host on
// it hears them.
type vrrpWatch struct {
	mu      sync.Mutex
	adverts []vrrpAdvert
}

type vrrpAdvert struct {
	from     netip.Addr
	priority byte // 0: the sender gives the VIP up
}

// watchVRRP listens in namespace ns for VRRP advertisements (IP protocol
// 112 to 224.0.0.18) until the test ends.
func watchVRRP(t *testing.T, ns string) *vrrpWatch {
	t.Helper()
	var conn net.PacketConn
	err := l4topo.DoIn(ns, func() error {
		eth, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		if conn, err = net.ListenPacket("ip4:112", "0.0.0.0"); err != nil {
			return err
		}
		return ipv4.NewPacketConn(conn).JoinGroup(eth, &net.IPAddr{IP: net.IPv4(224, 0, 0, 18)})
	})
	if err != nil {
		t.Fatalf("listen for VRRP: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &vrrpWatch{}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := conn.ReadFrom(buf) // the VRRP packet, without its IP header
			if err != nil {
				return
			}
			from, ok := netip.AddrFromSlice(addr.(*net.IPAddr).IP.To4())
			if n < 3 || !ok {
				continue
			}
			w.mu.Lock()
			w.adverts = append(w.adverts, vrrpAdvert{from, buf[2]})
			w.mu.Unlock()
		}
	}()
	return w
}

// soleMaster waits for 5 advertisements from master, and fails if another
// host claims the VIP meanwhile. Five advertisements (at advert_int 1)
// span 4 s, more than a backup's wait for a silent master (3 intervals
// and its skew): a backup that did not hear master would have claimed the
// VIP by then.
func (w *vrrpWatch) soleMaster(master netip.Addr) error {
	w.mu.Lock()
	mark := len(w.adverts)
	w.mu.Unlock()
	return pollUntil(15*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, a := range w.adverts[mark:] {
			switch {
			case a.from == master && a.priority > 0:
				n++
			case a.from != master && a.priority > 0:
				return fmt.Errorf("%s claims the VIP (priority %d) while %s is master", a.from, a.priority, master)
			}
		}
		if n < 5 {
			return fmt.Errorf("%d advertisements from master %s, want 5", n, master)
		}
		return nil
	})
}

// readyIn asks catherd's /readyz in namespace ns, as keepalived's check does.
func readyIn(ns string) error {
	resp, err := nsHTTPClient(ns).Get("http://127.0.0.1:9180/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// nsHTTPClient is an HTTP client whose connections are made in namespace
// ns, a new one per request.
func nsHTTPClient(ns string) *http.Client {
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = l4topo.DoIn(ns, func() error {
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}}
}

// pollUntil calls f every 100 ms until it returns nil, for at most limit,
// and returns its last error.
func pollUntil(limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// nsDaemon is a process that a test runs in the foreground in a network
// namespace, its output in a log file.
type nsDaemon struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

// startDaemon runs argv in namespace ns (through nsenter, which execs it
// in place: the PID is the daemon's) and, when the test ends, stops it by
// PID: SIGTERM, SIGKILL after 5 s. When the test failed, it shows the
// tail of the log.
func startDaemon(t *testing.T, ns, logPath string, argv ...string) *nsDaemon {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + l4topo.NetnsPath(ns), "--"}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s: %v", argv[0], err)
	}
	d := &nsDaemon{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(d.exited) }()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s (tail):\n%s", logPath, d.logTail())
		}
	})
	t.Cleanup(d.stop)
	return d
}

func (d *nsDaemon) stop() {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		d.cmd.Process.Kill()
		<-d.exited
	}
}

func (d *nsDaemon) logTail() string {
	b, _ := os.ReadFile(d.logPath)
	return tcTail(string(b), 40)
}

// logged returns nil once the daemon's log has line n times.
func (d *nsDaemon) logged(line string, n int) error {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		return err
	}
	if got := strings.Count(string(b), line); got < n {
		return fmt.Errorf("%q logged %d times, want %d", line, got, n)
	}
	return nil
}

// startNginx runs an nginx in namespace ns that answers every request
// on addr with name, its files in dir.
func startNginx(t *testing.T, ns, dir, name string, addr netip.AddrPort) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    server {
        listen %[2]s;
        location / { default_type text/plain; return 200 "%[3]s\n"; }
    }
}
`, dir, addr, name)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, ns, filepath.Join(dir, "stderr.log"),
		"nginx", "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", path, "-g", "daemon off;")
}

// startKeepalived runs keepalived (package keepalived) in namespace ns as
// host h, its files in dir, until the test ends.
func startKeepalived(t *testing.T, ns, dir string, h keepalived.Host) *nsDaemon {
	t.Helper()
	argv, err := keepalived.Prepare(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keepalived.KillChild(dir) }) // after the parent's stop
	return startDaemon(t, ns, filepath.Join(dir, "keepalived.log"), argv...)
}
