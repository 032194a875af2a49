package mailbox

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/dgraph-io/badger/v4"
)

// The snapshot format: the magic, the applied index (8 bytes BE), then every
// key and value as uvarint length + bytes, a zero key length to end, and the
// CRC-32C (4 bytes BE) of everything before it.
var snapshotMagic = []byte("HUBSNAP1")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Snapshot is a consistent, point-in-time view of the whole store: it holds a
// badger read transaction, so taking one is cheap and writing it out later
// still writes exactly the state at Index, whatever was applied since.
type Snapshot struct {
	txn   *badger.Txn
	index uint64
}

// Snapshot captures the store as it is now. Release must be called.
func (s *Store) Snapshot() (*Snapshot, error) {
	txn := s.db.NewTransaction(false)
	rec, err := readApplied(txn)
	if err != nil {
		txn.Discard()
		return nil, err
	}
	return &Snapshot{txn: txn, index: rec.index}, nil
}

// Index returns the raft index the snapshot reflects.
func (sn *Snapshot) Index() uint64 { return sn.index }

// Release frees the snapshot's read transaction.
func (sn *Snapshot) Release() { sn.txn.Discard() }

// WriteTo writes the snapshot to w.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 256<<10)
	crc := crc32.New(crcTable)
	out := io.MultiWriter(bw, crc)
	var lenBuf [binary.MaxVarintLen64]byte
	writeBytes := func(b []byte) error {
		n := binary.PutUvarint(lenBuf[:], uint64(len(b)))
		if _, err := out.Write(lenBuf[:n]); err != nil {
			return err
		}
		_, err := out.Write(b)
		return err
	}
	if _, err := out.Write(snapshotMagic); err != nil {
		return cw.n, err
	}
	if _, err := out.Write(be64(sn.index)); err != nil {
		return cw.n, err
	}
	it := sn.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 128})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := writeBytes(item.Key()); err != nil {
			return cw.n, fmt.Errorf("mailbox: write snapshot: %w", err)
		}
		if err := item.Value(writeBytes); err != nil {
			return cw.n, fmt.Errorf("mailbox: write snapshot: %w", err)
		}
	}
	if _, err := out.Write([]byte{0}); err != nil {
		return cw.n, err
	}
	if _, err := bw.Write(binary.BigEndian.AppendUint32(nil, crc.Sum32())); err != nil {
		return cw.n, err
	}
	err := bw.Flush()
	return cw.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ErrBadSnapshot means a snapshot could not be read: wrong format, truncated
// or corrupt.
var ErrBadSnapshot = errors.New("mailbox: bad snapshot")

// Restore replaces the store's state with a snapshot read from r.
//
// If the store already reflects the snapshot's index or a later one, Restore
// reads r to the end and keeps its own state: this is the common case on
// restart, where raft restores its newest snapshot and then replays the log,
// and badger kept everything the log had. Otherwise (a new node, a node far
// behind, or a badger that lost its tail) the state is dropped and loaded
// from the snapshot. Reads running meanwhile may see a partial state.
func (s *Store) Restore(r io.Reader) error {
	var wb *badger.WriteBatch
	defer func() {
		if wb != nil {
			wb.Cancel()
		}
	}()
	err := readSnapshot(r, func(index uint64) (bool, error) {
		if index <= s.Applied() {
			return false, nil
		}
		if err := s.db.DropAll(); err != nil {
			return false, fmt.Errorf("mailbox: restore: drop state: %w", err)
		}
		s.live.closed()
		wb = s.db.NewWriteBatch()
		return true, nil
	}, func(k, v []byte) error {
		if err := wb.Set(k, v); err != nil {
			return fmt.Errorf("mailbox: restore: %w", err)
		}
		return nil
	})
	if err != nil || wb == nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("mailbox: restore: %w", err)
	}
	s.live.closed() // every token is as the backup says now
	return s.loadApplied()
}

// readSnapshot reads a snapshot from r: the header, whose index goes to
// start (which says whether to read the records, or only to the end), then
// each record to set, then the checksum. The records set before a
// corruption is found are not taken back: the caller drops them.
func readSnapshot(r io.Reader, start func(index uint64) (bool, error), set func(k, v []byte) error) error {
	crc := crc32.New(crcTable)
	br := bufio.NewReaderSize(r, 256<<10)
	tr := &teeByteReader{r: br, h: crc}
	head := make([]byte, len(snapshotMagic)+8)
	if _, err := io.ReadFull(tr, head); err != nil {
		return fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if string(head[:len(snapshotMagic)]) != string(snapshotMagic) {
		return fmt.Errorf("%w: not a hub snapshot", ErrBadSnapshot)
	}
	if ok, err := start(be64dec(head[len(snapshotMagic):])); err != nil || !ok {
		if err == nil {
			_, err = io.Copy(io.Discard, br)
		}
		return err
	}
	for {
		k, err := readRecord(tr)
		if err != nil {
			return fmt.Errorf("%w: key: %v", ErrBadSnapshot, err)
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecord(tr)
		if err != nil {
			return fmt.Errorf("%w: value of %q: %v", ErrBadSnapshot, k, err)
		}
		if err := set(k, v); err != nil {
			return err
		}
	}
	want := crc.Sum32()
	var got [4]byte
	if _, err := io.ReadFull(br, got[:]); err != nil || binary.BigEndian.Uint32(got[:]) != want {
		return fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	return nil
}

// teeByteReader reads from r and feeds what it read to h.
type teeByteReader struct {
	r *bufio.Reader
	h io.Writer
}

func (t *teeByteReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.h.Write(p[:n])
	return n, err
}

func (t *teeByteReader) ReadByte() (byte, error) {
	b, err := t.r.ReadByte()
	if err == nil {
		t.h.Write([]byte{b})
	}
	return b, err
}

// readRecord reads one length-prefixed record of a snapshot or backup
// stream (a uvarint length, then the bytes), refusing lengths over 64 MiB.
// It grows its buffer as the bytes come, so that a short, damaged stream
// claiming a long record costs what it holds, not 64 MiB.
func readRecord(r *teeByteReader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	if n > 64<<20 {
		return nil, fmt.Errorf("record of %d bytes", n)
	}
	if n <= 64<<10 {
		b := make([]byte, n)
		_, err = io.ReadFull(r, b)
		return b, err
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err == nil && uint64(len(b)) != n {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}
