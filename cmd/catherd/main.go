// Command catherd is a load balancer for Tomcat clusters: it routes each
// session to the node named by its jvmRoute, balances new sessions, and
// moves sessions to another node when theirs fails.
//
//	catherd run --listen :80 --backend node1=http://10.0.0.11:8080 --backend node2=http://10.0.0.12:8080
//
// See `catherd run --help` for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/catherd/catherd/ajp"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/l4"
	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/proxy"
	"github.com/catherd/catherd/userspace/xdp"
)

const usage = `Usage: catherd <command> [flags]

Commands:
  run       run the balancer (see: catherd run --help)
  status    show the XDP datapath's L4 services, backends and counters
            [--xdp-pin-dir DIR] [--json]
  unload    detach the XDP datapath and remove its pinned maps (after
            catherd run has stopped) [--xdp-pin-dir DIR]
  help      show this text
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs a subcommand and returns the process exit code: 0 on
// success, 1 when a started balancer fails, 2 on bad usage (nothing started).
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return run(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "unload":
		return unload(args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "catherd: unknown command %q (want run, status, unload or help)\n", args[0])
	return 2
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	// Set up everything, binding every address, before serving anything,
	// so that a bad flag stops start-up with nothing half-running.
	var (
		pool      *balancer.Pool
		px        *proxy.Proxy
		members   []*balancer.Member
		probes    []health.Probe
		listeners []net.Listener
	)
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	fail := func(format string, a ...any) int {
		closeAll()
		fmt.Fprintf(stderr, "catherd run: "+format+"\n", a...)
		return 2
	}
	if len(cfg.Backends) > 0 {
		for _, b := range cfg.Backends {
			members = append(members, balancer.NewMember(b.Name, b.Route, b.Weight, b.Flags))
		}
		if pool, err = balancer.NewPool(members, cfg.LBMethod, balancer.Options{Retry: cfg.Retry, NoFailover: cfg.NoFailover}); err != nil {
			return fail("--backend: %v", err)
		}
	}
	m := metrics.New(pool)
	if pool != nil {
		px = proxy.New(pool, targets(cfg), m, cfg.Proxy, log)
		for i := range members {
			probes = append(probes, px.Probe(i, cfg.HealthURI))
		}
	}
	for _, addr := range cfg.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail("--listen %s: %v", addr, err)
		}
		listeners = append(listeners, ln)
	}
	var metricsLn net.Listener
	if cfg.Metrics != "" {
		if metricsLn, err = net.Listen("tcp", cfg.Metrics); err != nil {
			return fail("--metrics %s: %v", cfg.Metrics, err)
		}
		listeners = append(listeners, metricsLn)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var ctl *l4.Controller
	if cfg.L4.Iface != "" {
		dp, err := openDatapath(cfg, log)
		if err != nil {
			return fail("%v", err)
		}
		defer dp.Close()
		m.XDP(dp.Stats)
		ctl = l4.New(dp, l4.NetlinkResolver, cfg.L4.Services, log)
		if err := ctl.Sync(ctx); err != nil {
			return fail("--l4: %v", err)
		}
		members = append(members, ctl.Members()...)
		probes = append(probes, ctl.Probes()...)
		go ctl.Run(ctx, time.Second)
		log.Info("XDP datapath attached", "iface", cfg.L4.Iface, "mode", cfg.L4.Mode, "pins", cfg.L4.PinDir)
		for _, s := range cfg.L4.Services {
			log.Info("L4 service", "service", s.String(), "backends", len(s.Backends), "hash_port", s.HashPort)
		}
	}

	var metricsSrv *http.Server
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(metricsLn)
	}
	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		if ln == metricsLn {
			continue
		}
		go func() { errc <- px.Serve(ln) }()
		log.Info("listening", "addr", ln.Addr().String())
	}
	for _, b := range cfg.Backends {
		log.Info("member", "name", b.Name, "url", b.Scheme+"://"+b.Addr, "route", b.Route, "weight", b.Weight, "status", b.Flags.String())
	}
	if cfg.HealthInterval > 0 && len(members) > 0 {
		opts := health.Options{Interval: cfg.HealthInterval, Timeout: cfg.HealthTimeout, Fall: cfg.HealthFall, Rise: cfg.HealthRise}
		if ctl != nil {
			opts.OnChange = ctl.Changed
		}
		go health.New(members, probes, opts, log).Run(ctx)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	code := 0
	select {
	case s := <-sig:
		log.Info("shutting down", "signal", s.String(), "grace", cfg.ShutdownTimeout)
	case err := <-errc:
		log.Error("listener failed", "err", err)
		code = 1
	}
	stop()
	if px != nil {
		done := make(chan struct{})
		go func() {
			px.Shutdown()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(cfg.ShutdownTimeout):
			log.Warn("shutdown grace period over; dropping requests still in flight")
		}
	}
	if metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		metricsSrv.Shutdown(ctx)
		cancel()
	}
	if ctl != nil {
		log.Info("XDP datapath left attached: it keeps steering until the next catherd takes over (catherd unload removes it)")
	}
	return code
}

// targets describes each --backend's transport.
func targets(cfg *config.Config) []proxy.Target {
	ts := make([]proxy.Target, len(cfg.Backends))
	for i, b := range cfg.Backends {
		ts[i].Addr = b.Addr
		if b.Scheme == "ajp" {
			ts[i].AJP = &ajp.ClientOptions{Secret: b.Secret, PacketSize: b.PacketSize, Ping: b.Ping}
		}
	}
	return ts
}

// openDatapath checks the L4 flags against the host and loads and attaches
// the XDP program. Its errors name the flag they are about.
func openDatapath(cfg *config.Config, log *slog.Logger) (*xdp.Datapath, error) {
	if _, err := net.InterfaceByName(cfg.L4.Iface); err != nil {
		return nil, fmt.Errorf("--xdp-iface %s: no such interface", cfg.L4.Iface)
	}
	if err := l4.CheckVIPs(cfg.L4.Services); err != nil {
		return nil, fmt.Errorf("--l4 %v", err)
	}
	for _, s := range cfg.L4.Services {
		for _, b := range s.Backends {
			if _, err := l4.NetlinkResolver(b.Addr); err != nil && !errors.Is(err, l4.ErrNoNeighbor) {
				return nil, fmt.Errorf("--l4 %s: backend %v", s, err)
			}
		}
	}
	dp, err := xdp.Open(xdp.Options{Iface: cfg.L4.Iface, Mode: cfg.L4.Mode, PinDir: cfg.L4.PinDir,
		ConntrackSize: cfg.L4.ConntrackSize, Log: log})
	if err != nil {
		return nil, fmt.Errorf("--xdp-iface %s: %v", cfg.L4.Iface, err)
	}
	return dp, nil
}
