package mailbox

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"
)

// machine drives a real Store on badger in a temp dir with a log of its own:
// each apply gets the next index, and the clock moves only when told.
type machine struct {
	t      *testing.T
	s      *Store
	index  uint64
	now    int64
	events []Event
}

func newMachine(t *testing.T) *machine {
	t.Helper()
	return &machine{t: t, s: openStore(t, t.TempDir()), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
}

// testPolicy is DefaultPolicy with a clock that may step any distance in
// one command, so that a test can move time by days in one command (the
// leader's Ticks would take it there in steps); clock_test.go tests the
// default bound.
var testPolicy = func() Policy {
	p := DefaultPolicy
	p.MaxClockStep = 1000 * 24 * time.Hour
	return p
}()

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{Policy: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (m *machine) advance(d time.Duration) { m.now += int64(d) }

func (m *machine) apply(cmd *Command) Result {
	m.t.Helper()
	cmd.At = m.now
	// Every command goes through the log encoding, as it does under raft.
	b, err := cmd.Encode()
	if err != nil {
		m.t.Fatal(err)
	}
	dec, err := DecodeCommand(b)
	if err != nil {
		m.t.Fatal(err)
	}
	m.index++
	res, ev, err := m.s.Apply(m.index, dec)
	if err != nil {
		m.t.Fatalf("apply %v: %v", cmd.Kind, err)
	}
	m.events = append(m.events, ev...)
	return res
}

// must applies cmd and fails the test on a refusal.
func (m *machine) must(cmd *Command) Result {
	m.t.Helper()
	res := m.apply(cmd)
	if res.Err != nil {
		m.t.Fatalf("%v refused: %v", cmd.Kind, res.Err)
	}
	return res
}

func (m *machine) user() (id, secret string) {
	m.t.Helper()
	id = NewID()
	secret = NewSecret(id)
	m.must(&Command{Kind: KindCreateUser, CreateUser: &CreateUser{UserID: id, SecretHash: Hash(secret)}})
	return id, secret
}

func (m *machine) mailbox(user string) (id, token string) {
	m.t.Helper()
	id, token = NewID(), NewToken()
	m.must(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{
		MailboxID: id, UserID: user, Label: "app", TokenHash: Hash(token), ReceiptSecret: NewToken(),
	}})
	return id, token
}

func (m *machine) publish(items ...PublishItem) []PublishedItem {
	m.t.Helper()
	for i := range items {
		if items[i].ID == "" {
			items[i].ID = NewID()
		}
	}
	return m.must(&Command{Kind: KindPublish, Publish: &Publish{Items: items}}).Published
}

func (m *machine) publishOK(token, data string, ttl int64) *MessageStatus {
	m.t.Helper()
	r := m.publish(PublishItem{TokenHash: Hash(token), Data: data, TTL: ttl})[0]
	if r.Err != nil {
		m.t.Fatalf("publish %q: %v", data, r.Err)
	}
	return r.Status
}

func (m *machine) stream(user string) []string {
	m.t.Helper()
	msgs, err := m.s.Messages(user, 0, 0, m.now)
	if err != nil {
		m.t.Fatal(err)
	}
	var out []string
	for _, msg := range msgs {
		out = append(out, msg.Data)
	}
	return out
}

func (m *machine) state(id string) State {
	m.t.Helper()
	st, err := m.s.Status(id)
	if err != nil {
		m.t.Fatalf("status %s: %v", id, err)
	}
	return st.State
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPublishOrdersOneStreamPerUser(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	bob, _ := m.user()
	_, a1 := m.mailbox(alice)
	_, a2 := m.mailbox(alice)
	_, b1 := m.mailbox(bob)

	res := m.publish(
		PublishItem{TokenHash: Hash(a1), Data: "one", TTL: 60},
		PublishItem{TokenHash: Hash(b1), Data: "bob", TTL: 60},
		PublishItem{TokenHash: Hash(a2), Data: "two", TTL: 60},
		PublishItem{TokenHash: Hash(NewToken()), Data: "nobody", TTL: 60},
	)
	if res[0].Status.Seq != 1 || res[1].Status.Seq != 1 || res[2].Status.Seq != 2 {
		t.Fatalf("seqs: %d %d %d", res[0].Status.Seq, res[1].Status.Seq, res[2].Status.Seq)
	}
	if !errors.Is(res[3].Err, ErrTokenUnknown) {
		t.Fatalf("unknown token: %v", res[3].Err)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"one", "two"}) {
		t.Fatalf("alice's stream: %q", got)
	}
	if got := m.stream(bob); !equalStrings(got, []string{"bob"}) {
		t.Fatalf("bob's stream: %q", got)
	}
	if st := m.state(res[0].Status.ID); st != StatePending {
		t.Fatalf("state %s", st)
	}
	published := 0
	for _, e := range m.events {
		if e.Kind == EventPublished {
			published++
		}
	}
	if published != 3 {
		t.Fatalf("%d publish events, want 3", published)
	}
}

func TestIdempotencyKey(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	item := func(data string) PublishItem {
		return PublishItem{TokenHash: Hash(tok), Data: data, TTL: 60, IdempotencyKey: "order-17", RequestHash: Hash(data)}
	}
	first := m.publish(item("hello"))[0]
	again := m.publish(item("hello"))[0]
	if again.Err != nil || !again.Duplicate || again.Status.ID != first.Status.ID {
		t.Fatalf("retry: %+v, first %s", again, first.Status.ID)
	}
	conflict := m.publish(item("other"))[0]
	if !errors.Is(conflict.Err, ErrIdempotencyConflict) {
		t.Fatalf("different request, same key: %v", conflict.Err)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"hello"}) {
		t.Fatalf("stream after retries: %q", got)
	}
	// After the window the key is forgotten and the same key publishes anew.
	m.advance(DefaultPolicy.IdempotencyWindow + time.Second)
	m.must(&Command{Kind: KindExpire, Expire: &Expire{}})
	later := m.publish(item("other"))[0]
	if later.Err != nil || later.Duplicate {
		t.Fatalf("after the window: %+v", later)
	}
}

func TestRevokeEndsPendingAndRefusesPublish(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	mb, tok := m.mailbox(alice)
	_, other := m.mailbox(alice)
	pending := m.publishOK(tok, "pending", 60)
	kept := m.publishOK(other, "kept", 60)

	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	if r := m.publish(PublishItem{TokenHash: Hash(tok), Data: "late", TTL: 60})[0]; !errors.Is(r.Err, ErrTokenRevoked) {
		t.Fatalf("publish after revoke: %v", r.Err)
	}
	if r := m.apply(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{MailboxID: mb, UserID: alice}}); !errors.Is(r.Err, ErrTokenRevoked) {
		t.Fatalf("second revoke: %v", r.Err)
	}
	if st := m.state(pending.ID); st != StateRevoked {
		t.Fatalf("pending message: %s", st)
	}
	if st := m.state(kept.ID); st != StatePending {
		t.Fatalf("other mailbox's message: %s", st)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"kept"}) {
		t.Fatalf("stream: %q", got)
	}
}

func TestRevokeAnotherUsersMailbox(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	bob, _ := m.user()
	mb, tok := m.mailbox(alice)
	r := m.apply(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{MailboxID: mb, UserID: bob}})
	if !errors.Is(r.Err, ErrMailboxUnknown) {
		t.Fatalf("bob revoking alice's mailbox: %v", r.Err)
	}
	m.publishOK(tok, "still works", 60)
}

func TestTTLExpiry(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	short := m.publishOK(tok, "short", 10)
	long := m.publishOK(tok, "long", 100)
	now := m.publishOK(tok, "now", 0)

	if got := m.stream(alice); !equalStrings(got, []string{"short", "long"}) {
		t.Fatalf("TTL 0 is not kept for later reads: %q", got)
	}
	m.advance(11 * time.Second)
	if got := m.stream(alice); !equalStrings(got, []string{"long"}) {
		t.Fatalf("reads skip what expired before Expire runs: %q", got)
	}
	res := m.must(&Command{Kind: KindExpire, Expire: &Expire{Limit: 100}})
	if res.Expired != 2 || res.More {
		t.Fatalf("expire: %+v", res)
	}
	for id, want := range map[string]State{short.ID: StateExpired, now.ID: StateExpired, long.ID: StatePending} {
		if st := m.state(id); st != want {
			t.Errorf("%s: %s, want %s", id, st, want)
		}
	}
	if at, ok, err := m.s.NextDeadline(); err != nil || !ok || at != long.ExpiresAt {
		t.Fatalf("next deadline %d %v %v, want %d", at, ok, err, long.ExpiresAt)
	}
}

func TestExpireLimitLeavesMore(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	for range 5 {
		m.publishOK(tok, "x", 1)
	}
	m.advance(2 * time.Second)
	if r := m.must(&Command{Kind: KindExpire, Expire: &Expire{Limit: 3}}); r.Expired != 3 || !r.More {
		t.Fatalf("first round %+v", r)
	}
	if r := m.must(&Command{Kind: KindExpire, Expire: &Expire{Limit: 3}}); r.Expired != 2 || r.More {
		t.Fatalf("second round %+v", r)
	}
}

func TestTopicReplacement(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	_, other := m.mailbox(alice)
	first := m.publish(PublishItem{TokenHash: Hash(tok), Data: "score 1-0", TTL: 60, Topic: "match"})[0].Status
	otherMb := m.publish(PublishItem{TokenHash: Hash(other), Data: "other app", TTL: 60, Topic: "match"})[0].Status
	second := m.publish(PublishItem{TokenHash: Hash(tok), Data: "score 2-0", TTL: 60, Topic: "match"})[0].Status

	st, err := m.s.Status(first.ID)
	if err != nil || st.State != StateReplaced || st.ReplacedBy != second.ID {
		t.Fatalf("replaced message: %+v %v", st, err)
	}
	if s := m.state(otherMb.ID); s != StatePending {
		t.Fatalf("same topic in another mailbox must stay: %s", s)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"other app", "score 2-0"}) {
		t.Fatalf("stream: %q", got)
	}
}

func TestRetentionAfterAllDevicesAck(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	touch := func(dev string) {
		m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: dev}})
	}
	ack := func(dev string, seq Seq) Result {
		return m.apply(&Command{Kind: KindAck, Ack: &Ack{UserID: alice, DeviceID: dev, Seq: seq}})
	}
	touch("laptop")
	touch("phone")
	one := m.publishOK(tok, "one", 3600)
	m.publishOK(tok, "two", 3600)

	if r := ack("laptop", 1); r.Err != nil {
		t.Fatal(r.Err)
	}
	if st, _ := m.s.Status(one.ID); st.State != StateDelivered || st.DeliveredTo != "laptop" {
		t.Fatalf("first ack delivers: %+v", st)
	}
	if got := m.stream(alice); len(got) != 2 {
		t.Fatalf("phone has not acked: stream %q", got)
	}
	if r := ack("phone", 2); r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"two"}) {
		t.Fatalf("seq 1 acked by both: stream %q", got)
	}
	if st, _ := m.s.Status(one.ID); st.DeliveredTo != "laptop" {
		t.Fatalf("a message has one fate, the first ack's: %+v", st)
	}
	// Backwards and beyond-the-end acks change nothing.
	if r := ack("phone", 1); r.Err != nil || r.Device.Cursor != 2 {
		t.Fatalf("backwards ack: %+v", r)
	}
	if r := ack("phone", 3); !errors.Is(r.Err, ErrAckBeyondStream) {
		t.Fatalf("ack beyond the stream: %v", r.Err)
	}
	// A device silent past the retention window holds nothing back.
	m.advance(DefaultPolicy.DeviceRetention + time.Hour)
	if r := ack("laptop", 2); r.Err != nil {
		t.Fatal(r.Err)
	}
	// phone was last seen over the window ago; laptop alone decides.
	if got := m.stream(alice); len(got) != 0 {
		t.Fatalf("stream after the active device acked all: %q", got)
	}
}

func TestDeleteDeviceFreesMessages(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	for _, d := range []string{"a", "b"} {
		m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: d}})
	}
	m.publishOK(tok, "one", 3600)
	m.must(&Command{Kind: KindAck, Ack: &Ack{UserID: alice, DeviceID: "a", Seq: 1}})
	m.must(&Command{Kind: KindDeleteDevice, DeleteDevice: &DeleteDevice{UserID: alice, DeviceID: "b"}})
	if got := m.stream(alice); len(got) != 0 {
		t.Fatalf("stream: %q", got)
	}
	if r := m.apply(&Command{Kind: KindDeleteDevice, DeleteDevice: &DeleteDevice{UserID: alice, DeviceID: "b"}}); !errors.Is(r.Err, ErrDeviceUnknown) {
		t.Fatalf("deleting twice: %v", r.Err)
	}
}

func TestTicketsAreSingleUseAndExpire(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	ticket := NewToken()
	m.must(&Command{Kind: KindIssueTicket, IssueTicket: &IssueTicket{TicketHash: Hash(ticket), UserID: alice, Lifetime: int64(time.Minute)}})
	redeem := func(tk string) Result {
		return m.apply(&Command{Kind: KindRedeemTicket, RedeemTicket: &RedeemTicket{TicketHash: Hash(tk)}})
	}
	if r := redeem(ticket); r.Err != nil || r.Ticket.UserID != alice {
		t.Fatalf("first use: %+v", r)
	}
	if r := redeem(ticket); !errors.Is(r.Err, ErrTicketInvalid) {
		t.Fatalf("second use: %v", r.Err)
	}
	late := NewToken()
	m.must(&Command{Kind: KindIssueTicket, IssueTicket: &IssueTicket{TicketHash: Hash(late), UserID: alice, Lifetime: int64(time.Minute)}})
	m.advance(time.Minute)
	if r := redeem(late); !errors.Is(r.Err, ErrTicketInvalid) {
		t.Fatalf("expired ticket: %v", r.Err)
	}
}

func TestDeleteUser(t *testing.T) {
	m := newMachine(t)
	alice, secret := m.user()
	_, tok := m.mailbox(alice)
	msg := m.publishOK(tok, "bye", 60)
	m.must(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: alice}})
	if _, err := m.s.Authenticate(secret); !errors.Is(err, ErrUserUnknown) {
		t.Fatalf("deleted user authenticates: %v", err)
	}
	if _, err := m.s.MailboxByToken(tok); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("deleted user's token: %v", err)
	}
	if st := m.state(msg.ID); st != StateRevoked {
		t.Fatalf("pending message of a deleted user: %s", st)
	}
}

func TestAuthenticate(t *testing.T) {
	m := newMachine(t)
	alice, secret := m.user()
	if u, err := m.s.Authenticate(secret); err != nil || u.ID != alice {
		t.Fatalf("right secret: %v", err)
	}
	for _, bad := range []string{"", "nodot", secret + "x", alice + ".wrong", NewSecret(NewID())} {
		if _, err := m.s.Authenticate(bad); !errors.Is(err, ErrUserUnknown) {
			t.Errorf("secret %q: %v", bad, err)
		}
	}
}

func TestReplayedIndexIsSkipped(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	cmd := &Command{Kind: KindPublish, At: m.now, Publish: &Publish{Items: []PublishItem{{ID: NewID(), TokenHash: Hash(tok), Data: "once", TTL: 60}}}}
	m.index++
	if _, _, err := m.s.Apply(m.index, cmd); err != nil {
		t.Fatal(err)
	}
	res, ev, err := m.s.Apply(m.index, cmd)
	if err != nil || res.Published != nil || ev != nil {
		t.Fatalf("replay of index %d: %+v %v %v", m.index, res, ev, err)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"once"}) {
		t.Fatalf("stream: %q", got)
	}
}

// The same log applied to two stores gives byte-identical snapshots: Apply
// depends on nothing but the log.
func TestApplyIsDeterministic(t *testing.T) {
	a, b := newMachine(t), newMachine(t)
	var log []*Command
	rec := func(cmd *Command) { log = append(log, cmd) }
	u, mb, tok := NewID(), NewID(), NewToken()
	rec(&Command{Kind: KindCreateUser, CreateUser: &CreateUser{UserID: u, SecretHash: Hash("s")}})
	rec(&Command{Kind: KindCreateMailbox, CreateMailbox: &CreateMailbox{MailboxID: mb, UserID: u, TokenHash: Hash(tok)}})
	for i := range 20 {
		rec(&Command{Kind: KindPublish, Publish: &Publish{Items: []PublishItem{{ID: NewID(), TokenHash: Hash(tok), Data: "m", TTL: int64(i), Topic: []string{"", "t"}[i%2]}}}})
	}
	rec(&Command{Kind: KindAck, Ack: &Ack{UserID: u, DeviceID: "d", Seq: 5}})
	rec(&Command{Kind: KindExpire, Expire: &Expire{}})
	for i, cmd := range log {
		at := int64(1_000_000_000 * (i + 1))
		for _, m := range []*machine{a, b} {
			c := *cmd
			c.At = at
			if _, _, err := m.s.Apply(uint64(i+1), &c); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !bytes.Equal(snapshotBytes(t, a.s), snapshotBytes(t, b.s)) {
		t.Fatal("two stores that applied the same log differ")
	}
}

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Items of one entry see each other's effects, as if applied one by one.
func TestItemsOfOneBatchSeeEachOther(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	res := m.publish(
		PublishItem{TokenHash: Hash(tok), Data: "v1", TTL: 60, Topic: "t"},
		PublishItem{TokenHash: Hash(tok), Data: "v2", TTL: 60, Topic: "t"},
		PublishItem{TokenHash: Hash(tok), Data: "k", TTL: 60, IdempotencyKey: "k", RequestHash: Hash("k")},
		PublishItem{TokenHash: Hash(tok), Data: "k", TTL: 60, IdempotencyKey: "k", RequestHash: Hash("k")},
	)
	if st := m.state(res[0].Status.ID); st != StateReplaced {
		t.Fatalf("first of a topic in one batch: %s", st)
	}
	if !res[3].Duplicate || res[3].Status.ID != res[2].Status.ID {
		t.Fatalf("same key twice in one batch: %+v", res[3])
	}
	if got := m.stream(alice); !equalStrings(got, []string{"v2", "k"}) {
		t.Fatalf("stream: %q", got)
	}
	u, err := m.s.User(alice)
	if err != nil || u.LastSeq != 3 {
		t.Fatalf("last seq %d (%v), want 3", u.LastSeq, err)
	}
}

func TestAcksBatchAppliesEachItem(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	for _, d := range []string{"a", "b"} {
		m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: alice, DeviceID: d}})
	}
	one := m.publishOK(tok, "one", 3600)
	m.publishOK(tok, "two", 3600)
	res := m.must(&Command{Kind: KindAcks, Acks: &Acks{Items: []Ack{
		{UserID: alice, DeviceID: "a", Seq: 2},
		{UserID: alice, DeviceID: "b", Seq: 9}, // beyond the stream: refused alone
		{UserID: alice, DeviceID: "b", Seq: 1},
	}}})
	if len(res.Refused) != 3 || res.Refused[0] != nil || !errors.Is(res.Refused[1], ErrAckBeyondStream) || res.Refused[2] != nil {
		t.Fatalf("refusals: %v", res.Refused)
	}
	if st, _ := m.s.Status(one.ID); st.State != StateDelivered || st.DeliveredTo != "a" {
		t.Fatalf("status of seq 1: %+v", st)
	}
	if got := m.stream(alice); !equalStrings(got, []string{"two"}) {
		t.Fatalf("both devices acked seq 1 only: stream %q", got)
	}
}

// TestAckBatchTrimsEveryUser: one Acks command with the acks of many
// devices of many users (the hub's ack batch) moves every cursor and drops
// what all of a user's devices acked, for short ranges (read key by key) and
// long ones (iterated) alike, and trimming later goes on from where it
// stopped.
func TestAckBatchTrimsEveryUser(t *testing.T) {
	m := newMachine(t)
	type account struct{ id, token string }
	var users []account
	for range 20 {
		id, _ := m.user()
		_, tok := m.mailbox(id)
		users = append(users, account{id, tok})
		for _, d := range []string{"a", "b"} {
			m.must(&Command{Kind: KindTouchDevice, TouchDevice: &TouchDevice{UserID: id, DeviceID: d}})
		}
	}
	long := shortRange + 44 // the first user's stream is longer than a short range
	for i, u := range users {
		n := 3
		if i == 0 {
			n = long
		}
		for j := range n {
			m.publishOK(u.token, fmt.Sprint(j+1), 3600)
		}
	}
	var batch []Ack
	for i, u := range users {
		upTo := Seq(2)
		if i == 0 {
			upTo = Seq(long - 1)
		}
		batch = append(batch, Ack{UserID: u.id, DeviceID: "a", Seq: upTo}, Ack{UserID: u.id, DeviceID: "b", Seq: upTo})
	}
	res := m.must(&Command{Kind: KindAcks, Acks: &Acks{Items: batch}})
	for i, err := range res.Refused {
		if err != nil {
			t.Fatalf("ack %d refused: %v", i, err)
		}
	}
	for i, u := range users {
		want := []string{"3"}
		if i == 0 {
			want = []string{fmt.Sprint(long)}
		}
		if got := m.stream(u.id); !equalStrings(got, want) {
			t.Fatalf("user %d: stream %q, want %q", i, got, want)
		}
	}
	// More messages; both devices ack them: trimming goes on from there.
	first := users[1]
	m.publishOK(first.token, "4", 3600)
	m.must(&Command{Kind: KindAcks, Acks: &Acks{Items: []Ack{
		{UserID: first.id, DeviceID: "a", Seq: 4}, {UserID: first.id, DeviceID: "b", Seq: 3},
	}}})
	if got := m.stream(first.id); !equalStrings(got, []string{"4"}) {
		t.Fatalf("after acks 4 and 3: stream %q", got)
	}
	m.must(&Command{Kind: KindAck, Ack: &Ack{UserID: first.id, DeviceID: "b", Seq: 4}})
	if got := m.stream(first.id); len(got) != 0 {
		t.Fatalf("after both acked 4: stream %q", got)
	}
}

// TestChangeTooLargeIsRefusedWhole: a command whose transaction would
// outgrow badger's limit (a publish of thousands of items in one entry, on
// a store with a small memtable) is refused with ErrChangeTooLarge,
// changes nothing but the applied index, and the store goes on applying.
func TestChangeTooLargeIsRefusedWhole(t *testing.T) {
	m := smallMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	const n = 6000 // three keys each: more than the 13,000 a transaction holds
	items := make([]PublishItem, n)
	for i := range items {
		items[i] = PublishItem{ID: NewID(), TokenHash: Hash(tok), Data: fmt.Sprint(i), TTL: 3600}
	}
	before := m.s.Applied()
	res := m.apply(&Command{Kind: KindPublish, Publish: &Publish{Items: items}})
	if !errors.Is(res.Err, ErrChangeTooLarge) {
		t.Fatalf("publish %d items in one entry on an 8 MiB memtable: %v", n, res.Err)
	}
	if m.s.Applied() != before+1 {
		t.Fatalf("applied index %d, want %d", m.s.Applied(), before+1)
	}
	if got := m.stream(alice); len(got) != 0 {
		t.Fatalf("stream after the refused publish: %d messages, want none", len(got))
	}
	// Still applying: the user is there and takes messages.
	m.publishOK(tok, "after", 3600)
}

// smallMachine is a machine over a store with an 8 MiB memtable: about
// 13,000 keys or 1.2 MiB a transaction.
func smallMachine(t *testing.T) *machine {
	t.Helper()
	s, err := Open(t.TempDir(), Options{MemTableSize: 8 << 20, Policy: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &machine{t: t, s: s, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()}
}
