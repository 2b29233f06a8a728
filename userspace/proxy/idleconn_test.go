package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// TestIdleConnBoundsSilenceNotDuration: a peer that keeps sending slowly
// outlives the timeout; one that goes silent is cut off near it.
func TestIdleConnBoundsSilenceNotDuration(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < 8; i++ { // 8 x 100ms: twice the timeout in all
			c.Write([]byte("x"))
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // then silence
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newIdleConn(raw, 400*time.Millisecond)
	defer c.Close()
	start := time.Now()
	buf := make([]byte, 1)
	for i := 0; i < 8; i++ {
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("read %d after %v: %v", i, time.Since(start), err)
		}
	}
	silent := time.Now()
	_, err = c.Read(buf)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want a deadline error after silence, got %v", err)
	}
	if d := time.Since(silent); d > time.Second {
		t.Fatalf("silence tolerated for %v with a 400ms timeout", d)
	}
}
