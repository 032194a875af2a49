package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/notifyhub/hub", Version: "v0.0.0-20261203120000-0123456789ab"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.modified", Value: "false"},
		},
	}
	dirty := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/notifyhub/hub", Version: "(devel)"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "feedface"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	bare := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Version: "(devel)"}}
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
	}{
		{"stamped wins over build info", "v1.2.3", "abc1234", vcs, Info{"v1.2.3", "abc1234", "go1.99.1"}},
		{"unstamped reads vcs", "", "", vcs, Info{"v0.0.0-20261203120000-0123456789ab", "0123456789abcdef0123456789abcdef01234567", "go1.99.1"}},
		{"modified tree is dirty", "", "", dirty, Info{"devel", "feedface-dirty", "go1.99.1"}},
		{"version stamped, commit from vcs", "v2.0.0", "", dirty, Info{"v2.0.0", "feedface-dirty", "go1.99.1"}},
		{"nothing known", "", "", bare, Info{"devel", "unknown", "go1.99.1"}},
		{"no build info", "", "", nil, Info{"devel", "unknown", runtime.Version()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := resolve(tc.version, tc.commit, tc.bi); got != tc.want {
				t.Errorf("resolve = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestString(t *testing.T) {
	got := Info{"v1.2.3", "abc1234", "go1.26.8"}.String("hubd")
	if want := "hubd v1.2.3 (abc1234, go1.26.8)"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}
