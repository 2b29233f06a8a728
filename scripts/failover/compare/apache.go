package main

// The Apache sides: two httpd instances with mod_proxy_balancer, driven
// through the balancer-manager; or, in the keepalived scenario, one on
// each edge host of the pair.

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type apachePair struct {
	insts []*apacheInst
	nodes []string
}

type apacheInst struct {
	name, host, base string // base: "http://host:port"
	proc             *proc
	http             *http.Client
}

// apacheMods is where Debian's apache2 keeps its modules.
const apacheMods = "/usr/lib/apache2/modules"

// apacheSpec is where one Apache instance runs.
type apacheSpec struct {
	name string
	ns   string // its network namespace; "" for the root namespace
	host string // its own address: its ServerName, and where its balancer-manager is asked
	port int
	// anyAddr: listen on every address of the host, to serve a VIP that
	// keepalived moves onto it, not only host.
	anyAddr  bool
	redirect bool // the apache-redirect side's redirect ring
}

// apacheConf is one instance's httpd.conf: the event MPM as every Apache
// front end runs it (scripts/apache/event-mpm.conf under root, the
// repository), mod_proxy_balancer over the three nodes with sticky
// sessions on Tomcat's JSESSIONID (cookie or URL), failover on (the
// default), a 5 s retry for a member in error, active health checks every
// 500 ms (mod_proxy_hcheck, like catherd's --health-interval), and the
// balancer-manager on the same listener.
func apacheConf(root, dir string, spec apacheSpec, nodes []string) string {
	listen := spec.host
	if spec.anyAddr {
		listen = "0.0.0.0"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `ServerRoot %[1]s
ServerName %[2]s
Listen %[6]s:%[3]d
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
# 2 children x 32 threads: the load keeps 8 requests in flight.
Include %[5]s
KeepAliveTimeout 60
<Proxy balancer://tomcat>
`, dir, spec.host, spec.port, apacheMods, filepath.Join(root, "scripts/apache/event-mpm.conf"), listen)
	for i, n := range nodes {
		opts := ""
		if spec.redirect {
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
func startApaches(ctx context.Context, root, dir string, nodes []string, redirect bool, undo *cleanups) (balancers, error) {
	a, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	_, ps, _ := net.SplitHostPort(a)
	portA, _ := strconv.Atoi(ps)
	pair := &apachePair{nodes: nodes}
	for _, spec := range []apacheSpec{
		{name: "apache-A", host: "127.0.0.1", port: portA, redirect: redirect},
		{name: "apache-B", ns: edgeNS, host: edgeAddr, port: 8080, redirect: redirect},
	} {
		in, err := startApache(ctx, root, filepath.Join(dir, spec.name), spec, nodes, "stderr.log", undo)
		if err != nil {
			return nil, err
		}
		pair.insts = append(pair.insts, in)
	}
	return pair, nil
}

// startApache writes the instance's config into dir, starts it in the
// foreground (its output in dir/logName; stopped by PID through undo)
// and returns once its balancer-manager answers. Started again in the same
// dir, it takes the same config: an Apache restarted after a crash.
func startApache(ctx context.Context, root, dir string, spec apacheSpec, nodes []string, logName string, undo *cleanups) (*apacheInst, error) {
	if err := os.MkdirAll(filepath.Join(dir, "run"), 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(conf, []byte(apacheConf(root, dir, spec, nodes)), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.Command("apache2", "-t", "-f", conf, "-d", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s: config test: %v\n%s", spec.name, err, out)
	}
	argv := inNS(spec.ns, []string{"apache2", "-f", conf, "-d", dir, "-DFOREGROUND"})
	p, err := startProc(spec.name, filepath.Join(dir, logName), argv...)
	if err != nil {
		return nil, err
	}
	undo.add(p.stop)
	in := &apacheInst{name: spec.name, host: spec.host, base: fmt.Sprintf("http://%s:%d", spec.host, spec.port), proc: p,
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}}
	if err := waitHTTP(ctx, p, in.base+"/balancer-manager", 20*time.Second); err != nil {
		return nil, err
	}
	log.Printf("%s (PID %d) serves %s", spec.name, p.cmd.Process.Pid, in.base)
	return in, nil
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
	return waitAllUsable(ctx, "apache", a.insts, node, want, limit)
}

// waitUsable waits until this instance would pick node for a session
// routed to it (want true), or would not (false).
func (in *apacheInst) waitUsable(ctx context.Context, node string, want bool, limit time.Duration) error {
	return poll(ctx, fmt.Sprintf("%s: %s usable=%v", in.name, node, want), limit, func() (bool, string) {
		_, ws, err := in.manager()
		if err != nil {
			return false, err.Error()
		}
		return usable(ws[node].status) == want, ws[node].status
	})
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

// apacheHosts is the Apache side of the keepalived scenario: an instance
// on each edge host with the apache (or apache-redirect) side's config,
// listening on every address so that it serves the VIP. The two share
// nothing: each has its own members' state and health checks.
type apacheHosts struct {
	root, dir string
	nodes     []string
	redirect  bool
	undo      *cleanups
	insts     [2]*apacheInst
}

func (a *apacheHosts) start(ctx context.Context, i int, again bool) error {
	h := pairHosts[i]
	logName := "stderr.log"
	if again {
		logName = "stderr-again.log"
	}
	spec := apacheSpec{name: "apache-" + h.name, ns: h.ns, host: h.addr, port: 8080, anyAddr: true, redirect: a.redirect}
	in, err := startApache(ctx, a.root, filepath.Join(a.dir, spec.name), spec, a.nodes, logName, a.undo)
	if err != nil {
		return err
	}
	a.insts[i] = in
	return nil
}

func (a *apacheHosts) kill(i int) { a.insts[i].proc.kill() }

// check is Apache's own balancer-manager page: it answers while the
// local Apache serves, whatever its members' state.
func (a *apacheHosts) check(i int) string {
	return fmt.Sprintf("http://%s:8080/balancer-manager", pairHosts[i].addr)
}

func (a *apacheHosts) on(i int) frontEnd { return a.insts[i] }

// ---------------------------------------------------------------- tables
