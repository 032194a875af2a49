package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/notifyhub/hub/diskguard"
)

// The disk guard's wiring: --disk-reserve, the wait for room before the
// store opens, and the guard the node and /readyz ask.

// diskDirs returns badger's and raft's directories under the data dir,
// made if missing (their filesystems are what the guard watches).
func diskDirs(dataDir string) ([]string, error) {
	dirs := []string{filepath.Join(dataDir, "state"), filepath.Join(dataDir, "raft")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("make %s: %w", d, err)
		}
	}
	return dirs, nil
}

// openDiskGuard waits until the data filesystems are above the floor (a
// start on a full disk waits here, saying so in the log, instead of
// crashing in badger), then returns a started guard. ok is false when ctx
// ended while waiting.
func openDiskGuard(ctx context.Context, cfg config, log *slog.Logger) (g *diskguard.Guard, ok bool, err error) {
	reserve := cfg.diskReserve
	if reserve == 0 {
		reserve = diskguard.DefaultReserve(0) // hubd runs badger with its default memtable
	}
	dirs, err := diskDirs(cfg.dataDir)
	if err != nil {
		return nil, false, err
	}
	if err := diskguard.WaitForRoom(ctx, dirs, reserve/2, log); err != nil {
		if ctx.Err() != nil {
			return nil, false, nil
		}
		return nil, false, err
	}
	g, err = diskguard.New(diskguard.Config{Dirs: dirs, Reserve: reserve, Logger: log})
	if err != nil {
		return nil, false, err
	}
	if g.Full() {
		free, dir := g.Free()
		log.Warn("disk nearly full at start: serving reads, writes refused (507 disk_full) until space is freed",
			"dir", dir, "free", free, "reserve", reserve)
	}
	g.Start()
	return g, true, nil
}

// sizeValue is a byte count: digits with an optional unit (B, KB, MB, GB,
// KiB, MiB, GiB; case-insensitive).
type sizeValue struct{ p *uint64 }

func (v sizeValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatUint(*v.p, 10)
}

func (v sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	n, err := strconv.ParseUint(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	mult := map[string]uint64{"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}[strings.ToLower(strings.TrimSpace(t[i:]))]
	if mult == 0 {
		return 0, fmt.Errorf("not a size: %q (units: B, KB, MB, GB, KiB, MiB, GiB)", s)
	}
	if n > ^uint64(0)/mult {
		return 0, errors.New("size too large")
	}
	return n * mult, nil
}
