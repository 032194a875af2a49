package mailbox

import "time"

// Seq is a position in a user's stream. The first message of a user has seq 1;
// a device cursor of 0 means "nothing acknowledged yet".
type Seq uint64

// Urgency is RFC 8030's urgency of a message.
type Urgency string

// The urgencies of RFC 8030, lowest first.
const (
	UrgencyVeryLow Urgency = "very-low"
	UrgencyLow     Urgency = "low"
	UrgencyNormal  Urgency = "normal"
	UrgencyHigh    Urgency = "high"
)

// Valid reports whether u is one of the four urgencies.
func (u Urgency) Valid() bool {
	switch u {
	case UrgencyVeryLow, UrgencyLow, UrgencyNormal, UrgencyHigh:
		return true
	}
	return false
}

// User is an account on the hub.
type User struct {
	ID         string `json:"id"`
	SecretHash []byte `json:"secret_hash"`
	CreatedAt  int64  `json:"created_at"` // unix nanoseconds
	LastSeq    Seq    `json:"last_seq"`   // seq of the newest message ever published to the user
	// Trimmed: every message with a seq up to here was acknowledged by all
	// the user's active devices and dropped; trimming goes on from here.
	Trimmed Seq `json:"trimmed,omitempty"`
}

// Mailbox is one app's address for one user.
type Mailbox struct {
	ID            string `json:"id"`
	UserID        string `json:"user_id"`
	Label         string `json:"label"`
	TokenHash     []byte `json:"token_hash"`
	ReceiptURL    string `json:"receipt_url,omitempty"`
	ReceiptSecret string `json:"receipt_secret"`
	CreatedAt     int64  `json:"created_at"`
	RevokedAt     int64  `json:"revoked_at,omitempty"` // 0 while the token is live
}

// Revoked reports whether the mailbox's token has been revoked.
func (m Mailbox) Revoked() bool { return m.RevokedAt != 0 }

// Message is one notification in a user's stream.
type Message struct {
	ID        string  `json:"id"`
	Seq       Seq     `json:"seq"`
	UserID    string  `json:"user_id"`
	MailboxID string  `json:"mailbox_id"`
	Topic     string  `json:"topic,omitempty"`
	Urgency   Urgency `json:"urgency"`
	At        int64   `json:"at"`         // unix nanoseconds: when it was accepted
	ExpiresAt int64   `json:"expires_at"` // unix nanoseconds: At + TTL
	Data      string  `json:"data"`
}

// Expired reports whether the message is past its TTL at time now (unix ns).
// A message with TTL 0 is expired for every read after the instant it was
// accepted: only sessions connected at that moment get it, from the event.
func (m Message) Expired(now int64) bool { return now >= m.ExpiresAt }

// State is the fate of a message. Every message starts pending and moves to
// exactly one final state.
type State string

// The states of a message.
const (
	StatePending   State = "pending"
	StateDelivered State = "delivered" // a device acknowledged it
	StateExpired   State = "expired"   // its TTL passed before any device acknowledged it
	StateReplaced  State = "replaced"  // a newer message with the same topic in the same mailbox
	StateRevoked   State = "revoked"   // its mailbox was revoked while it was pending
)

// MessageStatus is what the hub remembers about a message's fate. It outlives
// the message itself by StatusRetention.
type MessageStatus struct {
	ID          string `json:"id"`
	UserID      string `json:"user_id"`
	MailboxID   string `json:"mailbox_id"`
	Seq         Seq    `json:"seq"`
	Topic       string `json:"topic,omitempty"`
	State       State  `json:"state"`
	At          int64  `json:"at"`
	ExpiresAt   int64  `json:"expires_at"`
	FinalAt     int64  `json:"final_at,omitempty"`     // when the state became final
	DeliveredTo string `json:"delivered_to,omitempty"` // the device whose ack delivered it
	ReplacedBy  string `json:"replaced_by,omitempty"`  // the message that replaced it

	// Receipt is the seq of the message's receipt in its mailbox's receipt
	// log (receipt.go), set once final.
	Receipt uint64 `json:"receipt,omitempty"`
	// Webhook is where the receipt's webhook stands; empty when the mailbox
	// has no receipt URL. Reads turn a pending receipt that has left the
	// outbox into WebhookSent.
	Webhook         WebhookState `json:"webhook,omitempty"`
	WebhookFailedAt int64        `json:"webhook_failed_at,omitempty"`
}

// ReceiptID is the id of the message's receipt, "" while it is pending.
func (st MessageStatus) ReceiptID() string {
	if st.Receipt == 0 {
		return ""
	}
	return Receipt{MailboxID: st.MailboxID, Seq: st.Receipt}.ID()
}

// Device is one client of a user, with its cursor.
type Device struct {
	ID       string `json:"id"`
	UserID   string `json:"user_id"`
	Cursor   Seq    `json:"cursor"`    // highest seq acknowledged
	LastSeen int64  `json:"last_seen"` // unix ns of its last connect or ack
	Created  int64  `json:"created_at"`
}

// Ticket is a short-lived, single-use permission for a device to connect.
// ExpiresAt is on the state machine's clock.
type Ticket struct {
	UserID    string `json:"user_id"`
	ExpiresAt int64  `json:"expires_at"`
}

// Policy holds the rules of the state machine that an operator may tune. Every
// node of a cluster must run with the same Policy: Apply depends on it.
type Policy struct {
	// DeviceRetention is how long a device counts for retention after it was
	// last seen. A message is dropped once every device seen within this window
	// has acknowledged it. A user with no such device keeps messages until TTL.
	DeviceRetention time.Duration
	// IdempotencyWindow is how long an Idempotency-Key is remembered.
	IdempotencyWindow time.Duration
	// StatusRetention is how long a message's status is kept after its fate.
	StatusRetention time.Duration
	// MaxClockStep is how far one command may move the state machine's
	// clock forward (see "Clock" in the package doc); 0 means the
	// default. The leader proposes a Tick whenever the clock lags its own
	// by half of it, so that no real command ever needs a longer step.
	MaxClockStep time.Duration
}

// DefaultPolicy is the policy hubd runs with unless told otherwise.
var DefaultPolicy = Policy{
	DeviceRetention:   30 * 24 * time.Hour,
	IdempotencyWindow: 24 * time.Hour,
	StatusRetention:   7 * 24 * time.Hour,
	MaxClockStep:      30 * time.Second,
}
