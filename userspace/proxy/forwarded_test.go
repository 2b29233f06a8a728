package proxy

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// forwardedSeen sends raw through r and returns the values of the
// X-Forwarded-* lines in the request the member got, by name, in order.
func forwardedSeen(t *testing.T, r *rig, b *recBackend, raw string) map[string][]string {
	t.Helper()
	conn := r.rawConn()
	io.WriteString(conn, raw)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	conn.Close()
	seen := b.requests()
	if len(seen) == 0 {
		t.Fatal("the member saw no request")
	}
	got := map[string][]string{}
	head, _, _ := strings.Cut(seen[len(seen)-1], "\r\n\r\n")
	for _, line := range strings.Split(head, "\r\n") {
		if name, v, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(name, "X-Forwarded-") {
			got[name] = append(got[name], v)
		}
	}
	return got
}

// A client's X-Forwarded-* fields, however often it repeats them, reach
// the member as catherd's one value each.
func TestForgedForwardedFieldsReplaced(t *testing.T) {
	b := newRecBackend(t)
	r := startRig(t, rigOptions{}, [2]string{"a", b.ln.Addr().String()})
	forged := "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"
	got := forwardedSeen(t, r, b, "GET / HTTP/1.1\r\nHost: x\r\n"+forged+forged+"\r\n")
	want := map[string][]string{"X-Forwarded-For": {"127.0.0.1"}, "X-Forwarded-Proto": {"http"}, "X-Forwarded-Host": {"x"}}
	for name, v := range want {
		if !slices.Equal(got[name], v) {
			t.Errorf("%s: %q, want %q", name, got[name], v)
		}
	}
}
