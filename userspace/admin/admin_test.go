package admin

import (
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/netip"
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
	Handler(src).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/status", nil))
	var st Status
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != 200 {
		t.Fatalf("%d %v: %s", rec.Code, err, rec.Body)
	}
	if len(st.Members) != 2 || st.Members[0] != (Member{Name: "a", Route: "ra", State: "ok", Weight: 2}) ||
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
	Handler(src).ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/status", nil))
	if rec.Code != 405 {
		t.Errorf("POST answered %d, want 405", rec.Code)
	}
}
