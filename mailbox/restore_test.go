package mailbox

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// TestRestoreNeverReusesASeq: a Seal stops publishing and names the highest
// seq ever issued, a deleted user's included; a backup rewritten for the
// restore with that floor puts every stream past it, drops the seal, and
// marks the state as restored, so the next message of every user takes a
// seq no device has seen.
func TestRestoreNeverReusesASeq(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	bob, _ := m.user()
	_, bobTok := m.mailbox(bob)
	m.publishMany(tok, 3)
	backup := snapshotBytes(t, m.s)

	m.publishMany(tok, 5)     // alice: 8
	m.publishMany(bobTok, 20) // bob: 20, then deleted
	m.must(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: bob}})

	sealed := m.must(&Command{Kind: KindSeal, Seal: &Seal{For: int64(time.Minute)}})
	if sealed.Issued != 20 {
		t.Fatalf("seal: highest seq ever issued %d, want 20", sealed.Issued)
	}
	if r := m.publish(PublishItem{TokenHash: Hash(tok), Data: "while sealed", TTL: 60})[0]; !errors.Is(r.Err, ErrRestoring) {
		t.Fatalf("publish while sealed: %v", r.Err)
	}

	var out bytes.Buffer
	restoreIndex := m.index + 1000
	if _, err := RewriteForRestore(&out, bytes.NewReader(backup), restoreIndex, sealed.Issued); err != nil {
		t.Fatal(err)
	}
	if m.s.Restored() != 0 {
		t.Fatalf("restored %d before any restore", m.s.Restored())
	}
	if err := m.s.Restore(&out); err != nil {
		t.Fatal(err)
	}
	m.index = restoreIndex
	if m.s.Restored() != restoreIndex {
		t.Fatalf("restored marker %d, want %d", m.s.Restored(), restoreIndex)
	}
	if got := m.stream(alice); len(got) != 3 {
		t.Fatalf("alice's stream after the restore: %d messages, want the backup's 3", len(got))
	}
	for _, u := range []string{alice, bob} {
		if rec, err := m.s.User(u); err != nil || rec.LastSeq != 20 {
			t.Fatalf("user %s after the restore: %+v %v; want its stream at 20", u, rec, err)
		}
	}
	// Not sealed: the seal came after the backup, and is not in it.
	st := m.publishOK(tok, "after the restore", 60)
	if st.Seq != 21 {
		t.Fatalf("first message after the restore: seq %d, want 21", st.Seq)
	}
	// A device that acked 8 before the restore resumes there, and the new
	// message is not delivered by it.
	m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: "laptop", From: 8}})
	if got := m.state(st.ID); got != StatePending {
		t.Fatalf("new message after the device resumed from 8: %s", got)
	}
	// Snapshots of the restored store keep the floor.
	fresh := openStore(t, t.TempDir())
	if err := fresh.Restore(bytes.NewReader(snapshotBytes(t, m.s))); err != nil {
		t.Fatal(err)
	}
	if fresh.Restored() != restoreIndex {
		t.Fatalf("a snapshot of the restored store: marker %d", fresh.Restored())
	}
}

// TestSealLiftsItself: a seal lifts by a Seal of 0, or by itself after its
// time on the state machine's clock (a leader that died mid-restore).
func TestSealLiftsItself(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	m.must(&Command{Kind: KindSeal, Seal: &Seal{For: int64(time.Minute)}})
	m.must(&Command{Kind: KindSeal, Seal: &Seal{}})
	m.publishOK(tok, "lifted", 60)
	m.must(&Command{Kind: KindSeal, Seal: &Seal{For: int64(time.Minute)}})
	m.advance(30 * time.Second)
	if r := m.publish(PublishItem{TokenHash: Hash(tok), Data: "sealed", TTL: 60})[0]; !errors.Is(r.Err, ErrRestoring) {
		t.Fatalf("publish 30 s into a minute's seal: %v", r.Err)
	}
	m.advance(31 * time.Second)
	m.publishOK(tok, "seal over", 60)
	if r := m.apply(&Command{Kind: KindSeal, Seal: &Seal{For: -1}}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("seal for -1: %v", r.Err)
	}
}
