package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/config"
)

// run is `catherd run`: it reads the flags, then builds catherd (every
// part, every address bound: build.go), serves (serve.go) until a signal,
// a successor or a failed listener says stop, and winds down (stop.go).
// A bad flag or anything that fails while building stops it with one line
// and exit code 2, before anything serves.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var adminToken string
	if err == nil {
		adminToken, err = readAdminToken(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	if cfg.Check {
		return check(cfg, stdout, stderr)
	}
	sig := catchSignals()
	started := time.Now()
	log := newLogger(cfg, stderr)

	c, err := build(cfg, adminToken, started, log)
	if err != nil {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	c.serve()
	c.announce(sig)
	code := c.wait(sig, args)
	c.stop()
	return code
}

// catchSignals readies catherd for signals while it starts. A balancer
// must not die because whoever read its log went away (the shell that ran
// catherd reload, a closed pipe): Go would end the process on a write to
// a broken stdout or stderr, so SIGPIPE is ignored. SIGUSR2, SIGHUP and
// SIGUSR1 would end a process still starting, and one may come that was
// not meant for it: systemctl kill signals every process of the service,
// the successor its predecessor just started included. They are caught
// from here on, and ignored until catherd serves (announce).
func catchSignals() chan os.Signal {
	signal.Ignore(syscall.SIGPIPE)
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGUSR1)
	return sig
}

// newLogger writes catherd's log to stderr, in the format and from the
// level the flags say.
func newLogger(cfg *config.Config, stderr io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogJSON {
		return slog.New(slog.NewJSONHandler(stderr, opts))
	}
	return slog.New(slog.NewTextHandler(stderr, opts))
}

// readAdminToken reads --admin-token-file, if given.
func readAdminToken(cfg *config.Config) (string, error) {
	if cfg.AdminTokenFile == "" {
		return "", nil
	}
	token, err := admin.LoadToken(cfg.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("--admin-token-file: %w", err)
	}
	return token, nil
}
