package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/xdp"
)

// l4Backend serves one backend: each connection gets the backend's name,
// then every line it sends comes back.
func l4Backend(t *testing.T, topo *l4topo.Topo, i int) net.Listener {
	t.Helper()
	var ln net.Listener
	err := topo.Do(topo.BackendNS(i), func() (err error) {
		ln, err = net.Listen("tcp", ":80")
		return err
	})
	if err != nil {
		t.Fatalf("backend %d: %v", i, err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "b%d\n", i)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

// l4Conn is a client connection through the VIP.
type l4Conn struct {
	net.Conn
	r       *bufio.Reader
	backend string
}

// l4Dial connects from source src in the client namespace to the VIP and
// reads which backend answered.
func l4Dial(topo *l4topo.Topo, src netip.Addr) (*l4Conn, error) {
	var c net.Conn
	err := topo.Do(topo.ClientNS(), func() (err error) {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", netip.AddrPortFrom(l4topo.VIP, 80).String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", src, err)
	}
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	name, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("from %s: read greeting: %w", src, err)
	}
	return &l4Conn{Conn: c, r: r, backend: strings.TrimSpace(name)}, nil
}

// echo checks the connection still carries data both ways.
func (c *l4Conn) echo(msg string) error {
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		return err
	}
	got, err := c.r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, got)
	}
	return nil
}

// backendsOf connects once from every source and returns who answered.
func backendsOf(t *testing.T, topo *l4topo.Topo, sources []netip.Addr) map[netip.Addr]string {
	t.Helper()
	got := map[netip.Addr]string{}
	for _, src := range sources {
		c, err := l4Dial(topo, src)
		if err != nil {
			t.Fatal(err)
		}
		got[src] = c.backend
		c.Close()
	}
	return got
}

// l4Catherd runs catherd in the balancer namespace; kill stops it with
// SIGKILL (its XDP program stays attached).
type l4Catherd struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startL4Catherd(t *testing.T, bin string, topo *l4topo.Topo, pins, logPath string, backends []netip.Addr) *l4Catherd {
	t.Helper()
	var list []string
	for _, b := range backends {
		list = append(list, b.String())
	}
	args := []string{"--net=" + l4topo.NetnsPath(topo.BalancerNS()), bin, "run",
		"--xdp-iface", "eth0", "--xdp-pin-dir", pins, "--metrics", "127.0.0.1:9180",
		"--l4", fmt.Sprintf("%s:80/tcp=%s", l4topo.VIP, strings.Join(list, ",")),
		"--health-interval", "200ms", "--health-timeout", "200ms", "--health-fall", "1", "--health-rise", "1"}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start catherd: %v", err)
	}
	c := &l4Catherd{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); logf.Close(); close(c.done) }()
	t.Cleanup(func() { c.stop(syscall.SIGTERM) })
	return c
}

func (c *l4Catherd) stop(sig syscall.Signal) {
	select {
	case <-c.done:
		return
	default:
	}
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// waitUsable waits until exactly the named backends are usable.
func waitUsable(t *testing.T, pins string, want ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := xdp.ReadPinnedStats(pins)
		if err == nil && len(st.Services) == 1 {
			var usable []netip.Addr
			for _, b := range st.Services[0].Backends {
				if b.Usable {
					usable = append(usable, b.Addr)
				}
			}
			if fmt.Sprint(usable) == fmt.Sprint(want) {
				return
			}
			err = fmt.Errorf("usable: %v", usable)
		}
		if time.Now().After(deadline) {
			t.Fatalf("backends %v not (only) usable after 10s: %v", want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestL4SteeringEndToEnd runs the real binary against real kernels paths:
// veth pairs, a bridge, native XDP on the balancer and DSR backends.
func TestL4SteeringEndToEnd(t *testing.T) {
	l4topo.Require(t)
	topo, err := l4topo.Up(fmt.Sprintf("cx%d", os.Getpid()%10000), 4, 200)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { topo.Down() })
	var listeners []net.Listener
	for i := 1; i <= 4; i++ {
		ln := l4Backend(t, topo, i)
		t.Cleanup(func() { ln.Close() })
		listeners = append(listeners, ln)
	}
	dir := t.TempDir()
	bin := tcBuild(t, dir)
	pins := fmt.Sprintf("/sys/fs/bpf/catherd-e2e-%d", os.Getpid())
	t.Cleanup(func() { xdp.Unload(pins) })
	logPath := filepath.Join(dir, "catherd.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("catherd log:\n%s", tcTail(string(b), 60))
		}
	})
	three := topo.Backends[:3]
	cd := startL4Catherd(t, bin, topo, pins, logPath, three)
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
	long, err := l4Dial(topo, l4topo.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := long.echo("before"); err != nil {
		t.Fatal(err)
	}
	cd.stop(syscall.SIGKILL)
	if err := long.echo("catherd dead"); err != nil {
		t.Fatalf("while catherd was dead: %v", err)
	}
	if c, err := l4Dial(topo, topo.Sources[0]); err != nil || c.backend != first[topo.Sources[0]] {
		t.Fatalf("new connection while catherd was dead: %v (backend %v, want %s)", err, c, first[topo.Sources[0]])
	} else {
		c.Close()
	}
	startL4Catherd(t, bin, topo, pins, logPath, topo.Backends)
	waitUsable(t, pins, topo.Backends...)
	if err := long.echo("after restart with a backend added"); err != nil {
		t.Fatalf("long-lived connection broken by restart: %v", err)
	}
	if again := backendsOf(t, topo, topo.Sources); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("clients changed backends when a backend was added")
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
	out, err := exec.Command(bin, "status", "--xdp-pin-dir", pins).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "10.99.0.250:80/tcp") || !strings.Contains(string(out), "forwarded") {
		t.Fatalf("catherd status: %v\n%s", err, out)
	}
	var js xdp.Stats
	out, err = exec.Command(bin, "status", "--json", "--xdp-pin-dir", pins).Output()
	if err != nil || json.Unmarshal(out, &js) != nil || len(js.Services) != 1 {
		t.Fatalf("catherd status --json: %v\n%s", err, out)
	}
}
