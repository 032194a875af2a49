package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// The binaries of this package's tests (built in TestMain) are stamped the
// way packaging/build.sh stamps a release.
const (
	stampVersion = "v9.8.7-test"
	stampCommit  = "c0ffee1234"
	stampFlags   = "-X github.com/notifyhub/hub/internal/version.Version=" + stampVersion +
		" -X github.com/notifyhub/hub/internal/version.Commit=" + stampCommit
)

// TestVersionFlag: hubctl --version prints the stamped build and exits 0,
// with no command and without reaching any node.
func TestVersionFlag(t *testing.T) {
	want := "hubctl " + stampVersion + " (" + stampCommit + ", " + runtime.Version() + ")\n"
	cmd := exec.Command(filepath.Join(bins, "hubctl"), "--addr", "http://127.0.0.1:1", "--version")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hubctl --version: %v", err)
	}
	if string(out) != want {
		t.Errorf("hubctl --version printed %q, want %q", out, want)
	}
}
