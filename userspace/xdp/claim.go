package xdp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrPinsClaimed means that another process writes the maps pinned in the
// directory: two writers would interleave their services and backends.
var ErrPinsClaimed = errors.New("another catherd writes the maps pinned there")

// The maps pinned in a directory have one writer at a time: the process
// that holds an exclusive flock(2) on the directory. The kernel lets go of
// it when the holder exits, however it ends. A process started on its own
// claims the directory before it touches anything in it (Open); a
// successor, which takes over from a running catherd, opens the datapath
// with the directory claimed only if nobody holds it, and otherwise claims
// it once the predecessor lets go (Claim, Unclaim).

// claimPins takes the flock on dir without waiting; ErrPinsClaimed when
// another process holds it.
func claimPins(dir string) (*os.File, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("pin directory: %w", err)
	}
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) // never waits, so never EINTR
	switch {
	case err == nil:
		return f, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		err = ErrPinsClaimed
	}
	f.Close()
	return nil, fmt.Errorf("pin directory %s: %w", dir, err)
}

// claimPoll is how often Claim tries the lock again.
const claimPoll = 20 * time.Millisecond

// Claim makes this process the writer of the pinned maps, waiting until
// ctx ends for the process that holds them (a predecessor, which lets go
// when it stops writing) to let go. A datapath that holds them already
// returns at once.
func (d *Datapath) Claim(ctx context.Context) error {
	tick := time.NewTicker(claimPoll)
	defer tick.Stop()
	for {
		err := d.tryClaim()
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrPinsClaimed) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", err, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// tryClaim claims the pin directory unless this datapath holds it.
func (d *Datapath) tryClaim() error {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	if d.claim != nil {
		return nil
	}
	f, err := claimPins(d.pinDir)
	if err == nil {
		d.claim = f
	}
	return err
}

// Claimed reports whether this process writes the pinned maps.
func (d *Datapath) Claimed() bool {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	return d.claim != nil
}

// Unclaim lets another process write the pinned maps: call it once this
// one no longer writes them.
func (d *Datapath) Unclaim() {
	d.claimMu.Lock()
	defer d.claimMu.Unlock()
	if d.claim != nil {
		d.claim.Close()
		d.claim = nil
	}
}
