package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/raft"
	"github.com/notifyhub/hub/mailbox"
)

// Backups are the store's own snapshot format (mailbox.Snapshot): one
// read-only badger transaction, so a backup is exactly the state at one raft
// index, with a checksum. Restoring one replaces the state of the whole
// cluster, through raft: the leader takes the backup as a snapshot at a new
// index past its log (raft.Restore), and every follower installs it, as a
// new node would. The backup's own index is rewritten to that new index, so
// that no store mistakes it for an older snapshot than what it holds, and
// every user's stream is moved past the highest seq the cluster ever issued
// (mailbox/restore.go), so that no seq a device saw is issued again. The
// membership and node metadata stay as they are.

// restoreGap is how far past the log's last index a restored snapshot is
// placed: raft leaves a hole there, so that followers must install it.
const restoreGap = 1 << 16

// Backup writes a consistent copy of this node's store to w and returns the
// raft index it reflects. Run it on any node; a follower's copy is as
// recent as what it applied.
func (n *Node) Backup(w io.Writer) (uint64, error) {
	sn, err := n.store.Snapshot()
	if err != nil {
		return 0, fmt.Errorf("cluster: backup: %w", err)
	}
	defer sn.Release()
	if _, err := sn.WriteTo(w); err != nil {
		return 0, fmt.Errorf("cluster: backup: %w", err)
	}
	return sn.Index(), nil
}

// Restore replaces the state of the whole cluster with a backup read from
// r. It runs on the leader (a follower forwards it). A malformed backup is
// refused (mailbox.ErrBadSnapshot) before anything changes. Writes in
// flight on the leader fail (they may be retried), and publishes are refused
// (mailbox.ErrRestoring) while it runs. Sessions everywhere end (their
// Applied hears BackupRestored) and resume from the restored state.
func (n *Node) Restore(ctx context.Context, r io.Reader) error {
	f, err := n.spool(r)
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	err = n.restoreLocal(f)
	if errors.Is(err, errNotHere) {
		err = n.restoreForward(ctx, f)
	}
	if err != nil {
		return fmt.Errorf("cluster: restore: %w", err)
	}
	return nil
}

// spool copies a backup into a temporary file next to the raft state,
// checking it on the way.
func (n *Node) spool(r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(n.cfg.Dir, "restore-*.tmp")
	if err != nil {
		return nil, err
	}
	if _, err := mailbox.RewriteSnapshot(f, r, 0); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

func (n *Node) restoreForward(ctx context.Context, f *os.File) error {
	ctx, cancel := context.WithTimeout(ctx, membershipTimeout*6)
	defer cancel()
	for {
		api, err := n.leaderAPI(ctx)
		if err != nil {
			return err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		err = n.post(ctx, api+"/internal/v1/restore", io.NopCloser(f), nil)
		if !errors.Is(err, errRetry) {
			return err
		}
		select {
		case <-n.changed.wait():
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
}

// restoreLocal restores the spooled backup f on the leader.
func (n *Node) restoreLocal(f *os.File) error {
	if n.raft.State() != raft.Leader {
		return errNotHere
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return raftErr(err)
	}
	// No seq may be issued between reading the highest one and the
	// restore (mailbox/restore.go): seal publishing first.
	floor, err := n.seal()
	if err != nil {
		return err
	}
	restored := false
	defer func() {
		if !restored {
			n.unseal()
		}
	}()
	index := n.raft.LastIndex() + restoreGap
	out, err := os.CreateTemp(n.cfg.Dir, "restore-*.snap")
	if err != nil {
		return err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	if err := writeEnvelope(out, n.fsm.meta.copy()); err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// raft places the snapshot at index+1: the store must say the same.
	if _, err := mailbox.RewriteForRestore(out, f, index+1, floor); err != nil {
		return err
	}
	size, err := out.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{
		Version:            raft.SnapshotVersionMax,
		Index:              index,
		Term:               n.raft.CurrentTerm(),
		Configuration:      cf.Configuration(),
		ConfigurationIndex: cf.Index(),
		Size:               size,
	}
	if err := raftErr(n.raft.Restore(meta, out, membershipTimeout)); err != nil {
		return err
	}
	restored = true
	return nil
}

// sealFor is how long a restore's seal refuses publishes at most, should
// the leader die before it restores or lifts it.
const sealFor = 2 * time.Minute

// seal proposes a Seal and returns the highest seq the cluster ever issued.
func (n *Node) seal() (mailbox.Seq, error) {
	ctx, cancel := context.WithTimeout(context.Background(), membershipTimeout)
	defer cancel()
	res, err := n.Propose(ctx, &mailbox.Command{Kind: mailbox.KindSeal, Seal: &mailbox.Seal{For: int64(sealFor)}})
	if err != nil {
		return 0, fmt.Errorf("seal: %w", err)
	}
	// A store written by an older version does not know every seq it
	// issued before; its users' streams are the lower bound.
	top, err := n.store.HighestUserSeq()
	if err != nil {
		n.unseal()
		return 0, err
	}
	return max(res.Issued, top), nil
}

// unseal lifts the seal of a restore that did not happen.
func (n *Node) unseal() {
	ctx, cancel := context.WithTimeout(context.Background(), membershipTimeout)
	defer cancel()
	if _, err := n.Propose(ctx, &mailbox.Command{Kind: mailbox.KindSeal, Seal: &mailbox.Seal{}}); err != nil {
		n.cfg.logger().Warn("cluster: lift the seal of a failed restore; it lifts itself", "after", sealFor, "err", err)
	}
}
