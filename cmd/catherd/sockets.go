package main

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/handoff"
)

// claimHandoff starts a take-over by receiving the running catherd's
// sockets (--takeover); a fresh start claims the hand-off socket first
// instead, so that a second catherd cannot start beside the first by
// mistake.
func (c *instance) claimHandoff() error {
	cfg := c.cfg
	if cfg.Takeover {
		succ, err := handoff.Take(cfg.HandoffSocket)
		switch {
		case errors.Is(err, handoff.ErrNoPredecessor):
			c.log.Info("--takeover: no catherd is running; starting afresh", "socket", cfg.HandoffSocket)
		case err != nil:
			return fmt.Errorf("--takeover: %v", err)
		default:
			c.succ = succ
			c.log.Info("taking over", "from_pid", succ.Pid(), "socket", cfg.HandoffSocket)
		}
	}
	if c.succ == nil && cfg.HandoffSocket != "" {
		var err error
		if c.handoffSrv, err = handoff.Listen(cfg.HandoffSocket, c.log); err != nil {
			return fmt.Errorf("--handoff-socket %s: %v (start with --takeover to replace it)", cfg.HandoffSocket, err)
		}
	}
	return nil
}

// bindListeners binds (or, taking over, inherits) every listening socket:
// clients', plain and TLS, the admin API's and the metrics'.
func (c *instance) bindListeners() error {
	for _, l := range []struct {
		flag  string
		addrs []string
		to    *[]net.Listener
	}{{"--listen", c.cfg.Listen, &c.plain}, {"--tls-listen", c.cfg.TLSListen, &c.secure}} {
		for _, addr := range l.addrs {
			ln, err := c.listen(l.flag, addr)
			if err != nil {
				return fmt.Errorf("%s %s: %v", l.flag, addr, err)
			}
			*l.to = append(*l.to, ln)
		}
	}
	for _, l := range []struct {
		flag, addr string
		to         *net.Listener
	}{{"--admin", c.cfg.Admin, &c.adminLn}, {"--metrics", c.cfg.Metrics, &c.metricsLn}} {
		if l.addr == "" {
			continue
		}
		ln, err := c.listen(l.flag, l.addr)
		if err != nil {
			return fmt.Errorf("%s %s: %v", l.flag, l.addr, err)
		}
		*l.to = ln
	}
	return nil
}

// listen returns the socket the predecessor had for flag and addr, if
// taking over from one that had it, else binds a new one.
func (c *instance) listen(flag, addr string) (net.Listener, error) {
	var ln net.Listener
	var err error
	if c.succ != nil {
		if ln, _, err = c.succ.Listener(flag + " " + addr); err != nil {
			return nil, err
		}
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, err
		}
	}
	c.listeners = append(c.listeners, ln)
	c.sockets[flag+" "+addr] = ln
	return ln, nil
}

// closeSockets closes every listening socket, gives up a take-over still
// under way and the hand-off socket.
func (c *instance) closeSockets() {
	for _, ln := range c.listeners {
		ln.Close()
	}
	if c.succ != nil {
		c.succ.Abort()
	}
	if c.handoffSrv != nil {
		c.handoffSrv.Close()
	}
}

// takeOver, once everything is built, has the predecessor stop accepting
// and applies its state (member states, moved sessions) before the first
// client is accepted here, or, with no predecessor, what --state-file
// kept; then this process listens for its own successor.
func (c *instance) takeOver() {
	if c.succ == nil {
		c.resumeSavedState()
		if c.tier != nil {
			c.joinPeers() // the tier's state, newer than the file's
		}
		return
	}
	notifyMainPID(c.log)
	succ := c.succ
	c.succ = nil
	st, err := succ.Ready()
	if err != nil {
		c.log.Error("taking over: the predecessor's state is lost; serving without it", "err", err)
	} else {
		var members, moves int
		if c.pool != nil {
			c.members.restore(st.Added)
			members, moves = c.pool.Restore(st)
		}
		c.log.Info("took over", "members", members, "moved_sessions", moves)
	}
	if c.dp != nil {
		// The predecessor stopped writing the maps when it released
		// its sockets (or failed); this process writes them from now on.
		if err := c.writeDatapath(); err != nil {
			c.log.Error("taking over: the XDP maps keep the predecessor's configuration", "err", err)
		} else {
			c.log.Info("taking over: XDP maps written with this process's configuration")
		}
	}
	// The predecessor let go of --peer-listen before it passed its state
	// on, and that state is the tier's as the predecessor knew it: this
	// process joins in the background while it serves.
	if c.cfg.Peers.Listen.IsValid() {
		if err := c.startTier(); err != nil {
			c.log.Error("taking over: serving outside the tier", "err", err)
		} else {
			go c.joinPeers()
		}
	}
	if err == nil {
		c.pred = succ
		go c.takeDrainMoves(succ)
	}
	if c.handoffSrv, err = handoff.Listen(c.cfg.HandoffSocket, c.log); err != nil {
		c.log.Error("--handoff-socket: no successor can take over from this process", "err", err)
	}
}

// takeDrainMoves applies the sessions the predecessor moves while it
// drains, as moves of this process's own: they stay where they went, and
// in a tier they are shared.
func (c *instance) takeDrainMoves(succ *handoff.Successor) {
	n := 0
	err := succ.Moves(func(mv balancer.MovedSession) {
		if c.pool == nil {
			return
		}
		if m := c.pool.Member(mv.Member); m != nil {
			c.moved.Move([]byte(mv.Key), m.Index(), mv.Reason, time.Now())
			n++
		}
	})
	if err != nil {
		c.log.Warn("taking over: the predecessor's moves while draining", "err", err)
	}
	if n > 0 {
		c.log.Info("took over the sessions the predecessor moved while draining", "moved_sessions", n)
	}
}

// serveHandoff lets a successor take over: it gets the listening sockets,
// then, once it is ready, this process closes its own and passes on the
// pool's state.
func (c *instance) serveHandoff() {
	if c.handoffSrv == nil {
		return
	}
	if c.pool != nil {
		c.relay = handoff.NewRelay(c.pool)
	}
	go c.handoffSrv.Serve(handoff.Predecessor{
		Sockets: c.sockets,
		Release: func() {
			for _, ln := range c.listeners {
				ln.Close()
			}
			// The successor takes this instance's name and
			// --peer-listen address in the tier next; the sessions
			// this process moves while it drains go to the successor.
			if c.tier != nil {
				c.tier.Close()
			}
			if c.relay != nil {
				c.moved.Observe(c.relay)
			}
			c.stopDatapath() // the successor writes the pinned maps next
			c.stopKeeping()  // and keeps --state-file
		},
		Relay: c.relay,
		State: func() balancer.Snapshot {
			if c.pool == nil {
				return balancer.Snapshot{}
			}
			return c.snapshot()
		},
	})
}
