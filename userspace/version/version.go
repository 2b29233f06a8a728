// Package version says which build of catherd is running, for `catherd
// version`, the catherd_build_info metric and the admin API: the version
// the build was stamped with (make build and make deb stamp it, with
// -ldflags), else the module version Go recorded (go install
// ...@v1.2.0), and the VCS revision and Go version Go records in every
// binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// stamped and stampedRevision are set at link time, as make build does:
//
//	go build -ldflags "-X github.com/catherd/catherd/userspace/version.stamped=1.2.0 \
//	    -X github.com/catherd/catherd/userspace/version.stampedRevision=$(git rev-parse HEAD)"
//
// The revision Go records itself (-buildvcs) wins over the stamped one.
var stamped, stampedRevision string

// Info describes the running build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"` // the commit built, when Go knew it
	Modified  bool   `json:"modified,omitempty"` // built from a tree with uncommitted changes
	GoVersion string `json:"go_version"`
}

// Get describes the running build.
func Get() Info {
	info := Info{Version: "devel", Revision: stampedRevision, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		info.Version = bi.Main.Version
	}
	if stamped != "" {
		info.Version = stamped
	}
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}

// String is the one line `catherd version` prints, e.g.
// "catherd 1.2.0 (revision 0123456789ab, go1.26.8 linux/amd64)".
func (i Info) String() string {
	rev := i.Revision
	if len(rev) > 12 {
		rev = rev[:12]
	}
	switch {
	case rev == "":
		rev = "unknown"
	case i.Modified:
		rev += ", modified"
	}
	return fmt.Sprintf("catherd %s (revision %s, %s %s/%s)", i.Version, rev, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}
