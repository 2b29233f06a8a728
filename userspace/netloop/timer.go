package netloop

import "time"

// Timers are kept in a hashed wheel of tick-long slots, filed lazily: a
// Timer moved later stays where it is filed and is filed again when its
// slot comes round. So the common case, a silence bound pushed forward by
// every read, is one store to a field, no heap or list operation and no
// clock read (the loop's clock is read once per wakeup).
const (
	tick   = 10 * time.Millisecond
	nslots = 512 // one turn of the wheel: 5.12 s
)

// Timer calls its function on the loop once its deadline has passed.
type Timer struct {
	l        *Loop
	when     int64 // deadline, unix nanoseconds; 0 when stopped
	filedAt  int64 // the tick whose slot holds it; meaningful when filed
	filed    bool
	callback func()
}

// NewTimer returns a stopped timer that will call f.
func (l *Loop) NewTimer(f func()) *Timer { return &Timer{l: l, callback: f} }

// Set arms t to fire d after the loop's clock (Now).
func (t *Timer) Set(d time.Duration) { t.SetAt(t.l.now + int64(d)) }

// SetAt arms t to fire at the deadline when, in unix nanoseconds.
func (t *Timer) SetAt(when int64) {
	t.when = when
	at := max(when/int64(tick)+1, t.l.timers.cur+1)
	if t.filed && t.filedAt <= at {
		return // found at its slot and filed again then
	}
	t.l.timers.file(t, at)
}

// Stop disarms t.
func (t *Timer) Stop() { t.when = 0 }

type wheel struct {
	cur   int64 // the last tick processed
	slots [nslots][]*Timer
	n     int // entries filed, stale ones included
}

func (w *wheel) init(now int64) { w.cur = now / int64(tick) }

func (w *wheel) file(t *Timer, at int64) {
	s := &w.slots[at%nslots]
	*s = append(*s, t)
	t.filed, t.filedAt = true, at
	w.n++
}

// due is when the next slot that holds timers comes round, in unix
// nanoseconds (0: no timer). It changes only when that slot does, so a
// deadline set from it is rarely moved.
func (w *wheel) due() int64 {
	if w.n == 0 {
		return 0
	}
	for i := int64(1); i <= nslots; i++ {
		if len(w.slots[(w.cur+i)%nslots]) > 0 {
			return (w.cur + i) * int64(tick)
		}
	}
	return 0
}

// advance fires the timers due at now and refiles those moved later.
func (w *wheel) advance(now int64) {
	last := now / int64(tick)
	first := max(w.cur+1, last-nslots+1) // one full turn visits every slot
	for at := first; at <= last; at++ {
		w.cur = at
		s := &w.slots[at%nslots]
		due := *s
		*s = nil
		w.n -= len(due)
		for i, t := range due {
			due[i] = nil
			switch {
			case !t.filed:
				continue // handled through another entry
			case t.filedAt > at:
				if t.filedAt%nslots == at%nslots {
					w.file(t, t.filedAt) // a later turn's: keep it
				}
				continue // else a stale entry: filed again elsewhere
			}
			// t.filedAt < at only when the loop slept over a whole turn.
			t.filed = false
			switch {
			case t.when == 0:
			case t.when > now:
				w.file(t, max(t.when/int64(tick)+1, at+1))
			default:
				t.when = 0
				t.callback()
			}
		}
		if cap(due) <= 64 && len(*s) == 0 {
			*s = due[:0] // keep a small slot's storage
		}
	}
	w.cur = last
}
