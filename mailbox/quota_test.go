package mailbox

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestMailboxQuota: a user may hold MaxMailboxes live mailboxes; one more
// is refused ErrQuotaExceeded, and revoking one makes room. The quota is in
// the command, so every node refuses alike.
func TestMailboxQuota(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	create := func() (string, Result) {
		id := NewID()
		return id, m.apply(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{
			MailboxID: id, UserID: alice, Label: "app", TokenHash: Hash(NewToken()), ReceiptSecret: "s", MaxMailboxes: 3,
		}})
	}
	var ids []string
	for range 3 {
		id, r := create()
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		ids = append(ids, id)
	}
	if _, r := create(); !errors.Is(r.Err, ErrQuotaExceeded) {
		t.Fatalf("a fourth mailbox under a quota of 3: %v", r.Err)
	}
	if mbs, _ := m.s.Mailboxes(alice); len(mbs) != 3 {
		t.Fatalf("%d mailboxes after the refusal", len(mbs))
	}
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{MailboxID: ids[1], UserID: alice}})
	if _, r := create(); r.Err != nil {
		t.Fatalf("a mailbox after a revoke made room: %v", r.Err)
	}
	if _, r := create(); !errors.Is(r.Err, ErrQuotaExceeded) {
		t.Fatalf("past the quota again: %v", r.Err)
	}
	// Another user has a quota of its own.
	bob, _ := m.user()
	m.must(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{
		MailboxID: NewID(), UserID: bob, Label: "app", TokenHash: Hash(NewToken()), ReceiptSecret: "s", MaxMailboxes: 3,
	}})
}

// TestDeviceQuota: a new device beyond MaxDevices takes the place of the
// device seen longest ago if that one is out of the retention window, and
// is refused ErrQuotaExceeded if every device is active. A known device
// always connects.
func TestDeviceQuota(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	touch := func(dev string) Result {
		return m.apply(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: dev, MaxDevices: 2}})
	}
	if r := touch("old"); r.Err != nil {
		t.Fatal(r.Err)
	}
	m.advance(time.Hour)
	if r := touch("laptop"); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := touch("phone"); !errors.Is(r.Err, ErrQuotaExceeded) {
		t.Fatalf("a third device with two active under a quota of 2: %v", r.Err)
	}
	if r := touch("laptop"); r.Err != nil {
		t.Fatalf("a known device at the quota: %v", r.Err)
	}
	// "old" falls out of the retention window; "laptop" stays active.
	m.advance(DefaultPolicy.DeviceRetention - 30*time.Minute)
	touch("laptop")
	m.events = nil
	if r := touch("phone"); r.Err != nil {
		t.Fatalf("a new device once the oldest is out of the window: %v", r.Err)
	}
	devs, _ := m.s.Devices(alice)
	if got := fmt.Sprint(len(devs), " ", devs[0].ID, " ", devs[1].ID); got != "2 laptop phone" {
		t.Fatalf("devices: %s", got)
	}
	evicted := false
	for _, e := range m.events {
		evicted = evicted || (e.Kind == EventDeviceDeleted && e.Device == "old")
	}
	if !evicted {
		t.Fatal("no DeviceDeleted event for the device that made room")
	}
}
