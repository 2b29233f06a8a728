package admin

import (
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/session/moved"
	"github.com/catherd/catherd/userspace/balancer"
	"github.com/catherd/catherd/userspace/peers"
	"github.com/catherd/catherd/userspace/tier"
)

// tierSource is an admin source in a tier of two instances on loopback,
// and the other instance's pool.
func tierSource(t *testing.T) (Sources, *balancer.Pool) {
	t.Helper()
	start := func(name string, seeds ...string) (*balancer.Pool, *tier.Tier) {
		pool, _ := testPool(t)
		table := moved.New(time.Minute, 10)
		tr, err := tier.Start(peers.Config{Name: name, Bind: "127.0.0.1:0", Seeds: seeds},
			tier.Options{Pool: pool, Moved: table, SessionTTL: time.Minute, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Leave(time.Second) })
		if len(seeds) > 0 {
			if err := tr.Join(); err != nil {
				t.Fatal(err)
			}
		}
		return pool, tr
	}
	otherPool, other := start("lb2")
	pool, here := start("lb1", other.Addr())
	return Sources{Pool: pool, Tier: here}, otherPool
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Actions through the API and the page are shared with the tier; the
// status and the page show the peers; in-flight asks them.
func TestTier(t *testing.T) {
	src, otherPool := tierSource(t)
	h := Handler(src, "")
	if code, body := post(h, "/api/v1/members/a/drain"); code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	waitFor(t, "a draining on lb2", func() bool { return otherPool.Member("a").Flags() == balancer.Drain })
	_, nonce := page(t, h)
	if rec := submit(h, "/ui/members/b/weight", url.Values{"nonce": {nonce}, "value": {"9"}}); rec.Code != 303 {
		t.Fatalf("weight from the page: %d %s", rec.Code, rec.Body)
	}
	waitFor(t, "b weighted 9 on lb2", func() bool { return otherPool.Member("b").Weight() == 9 })

	var st Status
	if err := json.Unmarshal([]byte(fetch(t, h, "/api/v1/status")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Tier == nil || st.Tier.Name != "lb1" || st.Tier.Records != 2 || st.Tier.Sent == 0 || len(st.Tier.Peers) != 1 {
		t.Fatalf("tier in the status: %+v", st.Tier)
	}
	if p := st.Tier.Peers[0]; p.Name != "lb2" || p.State != "alive" || p.Addr == "" || p.LastContact.IsZero() {
		t.Errorf("peer: %+v", p)
	}
	body, _ := page(t, h)
	if !strings.Contains(body, `<table id="peers">`) || !strings.Contains(body, "<td>lb2</td>") {
		t.Errorf("the page shows no peer:\n%s", body)
	}

	otherPool.Member("a").Begin()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/members/a/in-flight", nil))
	var in InFlight
	if err := json.Unmarshal(rec.Body.Bytes(), &in); err != nil || in.Local != 0 || in.Peers["lb2"] != 1 || len(in.Unreachable) != 0 {
		t.Errorf("in flight: %s %v", rec.Body, err)
	}
}
