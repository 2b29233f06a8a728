package certs_test

import (
	"crypto/tls"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/catherd/catherd/userspace/certs"
	"github.com/catherd/catherd/userspace/certs/certstest"
)

// served is the certificate a client asking for serverName gets.
func served(t *testing.T, s *certs.Store, serverName string) string {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: serverName,
		SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedVersions: []uint16{tls.VersionTLS13}})
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.Subject.CommonName
}

func TestSNIAndDefault(t *testing.T) {
	ca, dir := certstest.NewCA(t), t.TempDir()
	day := time.Now().Add(24 * time.Hour)
	c1, k1 := ca.Write(t, dir, "one", day, "one.example")
	c2, k2 := ca.Write(t, dir, "two", day, "two.example", "*.two.example")
	s, err := certs.Load([]certs.Pair{{c1, k1}, {c2, k2}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"one.example": "one.example", "two.example": "two.example",
		"a.two.example": "two.example", "other.example": "one.example", "": "one.example"} {
		if got := served(t, s, name); got != want {
			t.Errorf("SNI %q: served %s, want %s", name, got, want)
		}
	}
}

func TestReloadSwapsOnlyWhenEverythingLoads(t *testing.T) {
	ca, dir := certstest.NewCA(t), t.TempDir()
	first := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	cert, key := ca.Write(t, dir, "site", first, "old.example")
	s, err := certs.Load([]certs.Pair{{cert, key}})
	if err != nil {
		t.Fatal(err)
	}

	second := first.Add(time.Hour)
	ca.Write(t, dir, "site", second, "new.example")
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if got := served(t, s, "new.example"); got != "new.example" || st.Reloads != 1 || !st.Certs[0].NotAfter.Equal(second) {
		t.Fatalf("after a reload: served %s, stats %+v", got, st)
	}

	// A renewal caught halfway: the new certificate without its key.
	keep, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	newCert, _ := ca.Write(t, dir, "site", second, "half.example")
	if err := os.WriteFile(key, keep, 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), newCert) {
		t.Fatalf("reload with a mismatched key: %v, want an error naming %s", err, newCert)
	}
	st = s.Stats()
	if got := served(t, s, "new.example"); got != "new.example" || st.Failures != 1 || st.LastErr == nil {
		t.Fatalf("after a failed reload: served %s, stats %+v; want the previous certificate kept", got, st)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	_, err := certs.Load([]certs.Pair{{"/nonexistent/site.crt", "/nonexistent/site.key"}})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/site.crt") {
		t.Fatalf("Load of a missing file: %v", err)
	}
}
