// Package diskguardtest gives tests a small filesystem to fill: a tmpfs
// mounted for the test's lifetime, and filler files that take its space.
// It is for tests only.
package diskguardtest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/notifyhub/hub/diskguard"
)

// SmallDisk mounts a tmpfs of size bytes on a new directory for the test
// and returns it; it skips the test, saying why, where mounting is
// impossible (not root, no mount command, a container that forbids it).
func SmallDisk(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small filesystem needs root")
	}
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// FillTo writes filler files on dir's filesystem until less than free
// bytes are left there, and returns a function that deletes them.
func FillTo(t testing.TB, dir string, free uint64) (remove func()) {
	t.Helper()
	var files []string
	chunk := make([]byte, 1<<20)
	for {
		f, err := diskguard.Free(dir)
		if err != nil {
			t.Fatal(err)
		}
		if f < free {
			break
		}
		fh, err := os.CreateTemp(dir, "filler-")
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fh.Name())
		_, err = fh.Write(chunk[:min(f-free+1, 1<<20)])
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
	}
	return func() {
		for _, f := range files {
			if err := os.Remove(f); err != nil {
				t.Fatal(err)
			}
		}
	}
}
