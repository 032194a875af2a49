package cluster

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/mailbox"
)

// Applied is what the layer above (the hub) hears about committed entries.
// Applied is called on raft's FSM goroutine after each applied entry that
// changed something, with the events of that entry; it must not block.
// After a restart that lost badger's tail, it also hears the replayed entries
// again (before the node is Ready); events carry seqs, so a receiver can drop
// what it has seen.
type Applied interface {
	Applied(events []mailbox.Event)
}

// Fanout is an Applied that hands each applied entry's events to several
// receivers in turn (a node's hub sessions, its receipt dispatcher), and
// tells those that implement Restored() of a restore. Each must not block.
type Fanout []Applied

// Applied passes events to every receiver.
func (f Fanout) Applied(events []mailbox.Event) {
	for _, a := range f {
		a.Applied(events)
	}
}

// Restored passes a restore on to the receivers that hear of one.
func (f Fanout) Restored() {
	for _, a := range f {
		if r, ok := a.(restorer); ok {
			r.Restored()
		}
	}
}

// BackupRestored passes a backup's restore on to the receivers that hear of
// one.
func (f Fanout) BackupRestored() {
	for _, a := range f {
		if r, ok := a.(backupRestorer); ok {
			r.BackupRestored()
		}
	}
}

// restorer is an optional interface of an Applied: Restored is called on the
// FSM goroutine after a snapshot was restored into the store, since cursors
// and streams may have moved without events.
type restorer interface {
	Restored()
}

// backupRestorer is an optional interface of an Applied: BackupRestored is
// called on the FSM goroutine, before Restored, when the snapshot was a
// backup restored into the cluster (Node.Restore), not just the state a
// node was behind on: cursors and streams were replaced, and sessions built
// on the old state should end.
type backupRestorer interface {
	BackupRestored()
}

// fsm is the hub's only raft.FSM: it applies decoded commands to the store.
type fsm struct {
	store   *mailbox.Store
	applied Applied
	meta    metaMap // cluster metadata (meta.go)

	// index is the raft index of the last entry the store reflects. Only the
	// FSM goroutine writes it.
	index atomic.Uint64
	// onApply, if set, is called after index moved (on the FSM goroutine).
	onApply func(index uint64)
	// disk pauses applying on a full disk (disk.go); empty: never.
	disk diskHooks
	// fatal stops the node on an entry it cannot apply; it does not return.
	fatal func(error)
}

var (
	_ raft.FSM                = (*fsm)(nil)
	_ raft.ConfigurationStore = (*fsm)(nil)
)

func newFSM(store *mailbox.Store, applied Applied) *fsm {
	f := &fsm{store: store, applied: applied, fatal: stopProcess}
	f.index.Store(store.Applied())
	return f
}

// Apply applies one committed entry and returns its mailbox.Result, which
// raft hands to the proposer's ApplyFuture. An entry it cannot decode or
// apply (a storage error) stops the node (fatal), with a message that says
// which entry and what to do: it must stop, not skip an entry and diverge.
func (f *fsm) Apply(l *raft.Log) any {
	res, err := f.apply(l)
	if err != nil {
		f.fatal(err)
	}
	return res
}

// EntryError is why a node stopped at a log entry it cannot apply.
type EntryError struct {
	Index uint64
	Kind  string // the command's kind, "cluster entry", or "unknown" when undecodable
	Err   error
}

func (e *EntryError) Error() string {
	return fmt.Sprintf("cluster: FATAL: raft log entry %d (%s) cannot be applied: %v. "+
		"This node stops rather than diverge from the others, and will stop at this entry on every start. "+
		"If other nodes run on: stop this one, move its data directory away and start it again with --join (it copies the state from them). "+
		"If every node stopped here: restore the cluster from a backup. See docs/operations.md, \"An entry a node cannot apply\"",
		e.Index, e.Kind, e.Err)
}

func (e *EntryError) Unwrap() error { return e.Err }

// apply is Apply with the failure as an error (an *EntryError).
func (f *fsm) apply(l *raft.Log) (any, error) {
	if l.Type != raft.LogCommand {
		return nil, nil
	}
	if !f.waitDisk() {
		return mailbox.Result{Err: ErrClosed}, nil // closing on a full disk: applied at the next start
	}
	if len(l.Data) > 0 && l.Data[0] == metaEntry {
		if err := f.meta.apply(l.Data[1:]); err != nil {
			return nil, &EntryError{Index: l.Index, Kind: "cluster entry", Err: err}
		}
		f.setIndex(max(l.Index, f.store.Applied()))
		return mailbox.Result{}, nil
	}
	cmd, err := mailbox.DecodeCommand(l.Data)
	if err != nil {
		return nil, &EntryError{Index: l.Index, Kind: "unknown", Err: err}
	}
	res, events, err := f.store.Apply(l.Index, cmd)
	if err != nil {
		return nil, &EntryError{Index: l.Index, Kind: cmd.Kind.String(), Err: err}
	}
	if f.applied != nil && len(events) > 0 {
		f.applied.Applied(events)
	}
	f.setIndex(max(l.Index, f.store.Applied()))
	return res, nil
}

// stopProcess is the fatal of a real node: the message on stderr, where an
// operator's service manager shows it, and exit status 70 (EX_SOFTWARE).
// Raft's FSM interface has no way to fail an entry, and going on would
// diverge.
func stopProcess(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(70)
}

// StoreConfiguration is raft's hook for a committed configuration change
// (raft.ConfigurationStore). The store has nothing to do for it, but the
// index counts as applied, so that waiting for an index never waits for an
// entry that no FSM sees.
func (f *fsm) StoreConfiguration(index uint64, _ raft.Configuration) { f.setIndex(index) }

func (f *fsm) setIndex(i uint64) {
	if i > f.index.Load() {
		f.index.Store(i)
	}
	if f.onApply != nil {
		f.onApply(f.index.Load())
	}
}

// Snapshot pins a read transaction of the store and copies the cluster
// metadata (both on the FSM goroutine, so they match); the work happens in
// Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	sn, err := f.store.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("cluster: snapshot: %w", err)
	}
	return fsmSnapshot{sn: sn, api: f.meta.copy()}, nil
}

// Restore replaces the store's state and the cluster metadata with a
// snapshot. The store keeps its state when it is already at or past the
// snapshot's index; a bare store snapshot keeps the metadata.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if !f.waitDisk() {
		return fmt.Errorf("cluster: restore snapshot: %w", ErrClosed)
	}
	api, r, err := readEnvelope(rc)
	if err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	before := f.store.Restored()
	if err := f.store.Restore(r); err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	if api != nil {
		f.meta.replace(api)
	}
	if r, ok := f.applied.(backupRestorer); ok && f.store.Restored() != before {
		r.BackupRestored()
	}
	if r, ok := f.applied.(restorer); ok {
		r.Restored()
	}
	f.setIndex(f.store.Applied())
	return nil
}

type fsmSnapshot struct {
	sn  *mailbox.Snapshot
	api map[string]string
}

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := writeEnvelope(sink, s.api)
	if err == nil {
		_, err = s.sn.WriteTo(sink)
	}
	if err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: write snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("cluster: close snapshot: %w", err)
	}
	return nil
}

func (s fsmSnapshot) Release() { s.sn.Release() }
