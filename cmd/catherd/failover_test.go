package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	"github.com/catherd/catherd/scripts/rig"
	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/xdp"
)

// Replication-aware failover against a real 3-node DeltaManager cluster
// (domain "east", learnt from its heartbeats) with synchronous
// replication (so a lost update is the balancer's fault),
// behind two catherd instances, one on this host and one in a namespace of
// its own on the cluster's segment (a second edge host). 200 sessions stay
// busy throughout, each request of a session going through the other
// instance than the last. Through a kill -9, the dead node's return and a
// rolling restart of every node with evacuate/enable: no request fails, no
// session loses an update, both instances send every moved session to the
// same node, and no session flaps back.
func TestTomcatReplicationFailover(t *testing.T) {
	rig.Require(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	// The cluster names its domain in its heartbeats; catherd follows every
	// domain and puts each backend (none has domain=) in its heartbeats'.
	t.Setenv("CTH_RIG_DOMAIN", "east")
	r := rig.Up(t, 3, true)

	edge := bridgeHost(t, "cth-edge2", "cth-edge2", "10.77.0.200/24")
	token := filepath.Join(tmp, "token")
	if err := os.WriteFile(token, []byte("failover-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"run", "--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "5s",
		"--membership", "228.0.0.4:45564", "--membership-domain", "*", "--membership-drop-time", "3s", "--xdp-mode", "generic"}
	for _, n := range r.Nodes {
		common = append(common, "--backend", n.Name+"=http://"+n.HTTP)
	}
	type instance struct {
		name, front string
		admin       adminClient
		cli         []string // flags that reach its admin API
	}
	var instances []instance
	for i, spec := range []struct {
		ns, iface, listen, admin, metrics string
	}{
		{"", "cth-br0", tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)},
		{edge.name, "eth0", "10.77.0.200:8080", "10.77.0.200:9181", "10.77.0.200:9180"},
	} {
		pins := fmt.Sprintf("/sys/fs/bpf/catherd-fo%d-%d", i, os.Getpid())
		t.Cleanup(func() { xdp.Unload(pins) }) // after catherd has stopped
		args := append(append([]string(nil), common...), "--listen", spec.listen, "--admin", spec.admin, "--metrics", spec.metrics,
			"--membership-iface", spec.iface, "--xdp-pin-dir", pins)
		cmd, cmdArgs := bin, args
		in := instance{name: fmt.Sprintf("catherd-%c", 'A'+i), front: "http://" + spec.listen,
			admin: adminClient{base: "http://" + spec.admin, http: http.Client{Timeout: 5 * time.Second}}, cli: []string{"--admin", spec.admin}}
		if spec.ns != "" {
			cmd, cmdArgs = "nsenter", append([]string{"--net=/run/netns/" + spec.ns, "--", bin}, append(args, "--admin-token-file", token)...)
			in.admin.token = "failover-test-token-0123456789"
			in.cli = append(in.cli, "--admin-token-file", token)
		}
		tcStartCatherd(t, cmd, cmdArgs, filepath.Join(tmp, in.name+".log"), r.Dir)
		instances = append(instances, in)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, in := range instances {
		tcWaitReady(t, client, in.front+"/health.jsp", 20*time.Second)
	}
	// states polls both instances until node is in state want on each.
	states := func(node, want string, limit time.Duration) {
		t.Helper()
		for _, in := range instances {
			waitMemberState(t, &in.admin, in.name, node, want, limit)
		}
	}
	for _, n := range r.Nodes {
		states(n.Name, "ok", 10*time.Second)
	}
	for _, in := range instances {
		var ms []admin.Member
		if err := in.admin.do("GET", "/api/v1/members", &ms); err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Domain != "east" {
				t.Fatalf("%s: %s in domain %q, want east (from its heartbeats)", in.name, m.Name, m.Domain)
			}
		}
	}
	// memberCLI runs `catherd member ARGS` against every instance at once,
	// as an operator's script would.
	memberCLI := func(args ...string) {
		t.Helper()
		var wg sync.WaitGroup
		outs := make([]string, len(instances))
		errs := make([]error, len(instances))
		for i, in := range instances {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out, err := exec.Command(bin, append(append([]string{"member"}, args...), in.cli...)...).CombinedOutput()
				outs[i], errs[i] = string(out), err
			}()
		}
		wg.Wait()
		for i, in := range instances {
			if errs[i] != nil {
				t.Fatalf("%s: catherd member %s: %v\n%s", in.name, strings.Join(args, " "), errs[i], outs[i])
			}
		}
		t.Logf("catherd member %s (%s):\n%s", strings.Join(args, " "), instances[0].name, outs[0])
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	fronts := []string{instances[0].front, instances[1].front}
	load, err := failover.Start(ctx, failover.Options{Fronts: fronts}, "steady")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	time.Sleep(3 * time.Second)

	// kill -9 node2: its sessions move, each to one partner, on both
	// instances alike.
	load.Phase("kill -9 node2")
	load.Out("node2")
	if err := r.Kill("node2"); err != nil {
		t.Fatal(err)
	}
	states("node2", "down", 10*time.Second)
	time.Sleep(2 * time.Second)

	// node2 returns: it settles, then takes new sessions; the sessions
	// that left it stay where they went.
	load.Phase("node2 back")
	if err := r.Start("node2"); err != nil {
		t.Fatal(err)
	}
	states("node2", "ok", 20*time.Second)
	load.In("node2")
	time.Sleep(3 * time.Second)

	// Rolling restart: evacuate, stop, start, enable, one node at a time.
	for _, n := range r.Nodes {
		// The two instances are told one after the other (a few
		// milliseconds apart): in between, a session may go to its home
		// through one and to its partner through the other. With
		// synchronous replication that loses nothing, so this phase
		// checks failures and losses only.
		load.Phase("evacuate " + n.Name)
		load.Out(n.Name)
		memberCLI("evacuate", n.Name, "--wait", "30s")
		load.Phase("restart " + n.Name)
		if err := r.Stop(n.Name); err != nil {
			t.Fatal(err)
		}
		if err := r.Start(n.Name); err != nil {
			t.Fatal(err)
		}
		memberCLI("enable", n.Name)
		states(n.Name, "ok", 20*time.Second)
		load.In(n.Name)
		time.Sleep(2 * time.Second)
	}
	reports := load.Stop()
	stopped = true

	total := checkReports(t, reports)
	if reports[1].Moves == 0 {
		t.Errorf("no session moved when node2 was killed: the test proved nothing")
	}
	t.Logf("%d requests in all", total.Requests)

	// Where the sessions went, by reason, as status shows it.
	out, err := exec.Command(bin, "status", "--admin", strings.TrimPrefix(instances[0].admin.base, "http://")).CombinedOutput()
	if err != nil || !regexp.MustCompile(`moves: down [1-9]\d* evacuated [1-9]`).Match(out) ||
		!regexp.MustCompile(`(?m)^node2\s.*node[13]:\d+`).Match(out) {
		t.Errorf("catherd status lacks moves by reason or node2's partners (%v):\n%s", err, out)
	} else {
		t.Logf("catherd status:\n%s", out)
	}
}

// logReport logs a phase's counts and the errors its requests met.
func logReport(t *testing.T, rep failover.Report) {
	t.Helper()
	t.Log(rep)
	for _, e := range rep.Errors {
		t.Logf("    %s", e)
	}
}

// checkReports logs each phase of a session load and fails t on any
// failed request or lost update, and on sessions split between nodes or
// flapping back outside an evacuation (between telling one catherd and
// the next, a session may go home through one and to its partner through
// the other: with synchronous replication that loses nothing). It returns
// the totals.
func checkReports(t *testing.T, reports []failover.Report) failover.Report {
	t.Helper()
	var total failover.Report
	for _, rep := range reports {
		logReport(t, rep)
		total.Requests += rep.Requests
		total.Failed += rep.Failed
		total.Lost += rep.Lost
		if rep.Failed+rep.Lost > 0 {
			t.Errorf("%s: %d failed requests, %d lost updates; want none", rep.Phase, rep.Failed, rep.Lost)
		}
		if !strings.HasPrefix(rep.Phase, "evacuate ") && !rep.Clean() {
			t.Errorf("%s: %d sessions split between nodes, %d flapped back; want none", rep.Phase, rep.Split, rep.Back)
		}
	}
	return total
}
