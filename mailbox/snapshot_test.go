package mailbox

import (
	"bytes"
	"errors"
	"testing"
)

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	m := newMachine(t)
	alice, secret := m.user()
	_, tok := m.mailbox(alice)
	for range 10 {
		m.publishOK(tok, "hello", 3600)
	}
	want := snapshotBytes(t, m.s)

	fresh := openStore(t, t.TempDir())
	if err := fresh.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if fresh.Applied() != m.s.Applied() {
		t.Fatalf("applied %d, want %d", fresh.Applied(), m.s.Applied())
	}
	if got := snapshotBytes(t, fresh); !bytes.Equal(got, want) {
		t.Fatal("restored store differs from the original")
	}
	if u, err := fresh.Authenticate(secret); err != nil || u.ID != alice {
		t.Fatalf("restored user: %v", err)
	}
}

// A snapshot taken before later applies still writes the state at its index.
func TestSnapshotIsPointInTime(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	m.publishOK(tok, "before", 3600)
	before := snapshotBytes(t, m.s)

	sn, err := m.s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	m.publishOK(tok, "after", 3600)
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), before) {
		t.Fatal("snapshot includes an apply made after it was taken")
	}
}

// On restart raft restores its newest snapshot; a store that is already at
// or past that index keeps its state.
func TestRestoreOlderSnapshotKeepsState(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	old := snapshotBytes(t, m.s)
	m.publishOK(tok, "newer", 3600)
	if err := m.s.Restore(bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"newer"}) {
		t.Fatalf("stream after restoring an older snapshot: %q", got)
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	m.publishOK(tok, "x", 3600)
	good := snapshotBytes(t, m.s)
	for name, b := range map[string][]byte{
		"empty":     nil,
		"magic":     append([]byte("NOTASNAP"), good[8:]...),
		"truncated": good[:len(good)-10],
		"flipped":   append(append(bytes.Clone(good[:len(good)-20]), good[len(good)-20]^0xff), good[len(good)-19:]...),
	} {
		t.Run(name, func(t *testing.T) {
			fresh := openStore(t, t.TempDir())
			if err := fresh.Restore(bytes.NewReader(b)); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("restore: %v", err)
			}
		})
	}
}
