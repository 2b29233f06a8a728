package cliflag

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func testSet() (*flag.FlagSet, *bool, *time.Duration) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	quiet := fs.Bool("quiet", false, "say less")
	wait := fs.Duration("wait", time.Minute, "how long to `wait`")
	fs.String("admin", "127.0.0.1:9181", "admin address")
	fs.String("admin-token-file", "", "token file")
	fs.Int("count", 3, "how many")
	return fs, quiet, wait
}

func TestParse(t *testing.T) {
	tests := []struct {
		args []string
		want string // "" for success
	}{
		{[]string{"--quiet", "--wait", "2s"}, ""},
		{[]string{"--wait", "2"}, `--wait: invalid value "2": want a duration such as 5s, 250ms or 1m30s`},
		{[]string{"--count", "1.5"}, `--count: invalid value "1.5": want a whole number`},
		{[]string{"--quiet=perhaps"}, `--quiet: invalid value "perhaps": want true or false`},
		{[]string{"--amdin", "x"}, `unknown flag --amdin (did you mean --admin?)`},
		{[]string{"--admin-token", "x"}, `unknown flag --admin-token (did you mean --admin-token-file?)`},
		{[]string{"--zzz"}, `unknown flag --zzz`},
		{[]string{"--wait"}, `--wait: needs a value`},
	}
	for _, tt := range tests {
		fs, _, _ := testSet()
		err := Parse(fs, tt.args)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%v: %v", tt.args, err)
		case tt.want != "" && (err == nil || err.Error() != tt.want):
			t.Errorf("%v: got %v, want %s", tt.args, err, tt.want)
		}
	}
	fs, quiet, wait := testSet()
	if err := Parse(fs, []string{"--quiet", "--wait=3s"}); err != nil || !*quiet || *wait != 3*time.Second {
		t.Errorf("values not set: %v %v %v", err, *quiet, *wait)
	}
	if err := Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}

func TestPrintDefaultsUsesTwoDashes(t *testing.T) {
	fs, _, _ := testSet()
	var b strings.Builder
	PrintDefaults(fs, &b)
	for _, want := range []string{"  --admin string\n        admin address (default 127.0.0.1:9181)\n", "  --quiet\n        say less\n",
		"  --wait wait\n        how long to wait (default 1m0s)\n", "  --count int\n        how many (default 3)\n"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "  -a") {
		t.Errorf("a flag with one dash:\n%s", b.String())
	}
}
