// Package statefile keeps what operators changed at run time, and the
// sessions that moved, in a file (--state-file), so that a plain restart
// of catherd, which has no predecessor to take them from, starts where
// the last process left off (HAProxy's server-state-file does this job).
//
// The file is JSON, a balancer.Snapshot's Settings. It is replaced
// atomically (written beside, synced, renamed, the directory synced), so
// a crash leaves the old file or the new one, never half of one.
package statefile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// Load reads the settings saved at path. A missing file is no error: the
// first start has none (ok is false).
func Load(path string) (s balancer.Snapshot, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return balancer.Snapshot{}, false, nil
	}
	if err != nil {
		return balancer.Snapshot{}, false, fmt.Errorf("state file: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return balancer.Snapshot{}, false, fmt.Errorf("state file %s: %w", path, err)
	}
	return s, true, nil
}

// Save replaces the file at path with s, atomically.
func Save(path string, s balancer.Snapshot) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return write(path, b)
}

func write(path string, b []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file %s: %w", path, err)
	}
	// The rename is durable once the directory is.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Keeper saves a pool's settings as they change.
//
// It looks every Interval. A change of what operators set, or of which
// sessions moved where, is saved at once; a change of when moved sessions
// were last used only every TouchInterval, since every request of a moved
// session changes it, and the next process needs it only roughly (moved
// sessions idle for the table's TTL, an hour by default, expire). The
// moved sessions, up to --session-table-size of them, are copied and
// encoded only when their table's Versions say they changed; the
// members' part, a few lines, is compared every time.
type Keeper struct {
	Path string
	// Settings is what to save: the pool's Snapshot().Settings() with
	// the members added at run time.
	Settings func() balancer.Snapshot
	// Members is Settings without the moved sessions (MembersSnapshot).
	Members func() balancer.Snapshot
	// Versions are the moved-session table's (moved.Table.Versions).
	Versions      func() (changed, used uint64)
	Interval      time.Duration
	TouchInterval time.Duration
	Log           *slog.Logger

	mu        sync.Mutex
	saved     []byte // the file's content
	members   []byte // Members() when saved
	changed   uint64 // the table's versions when saved
	used      uint64
	lastSaved time.Time
	failing   bool // the last write failed, and said so
}

// Run saves until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	tick := time.NewTicker(k.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			k.save(now, false)
		}
	}
}

// Flush saves what changed, touches included: the last save of a process
// that stops. A process whose successor took over does not flush, as the
// successor keeps the file from then on.
func (k *Keeper) Flush() { k.save(time.Now(), true) }

// save writes the settings if they changed enough to, given now.
func (k *Keeper) save(now time.Time, force bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// The versions before the copy: a change made meanwhile is in the
	// copy and, its version being newer, saved again next time.
	changed, used := k.Versions()
	members, err := json.Marshal(k.Members())
	if err != nil {
		k.Log.Error("state file not saved", "err", err)
		return
	}
	touchDue := force || now.Sub(k.lastSaved) >= k.TouchInterval
	if k.saved != nil && changed == k.changed && bytes.Equal(members, k.members) && (used == k.used || !touchDue) {
		return
	}
	full, err := json.Marshal(k.Settings())
	if err != nil {
		k.Log.Error("state file not saved", "err", err)
		return
	}
	if !bytes.Equal(full, k.saved) {
		if err := write(k.Path, full); err != nil {
			if !k.failing { // once, not every Interval
				k.Log.Error("state file not saved; retrying", "err", err)
			}
			k.failing = true
			return
		}
		if k.failing {
			k.Log.Info("state file saved again", "file", k.Path)
		}
		k.failing = false
		k.lastSaved = now
	}
	k.saved, k.members, k.changed, k.used = full, members, changed, used
}
