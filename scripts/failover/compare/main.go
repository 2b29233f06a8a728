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
// With -scenario keepalived it runs TestTierKeepalived's scenario instead
// (pair.go): two edge hosts on the bridge, each with one front end and a
// keepalived that holds a VIP on one of them, the load (100 sessions)
// through the VIP; kill -9 the front end holding the VIP, kill -9 node2,
// start the first front end again (the VIP returns to it), node2 back.
// catherd runs as a tier of two (--peer-listen); each Apache is the
// apache side's config, on its own.
//
// Usage (root; Debian packages tomcat10, apache2, iproute2, curl, and
// keepalived for -scenario keepalived; see `make failover-compare` and
// `make failover-compare-keepalived`):
//
//	go run ./scripts/failover/compare [-scenario session|keepalived] [-runs N] [-md FILE] [-sides catherd,apache,apache-redirect] [-keep]
//
// Traffic goes only to the rig's nodes, the front ends on loopback and the
// bridge (10.77.0.0/24). Everything it starts is stopped again, also on
// failure or Ctrl-C: the front ends and keepalived by PID, the namespaces
// it made, the pinned XDP state (catherd unload) and the rig
// (tomcat-rig.sh down).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/catherd/catherd/scripts/failover"
)

const (
	edgeNS   = "cth-cmp2" // the second edge host's namespace (and its veth's root side)
	edgeAddr = "10.77.0.200"
	bridge   = "cth-br0"
	// sideLimit bounds one side of one run, the wait for the rig and its
	// start-up included.
	sideLimit = rigWait + 15*time.Minute
)

var allSides = []string{"catherd", "apache", "apache-redirect"}

var scenarios = []string{"session", "keepalived"}

func main() {
	scenarioName := flag.String("scenario", "session", "session (two front ends in turn, a node killed, a rolling restart) or keepalived (a pair behind one VIP, a front end killed)")
	runs := flag.Int("runs", 1, "how many times to run every side (interleaved: run 1 of each side, then run 2, ...)")
	md := flag.String("md", "", "also write the results as Markdown to this file")
	sidesFlag := flag.String("sides", strings.Join(allSides, ","), "which sides to run, in this order")
	keep := flag.Bool("keep", false, "keep the work directory (logs, configs, the rig's Tomcat logs)")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("compare: ")

	if !slices.Contains(scenarios, *scenarioName) {
		log.Fatalf("-scenario: unknown scenario %q (want %s)", *scenarioName, strings.Join(scenarios, " or "))
	}
	sides := strings.Split(*sidesFlag, ",")
	for _, s := range sides {
		if !slices.Contains(allSides, s) {
			log.Fatalf("-sides: unknown side %q (want some of %s)", s, strings.Join(allSides, ","))
		}
	}
	if *runs < 1 {
		log.Fatal("-runs must be at least 1")
	}
	if err := preflight(*scenarioName, sides); err != nil {
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
	env := &setup{root: root, catherd: filepath.Join(work, "catherd"), scenario: *scenarioName, keep: *keep}
	code := env.run(ctx, work, sides, *runs, *md)
	if *keep {
		log.Printf("kept %s", work)
	} else {
		os.RemoveAll(work)
	}
	os.Exit(code)
}

// run builds catherd, runs every side runs times and prints the tables.
func (env *setup) run(ctx context.Context, work string, sides []string, runs int, md string) int {
	if slices.Contains(sides, "catherd") {
		log.Printf("building catherd")
		build := exec.CommandContext(ctx, "go", "build", "-o", env.catherd, "./cmd/catherd")
		build.Dir = env.root
		if out, err := build.CombinedOutput(); err != nil {
			log.Printf("go build: %v\n%s", err, out)
			return 1
		}
	}
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
		doc := env.provenance() + report.markdown
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
func (env *setup) provenance() string {
	out := func(name string, args ...string) string {
		cmd := exec.Command(name, args...)
		cmd.Dir = env.root
		b, _ := cmd.Output()
		return strings.TrimSpace(string(b))
	}
	commit := out("git", "describe", "--always", "--dirty")
	packages := []string{"apache2", "tomcat10"}
	if env.scenario == "keepalived" {
		packages = append(packages, "keepalived")
	}
	versions := out("dpkg-query", append([]string{"-W", "-f", "${Package} ${Version}; "}, packages...)...)
	return fmt.Sprintf("Command: `%s`, %s, commit %s; %s\n",
		strings.Join(append([]string{"go run ./scripts/failover/compare"}, os.Args[1:]...), " "), time.Now().UTC().Format("2006-01-02T15:04Z"), commit, strings.TrimSuffix(versions, ";"))
}

func preflight(scenario string, sides []string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, XDP)")
	}
	need := []string{"ip", "nsenter", "curl", "bash"}
	namespaces := []string{edgeNS}
	if scenario == "keepalived" {
		need = append(need, "keepalived")
		namespaces = nil
		for _, h := range pairHosts {
			namespaces = append(namespaces, h.ns)
		}
	}
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
	for _, ns := range namespaces {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			return fmt.Errorf("namespace %s exists (left by a crashed run? ip netns del %s)", ns, ns)
		}
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
	root     string // the repository
	catherd  string // the binary
	scenario string // -scenario
	keep     bool   // -keep: the rig keeps its directory too
}

type result struct {
	reports []failover.Report
	err     error
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
	if s.scenario == "keepalived" {
		return s.runPair(ctx, side, dir, rig, nodes, &undo)
	}
	if err := plugHost(edgeNS, edgeAddr); err != nil {
		unplugHost(edgeNS)
		return nil, err
	}
	undo.add(func() { unplugHost(edgeNS) })

	var b balancers
	switch side {
	case "catherd":
		b, err = s.startCatherd(ctx, dir, nodes, &undo)
	case "apache":
		b, err = startApaches(ctx, s.root, dir, nodes, false, &undo)
	case "apache-redirect":
		b, err = startApaches(ctx, s.root, dir, nodes, true, &undo)
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
