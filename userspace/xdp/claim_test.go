package xdp

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/catherd/catherd/scripts/l4topo"
)

// The pinned maps have one writer: a second Open on the same directory is
// refused while the first holds it; a successor opens unclaimed and
// claims once the first lets go.
func TestOneWriterPerPinDir(t *testing.T) {
	l4topo.Require(t)
	inNewNetns(t, func(*net.Interface) {
		pins := pinDirOf(t)
		t.Cleanup(func() { Unload(pins) })
		open := func(successor bool) (*Datapath, error) {
			return Open(Options{Ifaces: []string{"lo"}, Mode: Generic, PinDir: pins, Successor: successor})
		}
		first, err := open(false)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if second, err := open(false); !errors.Is(err, ErrPinsClaimed) {
			if second != nil {
				second.Close()
			}
			t.Fatalf("a second writer's Open: %v", err)
		}
		succ, err := open(true)
		if err != nil {
			t.Fatalf("a successor's Open: %v", err)
		}
		defer succ.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := succ.Claim(ctx); !errors.Is(err, ErrPinsClaimed) {
			t.Fatalf("the successor claimed the pins while the first held them: %v", err)
		}
		first.Unclaim()
		if err := succ.Claim(context.Background()); err != nil {
			t.Fatalf("the successor's claim once the first let go: %v", err)
		}
		if again, err := open(false); !errors.Is(err, ErrPinsClaimed) {
			if again != nil {
				again.Close()
			}
			t.Fatalf("an Open while the successor holds the pins: %v", err)
		}
		succ.Close() // lets go too
		third, err := open(false)
		if err != nil {
			t.Fatalf("an Open after the holder closed: %v", err)
		}
		third.Close()
	})
}
