package netloop

// Buffer is an I/O buffer of a loop. Buffers are lent while bytes are in
// flight and given back when a connection has nothing left in them, so
// an idle connection holds none.
type Buffer struct {
	B    []byte
	next *Buffer
}

// BufferPool is a loop's free list of buffers of one size. It needs no
// lock: only its loop uses it.
type BufferPool struct {
	size int
	free *Buffer
	n    int // buffers on the free list
	// Lent counts buffers handed out and not given back, for tests and
	// metrics.
	Lent int
}

// maxFree bounds the buffers a loop keeps for reuse; beyond it, buffers
// given back go to the garbage collector, so that a burst does not hold
// its memory for ever.
const maxFree = 256

// Size is the length of the pool's buffers.
func (p *BufferPool) Size() int { return p.size }

// Get lends a buffer of the pool's size.
func (p *BufferPool) Get() *Buffer {
	p.Lent++
	if b := p.free; b != nil {
		p.free, b.next = b.next, nil
		p.n--
		return b
	}
	return &Buffer{B: make([]byte, p.size)}
}

// GetSize lends a buffer of at least n bytes: the pool's when they are
// enough, else one of its own, which Put leaves to the garbage collector.
func (p *BufferPool) GetSize(n int) *Buffer {
	if n <= p.size {
		return p.Get()
	}
	p.Lent++
	return &Buffer{B: make([]byte, n)}
}

// Put gives a buffer back.
func (p *BufferPool) Put(b *Buffer) {
	p.Lent--
	if p.n >= maxFree || cap(b.B) != p.size {
		return
	}
	b.B = b.B[:p.size]
	b.next = p.free
	p.free = b
	p.n++
}
