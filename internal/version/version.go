// Package version says which build of the hub is running: the release
// version and the commit it was built from, stamped at link time.
//
// It lives in internal/ because it is the commands' business, not an API:
// hubd and hubctl print it for --version and hubd exports it as the
// hub_build_info metric. A release build stamps both variables:
//
//	go build -ldflags "-X github.com/notifyhub/hub/internal/version.Version=v1.2.3 \
//	  -X github.com/notifyhub/hub/internal/version.Commit=0123abcd" ./cmd/hubd
//
// (packaging/build.sh does this from `git describe --always`). A build that
// is not stamped, such as `go build` or `go install` in a checkout, falls
// back to what the Go toolchain embedded: the main module's version and the
// vcs.revision build setting, with "-dirty" when the tree had local changes.
// Neither known, they read "devel" and "unknown".
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are set with -ldflags -X at build time; empty means
// not stamped. Read them through Get, which applies the fallback.
var (
	Version string
	Commit  string
)

// Info is one build's identity.
type Info struct {
	Version   string // e.g. v1.2.3, v1.2.3-4-g0123abc, or devel
	Commit    string // the commit hash, or unknown
	GoVersion string // the toolchain that built it, e.g. go1.26.8
}

// Get returns this binary's build identity.
func Get() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return resolve(Version, Commit, bi)
}

// String is the --version line: "NAME VERSION (COMMIT, GOVERSION)".
func (i Info) String(name string) string {
	return fmt.Sprintf("%s %s (%s, %s)", name, i.Version, i.Commit, i.GoVersion)
}

// resolve prefers the stamped values and fills what is missing from the
// build info the toolchain embedded (nil when there is none).
func resolve(version, commit string, bi *debug.BuildInfo) Info {
	info := Info{Version: version, Commit: commit, GoVersion: runtime.Version()}
	if bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		// "(devel)" is what the toolchain writes when it knows no version.
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		if info.Commit == "" {
			var rev string
			var dirty bool
			for _, s := range bi.Settings {
				switch s.Key {
				case "vcs.revision":
					rev = s.Value
				case "vcs.modified":
					dirty = s.Value == "true"
				}
			}
			if rev != "" && dirty {
				rev += "-dirty"
			}
			info.Commit = rev
		}
	}
	if info.Version == "" {
		info.Version = "devel"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}
