// Command idleconns measures what an idle client connection costs a front
// end in memory: it starts catherd, then nginx and HAProxy (those
// installed), one at a time, in front of one small local backend, opens N
// kept-alive client connections to each (each sends one request, reads the
// answer and stays open), and prints each front end's resident memory
// growth per connection (VmRSS summed over its processes, from /proc), side
// by side, with catherd/peer ratios.
//
//	go run ./scripts/bench/idleconns -catherd bin/catherd [-conns 10000] [-timeout 5m]
//
// Everything is on loopback. It raises its own RLIMIT_NOFILE (the front
// ends inherit it). Every front end runs in its own process group and is
// stopped by it (SIGTERM, then SIGKILL) on every exit path, including
// SIGINT and the timeout.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// frontEnd is one program under test.
type frontEnd struct {
	name string
	// command returns the command line serving port in front of the
	// backend, with its files in dir, and a metrics address or "".
	command func(dir string, port, backend, conns int) (args []string, metrics string, err error)
	version func() string
}

// result is one front end's measurement.
type result struct {
	label         string
	before, after int64 // RSS, KiB
	procs         int
	conns         int
	// From a Go front end's /metrics (nil otherwise), before and after:
	// go_goroutines, go_memstats_stack_inuse_bytes, go_memstats_heap_inuse_bytes.
	goBefore, goAfter map[string]float64
}

var goSeries = []string{"go_goroutines", "go_memstats_stack_inuse_bytes", "go_memstats_heap_inuse_bytes"}

func (r result) perConn() float64 { return float64(r.after-r.before) / float64(r.conns) }

func main() {
	bin := flag.String("catherd", "bin/catherd", "catherd binary (make build)")
	conns := flag.Int("conns", 10000, "idle client connections per front end (at most 50000)")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up after this long in all")
	flag.Parse()
	if *conns < 100 || *conns > 50000 {
		fmt.Fprintln(os.Stderr, "idleconns: -conns must be 100..50000")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, *timeout)
	defer cancelTimeout()
	if err := run(ctx, *bin, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, conns int) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("catherd binary: %w (make build)", err)
	}
	if err := raiseNoFile(uint64(conns) + 4096); err != nil { // each process holds one end of each connection
		return err
	}
	backend, err := startBackend()
	if err != nil {
		return err
	}
	defer backend.Close()
	bport := backend.Addr().(*net.TCPAddr).Port

	fes := []frontEnd{catherd(bin)}
	for _, fe := range []frontEnd{nginx(), haproxy()} {
		if _, err := exec.LookPath(fe.name); err != nil {
			fmt.Fprintf(os.Stderr, "idleconns: %s not installed, skipped (scripts/deps.sh bench-idle)\n", fe.name)
			continue
		}
		fes = append(fes, fe)
	}
	var results []result
	for i, fe := range fes {
		// Each front end's clients come from their own loopback address,
		// so the previous one's TIME_WAIT ports are no concern.
		src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(i+1), 1)}
		r, err := measure(ctx, fe, bport, conns, src)
		if err != nil {
			return fmt.Errorf("%s: %w", fe.name, err)
		}
		results = append(results, r)
		fmt.Fprintf(os.Stderr, "idleconns: %s: %d -> %d KiB, %.1f KiB per connection\n", r.label, r.before, r.after, r.perConn())
	}
	report(os.Stdout, results, conns)
	return nil
}

// raiseNoFile lifts RLIMIT_NOFILE to at least n, the hard limit too when
// it is lower (as root).
func raiseNoFile(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	l.Cur = max(l.Cur, n)
	l.Max = max(l.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("raising RLIMIT_NOFILE to %d (run as root, or lower -conns): %w", n, err)
	}
	return nil
}

// startBackend serves a 2-byte page on loopback.
func startBackend() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	return ln, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func catherd(bin string) frontEnd {
	return frontEnd{
		name: "catherd",
		command: func(dir string, port, backend, conns int) ([]string, string, error) {
			mport, err := freePort()
			if err != nil {
				return nil, "", err
			}
			metrics := fmt.Sprintf("127.0.0.1:%d", mport)
			return []string{bin, "run", "--listen", fmt.Sprintf("127.0.0.1:%d", port),
				"--backend", fmt.Sprintf("b1=http://127.0.0.1:%d", backend), "--metrics", metrics, "--admin", "",
				"--health-interval", "0", "--client-idle-timeout", "10m", "--max-client-conns", strconv.Itoa(conns + 1000)}, metrics, nil
		},
		version: func() string {
			out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
			if err != nil {
				return "catherd"
			}
			return "catherd " + strings.TrimSpace(string(out))
		},
	}
}

func nginx() frontEnd {
	return frontEnd{
		name: "nginx",
		command: func(dir string, port, backend, conns int) ([]string, string, error) {
			conf := fmt.Sprintf(`worker_processes 1;
worker_rlimit_nofile %[4]d;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections %[4]d; }
http {
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 1000000;
    upstream bk {
        server 127.0.0.1:%[3]d;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[2]d backlog=4096;
        location / {
            proxy_pass http://bk;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, dir, port, backend, conns+1000)
			path := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				return nil, "", err
			}
			return []string{"nginx", "-e", filepath.Join(dir, "error.log"), "-p", dir, "-c", path, "-g", "daemon off;"}, "", nil
		},
		version: func() string {
			out, _ := exec.Command("nginx", "-v").CombinedOutput() // "nginx version: nginx/1.22.1"
			_, v, _ := strings.Cut(strings.TrimSpace(string(out)), "/")
			return "nginx " + v
		},
	}
}

func haproxy() frontEnd {
	return frontEnd{
		name: "haproxy",
		command: func(dir string, port, backend, conns int) ([]string, string, error) {
			// HAProxy wants two descriptors per maxconn (client and
			// server side) and refuses to start when it cannot raise
			// its limit that far; idle clients hold one each, so it
			// is told to go on (no strict-limits).
			conf := fmt.Sprintf(`global
    maxconn %[4]d
    no strict-limits
    pidfile %[1]s/haproxy.pid
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 600s
    timeout server 60s
    timeout http-keep-alive 600s
frontend fe
    bind 127.0.0.1:%[2]d
    default_backend bk
backend bk
    http-reuse always
    server b1 127.0.0.1:%[3]d
`, dir, port, backend, conns+1000)
			path := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
				return nil, "", err
			}
			return []string{"haproxy", "-db", "-f", path}, "", nil
		},
		version: func() string {
			out, _ := exec.Command("haproxy", "-v").Output() // "HAProxy version 2.6.12-1+deb12u4 2025/..."
			if f := strings.Fields(string(out)); len(f) > 2 {
				return "HAProxy " + f[2]
			}
			return "HAProxy"
		},
	}
}

// measure starts fe, reads its RSS once warm, opens conns idle
// connections from src, reads it again, and stops fe.
func measure(ctx context.Context, fe frontEnd, backend, conns int, src *net.TCPAddr) (result, error) {
	res := result{label: fe.version(), conns: conns}
	dir, err := os.MkdirTemp("", "idleconns-"+fe.name)
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // nginx's worker drops to nobody
	port, err := freePort()
	if err != nil {
		return res, err
	}
	args, metrics, err := fe.command(dir, port, backend, conns)
	if err != nil {
		return res, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(filepath.Join(dir, "output.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return res, err
	}
	defer stop(cmd)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := warmUp(ctx, addr, src); err != nil {
		out, _ := os.ReadFile(logf.Name())
		return res, fmt.Errorf("%w; its output:\n%s", err, out)
	}
	time.Sleep(time.Second)
	pgid := cmd.Process.Pid
	if res.before, res.procs, err = rss(pgid); err != nil {
		return res, err
	}
	if metrics != "" {
		res.goBefore = scrape(metrics)
	}
	open, err := openIdle(ctx, addr, src, conns)
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	if err != nil {
		return res, err
	}
	time.Sleep(2 * time.Second) // let it settle
	if res.after, res.procs, err = rss(pgid); err != nil {
		return res, err
	}
	if metrics != "" {
		res.goAfter = scrape(metrics)
	}
	return res, nil
}

// stop ends cmd's process group: SIGTERM, and SIGKILL after 5 s.
func stop(cmd *exec.Cmd) {
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	// Workers of a master that exited first (nginx) are in the group too.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// get sends one request on conn and reads the whole answer.
func get(conn net.Conn) error {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 512), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return conn.SetDeadline(time.Time{})
}

// warmUp waits up to 10 s for the front end to answer, then sends a few
// hundred requests over a few connections (pools, workers, buffers), so
// that the first RSS reading is of a front end that has served.
func warmUp(ctx context.Context, addr string, src *net.TCPAddr) error {
	d := net.Dialer{LocalAddr: src, Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			err = get(conn)
			conn.Close()
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not answering on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for range 50 {
				if err := get(conn); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// openIdle opens n connections, 64 at a time, each with one request
// answered, and returns them open.
func openIdle(ctx context.Context, addr string, src *net.TCPAddr, n int) ([]net.Conn, error) {
	d := net.Dialer{LocalAddr: src, Timeout: 5 * time.Second}
	conns := make([]net.Conn, n)
	var next sync.Mutex
	i := 0
	var firstErr error
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				if i == n || firstErr != nil {
					next.Unlock()
					return
				}
				mine := i
				i++
				next.Unlock()
				conn, err := d.DialContext(ctx, "tcp", addr)
				if err == nil {
					conns[mine] = conn
					err = get(conn)
				}
				if err != nil {
					next.Lock()
					firstErr = cmp(firstErr, fmt.Errorf("connection %d: %w", mine, err))
					next.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	var open []net.Conn
	for _, c := range conns {
		if c != nil {
			open = append(open, c)
		}
	}
	return open, firstErr
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// rss sums VmRSS (KiB) over the processes of process group pgid.
func rss(pgid int) (kib int64, procs int, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid pgrp ...: comm may hold spaces.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				kib += n
				procs++
			}
		}
	}
	if procs == 0 {
		return 0, 0, errors.New("no process left in its group")
	}
	return kib, procs, nil
}

// scrape reads goSeries from a catherd's /metrics; nil if it cannot.
func scrape(metrics string) map[string]float64 {
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	values := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		for _, name := range goSeries {
			if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
				values[name], _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return values
}

func report(w io.Writer, results []result, conns int) {
	host, _ := os.Hostname()
	var uname syscall.Utsname
	syscall.Uname(&uname)
	release := make([]byte, 0, len(uname.Release))
	for _, c := range uname.Release {
		if c == 0 {
			break
		}
		release = append(release, byte(c))
	}
	fmt.Fprintf(w, "%s, %s, %d cores, kernel %s\n", time.Now().UTC().Format("2006-01-02T15:04Z"), host, runtime.NumCPU(), release)
	fmt.Fprintf(w, "%d kept-alive client connections per front end (one request each, then idle), loopback, one local backend.\n", conns)
	fmt.Fprintf(w, "Memory = VmRSS summed over the front end's processes, warmed up (400 requests) vs with the connections open (2 s later).\n\n")
	fmt.Fprintf(w, "| front end | processes | RSS before | RSS with %d | per connection | goroutines |\n|---|---:|---:|---:|---:|---:|\n", conns)
	for _, r := range results {
		g := "NA"
		if r.goAfter != nil {
			g = fmt.Sprint(r.goAfter["go_goroutines"])
		}
		fmt.Fprintf(w, "| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB | %s |\n", r.label, r.procs, float64(r.before)/1024, float64(r.after)/1024, r.perConn(), g)
	}
	for _, r := range results {
		if r.goBefore != nil && r.goAfter != nil {
			per := func(name string) float64 { return (r.goAfter[name] - r.goBefore[name]) / 1024 / float64(r.conns) }
			fmt.Fprintf(w, "\n%s, per connection, from its Go runtime: goroutine stacks %.1f KiB, heap in use %.1f KiB.\n",
				r.label, per("go_memstats_stack_inuse_bytes"), per("go_memstats_heap_inuse_bytes"))
		}
	}
	if len(results) > 1 {
		fmt.Fprintf(w, "\n| catherd vs | memory per connection (catherd/peer) |\n|---|---:|\n")
		for _, r := range results[1:] {
			fmt.Fprintf(w, "| %s | %.2fx |\n", r.label, results[0].perConn()/r.perConn())
		}
	}
}
