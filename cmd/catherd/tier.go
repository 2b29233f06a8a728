package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/peers"
	"github.com/catherd/catherd/userspace/tier"
)

// leaveTimeout bounds the goodbyes to the peers when catherd stops or
// hands over.
const leaveTimeout = time.Second

// peerConfig is the tier's part of the configuration as userspace/peers
// takes it, with the key file read and the name defaulted to the host
// name; the zero Config and no error without --peer-listen.
func peerConfig(cfg *config.Config) (peers.Config, error) {
	pc := cfg.Peers
	if !pc.Listen.IsValid() {
		return peers.Config{}, nil
	}
	out := peers.Config{Name: pc.Name, Bind: pc.Listen.String(), Seeds: pc.Seeds}
	if out.Name == "" {
		host, err := os.Hostname()
		if err != nil {
			return peers.Config{}, fmt.Errorf("--peer-name: no host name to default to (%v): give one", err)
		}
		out.Name = host
	}
	if pc.KeyFile != "" {
		key, err := peers.LoadKeyFile(pc.KeyFile)
		if err != nil {
			return peers.Config{}, fmt.Errorf("--peer-key-file: %v", err)
		}
		out.Key = key
	}
	return out, nil
}

// joinTier starts this instance's member of the tier (--peer-listen)
// while catherd builds, so that a bad address stops the start; it joins
// the tier in takeOver, before anything serves and after what
// --state-file kept is applied: when a seed answers, every operator
// action and moved session the tier knows is in force here, newer than
// the file's, before the first client is accepted, so a restarted
// instance never sends a moved session home. With no seed answering, it
// serves alone and keeps trying them. Taking over from a predecessor,
// which holds the --peer-listen address until it hands over, it starts
// and joins once the predecessor has let go (takeOver).
func (c *instance) joinTier() error {
	if !c.cfg.Peers.Listen.IsValid() || c.succ != nil {
		return nil
	}
	return c.startTier()
}

// startTier starts the tier's member on --peer-listen.
func (c *instance) startTier() error {
	pc, err := peerConfig(c.cfg)
	if err != nil {
		return err
	}
	c.tier, err = tier.Start(pc, tier.Options{Pool: c.pool, Moved: c.moved, Roster: c.members, SessionTTL: c.cfg.SessionTTL, Log: c.log})
	if err != nil {
		return fmt.Errorf("--peer-listen %s: %v", c.cfg.Peers.Listen, err)
	}
	c.metrics.Tier(tierSeries(c.tier))
	return nil
}

// joinPeers joins the --peer seeds, logging how it went.
func (c *instance) joinPeers() {
	if len(c.cfg.Peers.Seeds) == 0 {
		c.log.Info("tier: started; no --peer to join, waiting for peers to join this one", "name", c.tier.Name(), "addr", c.tier.Addr())
		return
	}
	began := time.Now()
	err := c.tier.Join()
	switch {
	case errors.Is(err, peers.ErrNoPeers):
		c.log.Warn("tier: no --peer answered; serving alone with what this instance knows, and trying them again", "name", c.tier.Name(), "err", err)
	case err != nil:
		c.log.Error("tier: joining", "err", err)
	default:
		st := c.tier.Stats()
		c.log.Info("tier: joined; the tier's state is in force here", "name", c.tier.Name(), "addr", c.tier.Addr(), "peers", len(c.tier.Peers()),
			"records", st.Records, "took", time.Since(began).Round(time.Millisecond))
		for _, spec := range c.members.Added() {
			c.tier.Restored(specName(spec), spec)
		}
	}
}

// leaveTier says goodbye to the peers, once: when catherd stops, or when
// it hands over (the successor then binds --peer-listen).
func (c *instance) leaveTier() {
	if c.tier == nil {
		return
	}
	if err := c.tier.Leave(leaveTimeout); err != nil {
		// Peers that got no goodbye find this instance failed instead
		// of left: the same to them but for the name of its state.
		c.log.Info("tier: left without every peer's confirmation", "err", err)
	}
}
