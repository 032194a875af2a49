package mailbox

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// RewriteSnapshot copies the snapshot read from r to w with its index (in
// the header and in the applied record) replaced by index, and checks the source's checksum on the way: a backup
// restored into a running cluster must read as newer than every store it
// replaces, or Restore would keep their state. On ErrBadSnapshot, what was
// written to w must be thrown away.
func RewriteSnapshot(w io.Writer, r io.Reader, index uint64) (int64, error) {
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
		if err := writeBytes(k); err != nil {
			return cw.n, err
		}
		if len(k) == 0 {
			break
		}
		v, err := readRecord(tr)
		if err != nil {
			return cw.n, fmt.Errorf("%w: value of %q: %v", ErrBadSnapshot, k, err)
		}
		if string(k) == string(appliedKey()) && len(v) == 16 {
			// The applied record says the same index as the header.
			binary.BigEndian.PutUint64(v[:8], index)
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
