package peers

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The key is memberlist's SecretKey: AES-GCM over every gossip packet and
// every TCP stream, so it both encrypts and authenticates; a peer without it
// can neither read nor change anything. 16, 24 or 32 bytes select AES-128,
// -192 or -256.

// parseKey decodes a key as a key file holds it: 16, 24 or 32 bytes in
// base64, as `head -c 32 /dev/urandom | base64` writes them (surrounding
// white space is ignored).
func parseKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return nil, errors.New("the key is empty; make one with: head -c 32 /dev/urandom | base64 > FILE")
	}
	key, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("the key is not base64: %w", err)
	}
	switch len(key) {
	case 16, 24, 32:
		return key, nil
	}
	return nil, fmt.Errorf("the key is %d bytes; it must be 16, 24 or 32 (AES-128, -192 or -256)", len(key))
}

// LoadKeyFile reads a key file (parseKey).
func LoadKeyFile(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("peer key file: %w", err)
	}
	key, err := parseKey(string(text))
	if err != nil {
		return nil, fmt.Errorf("peer key file %s: %w", path, err)
	}
	return key, nil
}
