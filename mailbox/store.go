package mailbox

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// Store is the state machine over one badger database.
type Store struct {
	db     *badger.DB
	policy Policy

	applied atomic.Uint64 // index of the last applied entry, as stored
	lastAt  atomic.Int64  // the clock: newest command time applied; only Apply and Restore write it
}

// Options configure Open.
type Options struct {
	// Policy holds the retention rules; the zero value means DefaultPolicy.
	Policy Policy
	// Logger receives badger's warnings and errors; nil discards them.
	Logger badger.Logger
	// MemTableSize is badger's memtable size in bytes; 0 means badger's
	// default (64 MiB). One command's transaction holds at most about 15%
	// of it (ErrChangeTooLarge above that), so every node of a cluster
	// must use the same value.
	MemTableSize int64
}

// Open opens (or creates) the store in dir.
func Open(dir string, o Options) (*Store, error) {
	bo := badger.DefaultOptions(dir).
		WithLogger(o.Logger).
		WithSyncWrites(false). // the raft log is the durable record: see the package doc
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false).
		// One goroutine writes (Apply); readers only read. Tracking reads
		// for conflicts would cost every Get of Apply for nothing.
		WithDetectConflicts(false).
		// Payloads are short text: compressing blocks cost a tenth of the
		// CPU of a batch publish and saved little space.
		WithCompression(options.None)
	if o.MemTableSize > 0 {
		bo = bo.WithMemTableSize(o.MemTableSize)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("mailbox: open badger in %s: %w", dir, err)
	}
	s := &Store{db: db, policy: o.Policy}
	if s.policy == (Policy{}) {
		s.policy = DefaultPolicy
	}
	if s.policy.MaxClockStep <= 0 {
		s.policy.MaxClockStep = DefaultPolicy.MaxClockStep
	}
	if err := s.loadApplied(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database. The store must not be used after.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("mailbox: close badger: %w", err)
	}
	return nil
}

// Applied returns the raft index of the last entry applied to the store.
func (s *Store) Applied() uint64 { return s.applied.Load() }

// Clock returns the state machine's clock (unix ns): the time of the last
// applied command, as Apply bounded it. The leader compares it with its own
// clock to know when to propose a Tick.
func (s *Store) Clock() int64 { return s.lastAt.Load() }

// Policy returns the rules the store applies commands with.
func (s *Store) Policy() Policy { return s.policy }

func (s *Store) loadApplied() error {
	return s.db.View(func(txn *badger.Txn) error {
		idx, at, err := readApplied(txn)
		if err != nil {
			return err
		}
		s.applied.Store(idx)
		s.lastAt.Store(at)
		return nil
	})
}

// readApplied reads the applied record: index and command time.
func readApplied(txn *badger.Txn) (index uint64, at int64, err error) {
	item, err := txn.Get(appliedKey())
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("mailbox: read applied index: %w", err)
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 16 {
			return fmt.Errorf("mailbox: applied record of %d bytes", len(v))
		}
		index = binary.BigEndian.Uint64(v[:8])
		at = int64(binary.BigEndian.Uint64(v[8:]))
		return nil
	})
	return index, at, err
}

func appliedValue(index uint64, at int64) []byte {
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v[:8], index)
	binary.BigEndian.PutUint64(v[8:], uint64(at))
	return v
}

// getJSON reads the JSON value at k into v. It returns badger.ErrKeyNotFound
// (unwrapped) when k is absent, so callers can map it to their own sentinel.
func getJSON(txn *badger.Txn, k []byte, v any) error {
	item, err := txn.Get(k)
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("mailbox: decode %q: %w", k, err)
		}
		return nil
	})
}

func setJSON(txn *badger.Txn, k []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("mailbox: encode %q: %w", k, err)
	}
	return txn.Set(k, b)
}

// found turns badger's not-found into (false, nil).
func found(err error) (bool, error) {
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}
