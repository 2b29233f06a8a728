package statefile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
)

func TestSaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if _, ok, err := Load(path); ok || err != nil {
		t.Fatalf("no file yet: ok %v, err %v", ok, err)
	}
	want := balancer.Snapshot{Members: []balancer.MemberSnapshot{{Name: "a", Flags: balancer.Disabled, Weight: 3}},
		Moved: []balancer.MovedSession{{Key: "k", Member: "a", LastUsed: time.Unix(100, 0).UTC()}}}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := Load(path)
	if !ok || err != nil || len(got.Members) != 1 || got.Members[0] != want.Members[0] || len(got.Moved) != 1 || got.Moved[0] != want.Moved[0] {
		t.Fatalf("Load: %+v %v %v; want %+v", got, ok, err, want)
	}
	// Nothing but the file itself is left in the directory.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the file", len(ents))
	}
	os.WriteFile(path, []byte("{not json"), 0o600)
	if _, _, err := Load(path); err == nil {
		t.Error("a corrupt file loaded without error")
	}
}

// A save that cannot write leaves the old file whole.
func TestSaveFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := Save(path, balancer.Snapshot{Members: []balancer.MemberSnapshot{{Name: "a"}}}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	if err := Save(filepath.Join(dir, "missing", "state.json"), balancer.Snapshot{}); err == nil {
		t.Error("a save into a missing directory succeeded")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("the old file changed")
	}
}

// The keeper saves operators' changes and moves at once, touches of moved
// sessions only now and then, and nothing when nothing changed; it copies
// the moved sessions only when their versions changed.
func TestKeeperSavesChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	cur := balancer.Snapshot{Members: []balancer.MemberSnapshot{{Name: "a", Weight: 1}}}
	var changed, used uint64 // the moved table's versions
	copies := 0              // of the moved sessions
	k := &Keeper{Path: path,
		Settings: func() balancer.Snapshot {
			copies++
			c := cur
			c.Moved = append([]balancer.MovedSession(nil), cur.Moved...)
			return c
		},
		Members:  func() balancer.Snapshot { return balancer.Snapshot{Members: cur.Members} },
		Versions: func() (uint64, uint64) { return changed, used },
		Interval: time.Hour, TouchInterval: time.Minute, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	mtime := func() time.Time {
		fi, err := os.Stat(path)
		if err != nil {
			return time.Time{}
		}
		return fi.ModTime()
	}
	loaded := func() balancer.Snapshot {
		s, ok, err := Load(path)
		if !ok || err != nil {
			t.Fatalf("Load: %v %v", ok, err)
		}
		return s
	}
	t0 := time.Unix(1000, 0)
	k.save(t0, false)
	if s := loaded(); s.Members[0].Weight != 1 {
		t.Fatalf("first save: %+v", s)
	}
	cur.Members[0].Weight = 5
	k.save(t0.Add(time.Second), false)
	if s := loaded(); s.Members[0].Weight != 5 {
		t.Errorf("a weight changed: saved %+v", s)
	}
	cur.Moved = []balancer.MovedSession{{Key: "s1", Member: "a", LastUsed: t0}}
	changed++
	k.save(t0.Add(2*time.Second), false)
	if s := loaded(); len(s.Moved) != 1 {
		t.Errorf("a session moved: saved %+v", s)
	}

	os.Remove(path) // from here, a write shows as the file's return
	before := copies
	k.save(t0.Add(3*time.Second), false)
	if !mtime().IsZero() {
		t.Error("saved with nothing changed")
	}
	cur.Moved[0].LastUsed = t0.Add(3 * time.Second)
	used++
	k.save(t0.Add(4*time.Second), false)
	if copies != before {
		t.Errorf("the moved sessions copied %d times with nothing to save", copies-before)
	}
	if !mtime().IsZero() {
		t.Error("a touch saved before TouchInterval")
	}
	k.save(t0.Add(2*time.Second+time.Minute), false)
	if s := loaded(); !s.Moved[0].LastUsed.Equal(t0.Add(3 * time.Second)) {
		t.Errorf("a touch after TouchInterval: saved %+v", s)
	}

	os.Remove(path)
	cur.Moved[0].LastUsed = t0.Add(5 * time.Second)
	used++
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	k.Run(ctx)
	if !mtime().IsZero() {
		t.Error("Run saved a touch as it ended")
	}
	k.Flush()
	if s := loaded(); !s.Moved[0].LastUsed.Equal(t0.Add(5 * time.Second)) {
		t.Errorf("the flush on stop: %+v", s)
	}
}

// What the keeper costs a second with a full moved-session table
// (--session-table-size's default): "unchanged" is a look with nothing
// to save, what it does every second while no session moves; "moved" is
// a look after one session moved, which copies and writes the table.
func BenchmarkKeeperFullTable(b *testing.B) {
	const size = 262144
	table := moved.New(time.Hour, size)
	now := time.Now()
	for i := range size {
		table.Move(fmt.Appendf(nil, "%032X", i), 1, moved.Down, now)
	}
	members := []*balancer.Member{balancer.NewMember("a", "a", 1, 0), balancer.NewMember("b", "b", 1, 0)}
	pool, err := balancer.NewPool(members, "byrequests", balancer.Options{Moved: table})
	if err != nil {
		b.Fatal(err)
	}
	k := &Keeper{Path: filepath.Join(b.TempDir(), "state.json"),
		Settings: func() balancer.Snapshot { return pool.Snapshot().Settings() },
		Members:  func() balancer.Snapshot { return pool.MembersSnapshot().Settings() },
		Versions: table.Versions, Interval: time.Second, TouchInterval: time.Minute, Log: slog.New(slog.DiscardHandler)}
	k.save(now, false)
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			k.save(now, false)
		}
	})
	b.Run("moved", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			table.Move(fmt.Appendf(nil, "%032X", i%size), i%2, moved.Down, now)
			k.save(now, false)
		}
	})
}
