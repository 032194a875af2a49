package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// publishMany publishes n messages to token, in entries of 250.
func (m *machine) publishMany(token string, n int) []string {
	m.t.Helper()
	var ids []string
	for i := 0; i < n; i += 250 {
		items := make([]PublishItem, min(250, n-i))
		for j := range items {
			items[j] = PublishItem{TokenHash: Hash(token), Data: fmt.Sprint(i + j), TTL: 3600}
		}
		for _, r := range m.publish(items...) {
			if r.Err != nil {
				m.t.Fatalf("publish: %v", r.Err)
			}
			ids = append(ids, r.Status.ID)
		}
	}
	return ids
}

// drain applies Expire commands of limit until no work remains, failing
// after max commands. It returns how many it took.
func (m *machine) drain(limit, max int) int {
	m.t.Helper()
	for i := 1; i <= max; i++ {
		res := m.apply(&Command{Kind: KindExpire, Expire: &Expire{Limit: limit}})
		if res.Err != nil {
			m.t.Fatalf("expire %d: %v", i, res.Err)
		}
		if !res.More {
			return i
		}
	}
	m.t.Fatalf("still draining after %d expire commands", max)
	return max
}

// checkOneReceiptEach checks that mailbox mb's receipt log (and outbox)
// holds exactly one receipt per message of ids, all with state, numbered
// from 1 without gaps.
func (m *machine) checkOneReceiptEach(mb string, ids []string, state State, outbox bool) {
	m.t.Helper()
	rs := m.receipts(mb)
	if len(rs) != len(ids) {
		m.t.Fatalf("mailbox %s: %d receipts for %d messages", mb, len(rs), len(ids))
	}
	byMsg := map[string]Receipt{}
	for i, r := range rs {
		if r.Seq != uint64(i+1) || r.State != state {
			m.t.Fatalf("receipt %d: %+v, want seq %d and %s", i, r, i+1, state)
		}
		if _, dup := byMsg[r.MessageID]; dup {
			m.t.Fatalf("message %s has two receipts", r.MessageID)
		}
		byMsg[r.MessageID] = r
	}
	for _, id := range ids {
		r, ok := byMsg[id]
		if !ok {
			m.t.Fatalf("message %s has no receipt", id)
		}
		st := m.status(id)
		if st.State != state || st.Receipt != r.Seq {
			m.t.Fatalf("status of %s: %+v, receipt %+v", id, st, r)
		}
	}
	if outbox {
		if out := m.outbox(mb); len(out) != len(ids) {
			m.t.Fatalf("outbox of %s: %d entries for %d messages", mb, len(out), len(ids))
		}
	}
}

// TestRevokeOfAHugeMailbox: a mailbox with thousands of pending messages,
// more than one transaction of this store holds with their receipts, is
// revoked at once (its token is dead from the revoke on), and the expiry
// loop's bounded steps end every message revoked with exactly one receipt.
// The user's other mailbox and another user are untouched.
func TestRevokeOfAHugeMailbox(t *testing.T) {
	m := smallMachine(t)
	alice, _ := m.user()
	bob, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	other, otherTok := m.mailbox(alice)
	bobMb, bobTok := m.mailbox(bob)
	const n = 5000
	var ids, otherIDs []string
	for i := 0; i < n; i += 1000 { // interleaved in alice's stream
		ids = append(ids, m.publishMany(tok, 1000)...)
		otherIDs = append(otherIDs, m.publishMany(otherTok, 50)...)
	}
	bobIDs := m.publishMany(bobTok, 100)
	bobBefore := snapshotOf(t, m, bob)

	res := m.apply(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	if res.Err != nil {
		t.Fatalf("revoke a mailbox with %d pending messages: %v", n, res.Err)
	}
	// Dead at once: no publish, and every message already reads revoked
	// or is on its way; those ended so far have their receipts.
	if r := m.publish(PublishItem{TokenHash: Hash(tok), Data: "late", TTL: 60})[0]; !errors.Is(r.Err, ErrTokenRevoked) {
		t.Fatalf("publish after the revoke: %v", r.Err)
	}
	if got := len(m.receipts(mb)); got == 0 || got >= n {
		t.Fatalf("%d receipts after the revoke's own step; want some, not all", got)
	}
	if at, ok, err := m.s.NextDeadline(); err != nil || !ok || at != 0 {
		t.Fatalf("NextDeadline while draining: %d %v %v; want due now", at, ok, err)
	}
	// A device acks part of the stream meanwhile: alice's other messages
	// are delivered, the revoked mailbox's end revoked all the same.
	ackTo := m.status(otherIDs[0]).Seq
	m.must(&Command{Kind: KindAck, Ack: &Ack{UserID: alice, DeviceID: "laptop", Seq: ackTo}})
	if st := m.status(otherIDs[0]); st.State != StateDelivered {
		t.Fatalf("other mailbox's acked message: %+v", st)
	}

	if steps := m.drain(500, 100); steps < 2 {
		t.Fatalf("drained in %d steps: the test needs more than one", steps)
	}
	m.checkOneReceiptEach(mb, ids, StateRevoked, true)
	for _, id := range otherIDs[1:] {
		if st := m.status(id); st.State != StatePending {
			t.Fatalf("other mailbox's message %s: %s", id, st.State)
		}
	}
	if got := len(m.stream(alice)); got != len(otherIDs)-1 {
		t.Fatalf("alice's stream: %d messages, want the other mailbox's %d", got, len(otherIDs)-1)
	}
	if rs := m.receipts(other); len(rs) != 1 {
		t.Fatalf("other mailbox: %d receipts, want the one delivered", len(rs))
	}
	if !bytes.Equal(snapshotOf(t, m, bob), bobBefore) || len(m.receipts(bobMb)) != 0 || m.state(bobIDs[0]) != StatePending {
		t.Fatal("another user changed")
	}
	if at, ok, _ := m.s.NextDeadline(); !ok || at == 0 {
		t.Fatalf("NextDeadline after the drain: %d %v; want the messages' TTL", at, ok)
	}
	// Idempotent: more Expires change nothing.
	m.drain(500, 1)
	m.checkOneReceiptEach(mb, ids, StateRevoked, true)
}

// TestDeleteOfAHugeUser: a user with thousands of pending messages is
// deleted at once (its secret and tokens stop working), and bounded steps
// end every message revoked with one receipt each and remove the user's
// mailboxes and devices; the outbox keeps the receipts.
func TestDeleteOfAHugeUser(t *testing.T) {
	m := smallMachine(t)
	alice, secret := m.user()
	bob, _ := m.user()
	mb, tok := m.webhookMailbox(alice)
	mb2, tok2 := m.mailbox(alice)
	_, bobTok := m.mailbox(bob)
	ids := m.publishMany(tok, 4000)
	ids2 := m.publishMany(tok2, 1000)
	m.publish(PublishItem{TokenHash: Hash(tok2), Data: "keyed", TTL: 60, IdempotencyKey: "k1", RequestHash: Hash("x")})
	ids2 = append(ids2, m.stream2IDs(alice, 1)...)
	for _, d := range []string{"laptop", "phone"} {
		m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: d}})
	}
	m.publishMany(bobTok, 10)
	bobBefore := snapshotOf(t, m, bob)

	res := m.apply(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: alice}})
	if res.Err != nil {
		t.Fatalf("delete a user with %d pending messages: %v", len(ids)+len(ids2), res.Err)
	}
	if _, err := m.s.Authenticate(secret); !errors.Is(err, ErrUserUnknown) {
		t.Fatalf("secret after the delete: %v", err)
	}
	if r := m.publish(PublishItem{TokenHash: Hash(tok), Data: "late", TTL: 60})[0]; !errors.Is(r.Err, ErrTokenUnknown) {
		t.Fatalf("publish after the delete: %v", r.Err)
	}
	if r := m.apply(&Command{Kind: KindCreateUser, CreateUser: &CreateUser{UserID: alice, SecretHash: Hash(secret)}}); !errors.Is(r.Err, ErrUserExists) {
		t.Fatalf("create the user again while it drains: %v", r.Err)
	}

	m.drain(500, 100)
	m.checkOneReceiptEach(mb, ids, StateRevoked, true)
	for _, id := range ids2 {
		if st := m.status(id); st.State != StateRevoked {
			t.Fatalf("message %s of the second mailbox: %+v", id, st)
		}
	}
	if mbs, _ := m.s.Mailboxes(alice); len(mbs) != 0 {
		t.Fatalf("mailboxes left: %d", len(mbs))
	}
	if devs, _ := m.s.Devices(alice); len(devs) != 0 {
		t.Fatalf("devices left: %d", len(devs))
	}
	if got := m.stream(alice); len(got) != 0 {
		t.Fatalf("stream left: %d", len(got))
	}
	if last, _ := m.s.LastReceipt(mb2); last != 0 {
		t.Fatalf("a deleted mailbox's counter stays: %d", last)
	}
	if !bytes.Equal(snapshotOf(t, m, bob), bobBefore) {
		t.Fatal("another user changed")
	}
}

// TestDrainSurvivesSnapshot: a store restored from a snapshot taken mid-
// drain finishes the drain to the same state as the original.
func TestDrainSurvivesSnapshot(t *testing.T) {
	m := smallMachine(t)
	alice, _ := m.user()
	_, tok := m.webhookMailbox(alice)
	m.publishMany(tok, 2000)
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	m.must(&Command{Kind: KindExpire, Expire: &Expire{Limit: 300}})

	fresh, err := Open(t.TempDir(), Options{MemTableSize: 8 << 20, Policy: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fresh.Close() })
	if err := fresh.Restore(bytes.NewReader(snapshotBytes(t, m.s))); err != nil {
		t.Fatal(err)
	}
	copyM := &machine{t: t, s: fresh, index: m.index, now: m.now}
	m.drain(300, 100)
	copyM.drain(300, 100)
	if !bytes.Equal(snapshotBytes(t, m.s), snapshotBytes(t, fresh)) {
		t.Fatal("the restored store drained to another state")
	}
}

// stream2IDs returns the ids of the newest n messages of the user's stream.
func (m *machine) stream2IDs(user string, n int) []string {
	m.t.Helper()
	msgs, err := m.s.Messages(user, 0, 0, m.now)
	if err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for _, msg := range msgs[len(msgs)-n:] {
		out = append(out, msg.ID)
	}
	return out
}

// snapshotOf is what the store says about a user: its record, stream and
// devices, encoded, to compare before and after.
func snapshotOf(t *testing.T, m *machine, user string) []byte {
	t.Helper()
	u, err := m.s.User(user)
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := m.s.Messages(user, 0, 0, m.now)
	devs, _ := m.s.Devices(user)
	mbs, _ := m.s.Mailboxes(user)
	return fmt.Appendf(nil, "%+v %+v %+v %+v", u, msgs, devs, mbs)
}

// TestDeleteOfAUserWithManyMailboxes: a user with 20,000 mailboxes with
// long receipt URLs, far more than one transaction of this store holds (the
// deletion once rewrote every mailbox in its own command and was refused
// change_too_large every time), is deleted at once: the secret and every
// token are dead from the deletion on. The drain then ends every pending
// message revoked with exactly one receipt, and removes every mailbox.
func TestDeleteOfAUserWithManyMailboxes(t *testing.T) {
	m := smallMachine(t)
	alice, secret := m.user()
	bob, _ := m.user()
	_, bobTok := m.mailbox(bob)
	m.publishMany(bobTok, 10)
	url := "https://receipts.example.com/" + strings.Repeat("x", 300)
	const n = 20000
	var mbs, toks []string
	for i := 0; i < n; i++ {
		id, token := NewID(), NewToken()
		m.must(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{
			MailboxID: id, UserID: alice, Label: "app", TokenHash: Hash(token),
			ReceiptURL: url, ReceiptSecret: NewToken(),
		}})
		mbs, toks = append(mbs, id), append(toks, token)
	}
	ids := map[string][]string{}
	for i := 0; i < n; i += n / 40 { // messages in 40 of them
		ids[mbs[i]] = m.publishMany(toks[i], 30)
		short := m.publishOK(toks[i], "short", 60)
		ids[mbs[i]] = append(ids[mbs[i]], short.ID)
	}
	bobBefore := snapshotOf(t, m, bob)

	res := m.apply(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: alice}})
	if res.Err != nil {
		t.Fatalf("delete a user with %d mailboxes: %v", n, res.Err)
	}
	if _, err := m.s.Authenticate(secret); !errors.Is(err, ErrUserUnknown) {
		t.Fatalf("secret after the delete: %v", err)
	}
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if r := m.publish(PublishItem{TokenHash: Hash(toks[i]), Data: "late", TTL: 60})[0]; !errors.Is(r.Err, ErrTokenUnknown) {
			t.Fatalf("publish to mailbox %d after the delete: %v", i, r.Err)
		}
		if _, err := m.s.MailboxByToken(toks[i]); !errors.Is(err, ErrTokenUnknown) {
			t.Fatalf("mailbox %d by token after the delete: %v", i, err)
		}
		if r := m.apply(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(toks[i])}}); !errors.Is(r.Err, ErrTokenUnknown) {
			t.Fatalf("revoke mailbox %d after the delete: %v", i, r.Err)
		}
	}
	// A message whose TTL passes while the drain waits still ends revoked.
	m.advance(2 * time.Minute)

	steps := m.drain(1000, 1000)
	if steps < 2 {
		t.Fatalf("drained in %d step(s): the test did not need bounded steps", steps)
	}
	for mb, msgIDs := range ids {
		m.checkOneReceiptEach(mb, msgIDs, StateRevoked, true)
	}
	if left, _ := m.s.Mailboxes(alice); len(left) != 0 {
		t.Fatalf("mailboxes left: %d", len(left))
	}
	if got := m.stream(alice); len(got) != 0 {
		t.Fatalf("stream left: %d", len(got))
	}
	if _, ok, _ := m.s.NextDeadline(); ok {
		// Receipts and statuses are collected later; nothing is due now.
		if at, _, _ := m.s.NextDeadline(); at <= m.now {
			t.Fatalf("work still due after the drain: %d", at)
		}
	}
	if !bytes.Equal(snapshotOf(t, m, bob), bobBefore) {
		t.Fatal("another user changed")
	}
	// The id is free again once drained.
	m.must(&Command{Kind: KindCreateUser, CreateUser: &CreateUser{UserID: alice, SecretHash: Hash(secret)}})
}
