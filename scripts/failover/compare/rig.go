package main

// The Tomcat rig (scripts/tomcat-rig.sh) and the edge hosts on its
// bridge.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	rigscript "github.com/catherd/catherd/scripts/rig"
)

type rig struct {
	script, dir string
	keep        bool // keep the rig's directory (-keep)
}

// rigWait is how long up waits for another rig on this host to go down:
// longer than the script's 180 s, because a run of every side takes a
// rig many times over on a host where tests and benchmarks take it too,
// and one side that gives up leaves a hole in the table.
const rigWait = 10 * time.Minute

func (r *rig) run(ctx context.Context, limit time.Duration, args ...string) ([]byte, error) {
	env := []string{fmt.Sprintf("CTH_RIG_WAIT=%d", int(rigWait.Seconds()))}
	if r.keep {
		env = append(env, "CTH_RIG_KEEP=1") // down leaves the Tomcat logs
	}
	return rigscript.Script(ctx, r.script, r.dir, limit, env, args...)
}

// up starts 3 clustered nodes and returns their names.
func (r *rig) up(ctx context.Context) ([]string, error) {
	out, err := r.run(ctx, rigWait+150*time.Second, "up", "--nodes", "3", "--cluster")
	if err != nil {
		return nil, fmt.Errorf("rig up: %v\n%s", err, out)
	}
	var nodes []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "nodeI IP HTTPPORT AJPPORT PID"
		f := strings.Fields(sc.Text())
		if len(f) == 5 && strings.HasPrefix(f[0], "node") {
			if want := fmt.Sprintf("10.77.0.%d", 10+len(nodes)+1); f[1] != want || f[2] != "8080" {
				return nil, fmt.Errorf("rig up: unexpected node line %q (want %s on :8080)", sc.Text(), want)
			}
			nodes = append(nodes, f[0])
		}
	}
	if len(nodes) != 3 {
		return nil, fmt.Errorf("rig up: want 3 node lines, got %d in:\n%s", len(nodes), out)
	}
	return nodes, nil
}

func (r *rig) node(ctx context.Context, verb, node string) error {
	t0 := time.Now()
	out, err := r.run(ctx, 120*time.Second, verb, node)
	if err != nil {
		return fmt.Errorf("rig %s %s: %v\n%s", verb, node, err, out)
	}
	log.Printf("rig %s %s (%v)", verb, node, time.Since(t0).Round(time.Millisecond))
	return nil
}

func nodeHTTP(node string) string {
	i, _ := strconv.Atoi(strings.TrimPrefix(node, "node"))
	return fmt.Sprintf("10.77.0.%d:8080", 10+i)
}

// plugHost makes an edge host on the rig's bridge: namespace ns, plugged
// into the bridge by a veth (ns on the bridge, eth0 inside) with addr,
// and a multicast route so that catherd hears the heartbeats.
func plugHost(ns, addr string) error {
	for _, args := range [][]string{
		{"netns", "add", ns},
		{"link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"link", "set", ns, "master", bridge},
		{"link", "set", ns, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// unplugHost removes what plugHost made (deleting the namespace takes
// the veth pair along).
func unplugHost(ns string) {
	exec.Command("ip", "link", "del", ns).Run()
	if _, err := os.Stat("/run/netns/" + ns); err == nil {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			log.Printf("ip netns del %s: %v: %s", ns, err, out)
		}
	}
}

// ---------------------------------------------------------------- processes
