package balancer

// MaxMembers bounds a pool so member sets fit in a fixed-size bitmap that
// lives on the stack of each request.
const MaxMembers = 256

// Set is a set of member indexes.
type Set [MaxMembers / 64]uint64

// Add puts member index i in the set.
func (s *Set) Add(i int) { s[i>>6] |= 1 << (i & 63) }

// Has reports whether member index i is in the set.
func (s *Set) Has(i int) bool { return s[i>>6]&(1<<(i&63)) != 0 }

// Empty reports whether the set has no member.
func (s *Set) Empty() bool { return *s == Set{} }
