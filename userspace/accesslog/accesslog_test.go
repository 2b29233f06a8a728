package accesslog

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func record() *Record {
	return &Record{
		At: time.Date(2026, 12, 2, 7, 30, 5, 0, time.UTC), Client: netip.MustParseAddr("10.0.0.7"),
		Method: []byte("GET"), Target: []byte(`/shop?q="x"` + "\n\xff"), Proto: []byte("HTTP/1.1"),
		Status: 200, BytesIn: 12, BytesOut: 3456, Member: "node1", Sticky: "hit", Attempts: 1,
		MemberTime: 1234567 * time.Nanosecond, Total: 2500 * time.Microsecond,
		Referer: []byte("http://shop/"), UA: []byte("curl/8"),
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	for s := bufio.NewScanner(f); s.Scan(); {
		lines = append(lines, s.Text())
	}
	return lines
}

// Lines in both formats parse back into what was logged, with what a
// client sent that could break a line escaped.
func TestFormats(t *testing.T) {
	dir := t.TempDir()
	combined := regexp.MustCompile(`^10\.0\.0\.7 - - \[02/Dec/2026:07:30:05 \+0000\] "GET /shop\?q=\\"x\\"\\x0a\\xff HTTP/1\.1" 200 3456 "http://shop/" "curl/8" member=node1 sticky=hit attempts=1 in=12 member_ms=1\.234 total_ms=2\.500$`)
	for _, format := range []Format{Combined, JSON} {
		path := filepath.Join(dir, "log")
		os.Remove(path)
		l, err := Open(path, format)
		if err != nil {
			t.Fatal(err)
		}
		w := l.Writer()
		w.Write(record())
		w.Flush(time.Now().UnixNano())
		l.Close()
		deadline := time.Now().Add(5 * time.Second)
		var lines []string
		for lines = readLines(t, path); len(lines) == 0 && time.Now().Before(deadline); lines = readLines(t, path) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(lines) != 1 {
			t.Fatalf("format %d: %d lines", format, len(lines))
		}
		if format == Combined {
			if !combined.MatchString(lines[0]) {
				t.Errorf("combined line %q", lines[0])
			}
			continue
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
			t.Fatalf("JSON line %q: %v", lines[0], err)
		}
		if got["target"] != "/shop?q=\"x\"\n\u00ff" || got["status"] != 200.0 || got["member"] != "node1" || got["sticky"] != "hit" ||
			got["total_ms"] != 2.5 || got["time"] != "2026-12-02T07:30:05Z" {
			t.Errorf("JSON line %v", got)
		}
	}
}

// A writer that outpaces the file drops lines (counted) rather than
// block: here the file is a pipe nobody reads.
func TestDropsWhenBehind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	reader, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0) // never read
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, Combined)
	if err != nil {
		t.Fatal(err)
	}
	w := l.Writer()
	r := record()
	r.UA = []byte(strings.Repeat("u", 1000))
	start := time.Now()
	for range 20000 { // ~20 MB of lines: far past the pipe and the buffers
		w.Write(r)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("20000 writes took %v: the writer blocks", d)
	}
	if l.Dropped.Load() == 0 {
		t.Fatal("no line dropped past the buffers")
	}
	reader.Close() // the blocked write fails; Close ends the writer
	l.Close()
}

// Reopen moves later lines to a new file at the same path (logrotate).
func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := Open(path, Combined)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := l.Writer()
	w.Write(record())
	w.Flush(time.Now().Add(time.Hour).UnixNano())
	waitLines := func(p string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(readLines(t, p)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("nothing written to %s", p)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitLines(path)
	os.Rename(path, path+".1")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write(record())
	w.Flush(time.Now().Add(2 * time.Hour).UnixNano())
	waitLines(path)
	if n := len(readLines(t, path+".1")); n != 1 {
		t.Fatalf("the rotated file has %d lines, want 1", n)
	}
}
