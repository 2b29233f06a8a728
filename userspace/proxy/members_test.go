package proxy

import (
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
)

// A member attached at run time is served at once; detached, its
// connections close, its sessions fail over, and its series go.
func TestAttachDetach(t *testing.T) {
	a, c := newNamedBackend(t, "a", nil), newNamedBackend(t, "c", nil)
	r := startRig(t, rigOptions{}, a.spec())
	m := balancer.NewMember("c", "c", 1, 0)
	u := NewUpstream(m, Target{Addr: c.Listener.Addr().String()})
	if _, err := r.pool.Add(m, func() { r.px.Attach(u) }); err != nil {
		t.Fatal(err)
	}
	for range 3 { // kept alive: one connection
		if _, body := r.do("GET", "/x", nil, "Cookie", "JSESSIONID=S.c"); body != "c /x" {
			t.Fatalf("a session of c, added: %q", body)
		}
	}
	if !strings.Contains(r.scrape(), `catherd_backend_connections_opened_total{member="c"} 1`) {
		t.Errorf("no connection series for c:\n%s", r.scrape())
	}

	if err := r.pool.Remove(m); err != nil {
		t.Fatal(err)
	}
	r.px.Detach(u)
	for deadline := time.Now().Add(10 * time.Second); u.conns.Load() != 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if n := u.conns.Load(); n != 0 {
		t.Errorf("%d connections to the removed member left open", n)
	}
	if _, body := r.do("GET", "/x", nil, "Cookie", "JSESSIONID=S.c"); body != "a /x" {
		t.Errorf("a session of c, removed: %q, want a failover to a", body)
	}
	if hits := c.hits.Load(); hits != 3 {
		t.Errorf("c served %d requests, want the 3 before its removal", hits)
	}
	if s := r.scrape(); strings.Contains(s, `member="c"`) {
		t.Errorf("series of the removed member remain:\n%s", s)
	}

	// Added again under its name, at another address: served from zero.
	c2 := newNamedBackend(t, "c", nil)
	m2 := balancer.NewMember("c", "c", 1, 0)
	u2 := NewUpstream(m2, Target{Addr: c2.Listener.Addr().String()})
	if _, err := r.pool.Add(m2, func() { r.px.Attach(u2) }); err != nil {
		t.Fatal(err)
	}
	if _, body := r.do("GET", "/y", nil, "Cookie", "JSESSIONID=S.c"); body != "c /y" || c2.hits.Load() != 1 {
		t.Errorf("c added again: %q, its new server served %d", body, c2.hits.Load())
	}
}
