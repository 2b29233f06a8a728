package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/catherd/catherd/userspace/accesslog"
	"github.com/catherd/catherd/userspace/certs"
)

// wait serves signals until one says stop (SIGTERM, SIGINT), a successor
// takes over, or a listener fails, and returns the exit code. SIGHUP
// rereads the TLS certificates, SIGUSR1 reopens the access log, SIGUSR2
// starts a successor with args, this process's `catherd run` arguments.
func (c *instance) wait(sig <-chan os.Signal, args []string) int {
	var handedOver <-chan struct{} // closed once a successor took over
	if c.handoffSrv != nil {
		handedOver = c.handoffSrv.Done()
	}
	grace := c.cfg.ShutdownTimeout
	for {
		select {
		case sg := <-sig:
			switch sg {
			case syscall.SIGHUP:
				reloadCerts(c.certs, c.log)
			case syscall.SIGUSR1:
				reopenAccessLog(c.accessLog, c.log)
			case syscall.SIGUSR2:
				restartSelf(args, c.log)
			default:
				c.log.Info("shutting down", "signal", sg.String(), "grace", grace)
				return 0
			}
		case <-handedOver:
			c.log.Info("a successor took over; draining", "grace", grace)
			return 0
		case err := <-c.errc:
			if err == nil {
				continue // a listener closed by a take-over
			}
			c.log.Error("listener failed", "err", err)
			return 1
		}
	}
}

// stop winds catherd down once wait returned: it no longer reports ready,
// stops its background loops and the hand-off socket, lets the requests
// in flight finish (--shutdown-timeout), saves the state file's last
// changes, leaves the tier, then stops the admin API and the metrics. The
// XDP datapath stays attached: it steers until the next catherd takes
// over.
func (c *instance) stop() {
	c.serving.Store(false)
	c.cancel()
	handedOver := false
	if c.handoffSrv != nil {
		select {
		case <-c.handoffSrv.Done():
			handedOver = true
		default:
		}
		c.handoffSrv.Close()
	}
	if c.px != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
		if err := c.px.Drain(ctx); errors.Is(err, context.DeadlineExceeded) {
			c.log.Warn("shutdown grace period over; dropping requests still in flight")
		}
		cancel()
	}
	c.flushState(handedOver)
	c.leaveTier() // after the drain: moves made while draining are shared
	if c.relay != nil {
		c.relay.Close() // the moves made while draining are all passed on
	}
	if c.handoffSrv != nil {
		// Handed over: not before the successor has the moves and
		// has told systemd it is the main process.
		c.handoffSrv.Finish(10 * time.Second)
	}
	for _, srv := range []*http.Server{c.metricsSrv, c.adminSrv} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			srv.Shutdown(ctx)
			cancel()
		}
	}
	if c.ctl != nil {
		c.log.Info("XDP datapath left attached: it keeps steering until the next catherd takes over (catherd unload removes it)")
	}
	c.close()
}

// reopenAccessLog opens the access log file again (SIGUSR1), as
// logrotate asks after moving it away.
func reopenAccessLog(l *accesslog.Log, log *slog.Logger) {
	if l == nil {
		log.Info("SIGUSR1: no --access-log to reopen")
		return
	}
	if err := l.Reopen(); err != nil {
		log.Error("SIGUSR1: access log not reopened; lines go to the old file", "err", err)
		return
	}
	log.Info("SIGUSR1: access log reopened")
}

// reloadCerts rereads the TLS certificates (SIGHUP).
func reloadCerts(store *certs.Store, log *slog.Logger) {
	if store == nil {
		log.Info("SIGHUP: nothing to reload (no --tls-listen)")
		return
	}
	if err := store.Reload(); err != nil {
		log.Error("SIGHUP: certificates not reloaded; the previous ones stay in use", "err", err)
		return
	}
	for _, c := range store.Stats().Certs {
		log.Info("SIGHUP: certificate reloaded", "file", c.File, "subject", c.Subject, "not_after", c.NotAfter)
	}
}
