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

	// Only Apply and Restore touch these (restore.go).
	issued   Seq   // the highest seq ever issued, to any user
	sealed   int64 // publishes are refused until this clock (a restore under way)
	restored atomic.Uint64

	live liveTokens // tokens seen open, for TokenOpen (livetokens.go)
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
		rec, err := readApplied(txn)
		if err != nil {
			return err
		}
		s.applied.Store(rec.index)
		s.lastAt.Store(rec.at)
		s.issued = rec.issued
		if s.sealed, err = readU64(txn, sealKey()); err != nil {
			return err
		}
		restored, err := readU64(txn, restoredKey())
		s.restored.Store(uint64(restored))
		return err
	})
}

// appliedRecord is the applied record: the last applied raft index, the
// clock, and the highest seq ever issued (restore.go). Records of older
// versions hold the first two.
type appliedRecord struct {
	index  uint64
	at     int64
	issued Seq
}

// readApplied reads the applied record.
func readApplied(txn *badger.Txn) (rec appliedRecord, err error) {
	item, err := txn.Get(appliedKey())
	if errors.Is(err, badger.ErrKeyNotFound) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("mailbox: read applied index: %w", err)
	}
	err = item.Value(func(v []byte) error {
		rec, err = parseApplied(v)
		return err
	})
	return rec, err
}

func parseApplied(v []byte) (appliedRecord, error) {
	if len(v) != 16 && len(v) != 24 {
		return appliedRecord{}, fmt.Errorf("mailbox: applied record of %d bytes", len(v))
	}
	rec := appliedRecord{index: binary.BigEndian.Uint64(v[:8]), at: int64(binary.BigEndian.Uint64(v[8:16]))}
	if len(v) == 24 {
		rec.issued = Seq(binary.BigEndian.Uint64(v[16:]))
	}
	return rec, nil
}

func (rec appliedRecord) value() []byte {
	v := make([]byte, 24)
	binary.BigEndian.PutUint64(v[:8], rec.index)
	binary.BigEndian.PutUint64(v[8:16], uint64(rec.at))
	binary.BigEndian.PutUint64(v[16:], uint64(rec.issued))
	return v
}

// readU64 reads an 8-byte record; absent is 0.
func readU64(txn *badger.Txn, k []byte) (int64, error) {
	item, err := txn.Get(k)
	if ok, err := found(err); err != nil || !ok {
		return 0, err
	}
	var n int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("mailbox: record %q of %d bytes", k, len(v))
		}
		n = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	return n, err
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
