package main

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/statefile"
	"github.com/catherd/catherd/userspace/xdp"
)

// check is `catherd run --check` (nginx -t, haproxy -c): everything a
// start would check before serving, short of binding an address or
// attaching anything, so that it can run beside the catherd it is about
// to replace (systemd runs it before a start and before a reload). The
// flags were checked by config.Parse; this reads the certificates and the
// tier's key, looks the addresses and interfaces up, and has the kernel
// verify the XDP program without pinning or attaching it. Errors are the lines a start
// would print, and exit 2.
func check(cfg *config.Config, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "catherd run: %v\n", err)
		return 2
	}
	if len(cfg.TLSCerts) > 0 {
		if _, err := certs.Load(certPairs(cfg.TLSCerts)); err != nil {
			return fail(fmt.Errorf("--tls-cert: %v", err))
		}
	}
	for _, l := range []struct {
		flag  string
		addrs []string
	}{{"--listen", cfg.Listen}, {"--tls-listen", cfg.TLSListen}, {"--admin", nonEmpty(cfg.Admin)}, {"--metrics", nonEmpty(cfg.Metrics)}} {
		for _, addr := range l.addrs {
			if _, err := net.ResolveTCPAddr("tcp", addr); err != nil {
				return fail(fmt.Errorf("%s %s: %v", l.flag, addr, err))
			}
		}
	}
	var checked []string
	if cfg.StateFile != "" {
		if err := checkStateDir(cfg.StateFile); err != nil {
			return fail(err)
		}
		if _, ok, err := statefile.Load(cfg.StateFile); err != nil {
			return fail(fmt.Errorf("--state-file: %v (catherd would start without it)", err))
		} else if ok {
			checked = append(checked, "the state file reads")
		}
	}
	if cfg.Peers.Listen.IsValid() {
		pc, err := peerConfig(cfg)
		if err != nil {
			return fail(err)
		}
		checked = append(checked, fmt.Sprintf("in a tier as %s on %s, %d --peer to join", pc.Name, pc.Bind, len(pc.Seeds)))
	}
	if cfg.Membership.Group.IsValid() {
		if _, err := membershipIface(cfg); err != nil {
			return fail(err)
		}
	}
	if cfg.L4.Iface != "" || cfg.Membership.Iface != "" {
		ifaces, err := datapathIfaces(cfg)
		if err != nil {
			return fail(err)
		}
		if err := xdp.Verify(cfg.L4.ConntrackSize); err != nil {
			return fail(fmt.Errorf("--xdp-mode %s on %s: %v", cfg.L4.Mode, strings.Join(ifaces, ", "), err))
		}
		checked = append(checked, "the XDP program passes the kernel's verifier")
	}
	summary := fmt.Sprintf("%d members, %d listeners", len(cfg.Members), len(cfg.Listen)+len(cfg.TLSListen))
	if len(cfg.L4.Services) > 0 {
		summary += fmt.Sprintf(", %d L4 services", len(cfg.L4.Services))
	}
	if len(cfg.TLSCerts) > 0 {
		summary += fmt.Sprintf(", %d certificates", len(cfg.TLSCerts))
	}
	fmt.Fprintf(stdout, "catherd run: configuration OK (%s)%s\n", summary, strings.Join(append([]string{""}, checked...), "; "))
	return 0
}

// nonEmpty lists s unless it is empty (a disabled address).
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
