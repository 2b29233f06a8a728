package proxy

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// asyncHandler hands log records to a goroutine that writes them, so that
// a loop never waits on a log's file or terminal. A burst past its queue
// drops records rather than stall the loop; the drops are counted in the
// next record written.
type asyncHandler struct {
	slog.Handler
	q       chan slog.Record
	dropped *atomic.Uint64
}

// asyncLogQueue bounds the records waiting to be written.
const asyncLogQueue = 1024

// newAsyncLogger returns a logger writing through log's handler, and the
// function that ends it once nothing logs to it any more.
func newAsyncLogger(log *slog.Logger) (*slog.Logger, func()) {
	h := &asyncHandler{Handler: log.Handler(), q: make(chan slog.Record, asyncLogQueue), dropped: new(atomic.Uint64)}
	go h.write()
	return slog.New(h), func() { close(h.q) }
}

func (h *asyncHandler) Handle(_ context.Context, r slog.Record) error {
	select {
	case h.q <- r.Clone():
	default:
		h.dropped.Add(1)
	}
	return nil
}

func (h *asyncHandler) write() {
	for r := range h.q {
		if n := h.dropped.Swap(0); n > 0 {
			r.AddAttrs(slog.Uint64("log_records_dropped", n))
		}
		h.Handler.Handle(context.Background(), r)
	}
}

func (h *asyncHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &asyncHandler{Handler: h.Handler.WithAttrs(attrs), q: h.q, dropped: h.dropped}
}

func (h *asyncHandler) WithGroup(name string) slog.Handler {
	return &asyncHandler{Handler: h.Handler.WithGroup(name), q: h.q, dropped: h.dropped}
}
