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
	"github.com/catherd/catherd/userspace/metrics"
	"github.com/catherd/catherd/userspace/proxy"
)

const usage = `Usage: catherd <command> [flags]

Commands:
  run       run the balancer (see: catherd run --help)
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
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "catherd: unknown command %q (want run or help)\n", args[0])
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

	members := make([]*balancer.Member, len(cfg.Backends))
	targets := make([]proxy.Target, len(cfg.Backends))
	for i, b := range cfg.Backends {
		members[i] = balancer.NewMember(b.Name, b.Route, b.Weight, b.Flags)
		targets[i].Addr = b.Addr
		if b.Scheme == "ajp" {
			targets[i].AJP = &ajp.ClientOptions{Secret: b.Secret, PacketSize: b.PacketSize, Ping: b.Ping}
		}
	}
	pool, err := balancer.NewPool(members, cfg.LBMethod, balancer.Options{Retry: cfg.Retry, NoFailover: cfg.NoFailover})
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: --backend: %v\n", err)
		return 2
	}
	m := metrics.New(pool)
	px := proxy.New(pool, targets, m, cfg.Proxy, log)

	// Bind everything before serving anything, so a bad address stops
	// start-up with nothing half-running.
	var listeners []net.Listener
	closeAll := func() {
		for _, ln := range listeners {
			ln.Close()
		}
	}
	for _, addr := range cfg.Listen {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			fmt.Fprintf(stderr, "catherd run: --listen %s: %v\n", addr, err)
			return 2
		}
		listeners = append(listeners, ln)
	}
	var metricsSrv *http.Server
	if cfg.Metrics != "" {
		ln, err := net.Listen("tcp", cfg.Metrics)
		if err != nil {
			closeAll()
			fmt.Fprintf(stderr, "catherd run: --metrics %s: %v\n", cfg.Metrics, err)
			return 2
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go metricsSrv.Serve(ln)
	}

	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { errc <- px.Serve(ln) }()
		log.Info("listening", "addr", ln.Addr().String())
	}
	for _, b := range cfg.Backends {
		log.Info("member", "name", b.Name, "url", b.Scheme+"://"+b.Addr, "route", b.Route, "weight", b.Weight, "status", b.Flags.String())
	}

	checkCtx, stopChecks := context.WithCancel(context.Background())
	defer stopChecks()
	if cfg.HealthInterval > 0 {
		probes := make([]health.Probe, len(members))
		for i := range members {
			probes[i] = px.Probe(i, cfg.HealthURI)
		}
		checker := health.New(members, probes, health.Options{Interval: cfg.HealthInterval, Timeout: cfg.HealthTimeout,
			Fall: cfg.HealthFall, Rise: cfg.HealthRise}, log)
		go checker.Run(checkCtx)
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
	stopChecks()
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
	if metricsSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		metricsSrv.Shutdown(ctx)
		cancel()
	}
	return code
}
