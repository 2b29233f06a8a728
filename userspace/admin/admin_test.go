package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session/membership"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/xdp"
)

func TestStatus(t *testing.T) {
	a := balancer.NewMember("a", "ra", 2, 0)
	b := balancer.NewMember("b", "rb", 1, balancer.Drain)
	b.SetIsolated(true)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{Retry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	heard := time.Unix(1000, 0)
	src := Sources{
		Pool: pool,
		Membership: func() []membership.Member {
			return []membership.Member{{Host: netip.MustParseAddr("10.0.0.1"), Port: 4000, UniqueID: [16]byte{0xab}, AliveMillis: 1500, LastHeard: heard}}
		},
		XDP: func() (xdp.Stats, error) { return xdp.Stats{}, errors.New("maps gone") },
	}
	rec := httptest.NewRecorder()
	Handler(src, "").ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
	var st Status
	in := true
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v: %s", rec.Code, err, rec.Body)
	}
	if len(st.Members) != 2 || !reflect.DeepEqual(st.Members[0], Member{Name: "a", Route: "ra", State: "ok", Weight: 2, Ramp: 1, InGroup: &in}) ||
		st.Members[1].State != "isolated" || st.Members[1].Flags != "N" {
		t.Errorf("members %+v", st.Members)
	}
	if len(st.Membership) != 1 || st.Membership[0].UniqueID != "ab000000000000000000000000000000" || !st.Membership[0].LastHeard.Equal(heard) {
		t.Errorf("membership %+v", st.Membership)
	}
	if st.XDP != nil || st.XDPError != "maps gone" {
		t.Errorf("xdp %+v %q", st.XDP, st.XDPError)
	}
	rec = httptest.NewRecorder()
	Handler(src, "").ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/status", nil))
	if rec.Code != 405 {
		t.Errorf("POST answered %d, want 405", rec.Code)
	}
}

// post sends an action and returns the status and body.
func post(h http.Handler, path string, header ...string) (int, string) {
	req := httptest.NewRequest("POST", path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestActions(t *testing.T) {
	a := balancer.NewMember("a", "a", 1, 0)
	b := balancer.NewMember("b", "b", 1, 0)
	pool, err := balancer.NewPool([]*balancer.Member{a, b}, "byrequests", balancer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(Sources{Pool: pool}, "")
	for _, c := range []struct {
		path   string
		status int
		want   string
		check  func() bool
	}{
		{"/api/v1/members/a/drain", 200, `"flags": "N"`, func() bool { return a.Flags() == balancer.Drain }},
		{"/api/v1/members/a/enable", 200, `"state": "ok"`, func() bool { return a.Flags() == 0 }},
		{"/api/v1/members/a/weight?value=7", 200, `"weight": 7`, func() bool { return a.Weight() == 7 }},
		{"/api/v1/members/a/weight?value=0", 400, "want ?value=1..100", func() bool { return a.Weight() == 7 }},
		{"/api/v1/members/a/evacuate", 200, `"state": "disabled"`, func() bool { return a.Flags() == balancer.Disabled }},
		{"/api/v1/members/b/evacuate", 409, "cannot evacuate b", func() bool { return b.Flags() == 0 }},
		{"/api/v1/members/c/enable", 404, `"members": [`, nil},
		{"/api/v1/members/a/frob", 404, "no action", nil},
	} {
		status, body := post(h, c.path)
		if status != c.status || !strings.Contains(body, c.want) || (c.check != nil && !c.check()) {
			t.Errorf("POST %s: %d %s, want %d with %q", c.path, status, body, c.status, c.want)
		}
	}
	// Another site's page may not act through a browser on loopback.
	if status, _ := post(h, "/api/v1/members/a/enable", "Sec-Fetch-Site", "cross-site"); status != 403 {
		t.Errorf("cross-site request: %d, want 403", status)
	}
	if status, _ := post(h, "/api/v1/members/a/enable", "Origin", "http://evil.example"); status != 403 {
		t.Errorf("cross-origin request: %d, want 403", status)
	}
	if a.Flags() != balancer.Disabled {
		t.Fatal("a refused request changed the member")
	}
	// With a token, nothing happens without it.
	const token = "0123456789abcdef0123"
	ht := Handler(Sources{Pool: pool}, token)
	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", token}} {
		if status, _ := post(ht, "/api/v1/members/a/enable", hdr...); status != 403 {
			t.Errorf("token %v: %d, want 403", hdr, status)
		}
	}
	if status, _ := post(ht, "/api/v1/members/a/enable", "Authorization", "Bearer "+token); status != 200 || a.Flags() != 0 {
		t.Errorf("with the token: %d, flags %v", status, a.Flags())
	}
}
