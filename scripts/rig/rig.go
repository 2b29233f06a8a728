// Package rig drives scripts/tomcat-rig.sh from Go tests: real Tomcat 10
// nodes in network namespaces, torn down when the test ends.
//
// Tests that use it need root. Without root they are skipped, except under
// CI=true, where a missing privilege or a missing tomcat10 is a failure.
package rig

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Node is one Tomcat node of a rig.
type Node struct {
	Name string // jvmRoute: node1, node2, ...
	IP   string
	HTTP string // host:port of the HTTP connector
	AJP  string // host:port of the AJP connector (secret: Secret)
}

// Secret is the AJP secret every rig node requires.
const Secret = "catherd-secret"

// Rig is a running set of nodes.
type Rig struct {
	Nodes []Node
	// Dir holds the nodes' CATALINA_BASEs; logs are in Dir/nodeI/logs.
	Dir    string
	script string
}

// Require skips or fails t when the rig cannot run here.
func Require(t testing.TB) {
	t.Helper()
	ci := os.Getenv("CI") == "true"
	var missing string
	if os.Geteuid() != 0 {
		missing = "root (network namespaces)"
	} else if _, err := os.Stat("/usr/share/tomcat10/bin/catalina.sh"); err != nil {
		missing = "tomcat10 (apt-get install tomcat10)"
	}
	if missing == "" {
		return
	}
	if ci {
		t.Fatalf("needs %s; under CI=true that is a failure", missing)
	}
	t.Skipf("needs %s", missing)
}

// Up starts n nodes (a DeltaManager cluster with cluster) and registers
// their teardown with t.Cleanup.
func Up(t testing.TB, n int, cluster bool) *Rig {
	t.Helper()
	Require(t)
	_, here, _, _ := runtime.Caller(0)
	r := &Rig{script: filepath.Join(filepath.Dir(here), "..", "tomcat-rig.sh"), Dir: filepath.Join(t.TempDir(), "rig")}
	t.Cleanup(func() {
		if out, err := r.run(60*time.Second, "down"); err != nil {
			t.Errorf("rig down: %v\n%s", err, out)
		}
	})
	args := []string{"up", "--nodes", strconv.Itoa(n)}
	if cluster {
		args = append(args, "--cluster")
	}
	// The rig waits up to 180 s for another rig on this host to finish.
	out, err := r.run(300*time.Second, args...)
	if err != nil {
		t.Fatalf("rig up: %v\n%s", err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "nodeI IP HTTPPORT AJPPORT PID"
		f := strings.Fields(sc.Text())
		if len(f) == 5 && strings.HasPrefix(f[0], "node") {
			r.Nodes = append(r.Nodes, Node{Name: f[0], IP: f[1], HTTP: f[1] + ":" + f[2], AJP: f[1] + ":" + f[3]})
		}
	}
	if len(r.Nodes) != n {
		t.Fatalf("rig up: want %d node lines, got %d in:\n%s", n, len(r.Nodes), out)
	}
	return r
}

// Kill stops a node with SIGKILL.
func (r *Rig) Kill(node string) error { return r.cmd("kill", node) }

// Start starts a stopped node again and waits until it serves.
func (r *Rig) Start(node string) error { return r.cmd("start", node) }

// Stop stops a node cleanly (SIGTERM), so that it leaves its cluster the
// way Tomcat does on shutdown.
func (r *Rig) Stop(node string) error { return r.cmd("stop", node) }

func (r *Rig) cmd(verb, node string) error {
	if out, err := r.run(120*time.Second, verb, node); err != nil {
		return fmt.Errorf("rig %s %s: %w\n%s", verb, node, err, out)
	}
	return nil
}

func (r *Rig) run(limit time.Duration, args ...string) ([]byte, error) {
	return Script(context.Background(), r.script, r.Dir, limit, nil, args...)
}

// Script runs the rig script (scripts/tomcat-rig.sh) with args on the rig
// in dir, with env added to the environment, for at most limit (or until
// ctx ends), and returns its output.
func Script(ctx context.Context, script, dir string, limit time.Duration, env []string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append(append([]string{script}, args...), "--dir", dir)...)
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v: %w", limit, err)
	}
	return out.Bytes(), err
}
