package keepalived

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A host preempts only when told to, and a check changes keepalived's
// verdict after one result unless Rise says more.
func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		h         Host
		want, not []string
	}{
		{Host{ID: "edgeA", VIP: "10.0.0.100/32", Check: "http://127.0.0.1:9180/readyz", Priority: 150},
			[]string{"router_id edgeA", "nopreempt", "priority 150", "10.0.0.100/32 dev eth0", "-m 1 http://127.0.0.1:9180/readyz\"", "fall 1", "rise 1"}, nil},
		{Host{ID: "edgeB", VIP: "10.0.0.100/24", Check: "http://10.0.0.2:8080/", Priority: 100, Rise: 2, Preempt: true},
			[]string{"priority 100", "fall 2", "rise 2"}, []string{"nopreempt"}},
	} {
		conf := tc.h.Config()
		for _, w := range tc.want {
			if !strings.Contains(conf, w) {
				t.Errorf("%s: no %q in\n%s", tc.h.ID, w, conf)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(conf, n) {
				t.Errorf("%s: %q in\n%s", tc.h.ID, n, conf)
			}
		}
	}
}

// Prepare writes the config where the command line it returns reads it.
func TestPrepare(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ka")
	h := Host{ID: "edgeA", VIP: "10.0.0.100/32", Check: "http://127.0.0.1/", Priority: 150}
	argv, err := Prepare(dir, h)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.Index(argv, "-f")
	if argv[0] != "keepalived" || i < 0 || !slices.Contains(argv, "--dont-fork") {
		t.Fatalf("argv %q", argv)
	}
	b, err := os.ReadFile(argv[i+1])
	if err != nil || string(b) != h.Config() {
		t.Fatalf("%s: %v\n%s", argv[i+1], err, b)
	}
}
