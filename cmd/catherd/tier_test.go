package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	"github.com/catherd/catherd/scripts/rig"
	"github.com/catherd/catherd/userspace/admin"
)

// tierInstance is one catherd of the tier test.
type tierInstance struct {
	name                      string
	front, adminAddr, metrics string
	args                      []string
	admin                     adminClient
	proc                      *tcProc
}

// Three catherd processes as one tier (--peer-listen, a key file) in front
// of a real 3-node DeltaManager cluster, under the session load of
// scripts/failover spread over the three:
//
//   - an evacuation through one instance is in force on the other two
//     within a second, and the evacuated node's sessions then stay on
//     their partners whichever instance serves them; evacuate --wait
//     waits on every peer;
//   - an enable through another instance wins (the last writer);
//   - kill -9 of a node moves its sessions;
//   - a plain restart (stop, start: no hand-off) of one catherd, which
//     joins the tier before it serves: when the dead node returns, every
//     request goes through the restarted instance, and no moved session
//     flaps back to the node's stale copy.
//
// No phase after the evacuation reached every instance may fail a request,
// lose an update, split a session or send it back.
func TestTierTomcat(t *testing.T) {
	rig.Require(t)
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	r := rig.Up(t, 3, true)

	keyFile := filepath.Join(tmp, "peer.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString([]byte("tier-test-key-of-32-bytes-long!!"))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"run", "--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "2s",
		"--handoff-socket", "", "--peer-key-file", keyFile}
	for _, n := range r.Nodes {
		common = append(common, "--backend", n.Name+"=http://"+n.HTTP)
	}
	peerAddrs := []string{tcFreeAddr(t), tcFreeAddr(t), tcFreeAddr(t)}
	var lbs []*tierInstance
	for i := range 3 {
		lb := &tierInstance{name: fmt.Sprintf("lb%d", i+1), front: "http://" + tcFreeAddr(t), adminAddr: tcFreeAddr(t), metrics: tcFreeAddr(t)}
		lb.args = append(append([]string(nil), common...), "--listen", strings.TrimPrefix(lb.front, "http://"), "--admin", lb.adminAddr,
			"--metrics", lb.metrics, "--peer-listen", peerAddrs[i], "--peer-name", lb.name)
		if i > 0 {
			lb.args = append(lb.args, "--peer", peerAddrs[0])
		}
		lb.admin = adminClient{base: "http://" + lb.adminAddr, http: http.Client{Timeout: 5 * time.Second}}
		lb.proc = tcStartCatherd(t, bin, lb.args, filepath.Join(tmp, lb.name+".log"), r.Dir)
		lbs = append(lbs, lb)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, lb := range lbs {
		tcWaitReady(t, client, lb.front+"/health.jsp", 20*time.Second)
	}
	// Each sees the other two alive.
	for _, lb := range lbs {
		waitTier(t, lb, 10*time.Second, "two peers alive", func(st admin.Status) bool {
			alive := 0
			for _, p := range st.Tier.Peers {
				if p.State == "alive" {
					alive++
				}
			}
			return alive == 2
		})
	}
	// member polls the instances until node is in state want on each,
	// and returns how long that took.
	member := func(node, want string, limit time.Duration, on ...*tierInstance) time.Duration {
		t.Helper()
		began := time.Now()
		for _, lb := range on {
			waitMemberState(t, &lb.admin, lb.name, node, want, limit)
		}
		return time.Since(began)
	}
	for _, n := range r.Nodes {
		member(n.Name, "ok", 10*time.Second, lbs...)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	fronts := []string{lbs[0].front, lbs[1].front, lbs[2].front}
	load, err := failover.Start(ctx, failover.Options{Fronts: fronts, Sessions: 150}, "steady")
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	time.Sleep(2 * time.Second)

	// Evacuate node1 through lb1 only: lb2 and lb3 follow within a second.
	load.Phase("evacuate node1 via lb1")
	load.Out("node1")
	var m admin.Member
	if err := lbs[0].admin.do("POST", "/api/v1/members/node1/evacuate", &m); err != nil {
		t.Fatal(err)
	}
	took := member("node1", "disabled", time.Second, lbs[1:]...)
	t.Logf("the evacuation through lb1 was in force on lb2 and lb3 %v later", took.Round(time.Millisecond))
	out, err := exec.Command(bin, "member", "evacuate", "node1", "--wait", "30s", "--admin", lbs[0].adminAddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "node1 has no request in flight") {
		t.Fatalf("catherd member evacuate --wait through lb1: %v\n%s", err, out)
	}
	load.Phase("node1 evacuated")
	time.Sleep(2 * time.Second)

	// Enable it through lb2: the last writer wins on every instance.
	load.Phase("enable node1 via lb2")
	if err := lbs[1].admin.do("POST", "/api/v1/members/node1/enable", &m); err != nil {
		t.Fatal(err)
	}
	member("node1", "ok", 20*time.Second, lbs...)
	load.In("node1")
	time.Sleep(2 * time.Second)

	// kill -9 node2: its sessions move to their partners.
	load.Phase("kill -9 node2")
	load.Out("node2")
	if err := r.Kill("node2"); err != nil {
		t.Fatal(err)
	}
	member("node2", "down", 10*time.Second, lbs...)
	time.Sleep(2 * time.Second)

	// A plain restart of lb3, with the load kept off it meanwhile.
	load.Phase("restart lb3")
	load.UseFronts(lbs[0].front, lbs[1].front)
	lb3 := lbs[2]
	if err := lb3.proc.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := lb3.proc.Wait(30 * time.Second); code != 0 {
		t.Fatalf("lb3 stopped with %d", code)
	}
	lb3Log := filepath.Join(tmp, "lb3-restarted.log")
	lb3.proc = tcStartCatherd(t, bin, lb3.args, lb3Log, r.Dir)
	tcWaitReady(t, client, lb3.front+"/health.jsp", 20*time.Second)
	joined := waitLog(t, lb3Log, regexpTierJoined)
	t.Logf("restarted lb3: %s", joined)
	var st admin.Status
	if err := lb3.admin.do("GET", "/api/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Moved == nil || st.Moved.Size == 0 {
		t.Fatalf("the restarted lb3 holds no moved session: %+v", st.Moved)
	}
	t.Logf("the restarted lb3 holds %d moved sessions from the tier", st.Moved.Size)

	// node2 returns; every request goes through the restarted lb3.
	load.Phase("node2 back, via lb3")
	load.UseFronts(lb3.front)
	if err := r.Start("node2"); err != nil {
		t.Fatal(err)
	}
	member("node2", "ok", 30*time.Second, lbs...)
	load.In("node2")
	time.Sleep(3 * time.Second)
	load.UseFronts(fronts...)
	reports := load.Stop()

	var moves int64
	for _, rep := range reports {
		logReport(t, rep)
		if rep.Phase == "kill -9 node2" {
			moves = rep.Moves
		}
		if rep.Phase == "evacuate node1 via lb1" {
			continue // the second it takes to reach lb2 and lb3 may split a session
		}
		if !rep.Clean() {
			t.Errorf("%s: %d failed, %d lost, %d split, %d flapped back; want none", rep.Phase, rep.Failed, rep.Lost, rep.Split, rep.Back)
		}
	}
	if moves == 0 {
		t.Error("no session moved when node2 was killed: the test proved nothing")
	}
	for _, lb := range lbs {
		mt := scrapeMetrics(t, client, lb.metrics)
		if metricValue(mt, `catherd_tier_messages_total{direction="received"}`) <= 0 || metricValue(mt, `catherd_tier_peers{state="alive"}`) != 2 {
			t.Errorf("%s: tier metrics:\n%s", lb.name, tcGrep(mt, "catherd_tier_"))
		}
	}
}

// regexpTierJoined matches what a catherd logs once it joined its tier.
var regexpTierJoined = regexp.MustCompile(`msg="tier: joined; the tier's state is in force here".*records=\d+`)

// waitTier polls an instance's status until cond holds of it (bounded).
func waitTier(t *testing.T, lb *tierInstance, limit time.Duration, what string, cond func(admin.Status) bool) {
	t.Helper()
	var st admin.Status
	for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		err := lb.admin.do("GET", "/api/v1/status", &st)
		if err == nil && st.Tier != nil && cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not %s within %v (tier %+v, err %v)", lb.name, what, limit, st.Tier, err)
		}
	}
}

// startTierInstance starts a catherd named name on free loopback ports,
// without health checks, with args (its members and tier flags) added.
func startTierInstance(t *testing.T, bin, dir, name string, args ...string) *tierInstance {
	t.Helper()
	lb := &tierInstance{name: name, front: tcFreeAddr(t), adminAddr: tcFreeAddr(t), metrics: tcFreeAddr(t)}
	lb.args = append([]string{"run", "--listen", lb.front, "--admin", lb.adminAddr, "--metrics", lb.metrics, "--health-interval", "0",
		"--peer-name", name}, args...)
	lb.admin = adminClient{base: "http://" + lb.adminAddr, http: http.Client{Timeout: 5 * time.Second}}
	lb.proc = tcStartCatherd(t, bin, lb.args, filepath.Join(dir, name+".log"), "")
	return lb
}

// A catherd with another key cannot join the tier: the tier's instances
// refuse and count its packets, never list it as a peer, and its actions
// stay its own; it serves alone and says so.
func TestTierRefusesAnotherKey(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	key := func(name, text string) string {
		p := filepath.Join(tmp, name)
		if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString([]byte(text))+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, other := key("good.key", "the-tier-key-0123456789abcdefghi"), key("other.key", "another-key-0123456789abcdefghij")
	seed := tcFreeAddr(t)
	start := func(name, keyFile string, extra ...string) *tierInstance {
		return startTierInstance(t, bin, tmp, name, append([]string{"--backend", "a=" + backend.URL, "--backend", "b=http://127.0.0.1:1",
			"--peer-key-file", keyFile}, extra...)...)
	}
	lb1 := start("lb1", good, "--peer-listen", seed)
	waitLog(t, filepath.Join(tmp, "lb1.log"), servingLine)
	lb2 := start("lb2", good, "--peer-listen", tcFreeAddr(t), "--peer", seed)
	intruder := start("intruder", other, "--peer-listen", tcFreeAddr(t), "--peer", seed)
	waitLog(t, filepath.Join(tmp, "intruder.log"), regexp.MustCompile(`msg="tier: no --peer answered; serving alone`))
	waitLog(t, filepath.Join(tmp, "lb2.log"), regexp.MustCompile(`msg="tier: joined`))

	var m admin.Member
	if err := intruder.admin.do("POST", "/api/v1/members/a/disable", &m); err != nil {
		t.Fatal(err)
	}
	if err := lb2.admin.do("POST", "/api/v1/members/b/drain", &m); err != nil {
		t.Fatal(err)
	}
	waitTier(t, lb1, 10*time.Second, "b draining, from lb2", func(admin.Status) bool {
		return lb1.admin.do("GET", "/api/v1/members/b", &m) == nil && m.Flags == "N"
	})
	waitMetric(t, lb1.metrics, `catherd_tier_messages_refused_total{reason="auth"}`, 1)
	var st admin.Status
	if err := lb1.admin.do("GET", "/api/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Tier.Peers) != 1 || st.Tier.Peers[0].Name != "lb2" {
		t.Errorf("lb1's peers: %+v", st.Tier.Peers)
	}
	_, out, _ := runCLI("status", "--admin", lb1.adminAddr)
	if !regexp.MustCompile(`tier: lb1 on 127\.0\.0\.1:\d+, state version \d+ .*refused [1-9]\d* \(auth [1-9]`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^lb2\s+127\.0\.0\.1:\d+\s+alive\s+\S+ ago\s+\d+\s+[0-9a-f]{16}$`).MatchString(out) {
		t.Errorf("catherd status does not show the tier:\n%s", out)
	}
	for _, lb := range []*tierInstance{lb1, lb2} {
		if err := lb.admin.do("GET", "/api/v1/members/a", &m); err != nil || m.Flags != "" {
			t.Errorf("%s: a has flags %q (%v): the intruder's action was applied", lb.name, m.Flags, err)
		}
	}
}

// Members added and removed at run time (catherd member add|remove) on
// one instance of a tier are added and removed on the others, and an
// instance that starts later with the old --backend flags serves the
// tier's members from its first request.
func TestTierSharesMembers(t *testing.T) {
	tmp := t.TempDir()
	bin := tcBuild(t, tmp)
	urls := map[string]string{}
	for _, name := range []string{"a", "b", "c", "d"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, name) }))
		t.Cleanup(srv.Close)
		urls[name] = srv.URL
	}
	seed := tcFreeAddr(t)
	args := func(listen string, extra ...string) []string {
		return append([]string{"--backend", "a=" + urls["a"], "--backend", "b=" + urls["b"], "--peer-listen", listen}, extra...)
	}
	lb1 := startTierInstance(t, bin, tmp, "lb1", args(seed)...)
	waitLog(t, filepath.Join(tmp, "lb1.log"), servingLine)
	lb2Peer := tcFreeAddr(t)
	lb2 := startTierInstance(t, bin, tmp, "lb2", args(lb2Peer, "--peer", seed)...)
	waitLog(t, filepath.Join(tmp, "lb2.log"), regexp.MustCompile(`msg="tier: joined`))
	members := func(lb *tierInstance) string {
		var ms []admin.Member
		if err := lb.admin.do("GET", "/api/v1/members", &ms); err != nil {
			t.Fatalf("%s: %v", lb.name, err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, m.Name+"("+m.Flags+")")
		}
		return strings.Join(out, " ")
	}
	waitMembers := func(lb *tierInstance, want string) {
		t.Helper()
		waitTier(t, lb, 10*time.Second, "members "+want, func(admin.Status) bool { return members(lb) == want })
	}

	cli := func(lb *tierInstance, args ...string) {
		t.Helper()
		if code, out, errOut := runCLI(append(args, "--admin", lb.adminAddr)...); code != 0 {
			t.Fatalf("%s: catherd %s: %d %s %s", lb.name, strings.Join(args, " "), code, out, errOut)
		}
	}
	cli(lb1, "member", "add", "c="+urls["c"])
	cli(lb1, "member", "drain", "c")
	waitMembers(lb2, "a() b() c(N)")
	if got := getWithCookie(t, lb2.front, "JSESSIONID=S.c"); got != "c" {
		t.Errorf("through lb2, a session of the member added on lb1 went to %q", got)
	}
	cli(lb2, "member", "remove", "c")
	waitMembers(lb1, "a() b()")

	// lb2 stops; meanwhile d is added and b removed on lb1. lb2 starts
	// again with its old flags, and serves the tier's members at once.
	if err := lb2.proc.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := lb2.proc.Wait(30 * time.Second); code != 0 {
		t.Fatalf("lb2 exited with %d", code)
	}
	cli(lb1, "member", "add", "d="+urls["d"])
	cli(lb1, "member", "remove", "b", "--drain=false")
	lb2 = startTierInstance(t, bin, tmp, "lb2", args(lb2Peer, "--peer", seed)...)
	waitLog(t, filepath.Join(tmp, "lb2.log"), servingLine)
	if got := getWithCookie(t, lb2.front, "JSESSIONID=S.d"); got != "d" {
		t.Errorf("the restarted lb2 sent a session of the member added meanwhile to %q", got)
	}
	if got := members(lb2); got != "a() d()" {
		t.Errorf("the restarted lb2 serves %s, want a() d()", got)
	}
}
