package main

import (
	"context"
	"encoding/base64"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	"github.com/catherd/catherd/scripts/keepalived"
	"github.com/catherd/catherd/scripts/rig"
)

// kaVIP is the address keepalived moves between the edge hosts.
const kaVIP = "10.77.0.250"

// kaEdge is one edge host of the keepalived test: a namespace on the
// rig's bridge running a catherd of the tier and a keepalived.
type kaEdge struct {
	name, ns, addr string
	args           []string // catherd's
	admin          adminClient
	proc           *tcProc
}

// A keepalived (VRRP) pair of catherd edge hosts, one tier, in front of the
// rig's 3-node DeltaManager cluster, under scripts/failover's session load
// through the VIP: kill -9 the catherd holding the VIP, and keepalived's
// check moves the VIP to the other; kill -9 a Tomcat node so sessions
// move; start the first catherd again (a plain start: it joins the tier
// before it serves) and the VIP comes back to it; the dead node returns.
// Only requests cut off by a move of the VIP may fail: those in flight,
// and when the active catherd died those sent before keepalived's check
// (every second) moved the VIP; they are counted and reported. No update
// is lost, no session split, none flaps back.
func TestTierKeepalived(t *testing.T) {
	rig.Require(t)
	if _, err := exec.LookPath("keepalived"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs keepalived (apt-get install keepalived); under CI=true that is a failure")
		}
		t.Skip("needs keepalived")
	}
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	r := rig.Up(t, 3, true)

	keyFile, tokenFile := filepath.Join(tmp, "peer.key"), filepath.Join(tmp, "token")
	os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("keepalived-tier-key-0123456789ab"))+"\n"), 0o600)
	const token = "keepalived-test-token-0123456789"
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	edges := []*kaEdge{{name: "lbA", ns: "cth-kaA", addr: "10.77.0.201"}, {name: "lbB", ns: "cth-kaB", addr: "10.77.0.202"}}
	for i, e := range edges {
		bridgeHost(t, e.ns, e.ns, e.addr+"/24")
		// keepalived's check reaches catherd on the host's own address,
		// which goes over lo.
		if out, err := exec.Command("ip", "-n", e.ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("lo up in %s: %v\n%s", e.ns, err, out)
		}
		other := edges[1-i]
		e.args = []string{"run", "--listen", ":8080", "--admin", e.addr + ":9181", "--admin-token-file", tokenFile, "--metrics", "",
			"--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "2s",
			"--peer-listen", e.addr + ":7946", "--peer-key-file", keyFile, "--peer-name", e.name, "--peer", other.addr + ":7946",
			"--handoff-socket", filepath.Join(tmp, e.name+".handoff")}
		for _, n := range r.Nodes {
			e.args = append(e.args, "--backend", n.Name+"=http://"+n.HTTP)
		}
		e.admin = adminClient{base: "http://" + e.addr + ":9181", token: token, http: http.Client{Timeout: 5 * time.Second}}
		e.start(t, bin, filepath.Join(tmp, e.name+".log"), r.Dir)
	}
	for i, e := range edges {
		// lbA takes the VIP back when it returns (preempt): the last
		// phases go through the restarted instance.
		startKeepalived(t, e.ns, filepath.Join(tmp, e.name+"-keepalived"), keepalived.Host{ID: e.name, Priority: 150 - 50*i,
			VIP: kaVIP + "/24", Check: "http://" + e.addr + ":9181/readyz", Preempt: true})
	}
	waitVIP(t, edges[0], 20*time.Second)
	client := &http.Client{Timeout: 5 * time.Second}
	tcWaitReady(t, client, "http://"+kaVIP+":8080/health.jsp", 20*time.Second)
	for _, n := range r.Nodes {
		for _, e := range edges {
			waitMemberState(t, &e.admin, e.name, n.Name, "ok", 10*time.Second)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	// A request cut off by a move of the VIP fails after Timeout: each
	// phase after one lasts longer, so its failures count in it.
	const timeout = 3 * time.Second
	load, err := failover.Start(ctx, failover.Options{Fronts: []string{"http://" + kaVIP + ":8080"}, Sessions: 100, Timeout: timeout}, "steady via lbA")
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	time.Sleep(2 * time.Second)

	load.Phase("kill -9 lbA")
	edges[0].proc.Signal(syscall.SIGKILL)
	edges[0].proc.Wait(10 * time.Second)
	began := time.Now()
	waitVIP(t, edges[1], 20*time.Second)
	t.Logf("the VIP moved to lbB %v after lbA's catherd died", time.Since(began).Round(time.Millisecond))
	time.Sleep(timeout + time.Second)

	load.Phase("kill -9 node2 (via lbB)")
	load.Out("node2")
	if err := r.Kill("node2"); err != nil {
		t.Fatal(err)
	}
	waitMemberState(t, &edges[1].admin, "lbB", "node2", "down", 10*time.Second)
	time.Sleep(2 * time.Second)

	load.Phase("lbA back, the VIP returns")
	edges[0].start(t, bin, filepath.Join(tmp, "lbA-again.log"), r.Dir)
	waitLog(t, filepath.Join(tmp, "lbA-again.log"), regexpTierJoined)
	waitVIP(t, edges[0], 20*time.Second)
	time.Sleep(timeout + time.Second)

	load.Phase("node2 back (via lbA)")
	if err := r.Start("node2"); err != nil {
		t.Fatal(err)
	}
	for _, e := range edges {
		waitMemberState(t, &e.admin, e.name, "node2", "ok", 30*time.Second)
	}
	load.In("node2")
	time.Sleep(3 * time.Second)
	reports := load.Stop()

	var moves int64
	for _, rep := range reports {
		logReport(t, rep)
		switch {
		case rep.Phase == "kill -9 lbA" || rep.Phase == "lbA back, the VIP returns":
			// Requests in flight when the VIP moved, and when lbA died
			// those sent to the VIP before it moved, fail: counted and
			// reported, never lost.
			t.Logf("%s: %d requests failed as the VIP moved", rep.Phase, rep.Failed)
			if rep.Lost+rep.Split+rep.Back > 0 {
				t.Errorf("%s: %d lost, %d split, %d flapped back; want none", rep.Phase, rep.Lost, rep.Split, rep.Back)
			}
		case !rep.Clean():
			t.Errorf("%s: %d failed, %d lost, %d split, %d flapped back; want none", rep.Phase, rep.Failed, rep.Lost, rep.Split, rep.Back)
		}
		if strings.HasPrefix(rep.Phase, "kill -9 node2") {
			moves = rep.Moves
		}
	}
	if moves == 0 {
		t.Error("no session moved when node2 was killed: the test proved nothing")
	}
}

// start starts the edge's catherd in its namespace.
func (e *kaEdge) start(t *testing.T, bin, logPath, rigDir string) {
	t.Helper()
	e.proc = tcStartCatherd(t, "nsenter", append([]string{"--net=/run/netns/" + e.ns, "--", bin}, e.args...), logPath, rigDir)
}

// waitVIP waits until the VIP is on e's eth0.
func waitVIP(t *testing.T, e *kaEdge, limit time.Duration) {
	t.Helper()
	if err := keepalived.WaitVIP(context.Background(), e.ns, kaVIP, limit); err != nil {
		t.Fatalf("%s: %v", e.name, err)
	}
}
