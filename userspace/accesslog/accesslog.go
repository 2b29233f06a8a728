// Package accesslog writes one line per request, in Apache's combined
// format or as JSON, without the request path waiting on the file or
// allocating: each event loop formats its lines into a buffer of its own,
// hands full buffers (and, every flushEvery, the one it is filling) to a
// goroutine that writes them, and takes empty ones back. When the writer
// falls behind and no buffer is free, lines are dropped and counted, not
// queued without bound.
package accesslog

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Format is a line format.
type Format int

const (
	// Combined is Apache's combined log format with catherd's fields
	// appended as key=value pairs.
	Combined Format = iota
	// JSON is one JSON object per line.
	JSON
)

// ParseFormat reads a --access-log-format value.
func ParseFormat(s string) (Format, error) {
	switch s {
	case "combined":
		return Combined, nil
	case "json":
		return JSON, nil
	}
	return 0, fmt.Errorf("want combined or json, got %q", s)
}

// Sizes: each buffer holds many lines; buffers in all bound the memory
// lines may take while the writer is behind.
const (
	bufSize    = 64 << 10
	maxBuffers = 64
	flushEvery = 200 * time.Millisecond
)

// Log is an open access log: a file (or standard output) and the
// goroutine that writes to it.
type Log struct {
	path   string // "-" for standard output
	format Format
	full   chan []byte // buffers to write
	free   chan []byte // buffers written, to fill again
	reopen chan chan error
	done   chan struct{}
	closed sync.Once
	// Dropped counts lines lost because no buffer was free.
	Dropped atomic.Uint64
	// Written counts lines handed to the file.
	Written atomic.Uint64

	mu   sync.Mutex // guards f between Reopen and the writer
	f    *os.File
	wErr error // the last write error, reported once per change
}

// Open opens path for appending ("-": standard output) and starts the
// writer.
func Open(path string, format Format) (*Log, error) {
	l := &Log{path: path, format: format, full: make(chan []byte, maxBuffers), free: make(chan []byte, maxBuffers),
		reopen: make(chan chan error), done: make(chan struct{})}
	f, err := l.open()
	if err != nil {
		return nil, err
	}
	l.f = f
	for range maxBuffers {
		l.free <- make([]byte, 0, bufSize)
	}
	go l.write()
	return l, nil
}

func (l *Log) open() (*os.File, error) {
	if l.path == "-" {
		return os.Stdout, nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return f, nil
}

// Reopen opens the file again, for logrotate (SIGUSR1): lines written
// after it go to the new file.
func (l *Log) Reopen() error {
	if l.path == "-" {
		return nil
	}
	errc := make(chan error)
	select {
	case l.reopen <- errc:
		return <-errc
	case <-l.done:
		return errors.New("access log closed")
	}
}

// write is the writer goroutine.
func (l *Log) write() {
	for {
		select {
		case b := <-l.full:
			l.writeBuf(b)
		case errc := <-l.reopen:
			f, err := l.open()
			if err == nil {
				old := l.f
				l.f = f
				if old != os.Stdout {
					old.Close()
				}
			}
			errc <- err
		case <-l.done:
			for {
				select {
				case b := <-l.full:
					l.writeBuf(b)
				default:
					if l.f != os.Stdout {
						l.f.Close()
					}
					return
				}
			}
		}
	}
}

func (l *Log) writeBuf(b []byte) {
	if _, err := l.f.Write(b); err != nil && (l.wErr == nil || l.wErr.Error() != err.Error()) {
		l.wErr = err
		fmt.Fprintf(os.Stderr, "catherd: access log %s: %v\n", l.path, err)
	}
	select {
	case l.free <- b[:0]:
	default:
	}
}

// Close writes what was handed over and closes the file. Writers must not
// be used after it.
func (l *Log) Close() {
	l.closed.Do(func() { close(l.done) })
}

// Writer is one event loop's end of the log: only that loop uses it.
type Writer struct {
	l       *Log
	buf     []byte // being filled; nil when none was free
	lastAt  int64  // when buf was last handed over
	stamp   []byte // the formatted time of second sec
	sec     int64
	pending uint64 // lines in buf
}

// Writer returns a writer for one loop.
func (l *Log) Writer() *Writer { return &Writer{l: l} }

// line returns the buffer to append a line to, or nil when none is free.
func (w *Writer) line() []byte {
	if w.buf == nil {
		select {
		case w.buf = <-w.l.free:
		default:
			return nil
		}
	}
	return w.buf
}

// done takes the line appended to buf (which line returned), handing the
// buffer over when it is nearly full.
func (w *Writer) done(buf []byte) {
	w.buf = buf
	w.pending++
	if len(buf) > bufSize-4096 {
		w.handOver()
	}
}

// Flush hands over what was written: the loop calls it every flushEvery
// (now is its clock, unix nanoseconds), so that lines reach the file soon
// when traffic is light.
func (w *Writer) Flush(now int64) {
	if w.buf != nil && len(w.buf) > 0 && now-w.lastAt >= int64(flushEvery) {
		w.handOver()
		w.lastAt = now
	}
}

// FlushEvery is how often a loop should call Flush.
func FlushEvery() time.Duration { return flushEvery }

func (w *Writer) handOver() {
	select {
	case w.l.full <- w.buf:
		w.l.Written.Add(w.pending)
	default:
		w.l.Dropped.Add(w.pending) // cannot happen: a buffer out is one slot in full
	}
	w.buf, w.pending = nil, 0
}
