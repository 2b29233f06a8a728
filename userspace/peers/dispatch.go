package peers

import "sync"

// dispatcher calls OnChange from one goroutine of its own, in the order the
// changes were applied. Changes are queued while the table's lock is held
// (so the queue's order is the table's) and handed over after it is
// released, so a callback may call the Member freely, and a slow callback
// delays neither memberlist's packet handling nor a Set.
type dispatcher struct {
	fn func(Change)

	mu     sync.Mutex
	cond   *sync.Cond
	queue  []Change
	pushed uint64
	done   uint64
	closed bool
}

func newDispatcher(fn func(Change)) *dispatcher {
	d := &dispatcher{fn: fn}
	d.cond = sync.NewCond(&d.mu)
	return d
}

func (d *dispatcher) push(c Change) {
	if d.fn == nil {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, c)
	d.pushed++
	d.cond.Broadcast()
	d.mu.Unlock()
}

func (d *dispatcher) run() {
	for {
		d.mu.Lock()
		for len(d.queue) == 0 && !d.closed {
			d.cond.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		batch := d.queue
		d.queue = nil
		d.mu.Unlock()
		for _, c := range batch {
			d.fn(c)
		}
		d.mu.Lock()
		d.done += uint64(len(batch))
		d.cond.Broadcast()
		d.mu.Unlock()
	}
}

// wait returns once every change queued before the call has been handed to
// the callback (or the dispatcher closed).
func (d *dispatcher) wait() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for target := d.pushed; d.done < target && !d.closed; {
		d.cond.Wait()
	}
}

// close drops what is still queued; run returns after the callback it is
// in, if any.
func (d *dispatcher) close() {
	d.mu.Lock()
	d.closed = true
	d.cond.Broadcast()
	d.mu.Unlock()
}
