package diskguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDiskFull: the free space on the node's data filesystems is below the
// reserve, and writes are refused until it is back.
var ErrDiskFull = errors.New("disk full")

// DefaultReserve is the reserve for a badger memtable of memTableSize bytes
// (0: badger's default, 64 MiB): the unwritten part of the current
// memtable's write-ahead file (up to twice the memtable), the flush of up
// to three memtables into level-0 tables, a compaction that rewrites about
// as much before its inputs are deleted, and raft's log growth over a few
// seconds of writes; 10 memtables, and at least 64 MiB. At the default
// that is 640 MiB.
func DefaultReserve(memTableSize int64) uint64 {
	if memTableSize <= 0 {
		memTableSize = 64 << 20
	}
	return max(64<<20, 10*uint64(memTableSize))
}

// Config configures a Guard.
type Config struct {
	// Dirs are the directories whose filesystems are watched (badger's and
	// raft's); the lowest free space among them counts.
	Dirs []string
	// Reserve is the free space below which writes are refused; half of it
	// is the floor below which applying stops. Required.
	Reserve uint64
	// Every is how often free space is read; default 1s.
	Every time.Duration
	// Logger hears the changes of state; nil discards.
	Logger *slog.Logger
}

// Guard watches free space. Its methods are safe for concurrent use.
type Guard struct {
	cfg Config
	log *slog.Logger

	state atomic.Pointer[reading]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced at each reading

	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// reading is one look at the filesystems.
type reading struct {
	free uint64 // lowest free bytes among the dirs
	dir  string // where it is lowest
	err  error  // a failed statfs: counts as no room
}

// New reads free space once and returns a guard; Start begins watching.
func New(cfg Config) (*Guard, error) {
	if len(cfg.Dirs) == 0 || cfg.Reserve == 0 {
		return nil, errors.New("diskguard: need directories and a reserve")
	}
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g := &Guard{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	rd := g.read()
	if rd.err != nil {
		return nil, rd.err
	}
	g.state.Store(&rd)
	return g, nil
}

// Floor is the free space below which a node stops applying entries.
func (g *Guard) Floor() uint64 { return g.cfg.Reserve / 2 }

// Reserve is the free space below which writes are refused.
func (g *Guard) Reserve() uint64 { return g.cfg.Reserve }

// Start begins reading free space every Config.Every, on a goroutine that
// Close stops.
func (g *Guard) Start() {
	go func() {
		defer close(g.done)
		t := time.NewTicker(g.cfg.Every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				g.Refresh()
			case <-g.stop:
				return
			}
		}
	}()
}

// Close stops the watcher started by Start and waits for it. A guard that
// was never started must not be closed.
func (g *Guard) Close() {
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.done
}

// Refresh reads free space now, logs a change of state and wakes WaitRoom.
func (g *Guard) Refresh() {
	rd := g.read()
	old := g.state.Swap(&rd)
	g.logChange(old, &rd)
	g.mu.Lock()
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

func (g *Guard) read() reading {
	rd := reading{free: ^uint64(0)}
	for _, d := range g.cfg.Dirs {
		f, err := Free(d)
		if err != nil {
			return reading{dir: d, err: fmt.Errorf("diskguard: free space of %s: %w", d, err)}
		}
		if f < rd.free {
			rd.free, rd.dir = f, d
		}
	}
	return rd
}

func (g *Guard) logChange(old, now *reading) {
	was, is := g.level(old), g.level(now)
	if was == is {
		return
	}
	attrs := []any{"dir", now.dir, "free", now.free, "reserve", g.cfg.Reserve}
	if now.err != nil {
		attrs = append(attrs, "err", now.err)
	}
	switch is {
	case levelOK:
		g.log.Info("disk has room again: writes accepted", attrs...)
	case levelFull:
		if was == levelFloor {
			g.log.Warn("disk above the floor again: applying entries; writes still refused", attrs...)
		} else {
			g.log.Warn("disk nearly full: writes refused (507 disk_full) until space is freed", attrs...)
		}
	case levelFloor:
		g.log.Error("disk full: writes refused and applying entries paused until space is freed", attrs...)
	}
}

type level int

const (
	levelOK level = iota
	levelFull
	levelFloor
)

func (g *Guard) level(rd *reading) level {
	switch {
	case rd.err != nil || rd.free < g.Floor():
		return levelFloor
	case rd.free < g.cfg.Reserve:
		return levelFull
	}
	return levelOK
}

// Full reports whether writes are refused now.
func (g *Guard) Full() bool { return g.level(g.state.Load()) != levelOK }

// Free returns the last reading: the lowest free space and where.
func (g *Guard) Free() (free uint64, dir string) {
	rd := g.state.Load()
	return rd.free, rd.dir
}

// Check returns nil while writes may go on, and an error wrapping
// ErrDiskFull when they are refused. It reads the last reading only: a
// few atomic loads.
func (g *Guard) Check() error {
	rd := g.state.Load()
	if g.level(rd) == levelOK {
		return nil
	}
	if rd.err != nil {
		return fmt.Errorf("%w: %w", ErrDiskFull, rd.err)
	}
	return fmt.Errorf("%w: %d bytes free on %s, below the reserve of %d", ErrDiskFull, rd.free, rd.dir, g.cfg.Reserve)
}

// WaitRoom returns at once while free space is at or above the floor;
// below it, it waits until it is back (true) or stop is closed (false).
func (g *Guard) WaitRoom(stop <-chan struct{}) bool {
	for {
		g.mu.Lock()
		ch := g.changed
		g.mu.Unlock()
		if g.level(g.state.Load()) != levelFloor {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return false
		}
	}
}

// WaitForRoom waits, before anything is opened, until every dir's
// filesystem has need bytes free, logging once (and every minute) what it
// waits for; it returns ctx's error if ctx ends first. A start on a full
// disk thus waits with a clear line in the log instead of crashing in
// badger.
func WaitForRoom(ctx context.Context, dirs []string, need uint64, log *slog.Logger) error {
	var lastLog time.Time
	for {
		var short string
		var free uint64
		for _, d := range dirs {
			f, err := Free(d)
			if err != nil {
				return fmt.Errorf("diskguard: free space of %s: %w", d, err)
			}
			if f < need {
				short, free = d, f
				break
			}
		}
		if short == "" {
			return nil
		}
		if time.Since(lastLog) >= time.Minute {
			log.Error("disk full: waiting for free space before opening the store",
				"dir", short, "free", free, "need", need)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("diskguard: waiting for free space on %s: %w", short, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
