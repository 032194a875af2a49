package mailbox

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Kind names what a Command does.
type Kind byte

// The kinds of command. The numbers are written into the raft log: never
// reuse or renumber one.
const (
	KindCreateUser     Kind = 1
	KindDeleteUser     Kind = 2
	KindCreateMailbox  Kind = 3
	KindRevokeMailbox  Kind = 4
	KindPublish        Kind = 5
	KindAck            Kind = 6
	KindTouchDevice    Kind = 7
	KindDeleteDevice   Kind = 8
	KindIssueTicket    Kind = 9
	KindRedeemTicket   Kind = 10
	KindExpire         Kind = 11
	KindAcks           Kind = 12
	KindSettleReceipts Kind = 13
	KindTick           Kind = 14
	KindSeal           Kind = 15
)

func (k Kind) String() string {
	switch k {
	case KindCreateUser:
		return "create-user"
	case KindDeleteUser:
		return "delete-user"
	case KindCreateMailbox:
		return "create-mailbox"
	case KindRevokeMailbox:
		return "revoke-mailbox"
	case KindPublish:
		return "publish"
	case KindAck:
		return "ack"
	case KindTouchDevice:
		return "touch-device"
	case KindDeleteDevice:
		return "delete-device"
	case KindIssueTicket:
		return "issue-ticket"
	case KindRedeemTicket:
		return "redeem-ticket"
	case KindExpire:
		return "expire"
	case KindAcks:
		return "acks"
	case KindSettleReceipts:
		return "settle-receipts"
	case KindTick:
		return "tick"
	case KindSeal:
		return "seal"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Command is one change of state: the body of one raft log entry. Exactly one
// body field matching Kind is set. At is the proposer's clock when it
// proposed, in unix nanoseconds; Apply moves its own clock towards it, by a
// bounded step (see "Clock" in the package doc). Bodies carry durations
// (TTL, Lifetime), counted from that clock, never absolute times.
type Command struct {
	Kind Kind  `json:"-"`
	At   int64 `json:"at"`

	CreateUser    *CreateUser    `json:"create_user,omitempty"`
	DeleteUser    *DeleteUser    `json:"delete_user,omitempty"`
	CreateMailbox *CreateMailbox `json:"create_mailbox,omitempty"`
	RevokeMailbox *RevokeMailbox `json:"revoke_mailbox,omitempty"`
	Publish       *Publish       `json:"publish,omitempty"`
	Ack           *Ack           `json:"ack,omitempty"`
	TouchDevice   *TouchDevice   `json:"touch_device,omitempty"`
	DeleteDevice  *DeleteDevice  `json:"delete_device,omitempty"`
	IssueTicket   *IssueTicket   `json:"issue_ticket,omitempty"`
	RedeemTicket  *RedeemTicket  `json:"redeem_ticket,omitempty"`
	Expire        *Expire        `json:"expire,omitempty"`
	Acks          *Acks          `json:"acks,omitempty"`

	SettleReceipts *SettleReceipts `json:"settle_receipts,omitempty"`
	Tick           *Tick           `json:"tick,omitempty"`
	Seal           *Seal           `json:"seal,omitempty"`
}

// Tick changes nothing but the state machine's clock, which every command
// moves: the leader proposes one when the clock lags its own, so that the
// clock keeps up with real time on an idle cluster and catches up after an
// outage, one bounded step each (see "Clock" in the package doc).
type Tick struct{}

// CreateUser registers a user. The secret itself never enters the log.
type CreateUser struct {
	UserID     string `json:"user_id"`
	SecretHash []byte `json:"secret_hash"`
}

// DeleteUser removes a user with all its mailboxes, devices and messages.
// Pending messages end revoked.
type DeleteUser struct {
	UserID string `json:"user_id"`
}

// CreateMailbox makes a mailbox for a user. The token itself never enters the log.
type CreateMailbox struct {
	MailboxID     string `json:"mailbox_id"`
	UserID        string `json:"user_id"`
	Label         string `json:"label"`
	TokenHash     []byte `json:"token_hash"`
	ReceiptURL    string `json:"receipt_url,omitempty"`
	ReceiptSecret string `json:"receipt_secret"`
	// MaxMailboxes is the user's quota of live (not revoked) mailboxes,
	// put in the command by the proposer so that every node applies the
	// same one; 0 means none.
	MaxMailboxes int `json:"max_mailboxes,omitempty"`
}

// RevokeMailbox revokes a mailbox's token, by mailbox id (a user acting) or by
// token hash (the app acting). When UserID is set, the mailbox must belong to
// that user. Pending messages of the mailbox end revoked.
type RevokeMailbox struct {
	MailboxID string `json:"mailbox_id,omitempty"`
	TokenHash []byte `json:"token_hash,omitempty"`
	UserID    string `json:"user_id,omitempty"`
}

// Publish posts messages, each independently: one item failing does not fail
// the others. Many publishers' items share one Publish (group commit).
type Publish struct {
	Items []PublishItem `json:"items"`
}

// PublishItem is one message to post to the mailbox that TokenHash opens.
type PublishItem struct {
	ID             string  `json:"id"` // chosen by the proposer, unique
	TokenHash      []byte  `json:"token_hash"`
	Data           string  `json:"data"`
	TTL            int64   `json:"ttl"` // seconds; 0 = deliver to connected devices now, or drop
	Topic          string  `json:"topic,omitempty"`
	Urgency        Urgency `json:"urgency"`
	IdempotencyKey string  `json:"idempotency_key,omitempty"`
	// RequestHash identifies the request's content (payload and headers), so
	// that a reused Idempotency-Key with different content is refused.
	RequestHash []byte `json:"request_hash,omitempty"`
}

// Ack moves a device's cursor forward to Seq (cumulative). An ack at or below
// the cursor changes nothing; an ack beyond the stream's last seq is refused.
type Ack struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
	Seq      Seq    `json:"seq"`
}

// Acks is many devices' acks in one entry: the hub batches the acks of all
// its sessions. Each item is applied as an Ack on its own; one refused item
// does not stop the others.
type Acks struct {
	Items []Ack `json:"items"`
}

// TouchDevice records that a device connected, creating it on first sight
// with its cursor at From (or at the current cursor if the device is known).
// MaxDevices is the user's quota of devices (0: none): a new device beyond
// it takes the place of the device seen longest ago if that one is out of
// the retention window (DeviceDeleted), and is refused ErrQuotaExceeded if
// not.
type TouchDevice struct {
	UserID     string `json:"user_id"`
	DeviceID   string `json:"device_id"`
	From       Seq    `json:"from"`
	MaxDevices int    `json:"max_devices,omitempty"`
}

// DeleteDevice forgets a device; it no longer holds messages back.
type DeleteDevice struct {
	UserID   string `json:"user_id"`
	DeviceID string `json:"device_id"`
}

// IssueTicket stores a connect ticket by its hash, valid for Lifetime (ns)
// from the state machine's clock at issue, the clock redeeming compares
// with. ExpiresAt is what older versions proposed instead (the proposer's
// clock plus the lifetime); it is honoured only without a Lifetime.
type IssueTicket struct {
	TicketHash []byte `json:"ticket_hash"`
	UserID     string `json:"user_id"`
	Lifetime   int64  `json:"lifetime,omitempty"`
	ExpiresAt  int64  `json:"expires_at,omitempty"`
}

// RedeemTicket uses up a ticket. It succeeds once, before the ticket expires.
type RedeemTicket struct {
	TicketHash []byte `json:"ticket_hash"`
}

// Expire ends every message whose TTL passed by the command's At, and drops
// everything else whose keeping window ended (idempotency keys, statuses,
// tickets). Limit bounds the work of one command; the leader proposes another
// while work remains.
type Expire struct {
	Limit int `json:"limit"`
}

// commandVersion is the first byte of every encoded command. Bump it when an
// encoding changes incompatibly, and keep decoding the old one.
const commandVersion = 1

// ErrBadCommand means a log entry could not be decoded.
var ErrBadCommand = errors.New("mailbox: bad command")

// Encode returns the command's log entry: a version byte, the kind byte, then
// the body: binary for a publish (see codec.go), JSON for the rest.
func (c *Command) Encode() ([]byte, error) {
	if c.Kind == KindPublish && c.Publish != nil {
		e := &enc{b: make([]byte, 0, 256*len(c.Publish.Items))}
		e.b = append(e.b, commandVersion, byte(c.Kind))
		encodePublish(e, c.At, c.Publish)
		return e.b, nil
	}
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("mailbox: encode %v: %w", c.Kind, err)
	}
	out := make([]byte, 0, len(body)+2)
	out = append(out, commandVersion, byte(c.Kind))
	return append(out, body...), nil
}

// DecodeCommand is the inverse of Encode. It checks that the body matches the
// kind, so Apply never sees a command without its body.
func DecodeCommand(b []byte) (*Command, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(b))
	}
	if b[0] != commandVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBadCommand, b[0])
	}
	c := &Command{Kind: Kind(b[1])}
	if c.Kind == KindPublish {
		at, p, err := decodePublish(b[2:])
		if err != nil {
			return nil, fmt.Errorf("%w: %v: %v", ErrBadCommand, c.Kind, err)
		}
		c.At, c.Publish = at, p
		return c, nil
	}
	if err := json.Unmarshal(b[2:], c); err != nil {
		return nil, fmt.Errorf("%w: %v: %v", ErrBadCommand, c.Kind, err)
	}
	if !c.hasBody() {
		return nil, fmt.Errorf("%w: %v without its body", ErrBadCommand, c.Kind)
	}
	return c, nil
}

// hasBody reports whether the body field of the command's kind is set.
func (c *Command) hasBody() bool {
	switch c.Kind {
	case KindCreateUser:
		return c.CreateUser != nil
	case KindDeleteUser:
		return c.DeleteUser != nil
	case KindCreateMailbox:
		return c.CreateMailbox != nil
	case KindRevokeMailbox:
		return c.RevokeMailbox != nil
	case KindPublish:
		return c.Publish != nil
	case KindAck:
		return c.Ack != nil
	case KindTouchDevice:
		return c.TouchDevice != nil
	case KindDeleteDevice:
		return c.DeleteDevice != nil
	case KindIssueTicket:
		return c.IssueTicket != nil
	case KindRedeemTicket:
		return c.RedeemTicket != nil
	case KindExpire:
		return c.Expire != nil
	case KindAcks:
		return c.Acks != nil
	case KindSettleReceipts:
		return c.SettleReceipts != nil
	case KindTick:
		return c.Tick != nil
	case KindSeal:
		return c.Seal != nil
	}
	return false
}

// Result is what applying a command answered. Err is the command's refusal
// (a sentinel of this package, wrapped); storage failures are not results but
// errors of Apply itself.
type Result struct {
	Err       error
	User      *User           // CreateUser, TouchDevice (the user as the device is touched)
	Mailbox   *Mailbox        // CreateMailbox, RevokeMailbox
	Device    *Device         // Ack, TouchDevice
	Ticket    *Ticket         // RedeemTicket
	Published []PublishedItem // Publish, one per item in order
	Expired   int             // Expire: how many things ended; Expire.Limit reached means run again
	More      bool            // Expire: work remains
	Refused   []error         // Acks: one per item, nil where it was applied
	Issued    Seq             // Seal: the highest seq ever issued, to any user
}

// PublishedItem is the outcome of one PublishItem.
type PublishedItem struct {
	Err error // ErrTokenUnknown, ErrTokenRevoked, ErrIdempotencyConflict
	// Status is the message's status. For a repeated Idempotency-Key it is the
	// first message's status, and Duplicate is true.
	Status    *MessageStatus
	Duplicate bool
}

// EventKind names an Event.
type EventKind byte

// The kinds of event.
const (
	EventPublished      EventKind = iota + 1 // Message is new in User's stream
	EventAcked                               // Device's cursor moved to Seq
	EventMailboxRevoked                      // Mailbox's token no longer publishes
	EventUserDeleted                         // User is gone; its sessions must end
	EventDeviceDeleted                       // Device is gone; its sessions must end
	EventFinal                               // Status reached its final state; Receipt records it, for Mailbox
)

// Event tells the layers above what an applied command changed, so that the
// hub can push to sessions without reading badger for every message.
type Event struct {
	Kind    EventKind
	UserID  string
	Device  string
	Seq     Seq
	Message *Message
	Mailbox *Mailbox
	Status  *MessageStatus
	Receipt *Receipt
}
