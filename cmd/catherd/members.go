package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/catherd/catherd/userspace/admin"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/config"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/proxy"
)

// roster is the members catherd serves, as --backend configured them and
// as added or removed at run time (catherd member add|remove): each one's
// spec and upstream. A change reaches every part that keeps members: an
// added member is attached to the proxy before the pool may pick it, then
// probed and watched; a removed one leaves the pool first, then the rest.
type roster struct {
	c *instance

	mu    sync.Mutex
	specs []config.MemberSpec // the members, in order
	ups   map[*balancer.Member]*proxy.Upstream
	added map[string]bool // names added at run time, not by --backend
}

func newRoster(c *instance) *roster {
	r := &roster{c: c, specs: slices.Clone(c.cfg.Members), ups: map[*balancer.Member]*proxy.Upstream{}, added: map[string]bool{}}
	for _, u := range c.upstreams {
		r.ups[u.Member()] = u
	}
	return r
}

// Add adds the member a --backend value describes, and shares it with
// the tier, if any.
func (r *roster) Add(spec string) (*balancer.Member, error) {
	m, err := r.add(spec)
	if err == nil && r.c.tier != nil {
		r.c.tier.Added(m.Name, spec)
	}
	return m, err
}

// AddFromTier adds a member a peer added (tier.Roster).
func (r *roster) AddFromTier(spec string) error {
	_, err := r.add(spec)
	return err
}

func (r *roster) add(spec string) (*balancer.Member, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := config.ParseMember(spec, r.specs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", admin.ErrInvalid, err)
	}
	c := r.c
	u := newUpstreams([]config.MemberSpec{s})[0]
	m := u.Member()
	if _, err := c.pool.Add(m, func() { c.px.Attach(u) }); err != nil {
		return nil, fmt.Errorf("cannot add %s: %w", s.Name, err)
	}
	if c.checker != nil {
		c.checker.Add(health.Target{Member: m, Probe: u.Probe(c.cfg.HealthURI)})
	}
	if c.watcher != nil {
		c.watcher.Watch(m, s.ClusterHost, c.cfg.Membership.AnyDomain && !s.DomainSet)
	}
	r.specs = append(r.specs, s)
	r.ups[m] = u
	r.added[s.Name] = true
	c.log.Info("member added", "name", s.Name, "url", u.URL(), "route", s.Route, "weight", s.Weight, "status", s.Flags.String())
	return m, nil
}

// Remove removes the named member. With drain, it is evacuated first (its
// sessions move to their partners, as on failover) and removed once it
// has no request in flight; if ctx ends first it stays evacuated, in the
// pool, and the error says so. In a tier, the evacuation is shared at
// once, the removal once done here.
func (r *roster) Remove(ctx context.Context, name string, drain bool) error {
	c := r.c
	m := c.pool.Member(name)
	if m == nil {
		return fmt.Errorf("%w: %q", admin.ErrNotFound, name)
	}
	if len(c.pool.Members()) == 1 {
		return fmt.Errorf("cannot remove %s: %w", name, balancer.ErrLastMember)
	}
	if drain {
		if err := c.pool.Evacuate(m); err != nil {
			return fmt.Errorf("cannot drain %s: %w (remove it without draining, or add a member to its domain first)", name, err)
		}
		if c.tier != nil {
			c.tier.Acted(m, "evacuate")
		}
		if m.WaitIdle(ctx) != nil {
			return fmt.Errorf("%s still has %d requests in flight: evacuated, not removed", name, m.Active())
		}
	}
	if err := r.remove(m); err != nil {
		return err
	}
	c.log.Info("member removed", "name", name, "drained", drain)
	if c.tier != nil {
		c.tier.Removed(name, drain)
	}
	return nil
}

// RemoveFromTier removes a member as a peer did (tier.Roster): at once,
// the tier having waited as the peer asked.
func (r *roster) RemoveFromTier(m *balancer.Member) error { return r.remove(m) }

// remove takes m out of the pool, then out of the proxy, the health
// checks and the membership watcher.
func (r *roster) remove(m *balancer.Member) error {
	c, name := r.c, m.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := c.pool.Remove(m); err != nil {
		if errors.Is(err, balancer.ErrLastMember) {
			return fmt.Errorf("cannot remove %s: %w", name, err)
		}
		return fmt.Errorf("%w: %v", admin.ErrNotFound, err) // removed meanwhile
	}
	u := r.ups[m]
	delete(r.ups, m)
	c.px.Detach(u)
	if c.checker != nil {
		c.checker.Remove(m)
	}
	if c.watcher != nil {
		c.watcher.Unwatch(m)
	}
	r.specs = slices.DeleteFunc(r.specs, func(s config.MemberSpec) bool { return s.Name == name })
	delete(r.added, name)
	return nil
}

// Spec is the named member's --backend value (tier.Roster).
func (r *roster) Spec(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.specs {
		if s.Name == name {
			return s.Spec
		}
	}
	return ""
}

// Target is m's URL.
func (r *roster) Target(m *balancer.Member) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if u := r.ups[m]; u != nil {
		return u.URL()
	}
	return ""
}

// Added lists the --backend values of the members added at run time, in
// order: what a successor, or the next start with --state-file, adds
// again.
func (r *roster) Added() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.specs {
		if r.added[s.Name] {
			out = append(out, s.Spec)
		}
	}
	return out
}

// restore adds the members a predecessor or the state file had added at
// run time, unless --backend names them now (the command line wins). They
// are not shared here: the instance that added them did, and what the
// tier says of them is applied when this one joins; after a restart of
// the whole tier, joinPeers shares those the tier it joined has no record
// of (tier.Restored). An instance that joined no peer shares none.
func (r *roster) restore(specs []string) {
	for _, spec := range specs {
		if _, err := r.add(spec); err != nil {
			r.c.log.Warn("a member added at run time is not added again", "spec_name", specName(spec), "err", err)
		}
	}
}

// specName is the name a --backend value gives, for logs (the rest may
// hold an AJP secret).
func specName(spec string) string {
	name, _, _ := strings.Cut(spec, "=")
	return name
}
