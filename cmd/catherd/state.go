package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/statefile"
)

// stateSaveInterval is how soon an operator's change or a move reaches
// --state-file; stateTouchInterval, how stale the moved sessions' last use
// may be there (they expire after --session-ttl, an hour by default).
const (
	stateSaveInterval  = time.Second
	stateTouchInterval = time.Minute
)

// readStateFile reads --state-file, if any, for a start that finds no
// predecessor to take over from. An unreadable file does not stop
// catherd: it starts as it would without one, and says so.
func (c *instance) readStateFile() error {
	if c.cfg.StateFile == "" || c.pool == nil {
		return nil
	}
	if err := checkStateDir(c.cfg.StateFile); err != nil {
		return err
	}
	st, ok, err := statefile.Load(c.cfg.StateFile)
	if err != nil {
		c.log.Error("--state-file: starting without the saved state", "err", err)
	}
	if ok {
		c.savedState = &st
	}
	c.keeper = &statefile.Keeper{Path: c.cfg.StateFile, Interval: stateSaveInterval, TouchInterval: stateTouchInterval, Log: c.log,
		Settings: func() balancer.Snapshot { return c.snapshot().Settings() },
		Members:  func() balancer.Snapshot { return c.withAdded(c.pool.MembersSnapshot()).Settings() },
		Versions: c.moved.Versions}
	return nil
}

// snapshot is the pool's state as a successor or the state file takes it:
// members and moved sessions, and the members added at run time.
func (c *instance) snapshot() balancer.Snapshot { return c.withAdded(c.pool.Snapshot()) }

// withAdded is s with the members added at run time.
func (c *instance) withAdded(s balancer.Snapshot) balancer.Snapshot {
	s.Added = c.members.Added()
	return s
}

// checkStateDir refuses a --state-file that could never be written: one
// in a directory that is not there.
func checkStateDir(path string) error {
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("--state-file %s: its directory does not exist", path)
	}
	return nil
}

// resumeSavedState applies what --state-file kept, on a start without a
// predecessor (takeOver applies a predecessor's state instead).
func (c *instance) resumeSavedState() {
	if c.savedState == nil {
		return
	}
	c.members.restore(c.savedState.Added)
	members, moves := c.pool.Resume(*c.savedState)
	c.savedState = nil
	c.log.Info("resumed from --state-file", "file", c.cfg.StateFile, "members", members, "moved_sessions", moves)
}

// keepState saves the pool's settings to --state-file as they change,
// until catherd stops or a successor takes over.
func (c *instance) keepState() {
	if c.keeper == nil {
		return
	}
	ctx, stop := context.WithCancel(c.ctx)
	c.stopKeeper = stop
	go c.keeper.Run(ctx)
}

// stopKeeping stops saving --state-file: a successor took over, and the
// file is its own from then on (one writer at a time).
func (c *instance) stopKeeping() {
	if c.stopKeeper != nil {
		c.stopKeeper()
	}
}

// flushState saves the last changes as catherd stops, unless a successor
// took over.
func (c *instance) flushState(handedOver bool) {
	if c.keeper != nil && !handedOver {
		c.keeper.Flush()
	}
}
