package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/l4"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/xdp"
)

// followMembership joins the cluster's membership group (--membership) and
// has the watcher follow every member, found in the pool by name.
func (c *instance) followMembership() error {
	mc := c.cfg.Membership
	if !mc.Group.IsValid() {
		return nil
	}
	iface, err := membershipIface(c.cfg)
	if err != nil {
		return err
	}
	c.watcher, err = membership.Listen(membership.Options{Group: mc.Group, Iface: iface,
		Config: membership.Config{DropTime: mc.DropTime, Domain: mc.Domain, AnyDomain: mc.AnyDomain}}, c.log)
	if err != nil {
		return fmt.Errorf("--membership %s: %v", mc.Group, err)
	}
	for _, s := range c.cfg.Members {
		c.watcher.Watch(c.pool.Member(s.Name), s.ClusterHost, mc.AnyDomain && !s.DomainSet)
	}
	c.metrics.Membership(membershipSeries(c.watcher.Stats))
	return nil
}

// membershipIface is the interface --membership-iface names.
func membershipIface(cfg *config.Config) (*net.Interface, error) {
	iface, err := net.InterfaceByName(cfg.Membership.Iface)
	if err != nil {
		return nil, fmt.Errorf("--membership-iface %s: no such interface", cfg.Membership.Iface)
	}
	return iface, nil
}

// attachDatapath loads the XDP program, which serves the L4 services and
// the membership filter, onto their interfaces, and syncs the services
// (even with no --l4: that clears services a previous catherd left).
func (c *instance) attachDatapath() error {
	cfg := c.cfg
	if cfg.L4.Iface == "" && cfg.Membership.Iface == "" {
		return nil
	}
	var err error
	if c.dp, err = openDatapath(cfg, c.succ != nil, c.log); err != nil {
		return err
	}
	c.metrics.Register(xdp.Collector(c.dp.Stats))
	c.ctl = l4.New(c.dp, l4.NetlinkResolver, l4Services(cfg.L4.Services), c.log)
	// Taking over, the predecessor still writes the pinned maps until
	// this process is ready: the first write waits for takeOver.
	if c.succ == nil {
		if err := c.writeDatapath(); err != nil {
			return err
		}
	}
	c.log.Info("XDP datapath attached", "l4_iface", cfg.L4.Iface, "membership_iface", cfg.Membership.Iface,
		"mode", cfg.L4.Mode, "pins", cfg.L4.PinDir)
	for _, s := range cfg.L4.Services {
		c.log.Info("L4 service", "service", s.String(), "backends", len(s.Backends), "hash_port", s.HashPort)
	}
	return nil
}

// writeDatapath writes this process's configuration into the pinned maps:
// the membership filter and the L4 services. The maps have one writer at
// a time: a successor writes them only once its predecessor has stopped
// (takeOver, after READY) and let go of the pin directory, so that a
// take-over with changed --l4 or --membership flags never interleaves the
// writes of two processes; a catherd started on its own refuses to start
// while another holds the directory (xdp.Open).
func (c *instance) writeDatapath() error {
	ctx, cancel := context.WithTimeoutCause(c.ctx, claimWait, fmt.Errorf("waited %v for it to let go", claimWait))
	defer cancel()
	if err := c.dp.Claim(ctx); err != nil {
		return fmt.Errorf("--xdp-pin-dir: %v", err)
	}
	if err := c.dp.SetMembership(membershipFilter(c.cfg)); err != nil {
		return fmt.Errorf("--membership: %v", err)
	}
	if err := c.ctl.Sync(c.ctx); err != nil {
		return fmt.Errorf("--l4: %v", err)
	}
	return nil
}

// runDatapath keeps the L4 services in the maps in step with their
// backends' health (and every second with the next hops), until
// stopDatapath. A successor whose predecessor did not let go of the pin
// directory in time (takeOver) starts once it does.
func (c *instance) runDatapath() {
	if c.ctl == nil {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	done := make(chan struct{})
	c.stopCtl = func() {
		cancel()
		<-done
	}
	go func() {
		defer close(done)
		if !c.dp.Claimed() {
			if err := c.dp.Claim(ctx); err != nil {
				if ctx.Err() == nil {
					c.log.Error("XDP maps not written: the pin directory cannot be claimed", "err", err)
				}
				return
			}
			if err := c.writeDatapath(); err != nil {
				c.log.Error("XDP maps not written after the predecessor let go late", "err", err)
			} else {
				c.log.Info("XDP maps written with this process's configuration, the predecessor having let go late")
			}
		}
		c.ctl.Run(ctx, time.Second)
	}()
}

// claimWait bounds how long a successor waits for its predecessor to let
// go of the pin directory, which it does when it hands over, right after
// its last write.
const claimWait = 10 * time.Second

// stopDatapath stops writing the maps, and returns once the last write is
// done and the pin directory let go: at a hand-over, before the successor
// writes them.
func (c *instance) stopDatapath() {
	if c.stopCtl != nil {
		c.stopCtl()
	}
	if c.dp != nil {
		c.dp.Unclaim()
		c.log.Info("XDP maps left to the successor: this process no longer writes them")
	}
}

// membershipFilter is the XDP filter's configuration; the zero filter (off)
// without --membership.
func membershipFilter(cfg *config.Config) xdp.MembershipFilter {
	mc := cfg.Membership
	if !mc.Group.IsValid() {
		return xdp.MembershipFilter{}
	}
	iface, _ := net.InterfaceByName(mc.Iface) // checked by followMembership
	return xdp.MembershipFilter{Group: mc.Group, Allow: membership.AllowedSources(mc.Allow, iface), Domain: mc.Domain,
		AnyDomain: mc.AnyDomain, Rate: mc.Rate}
}

// openDatapath checks the XDP flags against the host and loads and
// attaches the program to the L4 interface and the membership interface
// (one program and one set of maps; one attachment when they are the
// same). Its errors name the flag they are about.
func openDatapath(cfg *config.Config, successor bool, log *slog.Logger) (*xdp.Datapath, error) {
	ifaces, err := datapathIfaces(cfg)
	if err != nil {
		return nil, err
	}
	dp, err := xdp.Open(xdp.Options{Ifaces: ifaces, Mode: xdp.Mode(cfg.L4.Mode), PinDir: cfg.L4.PinDir,
		ConntrackSize: cfg.L4.ConntrackSize, Successor: successor, Log: log})
	if errors.Is(err, xdp.ErrPinsClaimed) {
		return nil, fmt.Errorf("--xdp-pin-dir %s: %v: take over from it (--takeover, catherd reload), or give this one its own --xdp-pin-dir", cfg.L4.PinDir, xdp.ErrPinsClaimed)
	}
	if err != nil {
		return nil, fmt.Errorf("--xdp-mode %s on %s: %v", cfg.L4.Mode, strings.Join(ifaces, ", "), err)
	}
	return dp, nil
}

// datapathIfaces checks the XDP flags against the host (interfaces, and
// the --l4 services: see l4.CheckHost) and returns the interfaces the
// program goes on.
func datapathIfaces(cfg *config.Config) ([]string, error) {
	var ifaces []string
	for _, f := range []struct{ flag, iface string }{{"--xdp-iface", cfg.L4.Iface}, {"--membership-iface", cfg.Membership.Iface}} {
		if f.iface == "" || slices.Contains(ifaces, f.iface) {
			continue
		}
		if _, err := net.InterfaceByName(f.iface); err != nil {
			return nil, fmt.Errorf("%s %s: no such interface", f.flag, f.iface)
		}
		ifaces = append(ifaces, f.iface)
	}
	if err := l4.CheckHost(l4Services(cfg.L4.Services)); err != nil {
		return nil, fmt.Errorf("--l4 %v", err)
	}
	return ifaces, nil
}
