// Command compare runs the session-safety scenario of cmd/catherd's
// TestTomcatReplicationFailover behind catherd and behind Apache httpd's
// mod_proxy_balancer, against the same real Tomcat 10 DeltaManager cluster
// (scripts/tomcat-rig.sh, 3 nodes, synchronous replication), and prints
// what package failover saw in each phase, side by side.
//
// Every side gets two front ends (one in the root namespace, one in a
// namespace of its own on the cluster's bridge at 10.77.0.200, as a second
// edge host) and a fresh rig. 200 sessions stay busy throughout, each
// request of a session going through the other front end than the last.
// The phases: steady (3 s); kill -9 node2; node2 back; then a rolling
// restart of node1..node3, each taken out of service on both front ends,
// stopped, started and put back. catherd takes a node out with `catherd
// member evacuate --wait 30s` and puts it back with `catherd member
// enable`; Apache has no evacuate, so the operator's tool is the
// balancer-manager: the member is set Disabled (D) on both instances, the
// script waits until neither has a request in flight to it, and D is
// cleared again once the node is back.
//
// The sides:
//
//	catherd          the flags of TestTomcatReplicationFailover
//	apache           mod_proxy_balancer with stickysession, retry=5 and
//	                 mod_proxy_hcheck (GET /health.jsp every 500 ms)
//	apache-redirect  the same plus a static route redirect ring
//	                 (BalancerMember redirect=: node1->node2->node3->node1),
//	                 Apache's documented way to send the sessions of an
//	                 unusable member to one chosen partner
//
// Usage (root; Debian packages tomcat10, apache2, iproute2, curl; see
// `make failover-compare`):
//
//	go run ./scripts/failover/compare [-runs N] [-md FILE] [-sides catherd,apache,apache-redirect] [-keep]
//
// Traffic goes only to the rig's nodes, the front ends on loopback and the
// bridge (10.77.0.0/24). Everything it starts is stopped again, also on
// failure or Ctrl-C: the front ends by PID, the namespace it made, the
// pinned XDP state (catherd unload) and the rig (tomcat-rig.sh down).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/catherd/catherd/scripts/failover"
	rigscript "github.com/catherd/catherd/scripts/rig"
)

const (
	edgeNS     = "cth-cmp2" // the second edge host's namespace (and its veth's root side)
	edgeAddr   = "10.77.0.200"
	bridge     = "cth-br0"
	apacheMods = "/usr/lib/apache2/modules"
	// sideLimit bounds one side of one run, rig start-up included.
	sideLimit = 15 * time.Minute
)

var allSides = []string{"catherd", "apache", "apache-redirect"}

func main() {
	runs := flag.Int("runs", 1, "how many times to run every side (interleaved: run 1 of each side, then run 2, ...)")
	md := flag.String("md", "", "also write the results as Markdown to this file")
	sidesFlag := flag.String("sides", strings.Join(allSides, ","), "which sides to run, in this order")
	keep := flag.Bool("keep", false, "keep the work directory (logs, configs, the rig's Tomcat logs)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("compare: ")

	sides := strings.Split(*sidesFlag, ",")
	for _, s := range sides {
		if !slices.Contains(allSides, s) {
			log.Fatalf("-sides: unknown side %q (want some of %s)", s, strings.Join(allSides, ","))
		}
	}
	if *runs < 1 {
		log.Fatal("-runs must be at least 1")
	}
	if err := preflight(sides); err != nil {
		log.Fatal(err)
	}
	root, err := repoRoot()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	work, err := os.MkdirTemp("", "catherd-failover-compare.")
	if err != nil {
		log.Fatal(err)
	}
	// Apache's children drop to www-data and must read their config.
	if err := os.Chmod(work, 0o755); err != nil {
		log.Fatal(err)
	}
	code := run(ctx, root, work, sides, *runs, *md, *keep)
	if *keep {
		log.Printf("kept %s", work)
	} else {
		os.RemoveAll(work)
	}
	os.Exit(code)
}

// run builds catherd, runs every side runs times and prints the tables.
func run(ctx context.Context, root, work string, sides []string, runs int, md string, keep bool) int {
	bin := filepath.Join(work, "catherd")
	if slices.Contains(sides, "catherd") {
		log.Printf("building catherd")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/catherd")
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			log.Printf("go build: %v\n%s", err, out)
			return 1
		}
	}
	env := &setup{root: root, catherd: bin, keep: keep}
	results := map[string][]result{}
	failed := false
	for r := 1; r <= runs; r++ {
		for _, side := range sides {
			if ctx.Err() != nil {
				break
			}
			dir := filepath.Join(work, fmt.Sprintf("run%d-%s", r, side))
			log.Printf("run %d/%d: %s (logs in %s)", r, runs, side, dir)
			start := time.Now()
			reps, err := env.runSide(ctx, side, dir)
			res := result{reports: reps, err: err}
			if err != nil {
				log.Printf("run %d %s: FAILED to run the scenario: %v", r, side, err)
				failed = true
			}
			results[side] = append(results[side], res)
			for _, rep := range reps {
				log.Printf("  %s", rep)
				for _, e := range rep.Errors {
					log.Printf("      %s", e)
				}
			}
			log.Printf("run %d %s: done in %v", r, side, time.Since(start).Round(time.Second))
		}
	}
	report := renderAll(sides, results, runs)
	fmt.Print(report.text)
	if md != "" {
		doc := provenance(root) + report.markdown
		if err := os.WriteFile(md, []byte(doc), 0o644); err != nil {
			log.Printf("write %s: %v", md, err)
			return 1
		}
		log.Printf("wrote %s", md)
	}
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// provenance says how, when and on what the tables were made.
func provenance(root string) string {
	out := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = root
		b, _ := cmd.Output()
		return strings.TrimSpace(string(b))
	}
	commit := out("git", "describe", "--always", "--dirty")
	versions := out("dpkg-query", "-W", "-f", "${Package} ${Version}; ", "apache2", "tomcat10")
	return fmt.Sprintf("Command: `%s`, %s, commit %s; %s\n",
		strings.Join(append([]string{"go run ./scripts/failover/compare"}, os.Args[1:]...), " "), time.Now().UTC().Format("2006-01-02T15:04Z"), commit, strings.TrimSuffix(versions, ";"))
}

func preflight(sides []string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, XDP)")
	}
	need := []string{"ip", "nsenter", "curl", "bash"}
	if slices.Contains(sides, "catherd") {
		need = append(need, "go")
	}
	if slices.Contains(sides, "apache") || slices.Contains(sides, "apache-redirect") {
		need = append(need, "apache2")
		for _, m := range []string{"mod_proxy_balancer.so", "mod_proxy_hcheck.so", "mod_proxy_http.so"} {
			if _, err := os.Stat(filepath.Join(apacheMods, m)); err != nil {
				return fmt.Errorf("%s missing: apt-get install apache2 (scripts/deps.sh bench)", m)
			}
		}
	}
	for _, c := range need {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("%s not on PATH", c)
		}
	}
	if _, err := os.Stat("/usr/share/tomcat10/bin/catalina.sh"); err != nil {
		return errors.New("tomcat10 missing: apt-get install tomcat10 (scripts/deps.sh bench)")
	}
	if _, err := os.Stat("/run/netns/" + edgeNS); err == nil {
		return fmt.Errorf("namespace %s exists (left by a crashed run? ip netns del %s)", edgeNS, edgeNS)
	}
	return nil
}

// repoRoot is the directory above the working directory that holds
// catherd's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(b, []byte("module github.com/catherd/catherd\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run me inside the catherd repository (no go.mod of github.com/catherd/catherd above the working directory)")
		}
		dir = parent
	}
}

type setup struct {
	root    string // the repository
	catherd string // the binary
	keep    bool   // -keep: the rig keeps its directory too
}

type result struct {
	reports []failover.Report
	err     error
}

// balancers is a side's pair of front ends, as the scenario drives them.
type balancers interface {
	// fronts are the base URLs the load goes through.
	fronts() []string
	// waitUsable waits until every front end considers node usable
	// (want true) or out of service (false).
	waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error
	// takeOut takes node out of service on every front end before a
	// planned stop, and returns once it may be stopped.
	takeOut(ctx context.Context, node string) error
	// putBack puts node back in service on every front end.
	putBack(ctx context.Context, node string) error
	// epilogue returns whatever the front ends can tell about the run.
	epilogue(ctx context.Context) string
}

// cleanups is a stack of undo steps, run last first.
type cleanups []func()

func (c *cleanups) add(f func()) { *c = append(*c, f) }
func (c *cleanups) run() {
	for i := len(*c) - 1; i >= 0; i-- {
		(*c)[i]()
	}
	*c = nil
}

// runSide runs the scenario once behind one side, on a fresh rig.
func (s *setup) runSide(parent context.Context, side, dir string) (reps []failover.Report, err error) {
	ctx, cancel := context.WithTimeout(parent, sideLimit)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var undo cleanups
	defer undo.run()

	rig := &rig{script: filepath.Join(s.root, "scripts", "tomcat-rig.sh"), dir: filepath.Join(dir, "rig"), keep: s.keep}
	log.Printf("rig up (waits for the host if another rig holds it)")
	undo.add(func() {
		if out, err := rig.run(context.Background(), 90*time.Second, "down"); err != nil {
			log.Printf("rig down: %v\n%s", err, out)
		}
	})
	nodes, err := rig.up(ctx)
	if err != nil {
		return nil, err
	}
	if err := plugEdge(); err != nil {
		unplugEdge()
		return nil, err
	}
	undo.add(unplugEdge)

	var b balancers
	switch side {
	case "catherd":
		b, err = s.startCatherd(ctx, dir, nodes, &undo)
	case "apache":
		b, err = startApaches(ctx, dir, nodes, false, &undo)
	case "apache-redirect":
		b, err = startApaches(ctx, dir, nodes, true, &undo)
	}
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		if err := b.waitUsable(ctx, n, true, 20*time.Second); err != nil {
			return nil, err
		}
	}
	reps, err = scenario(ctx, b, rig, nodes)
	if ep := b.epilogue(ctx); ep != "" {
		os.WriteFile(filepath.Join(dir, "epilogue.txt"), []byte(ep), 0o644)
	}
	return reps, err
}

// scenario is TestTomcatReplicationFailover's sequence of phases.
func scenario(ctx context.Context, b balancers, rig *rig, nodes []string) ([]failover.Report, error) {
	load, err := failover.Start(ctx, failover.Options{Fronts: b.fronts()}, "steady")
	if err != nil {
		return nil, err
	}
	err = phases(ctx, b, rig, nodes, load)
	reps := load.Stop()
	return reps, err
}

func phases(ctx context.Context, b balancers, rig *rig, nodes []string, load *failover.Load) error {
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}
	load.Phase("kill -9 node2")
	load.Out("node2")
	if err := rig.node(ctx, "kill", "node2"); err != nil {
		return err
	}
	if err := b.waitUsable(ctx, "node2", false, 10*time.Second); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}

	load.Phase("node2 back")
	if err := rig.node(ctx, "start", "node2"); err != nil {
		return err
	}
	if err := b.waitUsable(ctx, "node2", true, 20*time.Second); err != nil {
		return err
	}
	load.In("node2")
	if err := sleep(ctx, 3*time.Second); err != nil {
		return err
	}

	for _, n := range nodes {
		load.Phase("evacuate " + n)
		load.Out(n)
		if err := b.takeOut(ctx, n); err != nil {
			return err
		}
		load.Phase("restart " + n)
		if err := rig.node(ctx, "stop", n); err != nil {
			return err
		}
		if err := rig.node(ctx, "start", n); err != nil {
			return err
		}
		if err := b.putBack(ctx, n); err != nil {
			return err
		}
		if err := b.waitUsable(ctx, n, true, 20*time.Second); err != nil {
			return err
		}
		load.In(n)
		if err := sleep(ctx, 2*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// ---------------------------------------------------------------- the rig

type rig struct {
	script, dir string
	keep        bool // keep the rig's directory (-keep)
}

func (r *rig) run(ctx context.Context, limit time.Duration, args ...string) ([]byte, error) {
	var env []string
	if r.keep {
		env = []string{"CTH_RIG_KEEP=1"} // down leaves the Tomcat logs
	}
	return rigscript.Script(ctx, r.script, r.dir, limit, env, args...)
}

// up starts 3 clustered nodes and returns their names.
func (r *rig) up(ctx context.Context) ([]string, error) {
	// The rig waits up to 180 s for another rig on this host to go down.
	out, err := r.run(ctx, 330*time.Second, "up", "--nodes", "3", "--cluster")
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

// plugEdge makes the second edge host: namespace edgeNS, plugged into
// the rig's bridge by a veth (edgeNS on the bridge, eth0 inside) with
// edgeAddr, and a multicast route so that catherd hears the heartbeats.
func plugEdge() error {
	for _, args := range [][]string{
		{"netns", "add", edgeNS},
		{"link", "add", edgeNS, "type", "veth", "peer", "name", "eth0", "netns", edgeNS},
		{"link", "set", edgeNS, "master", bridge},
		{"link", "set", edgeNS, "up"},
		{"-n", edgeNS, "link", "set", "lo", "up"},
		{"-n", edgeNS, "addr", "add", edgeAddr + "/24", "dev", "eth0"},
		{"-n", edgeNS, "link", "set", "eth0", "up"},
		{"-n", edgeNS, "route", "add", "224.0.0.0/4", "dev", "eth0"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// unplugEdge removes what plugEdge made (deleting the namespace takes
// the veth pair along).
func unplugEdge() {
	exec.Command("ip", "link", "del", edgeNS).Run()
	if _, err := os.Stat("/run/netns/" + edgeNS); err == nil {
		if out, err := exec.Command("ip", "netns", "del", edgeNS).CombinedOutput(); err != nil {
			log.Printf("ip netns del %s: %v: %s", edgeNS, err, out)
		}
	}
}

// ---------------------------------------------------------------- processes

// proc is a server we started, leading its own process group.
type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
}

func startProc(name, logPath string, argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, exited: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); logf.Close(); close(p.exited) }()
	return p, nil
}

// stop sends SIGTERM to the process group we started, then SIGKILL if it
// has not gone within 10 s.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		log.Printf("%s (PID %d) still running 10 s after SIGTERM: SIGKILL", p.name, pgid)
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.exited
	}
	// Apache's children may outlive their parent for a moment.
	for i := 0; i < 50 && syscall.Kill(-pgid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if syscall.Kill(-pgid, 0) == nil {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, p *proc, url string, limit time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	deadline := time.Now().Add(limit)
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if !p.alive() {
			return fmt.Errorf("%s exited at start-up:\n%s", p.name, p.tail())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not 200 within %v (last: %s)\n%s", p.name, url, limit, last, p.tail())
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// poll calls cond every 50 ms until it holds, for at most limit.
func poll(ctx context.Context, what string, limit time.Duration, cond func() (bool, string)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v (last: %s)", what, limit, state)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// onAll runs f for every index at once and returns the first error.
func onAll(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f(i) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ---------------------------------------------------------------- catherd

type catherdPair struct {
	bin   string
	insts []catherdInst
}

type catherdInst struct {
	name, front, admin, token string
	cli                       []string // flags that reach its admin API
	http                      *http.Client
}

const catherdToken = "failover-compare-token-0123456789"

// startCatherd starts two catherd instances with the flags of
// TestTomcatReplicationFailover: one in the root namespace (membership
// on the bridge), one on the edge host.
func (s *setup) startCatherd(ctx context.Context, dir string, nodes []string, undo *cleanups) (balancers, error) {
	token := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(token, []byte(catherdToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	common := []string{"run", "--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "5s",
		"--membership", "228.0.0.4:45564", "--membership-drop-time", "3s", "--xdp-mode", "generic"}
	for _, n := range nodes {
		common = append(common, "--backend", n+"=http://"+nodeHTTP(n))
	}
	var addrs [3]string
	for i := range addrs {
		a, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		addrs[i] = a
	}
	pair := &catherdPair{bin: s.catherd}
	for i, spec := range []struct {
		ns, iface, listen, admin, metrics string
	}{
		{"", bridge, addrs[0], addrs[1], addrs[2]},
		{edgeNS, "eth0", edgeAddr + ":8080", edgeAddr + ":9181", edgeAddr + ":9180"},
	} {
		name := fmt.Sprintf("catherd-%c", 'A'+i)
		pins := fmt.Sprintf("/sys/fs/bpf/catherd-cmp%d-%d", i, os.Getpid())
		// Registered before the start: runs after catherd has stopped.
		undo.add(func() {
			if _, err := os.Stat(pins); err != nil {
				return
			}
			if out, err := exec.Command(s.catherd, "unload", "--xdp-pin-dir", pins).CombinedOutput(); err != nil {
				log.Printf("catherd unload --xdp-pin-dir %s: %v\n%s", pins, err, out)
			}
		})
		args := append(append([]string(nil), common...), "--listen", spec.listen, "--admin", spec.admin, "--metrics", spec.metrics,
			"--membership-iface", spec.iface, "--xdp-pin-dir", pins, "--handoff-socket", filepath.Join(dir, name+".handoff"))
		argv := append([]string{s.catherd}, args...)
		in := catherdInst{name: name, front: "http://" + spec.listen, admin: spec.admin, cli: []string{"--admin", spec.admin},
			http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
		if spec.ns != "" {
			argv = append([]string{"nsenter", "--net=/run/netns/" + spec.ns, "--"}, append(argv, "--admin-token-file", token)...)
			in.token = catherdToken
			in.cli = append(in.cli, "--admin-token-file", token)
		}
		p, err := startProc(name, filepath.Join(dir, name+".log"), argv...)
		if err != nil {
			return nil, err
		}
		undo.add(p.stop)
		if err := waitHTTP(ctx, p, in.front+"/health.jsp", 20*time.Second); err != nil {
			return nil, err
		}
		log.Printf("%s (PID %d) serves %s", name, p.cmd.Process.Pid, in.front)
		pair.insts = append(pair.insts, in)
	}
	return pair, nil
}

func (c *catherdPair) fronts() []string {
	var f []string
	for _, in := range c.insts {
		f = append(f, in.front)
	}
	return f
}

// state is the member's state on one instance ("ok", "down", ...).
func (in *catherdInst) state(node string) (string, error) {
	req, err := http.NewRequest("GET", "http://"+in.admin+"/api/v1/members/"+url.PathEscape(node), nil)
	if err != nil {
		return "", err
	}
	if in.token != "" {
		req.Header.Set("Authorization", "Bearer "+in.token)
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var m struct {
		State string `json:"state"`
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return "", err
	}
	return m.State, nil
}

// waitUsable: state "ok" on both (usable), or "down" (out after a failure),
// as the test waits for them.
func (c *catherdPair) waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error {
	target := "ok"
	if !want {
		target = "down"
	}
	t0 := time.Now()
	err := onAll(len(c.insts), func(i int) error {
		in := &c.insts[i]
		return poll(ctx, fmt.Sprintf("%s: %s %s", in.name, node, target), limit, func() (bool, string) {
			st, err := in.state(node)
			if err != nil {
				return false, err.Error()
			}
			return st == target, st
		})
	})
	if err == nil {
		log.Printf("catherd: %s %s on both after %v", node, target, time.Since(t0).Round(time.Millisecond))
	}
	return err
}

// member runs `catherd member ARGS` against both instances at once, as an
// operator's script would.
func (c *catherdPair) member(ctx context.Context, args ...string) error {
	t0 := time.Now()
	err := onAll(len(c.insts), func(i int) error {
		in := c.insts[i]
		cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
		defer cancel()
		out, err := exec.CommandContext(cctx, c.bin, append(append([]string{"member"}, args...), in.cli...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: catherd member %s: %v\n%s", in.name, strings.Join(args, " "), err, out)
		}
		return nil
	})
	if err == nil {
		log.Printf("catherd member %s on both (%v)", strings.Join(args, " "), time.Since(t0).Round(time.Millisecond))
	}
	return err
}

func (c *catherdPair) takeOut(ctx context.Context, node string) error {
	return c.member(ctx, "evacuate", node, "--wait", "30s")
}

func (c *catherdPair) putBack(ctx context.Context, node string) error {
	return c.member(ctx, "enable", node)
}

func (c *catherdPair) epilogue(ctx context.Context) string {
	var b strings.Builder
	for _, in := range c.insts {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		// status only reads (GET /api/v1/status): no token needed.
		out, err := exec.CommandContext(cctx, c.bin, "status", "--admin", in.admin).CombinedOutput()
		cancel()
		fmt.Fprintf(&b, "== %s: catherd status (%v)\n%s\n", in.name, err, out)
	}
	return b.String()
}

// ---------------------------------------------------------------- Apache

type apachePair struct {
	insts []*apacheInst
	nodes []string
}

type apacheInst struct {
	name, host, base string // base: "http://host:port"
	proc             *proc
	http             *http.Client
}

// apacheConf is one instance's httpd.conf: mod_proxy_balancer over the
// three nodes with sticky sessions on Tomcat's JSESSIONID (cookie or URL),
// failover on (the default), a 5 s retry for a member in error, active
// health checks every 500 ms (mod_proxy_hcheck, like catherd's
// --health-interval), and the balancer-manager on the same listener.
func apacheConf(dir, host string, port int, nodes []string, redirect bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `ServerRoot %[1]s
ServerName %[2]s
Listen %[2]s:%[3]d
PidFile %[1]s/run/httpd.pid
DefaultRuntimeDir %[1]s/run
ErrorLog %[1]s/error.log
LogLevel warn
LogFormat "%%h %%{%%T}t.%%{msec_frac}t \"%%r\" %%>s %%D %%{BALANCER_WORKER_ROUTE}e %%{BALANCER_SESSION_ROUTE}e %%{JSESSIONID}C \"%%{Set-Cookie}o\"" route
CustomLog %[1]s/access.log route
User www-data
Group www-data
LoadModule mpm_event_module %[4]s/mod_mpm_event.so
LoadModule authz_core_module %[4]s/mod_authz_core.so
LoadModule authz_host_module %[4]s/mod_authz_host.so
LoadModule slotmem_shm_module %[4]s/mod_slotmem_shm.so
LoadModule proxy_module %[4]s/mod_proxy.so
LoadModule proxy_http_module %[4]s/mod_proxy_http.so
LoadModule proxy_balancer_module %[4]s/mod_proxy_balancer.so
LoadModule proxy_hcheck_module %[4]s/mod_proxy_hcheck.so
LoadModule lbmethod_byrequests_module %[4]s/mod_lbmethod_byrequests.so
# Event MPM, fixed size: 2 children x 32 threads (the load keeps 8 requests in flight).
StartServers 2
ServerLimit 2
ThreadLimit 32
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 60
<Proxy balancer://tomcat>
`, dir, host, port, apacheMods)
	for i, n := range nodes {
		opts := ""
		if redirect {
			opts = " redirect=" + nodes[(i+1)%len(nodes)]
		}
		fmt.Fprintf(&b, "    BalancerMember http://%s route=%s%s retry=5 connectiontimeout=2 timeout=10 hcmethod=GET hcuri=/health.jsp hcinterval=500ms hcfails=1 hcpasses=1\n",
			nodeHTTP(n), n, opts)
	}
	b.WriteString(`    ProxySet lbmethod=byrequests stickysession=JSESSIONID|jsessionid
</Proxy>
<Location /balancer-manager>
    SetHandler balancer-manager
    Require ip 127.0.0.1 10.77.0.0/24
</Location>
ProxyPass /balancer-manager !
ProxyPass / balancer://tomcat/
ProxyPassReverse / balancer://tomcat/
`)
	return b.String()
}

// startApaches starts two Apache instances: one on loopback, one on the
// edge host, each from its own config, in the foreground (stopped by PID).
func startApaches(ctx context.Context, dir string, nodes []string, redirect bool, undo *cleanups) (balancers, error) {
	a, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	_, ps, _ := net.SplitHostPort(a)
	portA, _ := strconv.Atoi(ps)
	pair := &apachePair{nodes: nodes}
	for i, spec := range []struct {
		ns, host string
		port     int
	}{
		{"", "127.0.0.1", portA},
		{edgeNS, edgeAddr, 8080},
	} {
		name := fmt.Sprintf("apache-%c", 'A'+i)
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(d, "run"), 0o755); err != nil {
			return nil, err
		}
		conf := filepath.Join(d, "httpd.conf")
		if err := os.WriteFile(conf, []byte(apacheConf(d, spec.host, spec.port, nodes, redirect)), 0o644); err != nil {
			return nil, err
		}
		if out, err := exec.Command("apache2", "-t", "-f", conf, "-d", d).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: config test: %v\n%s", name, err, out)
		}
		argv := []string{"apache2", "-f", conf, "-d", d, "-DFOREGROUND"}
		if spec.ns != "" {
			argv = append([]string{"nsenter", "--net=/run/netns/" + spec.ns, "--"}, argv...)
		}
		p, err := startProc(name, filepath.Join(d, "stderr.log"), argv...)
		if err != nil {
			return nil, err
		}
		undo.add(p.stop)
		in := &apacheInst{name: name, host: spec.host, base: fmt.Sprintf("http://%s:%d", spec.host, spec.port), proc: p,
			http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
		if err := waitHTTP(ctx, p, in.base+"/balancer-manager", 20*time.Second); err != nil {
			return nil, err
		}
		log.Printf("%s (PID %d) serves %s", name, p.cmd.Process.Pid, in.base)
		pair.insts = append(pair.insts, in)
	}
	return pair, nil
}

func (a *apachePair) fronts() []string {
	var f []string
	for _, in := range a.insts {
		f = append(f, in.base)
	}
	return f
}

// worker is one BalancerMember's row of the balancer-manager page.
type worker struct {
	url, route, status string
	busy               int
}

var (
	nonceRE = regexp.MustCompile(`nonce=([0-9a-fA-F-]+)`)
	rowRE   = regexp.MustCompile(`(?s)<tr>(.*?)</tr>`)
	cellRE  = regexp.MustCompile(`(?s)<t[dh]>(.*?)</t[dh]>`)
	tagRE   = regexp.MustCompile(`<[^>]*>`)
)

// manager reads the balancer-manager page: the nonce that changes need,
// and the workers by route.
func (in *apacheInst) manager() (nonce string, workers map[string]worker, err error) {
	req, err := http.NewRequest("GET", in.base+"/balancer-manager", nil)
	if err != nil {
		return "", nil, err
	}
	// Same-site, as from its own page: without a Referer Apache logs
	// every read as a cross-site access (AH10187).
	req.Header.Set("Referer", in.base+"/balancer-manager")
	resp, err := in.http.Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("balancer-manager: %s", resp.Status)
	}
	m := nonceRE.FindSubmatch(body)
	if m == nil {
		return "", nil, errors.New("balancer-manager: no nonce on the page")
	}
	// The worker table is the one whose header starts with "Worker URL".
	var cols map[string]int
	workers = map[string]worker{}
	for _, row := range rowRE.FindAllSubmatch(body, -1) {
		var cells []string
		for _, c := range cellRE.FindAllSubmatch(row[1], -1) {
			cells = append(cells, strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(string(c[1]), ""))))
		}
		if len(cells) > 0 && cells[0] == "Worker URL" {
			cols = map[string]int{}
			for i, c := range cells {
				cols[c] = i
			}
			continue
		}
		if cols == nil || len(cells) != len(cols) {
			continue
		}
		w := worker{url: cells[cols["Worker URL"]], route: cells[cols["Route"]], status: cells[cols["Status"]]}
		w.busy, _ = strconv.Atoi(cells[cols["Busy"]])
		workers[w.route] = w
	}
	if len(workers) == 0 {
		return "", nil, errors.New("balancer-manager: no worker rows on the page")
	}
	return string(m[1]), workers, nil
}

// usable: what Apache would pick for a session routed to the member now.
func usable(status string) bool {
	for _, f := range strings.Fields(status) {
		switch f {
		case "Err", "Dis", "Stop", "HcFl", "Stby", "Drn":
			return false
		}
	}
	return true
}

// set changes the member's status flags on one instance, as the form of
// balancer-manager does (with the nonce and a same-site Referer; Apache
// ignores changes without them).
func (in *apacheInst) set(node string, form url.Values) error {
	nonce, workers, err := in.manager()
	if err != nil {
		return err
	}
	w, ok := workers[node]
	if !ok {
		return fmt.Errorf("balancer-manager: no member with route %s", node)
	}
	form.Set("b", "tomcat")
	form.Set("w", w.url)
	form.Set("nonce", nonce)
	req, err := http.NewRequest("POST", in.base+"/balancer-manager", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Referer", in.base+"/balancer-manager")
	resp, err := in.http.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("balancer-manager POST: %s", resp.Status)
	}
	return nil
}

func (a *apachePair) waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error {
	t0 := time.Now()
	err := onAll(len(a.insts), func(i int) error {
		in := a.insts[i]
		return poll(ctx, fmt.Sprintf("%s: %s usable=%v", in.name, node, want), limit, func() (bool, string) {
			_, ws, err := in.manager()
			if err != nil {
				return false, err.Error()
			}
			return usable(ws[node].status) == want, ws[node].status
		})
	})
	if err == nil {
		log.Printf("apache: %s usable=%v on both after %v", node, want, time.Since(t0).Round(time.Millisecond))
	}
	return err
}

// takeOut sets the member Disabled on both instances (one after the other,
// as an operator's script would), then waits until neither has a request
// in flight to it, for at most 30 s (like evacuate --wait 30s).
func (a *apachePair) takeOut(ctx context.Context, node string) error {
	t0 := time.Now()
	for _, in := range a.insts {
		if err := in.set(node, url.Values{"w_status_D": {"1"}}); err != nil {
			return fmt.Errorf("%s: disable %s: %w", in.name, node, err)
		}
	}
	err := onAll(len(a.insts), func(i int) error {
		in := a.insts[i]
		return poll(ctx, fmt.Sprintf("%s: %s disabled and idle", in.name, node), 30*time.Second, func() (bool, string) {
			_, ws, err := in.manager()
			if err != nil {
				return false, err.Error()
			}
			w := ws[node]
			return strings.Contains(w.status, "Dis") && w.busy == 0, fmt.Sprintf("%s busy %d", w.status, w.busy)
		})
	})
	if err == nil {
		log.Printf("apache: %s disabled and idle on both (%v)", node, time.Since(t0).Round(time.Millisecond))
	}
	return err
}

func (a *apachePair) putBack(ctx context.Context, node string) error {
	for _, in := range a.insts {
		if err := in.set(node, url.Values{"w_status_D": {"0"}}); err != nil {
			return fmt.Errorf("%s: enable %s: %w", in.name, node, err)
		}
	}
	log.Printf("apache: %s enabled on both", node)
	return nil
}

func (a *apachePair) epilogue(context.Context) string {
	var b strings.Builder
	for _, in := range a.insts {
		_, ws, err := in.manager()
		fmt.Fprintf(&b, "== %s: balancer-manager (%v)\n", in.name, err)
		for _, n := range a.nodes {
			fmt.Fprintf(&b, "%s %-28s %s\n", n, ws[n].url, ws[n].status)
		}
	}
	return b.String()
}

// ---------------------------------------------------------------- tables

type rendered struct{ text, markdown string }

var metrics = []struct {
	name string
	get  func(failover.Report) int64
}{
	{"requests", func(r failover.Report) int64 { return r.Requests }},
	{"failed", func(r failover.Report) int64 { return r.Failed }},
	{"lost", func(r failover.Report) int64 { return r.Lost }},
	{"recounted", func(r failover.Report) int64 { return r.Recounted }},
	{"moves", func(r failover.Report) int64 { return r.Moves }},
	{"split", func(r failover.Report) int64 { return r.Split }},
	{"back", func(r failover.Report) int64 { return r.Back }},
}

// table is phases x metrics; every cell holds one value per side.
type table struct {
	phases []string
	cells  map[string][][]string // phase -> metric -> side -> value
}

// tableOf builds a table from one value source per side; value returns
// the cell for a phase ("" for the totals row) and metric, or "-".
func tableOf(phases []string, sides []string, value func(side, phase string, metric int) string) table {
	t := table{phases: append(append([]string(nil), phases...), "total"), cells: map[string][][]string{}}
	for _, p := range t.phases {
		row := make([][]string, len(metrics))
		for m := range metrics {
			for _, s := range sides {
				key := p
				if p == "total" {
					key = ""
				}
				row[m] = append(row[m], value(s, key, m))
			}
		}
		t.cells[p] = row
	}
	return t
}

func (t table) text(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-18s\t", "phase")
	for _, m := range metrics {
		fmt.Fprintf(tw, "%s\t", m.name)
	}
	fmt.Fprintln(tw)
	for _, p := range t.phases {
		fmt.Fprintf(tw, "%-18s\t", p) // padded: left-aligned in a right-aligned table
		for _, vals := range t.cells[p] {
			fmt.Fprintf(tw, "%s\t", strings.Join(vals, " / "))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func (t table) markdown(w io.Writer) {
	fmt.Fprint(w, "| phase |")
	for _, m := range metrics {
		fmt.Fprintf(w, " %s |", m.name)
	}
	fmt.Fprint(w, "\n| --- |")
	for range metrics {
		fmt.Fprint(w, " ---: |")
	}
	fmt.Fprintln(w)
	for _, p := range t.phases {
		name := p
		if p == "total" {
			name = "**total**"
		}
		fmt.Fprintf(w, "| %s |", name)
		for _, vals := range t.cells[p] {
			fmt.Fprintf(w, " %s |", strings.Join(vals, " / "))
		}
		fmt.Fprintln(w)
	}
}

// value of metric m in phase p of reps ("" p: the sum over all phases).
func value(reps []failover.Report, p string, m int) (int64, bool) {
	var sum int64
	found := false
	for _, r := range reps {
		if p == "" || r.Phase == p {
			sum += metrics[m].get(r)
			found = true
		}
	}
	return sum, found
}

func median(v []int64) string {
	if len(v) == 0 {
		return "-"
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	if len(v)%2 == 1 {
		return strconv.FormatInt(v[len(v)/2], 10)
	}
	a, b := v[len(v)/2-1], v[len(v)/2]
	if (a+b)%2 == 0 {
		return strconv.FormatInt((a+b)/2, 10)
	}
	return strconv.FormatFloat(float64(a+b)/2, 'f', 1, 64)
}

func renderAll(sides []string, results map[string][]result, runs int) rendered {
	// The phase names, in order, from the first side and run that has them all.
	var phases []string
	for _, s := range sides {
		for _, r := range results[s] {
			if len(r.reports) > len(phases) {
				phases = nil
				for _, rep := range r.reports {
					phases = append(phases, rep.Phase)
				}
			}
		}
	}
	var txt, md strings.Builder
	legend := "each cell: " + strings.Join(sides, " / ")
	runNote := func(r int) string {
		var bad []string
		for _, s := range sides {
			if r < len(results[s]) && results[s][r].err != nil {
				bad = append(bad, s)
			}
		}
		if len(bad) == 0 {
			return ""
		}
		return " (scenario did not complete for " + strings.Join(bad, ", ") + ")"
	}
	for r := 0; r < runs; r++ {
		t := tableOf(phases, sides, func(side, p string, m int) string {
			if r >= len(results[side]) || results[side][r].reports == nil {
				return "-"
			}
			v, ok := value(results[side][r].reports, p, m)
			if !ok {
				return "-"
			}
			return strconv.FormatInt(v, 10)
		})
		fmt.Fprintf(&txt, "\nRun %d%s; %s\n", r+1, runNote(r), legend)
		t.text(&txt)
		fmt.Fprintf(&md, "\nRun %d%s; %s:\n\n", r+1, runNote(r), legend)
		t.markdown(&md)
	}
	if runs > 1 {
		t := tableOf(phases, sides, func(side, p string, m int) string {
			var vs []int64
			for _, res := range results[side] {
				if res.err != nil {
					continue
				}
				if v, ok := value(res.reports, p, m); ok {
					vs = append(vs, v)
				}
			}
			return median(vs)
		})
		fmt.Fprintf(&txt, "\nMedian of %d runs (completed runs only); %s\n", runs, legend)
		t.text(&txt)
		fmt.Fprintf(&md, "\nMedian of %d runs (completed runs only); %s:\n\n", runs, legend)
		t.markdown(&md)
	}
	return rendered{text: txt.String(), markdown: md.String()}
}
