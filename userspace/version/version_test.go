package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	defer func(s string) { stamped = s }(stamped)
	stamped = "1.2.3"
	i := Get()
	if i.Version != "1.2.3" || i.GoVersion != runtime.Version() {
		t.Fatalf("%+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, "catherd 1.2.3 (revision ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("%q", s)
	}
	i.Revision, i.Modified = "0123456789abcdef", true
	if s := i.String(); !strings.Contains(s, "(revision 0123456789ab, modified, go") {
		t.Fatalf("%q", s)
	}
}
