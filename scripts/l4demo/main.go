// Command l4demo is the L4 part of `make demo`: catherd's XDP datapath
// steering TCP connections from 200 client addresses to three backends by
// L2 direct server return, in network namespaces it creates and removes
// (scripts/l4topo). It shows ip_hash-style affinity, a backend failing
// (only its clients move), catherd killed with -9 while a connection stays
// up, a restart that adds a backend, and `catherd status`. It prints
// PASS/FAIL per expectation and exits 1 if any failed.
//
//	go run ./scripts/l4demo -catherd bin/catherd
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/catherd/catherd/scripts/l4run"
	"github.com/catherd/catherd/scripts/l4topo"
	"github.com/catherd/catherd/userspace/xdp"
)

const port = 80

func main() {
	bin := flag.String("catherd", "bin/catherd", "catherd binary")
	flag.Parse()
	fails, err := tour(*bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "l4demo:", err)
		os.Exit(1)
	}
	if fails > 0 {
		fmt.Printf("l4demo: %d check(s) failed\n", fails)
		os.Exit(1)
	}
}

type checker struct{ fails int }

func (c *checker) check(ok bool, format string, a ...any) {
	verdict := "PASS"
	if !ok {
		verdict = "FAIL"
		c.fails++
	}
	fmt.Printf("  %s  %s\n", verdict, fmt.Sprintf(format, a...))
}

func tour(bin string) (int, error) {
	fmt.Println("== L4: XDP steering with L2 direct server return ==")
	fmt.Printf("   namespaces ldcli (200 client addresses), ldlb (catherd, VIP %s), ldb1..ldb4 (backends, VIP on lo)\n", l4topo.VIP)
	topo, err := l4topo.Up("ld", 4, 200)
	if err != nil {
		return 0, err
	}
	defer topo.Down()
	pins := "/sys/fs/bpf/catherd-demo"
	defer xdp.Unload(pins)
	var listeners []net.Listener
	for i := 1; i <= 4; i++ {
		ln, err := topo.ServeBackend(i, port)
		if err != nil {
			return 0, err
		}
		defer ln.Close()
		listeners = append(listeners, ln)
	}
	logf, err := os.CreateTemp("", "catherd-l4demo-*.log")
	if err != nil {
		return 0, err
	}
	defer os.Remove(logf.Name())
	defer logf.Close()
	start := func(backends []netip.Addr) (*l4run.Catherd, error) {
		flag := l4run.L4Flag(port, "tcp", backends)
		fmt.Printf("   catherd run --xdp-iface eth0 --l4 %s --health-interval 500ms\n", flag)
		c, err := l4run.Start(topo, bin, pins, logf, "--metrics", "", "--l4", flag,
			"--health-interval", "500ms", "--health-timeout", "300ms", "--health-fall", "1", "--health-rise", "1")
		if err == nil {
			err = l4run.WaitUsable(pins, backends...)
		}
		return c, err
	}
	var c checker

	three := topo.Backends[:3]
	cd, err := start(three)
	if err != nil {
		return 0, err
	}
	defer func() { cd.Stop(syscall.SIGTERM) }()
	first, err := topo.BackendsOf(topo.Sources, port)
	if err != nil {
		return 0, err
	}
	share := count(first)
	c.check(share["b1"] > 30 && share["b2"] > 30 && share["b3"] > 30, "200 clients spread over 3 backends: %v", share)
	again, err := topo.BackendsOf(topo.Sources, port)
	if err != nil {
		return 0, err
	}
	c.check(fmt.Sprint(again) == fmt.Sprint(first), "a second connection from each client meets the same backend (ip_hash affinity)")

	long, err := topo.Dial(l4topo.Client, port)
	if err != nil {
		return 0, err
	}
	defer long.Close()
	cd.Stop(syscall.SIGKILL)
	c.check(long.Echo("hello") == nil, "kill -9 catherd: an open connection (to %s) still works, the pinned program keeps steering", long.Backend)
	if cd, err = start(topo.Backends); err != nil {
		return 0, err
	}
	c.check(long.Echo("again") == nil, "restart with a 4th backend: the open connection survives (connection table kept in pinned maps)")
	after, err := topo.BackendsOf(topo.Sources, port)
	if err != nil {
		return 0, err
	}
	c.check(fmt.Sprint(after) == fmt.Sprint(first), "known clients stay on their backends when one is added")

	fmt.Println("   backend b2 stops listening (its health check fails)")
	listeners[1].Close()
	if err := l4run.WaitUsable(pins, topo.Backends[0], topo.Backends[2], topo.Backends[3]); err != nil {
		return 0, err
	}
	moved, err := topo.BackendsOf(topo.Sources, port)
	if err != nil {
		return 0, err
	}
	stayed, left := 0, 0
	for src, b := range first {
		switch {
		case b == "b2" && moved[src] != "b2":
			left++
		case b != "b2" && moved[src] == b:
			stayed++
		}
	}
	c.check(left == share["b2"] && stayed == 200-share["b2"],
		"b2's %d clients moved to other backends, the other %d stayed put", left, stayed)

	out, err := exec.Command("nsenter", "--net="+l4topo.NetnsPath(topo.BalancerNS()), bin, "status").CombinedOutput()
	fmt.Printf("   catherd status:\n%s", indent(string(out)))
	c.check(err == nil && strings.Contains(string(out), "forwarded"), "catherd status shows the datapath's counters (from the admin API)")
	return c.fails, nil
}

func count(m map[netip.Addr]string) map[string]int {
	n := map[string]int{}
	for _, b := range m {
		n[b]++
	}
	return n
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ") + "\n"
}
