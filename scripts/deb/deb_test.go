// Package deb builds catherd's Debian package (build.sh, `make deb`); its
// test installs the package with apt as an operator would.
package deb

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// installedByTest exists while a package this test installed may be on the
// host; it lets a later run tell its own leftover from an operator's package.
const installedByTest = "/var/lib/catherd-deb-test.installed"

// run runs a command bounded by limit and returns its combined output.
func run(t *testing.T, limit time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The package built by make deb installs with apt, gives a catherd that
// says its version and checks a configuration, with its unit, its
// documented /etc/default/catherd, its man page and its bash completion;
// and it removes cleanly.
func TestPackageInstallsWithApt(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing a package needs root; under CI=true that is a failure")
		}
		t.Skip("installing a package needs root")
	}
	for _, tool := range []string{"dpkg-deb", "apt-get", "dpkg-query"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (Debian's own tools build and install the package)", tool)
		}
	}
	// One package test on this host at a time: it installs into the
	// host's own /usr and /etc.
	lock, err := os.OpenFile("/run/lock/catherd-deb-test.lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	purge := func() {
		run(t, 5*time.Minute, "apt-get", "-o", "DPkg::Lock::Timeout=300", "remove", "--purge", "-y", "catherd")
	}
	if out, err := run(t, time.Minute, "dpkg-query", "-W", "-f=${Status}", "catherd"); err == nil && strings.Contains(out, "installed") {
		// A run killed before its cleanup leaves its package behind, with
		// the marker it wrote; any other catherd package is an operator's.
		if _, err := os.Stat(installedByTest); err != nil {
			t.Fatalf("a catherd package is installed already (%s) and this test did not install it: it would replace and remove it", out)
		}
		t.Logf("removing the package an interrupted run of this test left installed")
		purge()
	}

	out, err := run(t, 15*time.Minute, "./build.sh", t.TempDir())
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	deb := strings.TrimSpace(out[strings.LastIndex(strings.TrimSpace(out), "\n")+1:])
	version := regexp.MustCompile(`catherd_(.+)_[a-z0-9]+\.deb$`).FindStringSubmatch(filepath.Base(deb))
	if version == nil {
		t.Fatalf("build.sh made %q", deb)
	}
	if err := os.WriteFile(installedByTest, []byte(deb+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		purge()
		os.Remove(installedByTest)
	})
	if out, err := run(t, 10*time.Minute, "apt-get", "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", deb); err != nil {
		t.Fatalf("apt install %s: %v\n%s", deb, err, out)
	}

	if out, err := run(t, time.Minute, "/usr/bin/catherd", "--version"); err != nil || !strings.HasPrefix(out, "catherd "+version[1]+" (revision ") {
		t.Errorf("catherd --version: %q %v; want version %s", out, err, version[1])
	}
	if out, err := run(t, time.Minute, "/usr/bin/catherd", "run", "--check", "--backend", "node1=http://127.0.0.1:8080"); err != nil ||
		!strings.HasPrefix(out, "catherd run: configuration OK") {
		t.Errorf("catherd run --check: %q %v", out, err)
	}
	// As installed, /etc/default/catherd names no backend yet: the
	// unit's check refuses to start it, and says why.
	out, err = run(t, time.Minute, "sh", "-c", `. /etc/default/catherd && exec /usr/bin/catherd run --check $CATHERD_ARGS`)
	if err == nil || !strings.Contains(out, "--backend: at least one backend is required") {
		t.Errorf("the installed defaults checked: %q %v", out, err)
	}
	defaults, _ := os.ReadFile("/etc/default/catherd")
	for _, want := range []string{"CATHERD_ARGS=", "#   --backend NAME=URL[,OPTION...]", "#   --health-fast-interval duration", "systemctl reload catherd"} {
		if !strings.Contains(string(defaults), want) {
			t.Errorf("/etc/default/catherd lacks %q", want)
		}
	}
	unit, _ := os.ReadFile("/lib/systemd/system/catherd.service")
	if !strings.Contains(string(unit), "ExecStart=/usr/bin/catherd run $CATHERD_ARGS") || strings.Contains(string(unit), "/usr/local/bin") {
		t.Errorf("the installed unit does not run /usr/bin/catherd:\n%s", unit)
	}
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := run(t, time.Minute, analyze, "verify", "/lib/systemd/system/catherd.service"); err != nil {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	}
	if out, err := run(t, time.Minute, "man", "-P", "cat", "catherd"); err != nil || !strings.Contains(out, "OPTIONS OF CATHERD RUN") || !strings.Contains(out, "--listen ADDR") {
		t.Errorf("man catherd: %v\n%.600s", err, out)
	}
	completion, _ := os.ReadFile("/usr/share/bash-completion/completions/catherd")
	if !strings.Contains(string(completion), "complete -F _catherd catherd") {
		t.Error("no bash completion installed")
	}

	purge()
	for _, path := range []string{"/usr/bin/catherd", "/etc/default/catherd", "/lib/systemd/system/catherd.service"} {
		if _, err := os.Stat(path); err == nil {
			t.Errorf("%s is left after apt remove --purge", path)
		}
	}
}
