package maglev

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// backends returns n backends of the given weight, keyed like real ones:
// consecutive addresses, which differ in a character or two.
func backends(n int, weight uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{ID: uint32(i), Key: fmt.Sprintf("10.0.%d.%d:80", i/256, i%256), Weight: weight}
	}
	return bs
}

func mustBuild(t testing.TB, bs []Backend, size uint32) []uint32 {
	t.Helper()
	table, err := Build(bs, size)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if uint32(len(table)) != size {
		t.Fatalf("Build returned %d slots, want %d", len(table), size)
	}
	return table
}

// movedShare is the share of the slots that differ between two tables.
func movedShare(prev, next []uint32) float64 {
	return float64(len(Diff(prev, next))) / float64(len(next))
}

// without returns bs less its i-th backend, leaving bs as it was.
func without(bs []Backend, i int) []Backend {
	return slices.Delete(slices.Clone(bs), i, i+1)
}

func TestShares(t *testing.T) {
	for _, tc := range []struct {
		name    string
		weights []uint32
	}{
		{"3 equal", []uint32{1, 1, 1}},
		{"10 equal", slices.Repeat([]uint32{7}, 10)},
		{"1,2,3,4", []uint32{1, 2, 3, 4}},
		{"1,1,1,10", []uint32{1, 1, 1, 10}},
		{"100 equal", slices.Repeat([]uint32{1}, 100)},
		{"1..100", func() []uint32 {
			ws := make([]uint32, 100)
			for i := range ws {
				ws[i] = uint32(i + 1)
			}
			return ws
		}()},
		{"1,1000", []uint32{1, 1000}},
		{"large weights", []uint32{1 << 31, ^uint32(0), 3 << 30}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := backends(len(tc.weights), 0)
			var total float64
			for i, w := range tc.weights {
				bs[i].Weight = w
				total += float64(w)
			}
			table := mustBuild(t, bs, DefaultSize)
			slots := make(map[uint32]int)
			for _, id := range table {
				slots[id]++
			}
			worst := 0.0
			for _, b := range bs {
				got := float64(slots[b.ID]) / DefaultSize
				want := float64(b.Weight) / total
				if d := abs(got - want); d > 0.01 {
					t.Errorf("backend %q (weight %d) has %.4f of the slots, want %.4f", b.Key, b.Weight, got, want)
				} else {
					worst = max(worst, d)
				}
				delete(slots, b.ID)
			}
			if len(slots) != 0 {
				t.Errorf("slots hold IDs of no backend: %v", slots)
			}
			t.Logf("largest share error %.5f", worst)
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// Maglev moves more than the minimum when the backend set changes: some
// slots pass between surviving backends. The churn tests count every
// changed slot, those of survivors included.

func TestRemoveMovesLittle(t *testing.T) {
	for _, n := range []int{3, 5, 10, 50} {
		bs := backends(n, 1)
		prev := mustBuild(t, bs, DefaultSize)
		worst := 0.0
		for i := range bs {
			next := mustBuild(t, without(bs, i), DefaultSize)
			removed, survivors := 0, 0
			for _, s := range Diff(prev, next) {
				if prev[s] == bs[i].ID {
					removed++
				} else {
					survivors++
				}
			}
			if owned := count(prev, bs[i].ID); owned == 0 || removed != owned || slices.Contains(next, bs[i].ID) {
				t.Fatalf("n=%d: %d of the %d slots of removed backend %q changed", n, removed, owned, bs[i].Key)
			}
			moved := float64(removed+survivors) / DefaultSize
			if limit := 1/float64(n) + 0.01; moved > limit {
				t.Errorf("n=%d: removing %q moved %.4f of the slots (%d from survivors), want at most %.4f",
					n, bs[i].Key, moved, survivors, limit)
			}
			worst = max(worst, moved-1/float64(n))
		}
		t.Logf("n=%d: removing one moved at most 1/n%+.5f", n, worst)
	}
}

func count(table []uint32, id uint32) int {
	n := 0
	for _, v := range table {
		if v == id {
			n++
		}
	}
	return n
}

func TestAddMovesLittle(t *testing.T) {
	for _, n := range []int{3, 5, 10, 50} {
		bs := backends(n+1, 1)
		prev := mustBuild(t, bs[:n], DefaultSize)
		next := mustBuild(t, bs, DefaultSize)
		moved := movedShare(prev, next)
		if limit := 1/float64(n+1) + 0.01; moved > limit {
			t.Errorf("n=%d: adding one moved %.4f of the slots, want at most %.4f", n, moved, limit)
		}
		t.Logf("n=%d: adding one moved 1/(n+1)%+.5f", n, moved-1/float64(n+1))
	}
}

// TestReweightMovesLittle changes one backend's weight among n of weight
// 100. At the least, the slots its share gains or loses must move; the test
// allows 2 points more for slots passing between the others.
func TestReweightMovesLittle(t *testing.T) {
	for _, n := range []int{3, 5, 10, 50} {
		bs := backends(n, 100)
		prev := mustBuild(t, bs, DefaultSize)
		worst := 0.0
		for _, w := range []uint32{1, 50, 99, 101, 150, 200, 1000} {
			for i := range min(n, 5) {
				changed := slices.Clone(bs)
				changed[i].Weight = w
				next := mustBuild(t, changed, DefaultSize)
				moved := movedShare(prev, next)
				least := abs(1/float64(n) - float64(w)/float64(100*(n-1)+int(w)))
				if moved > least+0.02 {
					t.Errorf("n=%d: weight 100 -> %d moved %.4f of the slots, want at most %.4f + 0.02", n, w, moved, least)
				}
				worst = max(worst, moved-least)
			}
		}
		t.Logf("n=%d: reweighting one moved at most %.5f more than its share change", n, worst)
	}
}

// A backend of weight 0 is as good as absent, so draining is removal.
func TestZeroWeightIsAbsent(t *testing.T) {
	bs := backends(10, 3)
	drained := slices.Clone(bs)
	drained[4].Weight = 0
	if !slices.Equal(mustBuild(t, drained, DefaultSize), mustBuild(t, without(bs, 4), DefaultSize)) {
		t.Error("a backend of weight 0 changes the table")
	}
}

func TestIndependentOfOrder(t *testing.T) {
	bs := backends(50, 0)
	for i := range bs {
		bs[i].Weight = uint32(1 + i%7)
	}
	want := mustBuild(t, bs, DefaultSize)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10 {
		shuffled := slices.Clone(bs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		kept := slices.Clone(shuffled)
		if !slices.Equal(mustBuild(t, shuffled, DefaultSize), want) {
			t.Fatal("the table depends on the order of the backends")
		}
		if !slices.Equal(shuffled, kept) {
			t.Fatal("Build reordered its argument")
		}
	}
}

// A backend claims the same slots whatever its ID: slots follow keys.
func TestSlotsFollowKeys(t *testing.T) {
	bs := backends(20, 1)
	want := mustBuild(t, bs, DefaultSize)
	renumbered := slices.Clone(bs)
	for i := range renumbered {
		renumbered[i].ID = uint32(1000 - i)
	}
	got := mustBuild(t, renumbered, DefaultSize)
	for s := range got {
		if got[s] != 1000-want[s] {
			t.Fatalf("slot %d: ID %d, want %d", s, got[s], 1000-want[s])
		}
	}
}

// TestStable pins the table for a fixed input. Balancers behind one ECMP
// route must build the same tables, including during a rolling upgrade, so
// a change to the permutation or the weighting is a breaking change: if
// this test fails, that change must be deliberate.
func TestStable(t *testing.T) {
	bs := backends(7, 0)
	for i := range bs {
		bs[i].Weight = uint32(i + 1)
	}
	table := mustBuild(t, bs, DefaultSize)
	h := sha256.New()
	if err := binary.Write(h, binary.LittleEndian, table); err != nil {
		t.Fatal(err)
	}
	const want = "e7103fa20b2416197293dee24993911387c5a96ca2275112cf852f9b58e06c70"
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		t.Errorf("table digest %s, want %s", got, want)
	}
}

func TestEmpty(t *testing.T) {
	for name, bs := range map[string][]Backend{
		"no backends":  nil,
		"all weight 0": backends(5, 0),
		"empty slice":  {},
	} {
		for _, size := range []uint32{5, DefaultSize} {
			table := mustBuild(t, bs, size)
			for s, id := range table {
				if id != Empty {
					t.Fatalf("%s, size %d: slot %d holds %d, want Empty", name, size, s, id)
				}
			}
		}
	}
}

// With as many slots as backends, each backend gets exactly one, whatever
// the weights.
func TestOneSlotEach(t *testing.T) {
	for _, size := range []uint32{2, 3, 7, 13} {
		bs := backends(int(size), 0)
		for i := range bs {
			bs[i].Weight = uint32(1 + 100*i)
		}
		table := mustBuild(t, bs, size)
		slices.Sort(table)
		for i, id := range table {
			if id != uint32(i) {
				t.Fatalf("size %d: sorted table %v, want each ID once", size, table)
			}
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backends []Backend
		size     uint32
	}{
		{"size 0", nil, 0},
		{"size 1", nil, 1},
		{"size 4", nil, 4},
		{"size 65536", nil, 65536},
		{"size 65535", nil, 65535},
		{"more backends than slots", backends(6, 1), 5},
		{"more backends than slots, some of weight 0", append(backends(4, 1), backends(6, 0)[4:]...), 5},
		{"duplicate key", []Backend{{ID: 1, Key: "a", Weight: 1}, {ID: 2, Key: "b", Weight: 1}, {ID: 3, Key: "a", Weight: 1}}, 7},
		{"duplicate key of weight 0", []Backend{{ID: 1, Key: "a", Weight: 1}, {ID: 2, Key: "a"}}, 7},
		{"duplicate ID", []Backend{{ID: 1, Key: "a", Weight: 1}, {ID: 2, Key: "b", Weight: 1}, {ID: 1, Key: "c", Weight: 1}}, 7},
		{"duplicate ID of weight 0", []Backend{{ID: 1, Key: "a"}, {ID: 1, Key: "b", Weight: 1}}, 7},
		{"ID Empty", []Backend{{ID: Empty, Key: "a", Weight: 1}}, 7},
	} {
		if table, err := Build(tc.backends, tc.size); err == nil {
			t.Errorf("%s: Build returned %d slots and no error", tc.name, len(table))
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		prev, next, want []uint32
	}{
		{nil, nil, nil},
		{[]uint32{1, 2, 3}, []uint32{1, 2, 3}, nil},
		{[]uint32{1, 2, 3}, []uint32{0, 2, 4}, []uint32{0, 2}},
		{[]uint32{1, 2, 3}, []uint32{1, Empty, 3}, []uint32{1}},
		{nil, []uint32{5, 5}, []uint32{0, 1}},
		{[]uint32{1}, []uint32{1, 1, 2}, []uint32{1, 2}},
		{[]uint32{1, 2, 3}, []uint32{1, 9}, []uint32{1}},
	} {
		if got := Diff(tc.prev, tc.next); !slices.Equal(got, tc.want) {
			t.Errorf("Diff(%v, %v) = %v, want %v", tc.prev, tc.next, got, tc.want)
		}
	}
}

// Writing the Diff of two tables into the first gives the second.
func TestDiffApplies(t *testing.T) {
	bs := backends(10, 1)
	prev := mustBuild(t, bs, DefaultSize)
	next := mustBuild(t, without(bs, 3), DefaultSize)
	applied := slices.Clone(prev)
	for _, s := range Diff(prev, next) {
		applied[s] = next[s]
	}
	if !slices.Equal(applied, next) {
		t.Error("applying the Diff does not give the new table")
	}
}

func TestIsPrime(t *testing.T) {
	const n = 1 << 17
	composite := make([]bool, n)
	composite[0], composite[1] = true, true
	for i := 2; i*i < n; i++ {
		if !composite[i] {
			for j := i * i; j < n; j += i {
				composite[j] = true
			}
		}
	}
	for i, c := range composite {
		if IsPrime(uint32(i)) == c {
			t.Fatalf("IsPrime(%d) = %v", i, c)
		}
	}
	for _, tc := range []struct {
		n    uint32
		want bool
	}{
		{4294967291, true}, // the largest prime below 2^32
		{4294967295, false},
		{4294967279, true},
		{4294967293, false},
		{65521 * 65519, false},
	} {
		if got := IsPrime(tc.n); got != tc.want || big.NewInt(int64(tc.n)).ProbablyPrime(20) != tc.want {
			t.Errorf("IsPrime(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	bs := backends(100, 0)
	for i := range bs {
		bs[i].Weight = uint32(1 + i%4)
	}
	for b.Loop() {
		if _, err := Build(bs, DefaultSize); err != nil {
			b.Fatal(err)
		}
	}
}

// advance must not overflow where size is near 2^32, which no test can
// afford a table of.
func TestAdvanceLargeSize(t *testing.T) {
	const size = 4294967291
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		m := member{next: rng.Uint32N(size), skip: 1 + rng.Uint32N(size-1)}
		switch rng.IntN(4) {
		case 0:
			m.next = size - 1
		case 1:
			m.skip = size - 1
		}
		want := uint32((uint64(m.next) + uint64(m.skip)) % size)
		if m.advance(size); m.next != want {
			t.Fatalf("advance: next %d, want %d", m.next, want)
		}
	}
}
