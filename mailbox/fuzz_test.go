package mailbox

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// seedSnapshot returns a snapshot of a small store: a user, a mailbox with
// a receipt URL, messages, a device and a drain marker, so that the fuzzers
// start from every kind of record.
func seedSnapshot(f *testing.F) []byte {
	f.Helper()
	s, err := Open(f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	user, tok, gone := NewID(), NewToken(), NewToken()
	cmds := []*Command{
		{Kind: KindCreateUser, CreateUser: &CreateUser{UserID: user, SecretHash: Hash(NewSecret(user))}},
		{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{MailboxID: NewID(), UserID: user, Label: "a", TokenHash: Hash(tok), ReceiptURL: "https://r.example/x", ReceiptSecret: "s"}},
		{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{MailboxID: NewID(), UserID: user, Label: "b", TokenHash: Hash(gone), ReceiptSecret: "s"}},
		{Kind: KindPublish, Publish: &Publish{Items: []PublishItem{
			{ID: NewID(), TokenHash: Hash(tok), Data: "one", TTL: 60, Topic: "t"},
			{ID: NewID(), TokenHash: Hash(gone), Data: "two", TTL: 60, IdempotencyKey: "k"},
		}}},
		{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: user, DeviceID: "laptop", From: 1}},
		{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(gone)}},
		{Kind: KindSeal, Seal: &Seal{For: int64(time.Minute)}},
	}
	for i, c := range cmds {
		c.At = now
		if _, _, err := s.Apply(uint64(i+1), c); err != nil {
			f.Fatal(err)
		}
	}
	sn, err := s.Snapshot()
	if err != nil {
		f.Fatal(err)
	}
	defer sn.Release()
	var b bytes.Buffer
	if _, err := sn.WriteTo(&b); err != nil {
		f.Fatal(err)
	}
	return b.Bytes()
}

// FuzzSnapshotRead: the backup reader (RewriteForRestore, what a restore
// reads an uploaded backup with) refuses what is not a whole, checksummed
// snapshot with ErrBadSnapshot and never panics, and what it writes is a
// snapshot that Restore loads.
func FuzzSnapshotRead(f *testing.F) {
	seed := seedSnapshot(f)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte("HUBSNAP1"))
	s, err := Open(f.TempDir(), Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	var index atomic.Uint64
	index.Store(1 << 40)
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		i := index.Add(1)
		if _, err := RewriteForRestore(&out, bytes.NewReader(b), i, 7); err != nil {
			return
		}
		if err := s.Restore(&out); err != nil {
			t.Fatalf("a backup the reader took does not restore: %v", err)
		}
		if s.Applied() != i || s.Restored() != i {
			t.Fatalf("restored at %d, marker %d; want %d", s.Applied(), s.Restored(), i)
		}
	})
}

// FuzzRestore: the reader of Restore (what raft hands a snapshot to)
// refuses a damaged snapshot with ErrBadSnapshot and never panics, and the
// records it takes from a whole one are those the snapshot holds. (Restore
// drops the store before it reads: the fuzzer drives the reader alone, and
// FuzzSnapshotRead drives Restore with what the backup reader took.)
func FuzzRestore(f *testing.F) {
	seed := seedSnapshot(f)
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		var keys int
		err := readSnapshot(bytes.NewReader(b), func(uint64) (bool, error) { return true, nil },
			func(k, v []byte) error { keys++; return nil })
		if err != nil && !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("not ErrBadSnapshot: %v", err)
		}
		if err == nil {
			// A whole snapshot: the backup reader takes it too.
			if _, err := RewriteSnapshot(io.Discard, bytes.NewReader(b), 1); err != nil {
				t.Fatalf("Restore's reader took what the backup reader refuses: %v", err)
			}
		}
	})
}
