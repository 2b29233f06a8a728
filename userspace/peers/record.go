package peers

import "time"

// Version orders the writes of one key across the tier. Clock is the
// writer's logical clock when it wrote; Origin is the writer's name. Every
// member applies the same rule, so all converge on one record per key
// whatever order the writes arrive in: the higher clock wins, and on equal
// clocks the greater origin name.
type Version struct {
	Clock  uint64
	Origin string
}

// After reports whether v wins over o.
func (v Version) After(o Version) bool {
	if v.Clock != o.Clock {
		return v.Clock > o.Clock
	}
	return v.Origin > o.Origin
}

// Record is the state of one key as a member holds it. A deleted record is
// a tombstone: it stays, without its value, until its expiry, so that a
// peer that missed the delete cannot bring the old value back.
//
// Value is shared with the member's table: it must not be modified.
type Record struct {
	Value   []byte
	Version Version
	Deleted bool
	// Expires is when the record is forgotten; zero means never (a tombstone
	// always expires).
	Expires time.Time
}

// Live reports whether the record holds a value: it exists and is not a
// tombstone.
func (r Record) Live() bool { return r.Version.Clock != 0 && !r.Deleted }

// exists reports whether r is a record at all (live or tombstone), as
// opposed to the zero Record that stands for "absent".
func (r Record) exists() bool { return r.Version.Clock != 0 }

// Change is one applied change of a key, given to Config.OnChange. Old and
// New are the zero Record when the key was absent before or after (after:
// it expired). A Set gives a New that is Live, a Delete a New that is
// Deleted, a Touch a New that differs from Old only in Expires.
type Change struct {
	Key      string
	Old, New Record
}
