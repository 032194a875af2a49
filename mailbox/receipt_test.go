package mailbox

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// webhookMailbox creates a mailbox with a receipt URL.
func (m *machine) webhookMailbox(user string) (id, token string) {
	m.t.Helper()
	id, token = NewID(), NewToken()
	m.must(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{
		MailboxID: id, UserID: user, Label: "app", TokenHash: Hash(token),
		ReceiptURL: "https://app.example/receipts", ReceiptSecret: "s3cret",
	}})
	return id, token
}

func (m *machine) receipts(mb string) []Receipt {
	m.t.Helper()
	rs, err := m.s.Receipts(mb, 0, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	return rs
}

func (m *machine) outbox(mb string) []OutboxEntry {
	m.t.Helper()
	es, err := m.s.Outbox(mb, 0, 0)
	if err != nil {
		m.t.Fatal(err)
	}
	return es
}

func (m *machine) status(id string) MessageStatus {
	m.t.Helper()
	st, err := m.s.Status(id)
	if err != nil {
		m.t.Fatalf("status %s: %v", id, err)
	}
	return st
}

// Every fate makes exactly one receipt, numbered in the order the fates were
// decided, in the log and (with a receipt URL) the outbox; later events that
// touch a message already decided make none.
func TestEveryFateMakesOneReceipt(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.webhookMailbox(alice)

	delivered := m.publishOK(tok, "delivered", 60)
	replaced := m.publish(PublishItem{TokenHash: Hash(tok), Data: "old", TTL: 60, Topic: "t"})[0].Status
	replacer := m.publish(PublishItem{TokenHash: Hash(tok), Data: "new", TTL: 60, Topic: "t"})[0].Status
	expired := m.publishOK(tok, "short", 5)
	revoked := m.publishOK(tok, "pending at revoke", 600)

	// laptop acks seq 1 (delivered); phone never acks, so the message stays
	// in the stream and is later dropped by the revoke: no second receipt.
	m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: "phone"}})
	m.must(&Command{Kind: KindAck, Ack: &Ack{UserID: alice, DeviceID: "laptop", Seq: delivered.Seq}})
	m.advance(6 * time.Second)
	m.must(&Command{Kind: KindExpire, Expire: &Expire{}})
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})

	want := []struct {
		id    string
		state State
	}{
		{replaced.ID, StateReplaced},
		{delivered.ID, StateDelivered},
		{expired.ID, StateExpired},
		{replacer.ID, StateRevoked},
		{revoked.ID, StateRevoked},
	}
	got := m.receipts(mb)
	if len(got) != len(want) {
		t.Fatalf("%d receipts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Seq != uint64(i+1) || r.MessageID != w.id || r.State != w.state || r.MailboxID != mb {
			t.Errorf("receipt %d: %+v, want message %s %s", i+1, r, w.id, w.state)
		}
		st := m.status(w.id)
		if st.Receipt != r.Seq || st.ReceiptID() != r.ID() || r.At != st.FinalAt {
			t.Errorf("status of %s names receipt %d at %d; receipt %d at %d", w.id, st.Receipt, st.FinalAt, r.Seq, r.At)
		}
		if st.Webhook != WebhookPending {
			t.Errorf("webhook of %s: %q", w.id, st.Webhook)
		}
	}
	if got[1].DeviceID != "laptop" || got[0].ReplacedBy != replacer.ID {
		t.Errorf("delivered by %q, replaced by %q", got[1].DeviceID, got[0].ReplacedBy)
	}
	out := m.outbox(mb)
	if len(out) != len(want) || out[0].URL != "https://app.example/receipts" || out[0].Secret != "s3cret" {
		t.Fatalf("outbox: %+v", out)
	}
	if last, err := m.s.LastReceipt(mb); err != nil || last != uint64(len(want)) {
		t.Fatalf("last receipt %d %v", last, err)
	}
	finals := 0
	for _, e := range m.events {
		if e.Kind == EventFinal {
			finals++
			if e.Receipt == nil || e.Mailbox == nil || e.Mailbox.ReceiptURL == "" {
				t.Errorf("final event without receipt or mailbox: %+v", e)
			}
		}
	}
	if finals != len(want) {
		t.Errorf("%d final events, want %d", finals, len(want))
	}
}

// A mailbox without a receipt URL still logs receipts (for long-polling)
// but puts nothing in the outbox.
func TestReceiptsWithoutWebhook(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.mailbox(alice)
	msg := m.publishOK(tok, "x", 60)
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	if rs := m.receipts(mb); len(rs) != 1 || rs[0].State != StateRevoked {
		t.Fatalf("receipts: %+v", rs)
	}
	if out := m.outbox(mb); len(out) != 0 {
		t.Fatalf("outbox without a URL: %+v", out)
	}
	if st := m.status(msg.ID); st.Webhook != "" || st.Receipt != 1 {
		t.Fatalf("status: %+v", st)
	}
}

func TestSettleReceipts(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	var ids []string
	for range 4 {
		ids = append(ids, m.publishOK(tok, "x", 600).ID)
	}
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})

	// 1 and 2 sent, 3 given up; 4 stays. Settling twice changes nothing.
	for range 2 {
		m.must(&Command{Kind: KindSettleReceipts, SettleReceipts: &SettleReceipts{Items: []Settle{
			{MailboxID: mb, From: 1, Through: 2},
			{MailboxID: mb, From: 3, Through: 3, Failed: true},
		}}})
	}
	out := m.outbox(mb)
	if len(out) != 1 || out[0].Seq != 4 {
		t.Fatalf("outbox after settling: %+v", out)
	}
	for i, want := range []WebhookState{WebhookSent, WebhookSent, WebhookFailed, WebhookPending} {
		if st := m.status(ids[i]); st.Webhook != want {
			t.Errorf("message %d: webhook %q, want %q", i+1, st.Webhook, want)
		}
	}
	if st := m.status(ids[2]); st.WebhookFailedAt != m.now {
		t.Errorf("failed at %d, want %d", st.WebhookFailedAt, m.now)
	}
	if len(m.receipts(mb)) != 4 {
		t.Fatal("settling must not touch the receipt log")
	}
	if r := m.apply(&Command{Kind: KindSettleReceipts, SettleReceipts: &SettleReceipts{Items: []Settle{{MailboxID: mb, From: 5, Through: 1}}}}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("backwards range: %v", r.Err)
	}
	if len(m.outbox(mb)) != 1 {
		t.Fatal("a refused settle changed the outbox")
	}
}

// Deleting a user revokes its pending messages; their receipts stay in the
// outbox, with their URL and secret, after the mailbox is gone.
func TestDeleteUserKeepsOutbox(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	msg := m.publishOK(tok, "bye", 60)
	m.must(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: alice}})
	out := m.outbox(mb)
	if len(out) != 1 || out[0].MessageID != msg.ID || out[0].State != StateRevoked || out[0].Secret != "s3cret" {
		t.Fatalf("outbox: %+v", out)
	}
	heads, err := m.s.OutboxHeads("", 0)
	if err != nil || len(heads) != 1 || heads[0].MailboxID != mb {
		t.Fatalf("heads: %+v %v", heads, err)
	}
	if last, _ := m.s.LastReceipt(mb); last != 0 {
		t.Fatalf("a deleted mailbox's counter stays: %d", last)
	}
}

func TestOutboxHeadsOnePerMailbox(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	var mbs []string
	for range 3 {
		mb, tok := m.webhookMailbox(alice)
		mbs = append(mbs, mb)
		for range 3 {
			m.publishOK(tok, "x", 600)
		}
		m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	}
	heads, err := m.s.OutboxHeads("", 0)
	if err != nil || len(heads) != 3 {
		t.Fatalf("heads: %+v %v", heads, err)
	}
	seen := map[string]bool{}
	for i, h := range heads {
		if h.Seq != 1 || seen[h.MailboxID] || (i > 0 && h.MailboxID <= heads[i-1].MailboxID) {
			t.Fatalf("heads: %+v", heads)
		}
		seen[h.MailboxID] = true
	}
	page, err := m.s.OutboxHeads(heads[0].MailboxID, 1)
	if err != nil || len(page) != 1 || page[0].MailboxID != heads[1].MailboxID {
		t.Fatalf("second page: %+v %v", page, err)
	}
	if rs, _ := m.s.Receipts(mbs[0], 1, 1); len(rs) != 1 || rs[0].Seq != 2 {
		t.Fatalf("receipts after 1, limit 1: %+v", rs)
	}
}

// Receipts are kept StatusRetention after their fate, like statuses.
func TestReceiptsAreCollected(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.mailbox(alice)
	m.publishOK(tok, "x", 1)
	m.advance(2 * time.Second)
	m.must(&Command{Kind: KindExpire, Expire: &Expire{}})
	if len(m.receipts(mb)) != 1 {
		t.Fatal("no receipt after expiry")
	}
	m.advance(DefaultPolicy.StatusRetention)
	m.must(&Command{Kind: KindExpire, Expire: &Expire{}})
	if rs := m.receipts(mb); len(rs) != 0 {
		t.Fatalf("receipts after retention: %+v", rs)
	}
	// The counter stays: the next receipt does not reuse an id.
	m.publishOK(tok, "y", 1)
	m.advance(2 * time.Second)
	m.must(&Command{Kind: KindExpire, Expire: &Expire{}})
	if rs := m.receipts(mb); len(rs) != 1 || rs[0].Seq != 2 {
		t.Fatalf("receipt after collection: %+v", rs)
	}
}

// A snapshot carries the outbox, the receipt log and the statuses' webhook
// states.
func TestSnapshotCarriesReceipts(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	a := m.publishOK(tok, "a", 600)
	b := m.publishOK(tok, "b", 600)
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	m.must(&Command{Kind: KindSettleReceipts, SettleReceipts: &SettleReceipts{Items: []Settle{{MailboxID: mb, From: 1, Through: 1, Failed: true}}}})

	fresh := openStore(t, t.TempDir())
	if err := fresh.Restore(bytes.NewReader(snapshotBytes(t, m.s))); err != nil {
		t.Fatal(err)
	}
	out, err := fresh.Outbox(mb, 0, 0)
	if err != nil || len(out) != 1 || out[0].MessageID != b.ID {
		t.Fatalf("restored outbox: %+v %v", out, err)
	}
	rs, err := fresh.Receipts(mb, 0, 0)
	if err != nil || len(rs) != 2 {
		t.Fatalf("restored receipts: %+v %v", rs, err)
	}
	if st, err := fresh.Status(a.ID); err != nil || st.Webhook != WebhookFailed || st.State != StateRevoked {
		t.Fatalf("restored status: %+v %v", st, err)
	}
	if last, _ := fresh.LastReceipt(mb); last != 2 {
		t.Fatalf("restored counter: %d", last)
	}
}

// Replaying an entry after a restart records no second receipt.
func TestReplayMakesNoSecondReceipt(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	m.publishOK(tok, "x", 600)
	cmd := &Command{Kind: KindRevokeMailbox, At: m.now, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}}
	m.must(cmd)
	if _, _, err := m.s.Apply(m.index, cmd); err != nil {
		t.Fatal(err)
	}
	if n := len(m.receipts(mb)); n != 1 {
		t.Fatalf("%d receipts after a replay", n)
	}
}

// OutboxStats counts every waiting receipt and finds the oldest decision
// among the mailboxes' heads, whichever mailbox sorts first.
func TestOutboxStats(t *testing.T) {
	m := newMachine(t)
	if depth, oldest, err := m.s.OutboxStats(); err != nil || depth != 0 || oldest != 0 {
		t.Fatalf("empty outbox: %d %d %v", depth, oldest, err)
	}
	alice, _ := m.user()
	var all []OutboxEntry
	for i := range 3 {
		mb, tok := m.webhookMailbox(alice)
		for range i + 1 {
			m.publishOK(tok, "x", 600)
		}
		m.advance(time.Minute) // each mailbox's receipts decided a minute after the last's
		m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
		all = append(all, m.outbox(mb)...)
	}
	want := all[0].At
	for _, e := range all {
		want = min(want, e.At)
	}
	depth, oldest, err := m.s.OutboxStats()
	if err != nil || depth != 6 || oldest != want {
		t.Fatalf("stats: depth %d oldest %d %v, want 6 and %d", depth, oldest, err, want)
	}
}
