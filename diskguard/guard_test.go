package diskguard_test

import (
	"errors"
	"testing"

	"github.com/notifyhub/hub/diskguard"
)

// TestLevels reads the free space of a real directory against a reserve
// far below it and one far above it.
func TestLevels(t *testing.T) {
	dir := t.TempDir()
	free, err := diskguard.Free(dir)
	if err != nil || free == 0 {
		t.Fatalf("Free: %d, %v", free, err)
	}
	roomy, err := diskguard.New(diskguard.Config{Dirs: []string{dir}, Reserve: 1})
	if err != nil {
		t.Fatal(err)
	}
	if roomy.Full() || roomy.Check() != nil || !roomy.WaitRoom(nil) {
		t.Fatalf("a reserve of 1 byte: full %v, check %v", roomy.Full(), roomy.Check())
	}
	full, err := diskguard.New(diskguard.Config{Dirs: []string{dir, t.TempDir()}, Reserve: 4 * free})
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Check(); !full.Full() || !errors.Is(err, diskguard.ErrDiskFull) {
		t.Fatalf("a reserve of 4x the free space: full %v, check %v", full.Full(), err)
	}
	stop := make(chan struct{})
	close(stop)
	if full.WaitRoom(stop) {
		t.Fatal("WaitRoom below the floor returned true")
	}
	if _, err := diskguard.New(diskguard.Config{Dirs: []string{dir + "/missing"}, Reserve: 1}); err == nil {
		t.Fatal("a guard over a missing directory")
	}
}

func TestDefaultReserve(t *testing.T) {
	if got := diskguard.DefaultReserve(0); got != 640<<20 {
		t.Errorf("default memtable: %d", got)
	}
	if got := diskguard.DefaultReserve(1 << 20); got != 64<<20 {
		t.Errorf("1 MiB memtable: %d, want the 64 MiB minimum", got)
	}
}
