package mailbox

import (
	"errors"
	"io"
)

// Snapshot is a consistent, point-in-time view of the whole store, taken
// cheaply (it pins a read transaction) and written out later.
type Snapshot struct{}

// Snapshot captures the store as it is now. Release must be called.
func (s *Store) Snapshot() (*Snapshot, error) { return nil, errors.New("TODO") }

// Index returns the raft index the snapshot reflects.
func (sn *Snapshot) Index() uint64 { return 0 }

// WriteTo writes the snapshot to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) { return 0, errors.New("TODO") }

// Release frees the snapshot's read transaction.
func (sn *Snapshot) Release() {}

// Restore replaces the store's state with a snapshot read from r. If the store
// already reflects the snapshot's index or a later one, it reads r to the end
// and keeps its state: the log entries after it will be skipped or applied.
func (s *Store) Restore(r io.Reader) error { return errors.New("TODO") }
