package mailbox

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Apply applies the command of raft log entry index, in one badger
// transaction that also records index as applied. An index at or below
// Applied() was applied before (a replay after restart) and is skipped with a
// zero Result. A refusal is in Result.Err and changes nothing but the applied
// index; an error means storage failed and the caller must stop applying.
func (s *Store) Apply(index uint64, cmd *Command) (Result, []Event, error) {
	if index <= s.applied.Load() {
		return Result{}, nil, nil
	}
	at := s.clockAt(cmd.At)
	a := &applier{txn: s.db.NewTransaction(true), at: at, policy: s.policy, budget: drainStep, issued: s.issued, sealed: s.sealed}
	defer func() { a.txn.Discard() }()

	res, err := a.apply(cmd)
	if err == nil {
		err = a.flushReceiptLogs()
	}
	if errors.Is(err, badger.ErrTxnTooBig) && (cmd.Kind == KindRevokeMailbox || cmd.Kind == KindDeleteUser) {
		// The first step of a drain did not fit (a store with a small
		// memtable): the revoke or deletion takes effect without it, and
		// the expiry loop drains all of it (drain.go).
		a.txn.Discard()
		a = &applier{txn: s.db.NewTransaction(true), at: at, policy: s.policy, issued: s.issued, sealed: s.sealed}
		res, err = a.apply(cmd)
		if err == nil {
			err = a.flushReceiptLogs()
		}
	}
	if errors.Is(err, badger.ErrTxnTooBig) {
		// Refuse the whole command: a fresh transaction records only that
		// the entry was applied. Every node has the same state and limits,
		// so every node refuses it alike.
		a.txn.Discard()
		a = &applier{txn: s.db.NewTransaction(true), at: at, policy: s.policy, issued: s.issued, sealed: s.sealed}
		res, err = Result{Err: fmt.Errorf("%v: %w", cmd.Kind, ErrChangeTooLarge)}, nil
	}
	if err != nil {
		return Result{}, nil, fmt.Errorf("mailbox: apply %v at index %d: %w", cmd.Kind, index, err)
	}
	if err := a.txn.Set(appliedKey(), appliedRecord{index, at, a.issued}.value()); err != nil {
		return Result{}, nil, fmt.Errorf("mailbox: apply %v at index %d: %w", cmd.Kind, index, err)
	}
	if err := a.txn.Commit(); err != nil {
		return Result{}, nil, fmt.Errorf("mailbox: commit %v at index %d: %w", cmd.Kind, index, err)
	}
	if cmd.Kind == KindRevokeMailbox || cmd.Kind == KindDeleteUser {
		s.live.closed() // after the commit: a token read open before it is not kept
	}
	s.applied.Store(index)
	s.lastAt.Store(at)
	s.issued, s.sealed = a.issued, a.sealed
	return res, a.events, nil
}

// clockAt is the state machine's clock for a command stamped stamp: never
// back from the previous command's, and at most MaxClockStep ahead of it,
// so that one stamp from a clock that jumped moves the state machine's
// clock one step, not a day (see "Clock" in the package doc). The first
// command of a new store sets it.
func (s *Store) clockAt(stamp int64) int64 {
	last := s.lastAt.Load()
	if last == 0 {
		return stamp
	}
	return last + min(max(stamp-last, 0), int64(s.policy.MaxClockStep))
}

// applier holds one Apply's transaction, clock and the events it produces.
// Its methods return a Result for refusals and an error for storage failures.
// A refusal is decided before anything is written.
type applier struct {
	txn    *badger.Txn
	at     int64
	policy Policy
	events []Event
	logs   map[string]*receiptLog // receipt logs touched, by mailbox id; nil once deleted
	devs   map[string][]Device    // devices of the users read so far, kept current with the writes
	// budget is how many messages a revoke or a user's deletion may end
	// in its own command; the rest is drained by Expire (drain.go).
	budget int
	issued Seq   // the highest seq ever issued, kept current (restore.go)
	sealed int64 // publishes are refused while at is before it (restore.go)
}

func (a *applier) apply(cmd *Command) (Result, error) {
	switch cmd.Kind {
	case KindCreateUser:
		return a.createUser(cmd.CreateUser)
	case KindDeleteUser:
		return a.deleteUser(cmd.DeleteUser)
	case KindCreateMailbox:
		return a.createMailbox(cmd.CreateMailbox)
	case KindRevokeMailbox:
		return a.revokeMailbox(cmd.RevokeMailbox)
	case KindPublish:
		return a.publish(cmd.Publish)
	case KindAck:
		return a.ack(cmd.Ack)
	case KindTouchDevice:
		return a.touchDevice(cmd.TouchDevice)
	case KindDeleteDevice:
		return a.deleteDevice(cmd.DeleteDevice)
	case KindIssueTicket:
		return a.issueTicket(cmd.IssueTicket)
	case KindRedeemTicket:
		return a.redeemTicket(cmd.RedeemTicket)
	case KindExpire:
		return a.expire(cmd.Expire)
	case KindAcks:
		return a.acks(cmd.Acks)
	case KindSettleReceipts:
		return a.settleReceipts(cmd.SettleReceipts)
	case KindTick:
		return Result{}, nil // it moves the clock, as every command does
	case KindSeal:
		return a.seal(cmd.Seal)
	}
	// DecodeCommand refuses unknown kinds; reaching here is a programming error.
	return Result{}, fmt.Errorf("%w: unknown kind %v", ErrBadCommand, cmd.Kind)
}

func refuse(err error, format string, args ...any) Result {
	return Result{Err: fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), err)}
}

func (a *applier) emit(e Event) { a.events = append(a.events, e) }

// ---- users ----

func (a *applier) createUser(c *CreateUser) (Result, error) {
	if !ValidID(c.UserID) || len(c.SecretHash) != 32 {
		return refuse(ErrInvalid, "create user %q", c.UserID), nil
	}
	var u User
	if ok, err := found(getJSON(a.txn, userKey(c.UserID), &u)); err != nil || ok {
		return refuse(ErrUserExists, "create user %s", c.UserID), err
	}
	// A deleted user's id stays taken until its data is drained.
	if _, err := a.txn.Get(drainUserKey(c.UserID)); err == nil {
		return refuse(ErrUserExists, "create user %s", c.UserID), nil
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return Result{}, err
	}
	u = User{ID: c.UserID, SecretHash: c.SecretHash, CreatedAt: a.at}
	return Result{User: &u}, setJSON(a.txn, userKey(u.ID), u)
}

// deleteUser takes effect at once, in a step that does not grow with the
// user's data: the user record goes (its secret stops working, its sessions
// end) and a drain marker (V/{user}) records when. From then on its tokens
// open nothing (publishing answers 404 token_unknown: a mailbox whose user
// is gone is no mailbox, see liveMailbox), and every message of the user
// still pending ends revoked, as of the deletion, whatever ends it. Its
// messages (each with its receipt), mailboxes and devices are then drained
// in bounded steps: up to the applier's budget here, the rest by Expire
// (drain.go). Nothing here is per mailbox, so a user with any number of
// mailboxes can be deleted.
func (a *applier) deleteUser(c *DeleteUser) (Result, error) {
	var u User
	if ok, err := found(getJSON(a.txn, userKey(c.UserID), &u)); err != nil || !ok {
		return refuse(ErrUserUnknown, "delete user %s", c.UserID), err
	}
	if err := a.txn.Delete(userKey(u.ID)); err != nil {
		return Result{}, err
	}
	if err := setJSON(a.txn, drainUserKey(u.ID), userDrain{DeletedAt: a.at}); err != nil {
		return Result{}, err
	}
	a.cacheDevices(u.ID, []Device{})
	a.emit(Event{Kind: EventUserDeleted, UserID: u.ID})
	if _, _, err := a.drainUser(u.ID, a.budget); err != nil {
		return Result{}, err
	}
	return Result{User: &u}, nil
}

// ---- mailboxes ----

func (a *applier) createMailbox(c *CreateMailbox) (Result, error) {
	if !ValidID(c.MailboxID) || len(c.TokenHash) != 32 {
		return refuse(ErrInvalid, "create mailbox %q", c.MailboxID), nil
	}
	var u User
	if ok, err := found(getJSON(a.txn, userKey(c.UserID), &u)); err != nil || !ok {
		return refuse(ErrUserUnknown, "create mailbox for user %s", c.UserID), err
	}
	for _, k := range [][]byte{mailboxKey(c.MailboxID), tokenKey(c.TokenHash)} {
		if _, err := a.txn.Get(k); err == nil {
			return refuse(ErrMailboxExists, "create mailbox %s", c.MailboxID), nil
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return Result{}, err
		}
	}
	if c.MaxMailboxes > 0 {
		live, err := a.liveMailboxes(c.UserID, c.MaxMailboxes)
		if err != nil {
			return Result{}, err
		}
		if live >= c.MaxMailboxes {
			return refuse(ErrQuotaExceeded, "create mailbox for user %s (%d live, quota %d)", c.UserID, live, c.MaxMailboxes), nil
		}
	}
	mb := Mailbox{
		ID: c.MailboxID, UserID: c.UserID, Label: c.Label, TokenHash: c.TokenHash,
		ReceiptURL: c.ReceiptURL, ReceiptSecret: c.ReceiptSecret, CreatedAt: a.at,
	}
	if err := setJSON(a.txn, mailboxKey(mb.ID), mb); err != nil {
		return Result{}, err
	}
	if err := a.txn.Set(userMailboxKey(mb.UserID, mb.ID), nil); err != nil {
		return Result{}, err
	}
	return Result{Mailbox: &mb}, a.txn.Set(tokenKey(mb.TokenHash), []byte(mb.ID))
}

// revokeMailbox takes effect at once, in a step that does not grow with
// the mailbox's pending messages: the mailbox is marked revoked, so its
// token publishes no more (410), and every message of it still pending ends
// revoked, whichever command comes to end it. Those messages are dropped,
// each with its receipt, in bounded steps: up to the applier's budget here,
// the rest by Expire (drain.go).
func (a *applier) revokeMailbox(c *RevokeMailbox) (Result, error) {
	mb, refusal, err := a.findMailbox(c)
	if err != nil || refusal != nil {
		return Result{Err: refusal}, err
	}
	if mb.Revoked() {
		return refuse(ErrTokenRevoked, "revoke mailbox %s", mb.ID), nil
	}
	var u User
	if ok, err := found(getJSON(a.txn, userKey(mb.UserID), &u)); err != nil {
		return Result{}, err
	} else if !ok {
		// Its user was deleted: the mailbox is draining with it and its
		// token opens nothing any more.
		if c.MailboxID == "" {
			return refuse(ErrTokenUnknown, "revoke by token"), nil
		}
		return refuse(ErrMailboxUnknown, "revoke mailbox %s", mb.ID), nil
	}
	if err := a.markRevoked(mb); err != nil {
		return Result{}, err
	}
	d := mailboxDrain{UserID: mb.UserID, Through: u.LastSeq}
	if err := setJSON(a.txn, drainMailboxKey(mb.ID), d); err != nil {
		return Result{}, err
	}
	a.emit(Event{Kind: EventMailboxRevoked, UserID: mb.UserID, Mailbox: mb})
	if _, _, err := a.drainMailbox(mb.ID, &d, a.budget); err != nil {
		return Result{}, err
	}
	return Result{Mailbox: mb}, nil
}

// markRevoked records that mb is revoked now, in the store, in the user's
// index (so that counting live mailboxes reads no revoked one) and in the
// receipt log this apply may already hold for it (finish reads it there).
func (a *applier) markRevoked(mb *Mailbox) error {
	mb.RevokedAt = a.at
	if l := a.logs[mb.ID]; l != nil {
		l.mb = *mb
	}
	if err := a.txn.Set(userMailboxKey(mb.UserID, mb.ID), revokedIndexValue); err != nil {
		return err
	}
	return setJSON(a.txn, mailboxKey(mb.ID), mb)
}

// revokedIndexValue marks a revoked mailbox in its user's index (B/); a
// live one's entry is empty.
var revokedIndexValue = []byte{'r'}

// liveMailboxes counts the user's mailboxes that are not revoked, up to
// limit. Entries of the user's index marked revoked are passed over without
// a read; an unmarked entry (a live mailbox, or one revoked by an older
// version) is read.
func (a *applier) liveMailboxes(userID string, limit int) (int, error) {
	prefix := userMailboxPrefix(userID)
	var unmarked []string
	it := a.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	for it.Rewind(); it.Valid() && len(unmarked) < limit; it.Next() {
		if it.Item().ValueSize() == 0 {
			unmarked = append(unmarked, string(it.Item().Key()[len(prefix):]))
		}
	}
	it.Close()
	live := 0
	for _, id := range unmarked {
		var mb Mailbox
		if ok, err := found(getJSON(a.txn, mailboxKey(id), &mb)); err != nil {
			return 0, err
		} else if ok && !mb.Revoked() {
			live++
		}
	}
	return live, nil
}

// findMailbox resolves a RevokeMailbox's target: by id, or by token hash.
func (a *applier) findMailbox(c *RevokeMailbox) (mb *Mailbox, refusal, err error) {
	id := c.MailboxID
	if id == "" {
		item, err := a.txn.Get(tokenKey(c.TokenHash))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("revoke by token: %w", ErrTokenUnknown), nil
		}
		if err != nil {
			return nil, nil, err
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return nil, nil, err
		}
		id = string(v)
	}
	mb = new(Mailbox)
	ok, err := found(getJSON(a.txn, mailboxKey(id), mb))
	if err != nil {
		return nil, nil, err
	}
	if !ok || (c.UserID != "" && mb.UserID != c.UserID) {
		return nil, fmt.Errorf("revoke mailbox %s: %w", id, ErrMailboxUnknown), nil
	}
	return mb, nil, nil
}

// ---- publishing ----

// IdemRecord is what an Idempotency-Key remembers.
type IdemRecord struct {
	MessageID   string `json:"message_id"`
	RequestHash []byte `json:"request_hash"`
}

func (a *applier) publish(c *Publish) (Result, error) {
	if a.at < a.sealed {
		out := make([]PublishedItem, len(c.Items))
		for i := range out {
			out[i].Err = fmt.Errorf("publish: %w", ErrRestoring)
		}
		return Result{Published: out}, nil
	}
	// Items of one entry often share a mailbox and a user: read each once,
	// and write each user once, at the end.
	b := &publishBatch{mailboxes: map[string]mailboxLookup{}, users: map[string]*User{}}
	out := make([]PublishedItem, len(c.Items))
	for i := range c.Items {
		r, err := a.publishOne(b, &c.Items[i])
		if err != nil {
			return Result{}, err
		}
		out[i] = r
	}
	for _, u := range b.users {
		if err := setJSON(a.txn, userKey(u.ID), u); err != nil {
			return Result{}, err
		}
	}
	return Result{Published: out}, nil
}

// publishBatch caches what the items of one Publish read.
type publishBatch struct {
	mailboxes map[string]mailboxLookup // by token hash
	users     map[string]*User         // by id; written back after the last item
}

type mailboxLookup struct {
	mb      *Mailbox
	refusal error
}

func (a *applier) publishOne(b *publishBatch, it *PublishItem) (PublishedItem, error) {
	if !ValidID(it.ID) || it.TTL < 0 || (it.Topic != "" && !ValidTopic(it.Topic)) {
		return PublishedItem{Err: fmt.Errorf("publish %q: %w", it.ID, ErrInvalid)}, nil
	}
	look, ok := b.mailboxes[string(it.TokenHash)]
	if !ok {
		mb, refusal, err := a.liveMailbox(it.TokenHash)
		if err != nil {
			return PublishedItem{}, err
		}
		look = mailboxLookup{&mb, refusal}
		b.mailboxes[string(it.TokenHash)] = look
	}
	if look.refusal != nil {
		return PublishedItem{Err: look.refusal}, nil
	}
	mb := look.mb
	if it.IdempotencyKey != "" {
		var rec IdemRecord
		ok, err := found(getJSON(a.txn, idemKey(mb.ID, it.IdempotencyKey), &rec))
		if err != nil {
			return PublishedItem{}, err
		}
		if ok {
			if !bytes.Equal(rec.RequestHash, it.RequestHash) {
				return PublishedItem{Err: fmt.Errorf("publish to mailbox %s, key %q: %w", mb.ID, it.IdempotencyKey, ErrIdempotencyConflict)}, nil
			}
			st, ok, err := readStatus(a.txn, rec.MessageID)
			if err != nil || ok {
				return PublishedItem{Status: &st, Duplicate: true}, err
			}
			// The first message's status is gone (its user was deleted and
			// made again, say): the key names nothing, so publish anew.
		}
	}
	// Message ids are 96 random bits chosen by the proposer: not checked
	// for collisions, which would cost a read per message.
	u := b.users[mb.UserID]
	if u == nil {
		u = new(User)
		if ok, err := found(getJSON(a.txn, userKey(mb.UserID), u)); err != nil {
			return PublishedItem{}, fmt.Errorf("mailbox %s names user %s: %w", mb.ID, mb.UserID, err)
		} else if !ok {
			// The user was deleted and its mailboxes are draining: the
			// token opens nothing, as if it were gone already.
			look.refusal = fmt.Errorf("publish: %w", ErrTokenUnknown)
			b.mailboxes[string(it.TokenHash)] = look
			return PublishedItem{Err: look.refusal}, nil
		}
		b.users[u.ID] = u
	}
	u.LastSeq++
	a.issued = max(a.issued, u.LastSeq)
	msg := Message{
		ID: it.ID, Seq: u.LastSeq, UserID: u.ID, MailboxID: mb.ID, Topic: it.Topic,
		Urgency: it.Urgency, At: a.at, ExpiresAt: a.at + it.TTL*int64(time.Second), Data: it.Data,
	}
	if msg.Urgency == "" {
		msg.Urgency = UrgencyNormal
	}
	if msg.Topic != "" {
		if err := a.replaceTopic(mb.ID, msg); err != nil {
			return PublishedItem{}, err
		}
		if err := a.txn.Set(topicKey(mb.ID, msg.Topic), be64(uint64(msg.Seq))); err != nil {
			return PublishedItem{}, err
		}
	}
	st := statusOf(&msg)
	if err := a.txn.Set(statusKey(st.ID), encodePending(u.ID, msg.Seq)); err != nil {
		return PublishedItem{}, err
	}
	if err := a.txn.Set(streamKey(u.ID, msg.Seq), encodeMessage(&msg)); err != nil {
		return PublishedItem{}, err
	}
	if err := a.txn.Set(expiryKey(msg.ExpiresAt, u.ID, msg.Seq), nil); err != nil {
		return PublishedItem{}, err
	}
	if it.IdempotencyKey != "" {
		k := idemKey(mb.ID, it.IdempotencyKey)
		if err := setJSON(a.txn, k, IdemRecord{MessageID: msg.ID, RequestHash: it.RequestHash}); err != nil {
			return PublishedItem{}, err
		}
		if err := a.collectAt(a.at+int64(a.policy.IdempotencyWindow), k); err != nil {
			return PublishedItem{}, err
		}
	}
	a.emit(Event{Kind: EventPublished, UserID: u.ID, Seq: msg.Seq, Message: &msg})
	return PublishedItem{Status: &st}, nil
}

// liveMailbox returns the mailbox a token opens if it may publish; otherwise
// a refusal (ErrTokenUnknown, ErrTokenRevoked).
func (a *applier) liveMailbox(tokenHash []byte) (mb Mailbox, refusal, err error) {
	item, err := a.txn.Get(tokenKey(tokenHash))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return mb, fmt.Errorf("publish: %w", ErrTokenUnknown), nil
	}
	if err != nil {
		return mb, nil, err
	}
	id, err := item.ValueCopy(nil)
	if err != nil {
		return mb, nil, err
	}
	if err := getJSON(a.txn, mailboxKey(string(id)), &mb); err != nil {
		return mb, nil, fmt.Errorf("token names mailbox %s: %w", id, err)
	}
	if mb.Revoked() {
		return mb, fmt.Errorf("publish to mailbox %s: %w", mb.ID, ErrTokenRevoked), nil
	}
	return mb, nil, nil
}

// replaceTopic ends the pending message that holds msg's topic in the mailbox.
func (a *applier) replaceTopic(mbID string, msg Message) error {
	item, err := a.txn.Get(topicKey(mbID, msg.Topic))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil || len(v) != 8 {
		return errors.Join(err, fmt.Errorf("topic record of %d bytes", len(v)))
	}
	var old Message
	ok, err := found(getMessage(a.txn, msg.UserID, Seq(be64dec(v)), &old))
	if err != nil || !ok {
		return err // already gone from the stream: acked by all, or expired
	}
	state := StateReplaced
	if old.Expired(a.at) {
		state = StateExpired
	}
	return a.dropMessage(old, state, msg.ID)
}

// ---- devices and acks ----

func (a *applier) ack(c *Ack) (Result, error) {
	u, dev, refusal, err := a.device(c.UserID, c.DeviceID, true)
	if err != nil || refusal != nil {
		return Result{Err: refusal}, err
	}
	if c.Seq > u.LastSeq {
		return refuse(ErrAckBeyondStream, "ack %d from device %s (stream ends at %d)", c.Seq, c.DeviceID, u.LastSeq), nil
	}
	dev.LastSeen = a.at
	if err := a.advance(&dev, c.Seq); err != nil {
		return Result{}, err
	}
	return Result{Device: &dev}, nil
}

func (a *applier) acks(c *Acks) (Result, error) {
	res := Result{Refused: make([]error, len(c.Items))}
	// Read every user's devices before the first write: an iterator made
	// while the transaction holds no pending writes costs nothing extra
	// (see rangeMessages), and trim then finds them in the cache.
	for i := range c.Items {
		if _, err := a.devices(c.Items[i].UserID); err != nil {
			return Result{}, err
		}
	}
	for i := range c.Items {
		r, err := a.ack(&c.Items[i])
		if err != nil {
			return Result{}, err
		}
		res.Refused[i] = r.Err
	}
	return res, nil
}

func (a *applier) touchDevice(c *TouchDevice) (Result, error) {
	u, dev, refusal, err := a.device(c.UserID, c.DeviceID, true)
	if err != nil || refusal != nil {
		return Result{Err: refusal}, err
	}
	if c.MaxDevices > 0 {
		if refusal, err := a.makeRoom(c.UserID, c.DeviceID, c.MaxDevices); err != nil || refusal != nil {
			return Result{Err: refusal}, err
		}
	}
	dev.LastSeen = a.at
	if err := a.advance(&dev, min(c.From, u.LastSeq)); err != nil {
		return Result{}, err
	}
	// The user goes back too: the session that follows starts from its
	// stream's end (LastSeq) without reading it again.
	return Result{Device: &dev, User: &u}, nil
}

func (a *applier) deleteDevice(c *DeleteDevice) (Result, error) {
	_, dev, refusal, err := a.device(c.UserID, c.DeviceID, false)
	if err != nil || refusal != nil {
		return Result{Err: refusal}, err
	}
	if err := a.txn.Delete(deviceKey(dev.UserID, dev.ID)); err != nil {
		return Result{}, err
	}
	if devs, ok := a.devs[dev.UserID]; ok {
		a.devs[dev.UserID] = slices.DeleteFunc(slices.Clone(devs), func(d Device) bool { return d.ID == dev.ID })
	}
	a.emit(Event{Kind: EventDeviceDeleted, UserID: dev.UserID, Device: dev.ID})
	// Without this device, the others may have acked everything that is left.
	return Result{Device: &dev}, a.trim(dev.UserID)
}

// makeRoom makes room for a device under the user's quota of max, if it is
// new: while the user has max devices or more, the one seen longest ago goes
// if it is out of the retention window (it holds nothing back any more); if
// it is not, the new device is refused.
func (a *applier) makeRoom(userID, newDevice string, max int) (refusal, err error) {
	devs, err := a.devices(userID)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(devs, func(d Device) bool { return d.ID == newDevice }) {
		return nil, nil
	}
	for len(devs) >= max {
		oldest := slices.MinFunc(devs, func(x, y Device) int {
			if x.LastSeen != y.LastSeen {
				return cmp.Compare(x.LastSeen, y.LastSeen)
			}
			return strings.Compare(x.ID, y.ID)
		})
		if oldest.LastSeen >= a.at-int64(a.policy.DeviceRetention) {
			return fmt.Errorf("device %s of user %s (%d devices, quota %d): %w", newDevice, userID, len(devs), max, ErrQuotaExceeded), nil
		}
		if err := a.txn.Delete(deviceKey(userID, oldest.ID)); err != nil {
			return nil, err
		}
		devs = slices.DeleteFunc(slices.Clone(devs), func(d Device) bool { return d.ID == oldest.ID })
		a.devs[userID] = devs
		a.emit(Event{Kind: EventDeviceDeleted, UserID: userID, Device: oldest.ID})
	}
	return nil, nil
}

// device loads a user and one of its devices. With create, an unknown device
// is a new one with its cursor at 0; without, it is ErrDeviceUnknown.
func (a *applier) device(userID, deviceID string, create bool) (u User, dev Device, refusal, err error) {
	if !ValidDeviceID(deviceID) {
		return u, dev, fmt.Errorf("device %q: %w", deviceID, ErrInvalid), nil
	}
	if ok, err := found(getJSON(a.txn, userKey(userID), &u)); err != nil || !ok {
		return u, dev, fmt.Errorf("device %s: %w", deviceID, ErrUserUnknown), err
	}
	ok, err := found(getJSON(a.txn, deviceKey(userID, deviceID), &dev))
	if err != nil {
		return u, dev, nil, err
	}
	if !ok {
		if !create {
			return u, dev, fmt.Errorf("device %s: %w", deviceID, ErrDeviceUnknown), nil
		}
		dev = Device{ID: deviceID, UserID: userID, Created: a.at}
	}
	return u, dev, nil, nil
}

// advance moves the device's cursor to seq if that is forward, marks what it
// newly acknowledged as delivered, saves the device and drops what every
// active device has now acknowledged.
func (a *applier) advance(dev *Device, seq Seq) error {
	from := dev.Cursor
	if seq > from {
		msgs, err := a.rangeMessages(dev.UserID, from, seq)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if err := a.finish(&m, StateDelivered, dev.ID, ""); err != nil {
				return err
			}
		}
		dev.Cursor = seq
		a.emit(Event{Kind: EventAcked, UserID: dev.UserID, Device: dev.ID, Seq: seq})
	}
	if err := setJSON(a.txn, deviceKey(dev.UserID, dev.ID), dev); err != nil {
		return err
	}
	if devs, ok := a.devs[dev.UserID]; ok {
		devs = slices.Clone(devs)
		if i := slices.IndexFunc(devs, func(d Device) bool { return d.ID == dev.ID }); i >= 0 {
			devs[i] = *dev
		} else {
			devs = append(devs, *dev)
		}
		a.devs[dev.UserID] = devs
	}
	if seq > from {
		return a.trim(dev.UserID)
	}
	return nil
}

// trim drops the messages that every device seen within the retention window
// has acknowledged. A user without such a device keeps messages until TTL.
func (a *applier) trim(userID string) error {
	devs, err := a.devices(userID)
	if err != nil {
		return err
	}
	var floor Seq
	active := 0
	for _, d := range devs {
		if d.LastSeen < a.at-int64(a.policy.DeviceRetention) {
			continue
		}
		if active == 0 || d.Cursor < floor {
			floor = d.Cursor
		}
		active++
	}
	if active == 0 || floor == 0 {
		return nil
	}
	var u User
	if ok, err := found(getJSON(a.txn, userKey(userID), &u)); err != nil || !ok {
		return err
	}
	if floor <= u.Trimmed {
		return nil
	}
	msgs, err := a.rangeMessages(userID, u.Trimmed, floor)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := a.dropMessage(m, StateDelivered, ""); err != nil {
			return err
		}
	}
	u.Trimmed = floor
	return setJSON(a.txn, userKey(userID), u)
}

// devices returns the user's devices as this transaction sees them. The
// first call per user reads them; the applier keeps the list current with
// its own device writes, so that an ack batch does not open an iterator per
// ack (see rangeMessages).
func (a *applier) devices(userID string) ([]Device, error) {
	if devs, ok := a.devs[userID]; ok {
		return devs, nil
	}
	var out []Device
	err := iterPrefix(a.txn, devicePrefix(userID), func(_ []byte, v []byte) error {
		var d Device
		if err := unmarshal(v, &d); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.cacheDevices(userID, out)
	return out, nil
}

func (a *applier) cacheDevices(userID string, devs []Device) {
	if a.devs == nil {
		a.devs = make(map[string][]Device)
	}
	a.devs[userID] = devs
}

// ---- tickets ----

func (a *applier) issueTicket(c *IssueTicket) (Result, error) {
	if len(c.TicketHash) != 32 || c.Lifetime < 0 || (c.Lifetime == 0 && c.ExpiresAt == 0) {
		return refuse(ErrInvalid, "issue ticket"), nil
	}
	var u User
	if ok, err := found(getJSON(a.txn, userKey(c.UserID), &u)); err != nil || !ok {
		return refuse(ErrUserUnknown, "issue ticket for %s", c.UserID), err
	}
	// A lifetime counts from this clock, the one redeeming compares with;
	// ExpiresAt is the proposer's own clock, in entries of older versions.
	expires := c.ExpiresAt
	if c.Lifetime > 0 {
		expires = a.at + c.Lifetime
	}
	t := Ticket{UserID: c.UserID, ExpiresAt: expires}
	if err := setJSON(a.txn, ticketKey(c.TicketHash), t); err != nil {
		return Result{}, err
	}
	return Result{Ticket: &t}, a.collectAt(expires, ticketKey(c.TicketHash))
}

func (a *applier) redeemTicket(c *RedeemTicket) (Result, error) {
	var t Ticket
	ok, err := found(getJSON(a.txn, ticketKey(c.TicketHash), &t))
	if err != nil {
		return Result{}, err
	}
	if !ok || a.at >= t.ExpiresAt {
		return refuse(ErrTicketInvalid, "redeem ticket"), nil
	}
	return Result{Ticket: &t}, a.txn.Delete(ticketKey(c.TicketHash))
}

// ---- expiry ----

func (a *applier) expire(c *Expire) (Result, error) {
	limit := c.Limit
	if limit <= 0 {
		limit = 1000
	}
	var res Result
	// Messages whose TTL passed.
	var due [][]byte
	err := iterKeys(a.txn, expiryPrefix(), func(k []byte) bool {
		at, _, _, ok := parseExpiryKey(k)
		if !ok || at > a.at || len(due) == limit {
			return false
		}
		due = append(due, bytes.Clone(k))
		return true
	})
	if err != nil {
		return Result{}, err
	}
	for _, k := range due {
		_, user, seq, _ := parseExpiryKey(k)
		var m Message
		ok, err := found(getMessage(a.txn, user, seq, &m))
		if err != nil {
			return Result{}, err
		}
		if !ok { // a dangling index entry: drop it
			if err := a.txn.Delete(k); err != nil {
				return Result{}, err
			}
			continue
		}
		if err := a.dropMessage(m, StateExpired, ""); err != nil {
			return Result{}, err
		}
	}
	res.Expired = len(due)
	// Revoked mailboxes and deleted users still draining.
	drained, more, err := a.drains(limit - res.Expired)
	if err != nil {
		return Result{}, err
	}
	res.Expired += drained
	// Records whose keeping window ended.
	var garbage [][]byte
	err = iterKeys(a.txn, garbagePrefix(), func(k []byte) bool {
		deadline, _, ok := parseGarbageKey(k)
		if !ok || deadline > a.at || res.Expired+len(garbage) == limit {
			return false
		}
		garbage = append(garbage, bytes.Clone(k))
		return true
	})
	if err != nil {
		return Result{}, err
	}
	for _, k := range garbage {
		_, target, _ := parseGarbageKey(k)
		if err := a.txn.Delete(target); err != nil {
			return Result{}, err
		}
		if err := a.txn.Delete(k); err != nil {
			return Result{}, err
		}
	}
	res.Expired += len(garbage)
	res.More = res.Expired >= limit || more
	return res, nil
}

// ---- shared steps ----

// dropMessage removes a message from its user's stream with its index
// entries, and ends its status in state if it was still pending.
func (a *applier) dropMessage(m Message, state State, replacedBy string) error {
	if err := a.txn.Delete(streamKey(m.UserID, m.Seq)); err != nil {
		return err
	}
	if err := a.txn.Delete(expiryKey(m.ExpiresAt, m.UserID, m.Seq)); err != nil {
		return err
	}
	if m.Topic != "" {
		tk := topicKey(m.MailboxID, m.Topic)
		item, err := a.txn.Get(tk)
		if err == nil {
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) == 8 && Seq(be64dec(v)) == m.Seq {
				if err := a.txn.Delete(tk); err != nil {
					return err
				}
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
	}
	return a.finish(&m, state, "", replacedBy)
}

// finish decides a pending message's fate: its status record, until now a
// pointer into the stream, becomes the final status, and its receipt is
// recorded (receipt.go). A status that is already final, or gone, stays as
// it is: a message has one fate, and one receipt.
func (a *applier) finish(m *Message, state State, device, replacedBy string) error {
	item, err := a.txn.Get(statusKey(m.ID))
	if ok, err := found(err); err != nil || !ok {
		return err
	}
	var pending bool
	if err := item.Value(func(v []byte) error { pending = len(v) > 0 && v[0] == pendingRecord; return nil }); err != nil || !pending {
		return err
	}
	st := statusOf(m)
	st.State, st.FinalAt, st.DeliveredTo, st.ReplacedBy = state, a.at, device, replacedBy
	if l, err := a.receiptLog(m.MailboxID); err != nil {
		return err
	} else if l != nil && l.mb.Revoked() {
		// Its mailbox was revoked while it was pending: that decided its
		// fate, whatever comes to end it while the revoke drains (an ack,
		// its TTL, the drain itself).
		st.State, st.FinalAt, st.DeliveredTo, st.ReplacedBy = StateRevoked, l.mb.RevokedAt, "", ""
	}
	r, mb, err := a.recordReceipt(&st)
	if err != nil {
		return err
	}
	if err := setJSON(a.txn, statusKey(m.ID), st); err != nil {
		return err
	}
	a.emit(Event{Kind: EventFinal, UserID: st.UserID, Seq: st.Seq, Status: &st, Receipt: r, Mailbox: mb})
	return a.collectAt(a.at+int64(a.policy.StatusRetention), statusKey(m.ID))
}

// shortRange is the widest seq range rangeMessages reads key by key.
const shortRange = 256

// rangeMessages is streamRange(userID, from, to) for to > 0 that reads a
// short range one key at a time. Badger sorts a write transaction's pending
// writes every time an iterator is made in it, so iterators inside a large
// command (an ack batch of thousands) made it quadratic; point reads look
// the pending writes up in a map.
func (a *applier) rangeMessages(userID string, from, to Seq) ([]Message, error) {
	if to <= from {
		return nil, nil
	}
	if to-from > shortRange {
		return a.streamRange(userID, from, to)
	}
	var out []Message
	for seq := from + 1; seq <= to; seq++ {
		item, err := a.txn.Get(streamKey(userID, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue // trimmed, expired or replaced
		}
		if err != nil {
			return nil, err
		}
		var m Message
		if err := item.Value(func(v []byte) error { return decodeMessage(v, &m) }); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// streamRange returns the messages of the user's stream with from < seq <= to;
// to == 0 means to the end.
func (a *applier) streamRange(userID string, from, to Seq) ([]Message, error) {
	return streamRange(a.txn, userID, from, to, 0)
}

// collectAt schedules k for deletion once the deadline passes.
func (a *applier) collectAt(deadline int64, k []byte) error {
	return a.txn.Set(garbageKey(deadline, k), nil)
}
