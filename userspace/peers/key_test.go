package peers

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// generateKey returns a new random AES-256 key.
func generateKey() []byte {
	key := make([]byte, 32)
	rand.Read(key)
	return key
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key := generateKey()
	got, err := LoadKeyFile(write("good", "  "+base64.StdEncoding.EncodeToString(key)+"\n"))
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("good key: %x, %v", got, err)
	}
	for name, tc := range map[string]struct{ text, want string }{
		"empty":  {"\n", "empty"},
		"base64": {"not base64!", "not base64"},
		"short":  {base64.StdEncoding.EncodeToString(key[:20]), "20 bytes"},
	} {
		_, err := LoadKeyFile(write(name, tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming the file and saying %q", name, err, tc.want)
		}
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}
