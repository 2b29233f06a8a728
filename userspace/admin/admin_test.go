package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/health"
	"github.com/catherd/catherd/userspace/membership"
	"github.com/catherd/catherd/userspace/version"
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
	started := time.Now().Add(-90 * time.Second)
	checked := time.Now().Add(-time.Second)
	src := Sources{
		Pool:        pool,
		Version:     version.Info{Version: "1.2.3", Revision: "abc", GoVersion: "go1.26.8"},
		Started:     started,
		ClientConns: func() (uint64, uint64, int) { return 3, 40, 100 },
		Health: func(m *balancer.Member) (health.Status, bool) {
			if m != a {
				return health.Status{}, false
			}
			return health.Status{Last: &health.Result{At: checked, Duration: 3 * time.Millisecond, Err: errors.New("503")},
				Failures: 1, Fall: 2, Rise: 3}, true
		},
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
	if len(st.Members) != 2 {
		t.Fatalf("members %+v", st.Members)
	}
	if since := st.Members[0].StateSince; since.IsZero() || since.After(st.Time) {
		t.Errorf("a ok since %v, at %v", since, st.Time)
	}
	st.Members[0].StateSince = time.Time{}
	wantHealth := &Health{LastCheck: &checked, Result: "fail", Error: "503", Duration: 0.003, Failures: 1, Fall: 2, Rise: 3}
	if h := st.Members[0].Health; h == nil || !h.LastCheck.Equal(checked) {
		t.Errorf("a's health %+v", h)
	} else {
		h.LastCheck = &checked
	}
	if !reflect.DeepEqual(st.Members[0], Member{Name: "a", Route: "ra", State: "ok", Weight: 2, Ramp: 1, InGroup: &in, Health: wantHealth}) ||
		st.Members[1].State != "isolated" || st.Members[1].Flags != "N" || st.Members[1].Health != nil {
		t.Errorf("members %+v", st.Members)
	}
	if st.Version.Version != "1.2.3" || !st.Started.Equal(started) || st.UptimeSeconds < 90 || st.Pid == 0 {
		t.Errorf("process: version %+v, started %v, uptime %v, pid %d", st.Version, st.Started, st.UptimeSeconds, st.Pid)
	}
	if st.Clients == nil || *st.Clients != (Clients{Open: 3, Accepted: 40, Limit: 100}) {
		t.Errorf("clients %+v", st.Clients)
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

// Every action, done or refused, is logged with the member, the peer and
// the way it came.
func TestActionsAreLogged(t *testing.T) {
	pool, _ := testPool(t)
	var logs strings.Builder
	src := Sources{Pool: pool, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	const token = "0123456789abcdef0123"
	h := Handler(src, token)
	post(h, "/api/v1/members/a/drain", "Authorization", "Bearer "+token)
	post(h, "/api/v1/members/a/weight?value=5", "Authorization", "Bearer "+token)
	post(h, "/api/v1/members/b/disable")                                    // no token
	post(h, "/api/v1/members/b/evacuate", "Authorization", "Bearer "+token) // a drains: b is the last
	submit(h, "/ui/members/b/enable", url.Values{"nonce": {"stale"}})       // a page form without its nonce
	for _, want := range []string{
		`level=INFO msg="admin action" action=drain member=a peer=192.0.2.1:1234 via=api result=done`,
		`level=INFO msg="admin action" action=weight member=a peer=192.0.2.1:1234 via=api value=5 result=done`,
		`level=WARN msg="admin action refused" action=disable member=b peer=192.0.2.1:1234 via=api result=refused err="this action needs the admin token`,
		`level=WARN msg="admin action refused" action=evacuate member=b peer=192.0.2.1:1234 via=api result=refused err="cannot evacuate b`,
		`level=WARN msg="admin action refused" action=enable member=b peer=192.0.2.1:1234 via=page result=refused err="the form's nonce is missing or stale`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s\nlog:\n%s", want, logs.String())
		}
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if tok, err := LoadToken(write("good", "  0123456789abcdef\n")); err != nil || tok != "0123456789abcdef" {
		t.Errorf("good token: %q, %v", tok, err)
	}
	if _, err := LoadToken(write("short", "0123456789\n")); err == nil || !strings.Contains(err.Error(), "at least 16 characters") {
		t.Errorf("short token: %v", err)
	}
	if _, err := LoadToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file gave no error")
	}
}
