package mailbox

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// Restores never reuse a seq. A backup holds each user's stream as it was;
// restoring it as it is would roll every LastSeq back, and the messages
// published next would take seqs that devices had already seen and acked
// before the restore: a device drops them as duplicates (its cursor is
// past them) while the hub records them delivered. So a restore moves
// every stream past every seq ever issued, on any user:
//
//  1. The leader proposes a Seal: publishes are refused (ErrRestoring)
//     for a while, and its Result names Issued, the highest seq ever
//     issued (kept in the applied record, deleted users' streams included).
//     No seq is issued after it.
//  2. The backup is rewritten (RewriteForRestore) with every user's
//     LastSeq at least that floor, and a restore marker (G) naming the
//     restore's raft index, and installed on every node through raft. The
//     seal is not in it: publishing goes on at once, from floor+1.
//
// Devices keep their cursors: a cursor is never above the floor, so nothing
// after the restore is skipped, and an ack of what the backup holds (the
// same messages, under the same seqs) delivers it as before. The marker
// tells a node that its state was replaced by a backup (Store.Restored), so
// that the layers above end their sessions. A seal lifts itself after its
// time (a leader that died mid-restore), or by a Seal of 0.
//
// The floor is only as good as the store the restore runs on: restoring a
// backup into a new cluster cannot know what a lost one issued after the
// backup (docs/operations.md).

// Seal refuses publishes for For nanoseconds of the state machine's clock
// (0: lift a seal) and answers, in Result.Issued, the highest seq ever
// issued.
type Seal struct {
	For int64 `json:"for"`
}

func (a *applier) seal(c *Seal) (Result, error) {
	if c.For < 0 {
		return refuse(ErrInvalid, "seal for %d", c.For), nil
	}
	if c.For == 0 {
		a.sealed = 0
		return Result{Issued: a.issued}, a.txn.Delete(sealKey())
	}
	a.sealed = a.at + c.For
	return Result{Issued: a.issued}, a.txn.Set(sealKey(), be64(uint64(a.sealed)))
}

// Restored returns the raft index of the restore whose backup the store's
// state comes from, 0 if none: it changes exactly when a backup replaced
// the state, not when a snapshot only brought a node up to date.
func (s *Store) Restored() uint64 { return s.restored.Load() }

// HighestUserSeq returns the highest LastSeq of the users the store holds.
// A store written by an older version does not know the highest seq ever
// issued (Seal's Issued) from before it; this is its lower bound.
func (s *Store) HighestUserSeq() (Seq, error) {
	var top Seq
	err := s.db.View(func(txn *badger.Txn) error {
		return iterPrefix(txn, []byte{tagUser, '/'}, func(_, v []byte) error {
			var u User
			if err := unmarshal(v, &u); err != nil {
				return err
			}
			top = max(top, u.LastSeq)
			return nil
		})
	})
	return top, s.readErr(err, nil)
}

// RewriteSnapshot copies the snapshot read from r to w with its index (in
// the header and in the applied record) replaced by index, and checks the
// source's checksum on the way. On ErrBadSnapshot, what was written to w
// must be thrown away.
func RewriteSnapshot(w io.Writer, r io.Reader, index uint64) (int64, error) {
	return rewrite(w, r, index, nil)
}

// RewriteForRestore is RewriteSnapshot for a backup restored into a running
// cluster at index: every user's stream goes on past floor (the highest seq
// the cluster ever issued, from a Seal), the restore marker names index, and
// a seal the backup may hold is left out. index must read as newer than
// every store it replaces, or Restore would keep their state.
func RewriteForRestore(w io.Writer, r io.Reader, index uint64, floor Seq) (int64, error) {
	return rewrite(w, r, index, &restoreEdit{index: index, floor: floor})
}

// restoreEdit is what RewriteForRestore changes in the records.
type restoreEdit struct {
	index uint64
	floor Seq
}

// record returns the record to write for k and v: v itself, another value,
// or skip.
func (e *restoreEdit) record(k, v []byte) (out []byte, skip bool, err error) {
	switch {
	case string(k) == string(sealKey()), string(k) == string(restoredKey()):
		return nil, true, nil
	case string(k) == string(appliedKey()):
		rec, err := parseApplied(v)
		if err != nil {
			return nil, false, err
		}
		rec.issued = max(rec.issued, e.floor)
		return rec.value(), false, nil
	case len(k) > 2 && k[0] == tagUser && k[1] == '/':
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return nil, false, fmt.Errorf("user %q: %v", k, err)
		}
		if u.LastSeq >= e.floor {
			return v, false, nil
		}
		u.LastSeq = e.floor
		out, err := json.Marshal(u)
		return out, false, err
	}
	return v, false, nil
}

func rewrite(w io.Writer, r io.Reader, index uint64, edit *restoreEdit) (int64, error) {
	in := crc32.New(crcTable)
	br := bufio.NewReaderSize(r, 256<<10)
	tr := &teeByteReader{r: br, h: in}
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	out := crc32.New(crcTable)
	mw := io.MultiWriter(bw, out)

	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(tr, head); err != nil {
		return 0, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != string(snapshotMagic) {
		return 0, fmt.Errorf("%w: not a hub snapshot", ErrBadSnapshot)
	}
	binary.BigEndian.PutUint64(head[len(snapshotMagic):], index)
	if _, err := mw.Write(head); err != nil {
		return cw.n, err
	}
	var lenBuf [binary.MaxVarintLen64]byte
	writeBytes := func(b []byte) error {
		if _, err := mw.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(b)))]); err != nil {
			return err
		}
		_, err := mw.Write(b)
		return err
	}
	for {
		k, err := readRecord(tr)
		if err != nil {
			return cw.n, fmt.Errorf("%w: key: %v", ErrBadSnapshot, err)
		}
		if len(k) == 0 {
			if edit != nil {
				if err := writeBytes(restoredKey()); err != nil {
					return cw.n, err
				}
				if err := writeBytes(be64(edit.index)); err != nil {
					return cw.n, err
				}
			}
			if err := writeBytes(k); err != nil {
				return cw.n, err
			}
			break
		}
		v, err := readRecord(tr)
		if err != nil {
			return cw.n, fmt.Errorf("%w: value of %q: %v", ErrBadSnapshot, k, err)
		}
		if string(k) == string(appliedKey()) && (len(v) == 16 || len(v) == 24) {
			// The applied record says the same index as the header.
			binary.BigEndian.PutUint64(v[:8], index)
		}
		if edit != nil {
			var skip bool
			if v, skip, err = edit.record(k, v); err != nil {
				return cw.n, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
			} else if skip {
				continue
			}
		}
		if err := writeBytes(k); err != nil {
			return cw.n, err
		}
		if err := writeBytes(v); err != nil {
			return cw.n, err
		}
	}
	want := in.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(br, got[:]); err != nil || binary.BigEndian.Uint32(got[:]) != want {
		return cw.n, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(nil, out.Sum32())); err != nil {
		return cw.n, err
	}
	err := bw.Flush()
	return cw.n, err
}
