// Package certs holds the certificates catherd terminates TLS with and
// swaps them on reload. Handshakes read the current set through
// GetCertificate, so a reload applies to the next handshake while
// connections already established keep the certificate they were opened
// with: nothing is dropped.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Pair names one certificate: a PEM file holding the certificate (with its
// chain after it) and a PEM file holding its private key.
type Pair struct {
	CertFile, KeyFile string
}

// Store is the current certificate set. The first certificate is the
// default, served to clients that send no server name or one that no
// certificate covers.
type Store struct {
	pairs   []Pair
	current atomic.Pointer[[]tls.Certificate]

	mu       sync.Mutex // serializes reloads and guards the counters below
	reloads  uint64
	failures uint64
	lastErr  error
}

// Load reads every pair; any error names the file it is about.
func Load(pairs []Pair) (*Store, error) {
	if len(pairs) == 0 {
		return nil, errors.New("no certificate")
	}
	s := &Store{pairs: slices.Clone(pairs)}
	set, err := load(s.pairs)
	if err != nil {
		return nil, err
	}
	s.current.Store(&set)
	return s, nil
}

func load(pairs []Pair) ([]tls.Certificate, error) {
	set := make([]tls.Certificate, 0, len(pairs))
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s with %s: %w", p.CertFile, p.KeyFile, err)
		}
		if c.Leaf == nil {
			if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("%s: %w", p.CertFile, err)
			}
		}
		set = append(set, c)
	}
	return set, nil
}

// Reload reads every file again and, only if all of them load, makes the
// new set current. On an error the old set stays in use: a half-renewed
// set of files (a certificate written before its key) must not take the
// site down.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := load(s.pairs)
	if err != nil {
		s.failures++
		s.lastErr = err
		return err
	}
	s.current.Store(&set)
	s.reloads++
	s.lastErr = nil
	return nil
}

// GetCertificate picks the certificate for a handshake: the first one the
// client can use (by server name, signature schemes and curves), else the
// default.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	set := *s.current.Load()
	if len(set) > 1 {
		for i := range set {
			if hello.SupportsCertificate(&set[i]) == nil {
				return &set[i], nil
			}
		}
	}
	return &set[0], nil
}

// ServerConfig is the TLS configuration of a listener over the store:
// TLS 1.2 or later, HTTP/2 offered before HTTP/1.1.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: s.GetCertificate,
	}
}

// Cert describes one loaded certificate.
type Cert struct {
	File     string
	Subject  string
	NotAfter time.Time
}

// Stats is what the store has done, for metrics and status.
type Stats struct {
	Certs    []Cert
	Reloads  uint64 // successful reloads
	Failures uint64 // reloads that kept the old set
	LastErr  error  // the last reload's error, nil after a success
}

// Stats describes the current set and the reloads so far.
func (s *Store) Stats() Stats {
	set := *s.current.Load()
	s.mu.Lock()
	st := Stats{Reloads: s.reloads, Failures: s.failures, LastErr: s.lastErr}
	s.mu.Unlock()
	for i, c := range set {
		st.Certs = append(st.Certs, Cert{File: s.pairs[i].CertFile, Subject: c.Leaf.Subject.String(), NotAfter: c.Leaf.NotAfter})
	}
	return st
}
