package mailbox

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The hot records, a publish command and a stream message, are written in a
// compact binary form rather than JSON: they are most of the raft log and of
// badger's writes, and JSON cost a fifth of the CPU of a publish. Each field
// is a uvarint, a varint or a uvarint length followed by bytes, in a fixed
// order. Colder records (users, mailboxes, final statuses) stay JSON.

var errShort = errors.New("record ends early")

// enc appends fields to a byte slice.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }

// dec reads fields back; the first error sticks and later reads return zero.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

// bytes returns a copy, or nil for an empty field.
func (d *dec) bytes() []byte {
	p := d.raw()
	if len(p) == 0 {
		return nil
	}
	return append([]byte(nil), p...)
}

func (d *dec) str() string { return string(d.raw()) }

// end fails if bytes are left over.
func (d *dec) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Errorf("%d bytes left over", len(d.b)))
	}
	return d.err
}

// urgencyCodes number the urgencies on disk; 0 is the empty urgency.
var urgencyCodes = []Urgency{"", UrgencyVeryLow, UrgencyLow, UrgencyNormal, UrgencyHigh}

func urgencyCode(u Urgency) uint64 {
	for i, v := range urgencyCodes {
		if v == u {
			return uint64(i)
		}
	}
	return uint64(len(urgencyCodes)) // unknown: refused when decoded
}

func (d *dec) urgency() Urgency {
	c := d.uvarint()
	if c >= uint64(len(urgencyCodes)) {
		d.fail(fmt.Errorf("urgency code %d", c))
		return ""
	}
	return urgencyCodes[c]
}

// encodePublish writes a publish command's body.
func encodePublish(e *enc, at int64, p *Publish) {
	e.varint(at)
	e.uvarint(uint64(len(p.Items)))
	for i := range p.Items {
		it := &p.Items[i]
		e.str(it.ID)
		e.bytes(it.TokenHash)
		e.str(it.Data)
		e.varint(it.TTL)
		e.str(it.Topic)
		e.uvarint(urgencyCode(it.Urgency))
		e.str(it.IdempotencyKey)
		e.bytes(it.RequestHash)
	}
}

func decodePublish(b []byte) (at int64, p *Publish, err error) {
	d := &dec{b: b}
	at = d.varint()
	n := d.uvarint()
	if n > uint64(len(b)) { // every item takes at least a byte
		return 0, nil, fmt.Errorf("%d items in %d bytes", n, len(b))
	}
	p = &Publish{Items: make([]PublishItem, n)}
	for i := range p.Items {
		it := &p.Items[i]
		it.ID = d.str()
		it.TokenHash = d.bytes()
		it.Data = d.str()
		it.TTL = d.varint()
		it.Topic = d.str()
		it.Urgency = d.urgency()
		it.IdempotencyKey = d.str()
		it.RequestHash = d.bytes()
	}
	return at, p, d.end()
}

// messageRecord is the version byte of a stream message's binary form.
const messageRecord = 1

func encodeMessage(m *Message) []byte {
	e := &enc{b: make([]byte, 0, 64+len(m.Data))}
	e.b = append(e.b, messageRecord)
	e.str(m.ID)
	e.uvarint(uint64(m.Seq))
	e.str(m.UserID)
	e.str(m.MailboxID)
	e.str(m.Topic)
	e.uvarint(urgencyCode(m.Urgency))
	e.varint(m.At)
	e.varint(m.ExpiresAt)
	e.str(m.Data)
	return e.b
}

func decodeMessage(b []byte, m *Message) error {
	if len(b) == 0 || b[0] != messageRecord {
		return fmt.Errorf("mailbox: decode message: unknown record version")
	}
	d := &dec{b: b[1:]}
	m.ID = d.str()
	m.Seq = Seq(d.uvarint())
	m.UserID = d.str()
	m.MailboxID = d.str()
	m.Topic = d.str()
	m.Urgency = d.urgency()
	m.At = d.varint()
	m.ExpiresAt = d.varint()
	m.Data = d.str()
	if err := d.end(); err != nil {
		return fmt.Errorf("mailbox: decode message: %w", err)
	}
	return nil
}

// A status record is either a pointer to the pending message in its user's
// stream (the status is derived from the message) or, once the message's fate
// is decided, the final MessageStatus as JSON. Pointers start with
// pendingRecord; JSON starts with '{'.
const pendingRecord = 0

func encodePending(user string, seq Seq) []byte {
	e := &enc{b: make([]byte, 0, 32)}
	e.b = append(e.b, pendingRecord)
	e.str(user)
	e.uvarint(uint64(seq))
	return e.b
}

func decodePending(b []byte) (user string, seq Seq, err error) {
	d := &dec{b: b[1:]}
	user = d.str()
	seq = Seq(d.uvarint())
	return user, seq, d.end()
}

// statusOf is the status of a pending message.
func statusOf(m *Message) MessageStatus {
	return MessageStatus{
		ID: m.ID, UserID: m.UserID, MailboxID: m.MailboxID, Seq: m.Seq, Topic: m.Topic,
		State: StatePending, At: m.At, ExpiresAt: m.ExpiresAt,
	}
}
