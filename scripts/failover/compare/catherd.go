package main

// The catherd side: two instances, driven by catherd member; or, in the
// keepalived scenario, a tier of two.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type catherdPair struct {
	bin   string
	insts []*catherdInst
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
		in := &catherdInst{name: name, front: "http://" + spec.listen, admin: spec.admin, cli: []string{"--admin", spec.admin},
			http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
		if spec.ns != "" {
			argv = append(argv, "--admin-token-file", token)
			in.token = catherdToken
			in.cli = append(in.cli, "--admin-token-file", token)
		}
		p, err := startProc(name, filepath.Join(dir, name+".log"), inNS(spec.ns, argv)...)
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
	return waitAllUsable(ctx, "catherd", c.insts, node, want, limit)
}

// waitUsable waits until node's state on this instance is "ok" (want
// true) or "down" (false, out after a failure).
func (in *catherdInst) waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error {
	target := "ok"
	if !want {
		target = "down"
	}
	return poll(ctx, fmt.Sprintf("%s: %s %s", in.name, node, target), limit, func() (bool, string) {
		st, err := in.state(node)
		if err != nil {
			return false, err.Error()
		}
		return st == target, st
	})
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

// catherdTier is the catherd side of the keepalived scenario: an
// instance on each edge host, the two one tier (--peer-listen, a shared
// key), with the flags of TestTierKeepalived.
type catherdTier struct {
	bin, dir string
	args     [][]string // each host's flags
	insts    []*catherdInst
	procs    []*proc
	undo     *cleanups
}

func (s *setup) newCatherdTier(dir string, nodes []string, undo *cleanups) (*catherdTier, error) {
	key, token := filepath.Join(dir, "peer.key"), filepath.Join(dir, "admin-token")
	if err := os.WriteFile(key, []byte(base64.StdEncoding.EncodeToString([]byte("failover-compare-tier-key-012345"))+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(token, []byte(catherdToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	t := &catherdTier{bin: s.catherd, dir: dir, procs: make([]*proc, len(pairHosts)), undo: undo}
	for i, h := range pairHosts {
		name := "catherd-" + h.name
		args := []string{"run", "--listen", ":8080", "--admin", h.addr + ":9181", "--admin-token-file", token, "--metrics", "",
			"--health-interval", "500ms", "--retry", "5s", "--rejoin-settle", "2s", "--slow-start", "2s",
			"--peer-listen", h.addr + ":7946", "--peer-key-file", key, "--peer-name", name, "--peer", pairHosts[1-i].addr + ":7946",
			"--handoff-socket", filepath.Join(dir, name+".handoff")}
		for _, n := range nodes {
			args = append(args, "--backend", n+"=http://"+nodeHTTP(n))
		}
		t.args = append(t.args, args)
		t.insts = append(t.insts, &catherdInst{name: name, front: "http://" + h.addr + ":8080", admin: h.addr + ":9181", token: catherdToken,
			cli: []string{"--admin", h.addr + ":9181", "--admin-token-file", token}, http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}})
	}
	return t, nil
}

func (t *catherdTier) start(ctx context.Context, i int, again bool) error {
	in := t.insts[i]
	logPath := filepath.Join(t.dir, in.name+".log")
	if again {
		logPath = filepath.Join(t.dir, in.name+"-again.log")
	}
	p, err := startProc(in.name, logPath, inNS(pairHosts[i].ns, append([]string{t.bin}, t.args[i]...))...)
	if err != nil {
		return err
	}
	t.undo.add(p.stop)
	t.procs[i] = p
	if err := waitHTTP(ctx, p, t.check(i), 20*time.Second); err != nil {
		return err
	}
	if again {
		// A plain start: it takes the tier's state before it serves.
		err := poll(ctx, in.name+": joined the tier", 20*time.Second, func() (bool, string) {
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "tier: joined"), p.tail()
		})
		if err != nil {
			return err
		}
	}
	log.Printf("%s (PID %d) serves %s", in.name, p.cmd.Process.Pid, in.front)
	return nil
}

func (t *catherdTier) kill(i int) { t.procs[i].kill() }

// check is catherd's readiness, as README.md's keepalived.conf asks it.
func (t *catherdTier) check(i int) string { return "http://" + t.insts[i].admin + "/readyz" }

func (t *catherdTier) on(i int) frontEnd { return t.insts[i] }

// ---------------------------------------------------------------- Apache
