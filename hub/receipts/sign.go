package receipts

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// The headers of a webhook: its signature, and the mailbox whose receipts
// it carries (so that a receiver picks the secret before it parses).
const (
	SignatureHeader = "Hub-Signature"
	MailboxHeader   = "Hub-Mailbox"
)

// Sign returns the Hub-Signature value of body sent at t with the mailbox's
// receipt secret: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">".
// The time is inside the MAC, so a receiver that refuses old timestamps
// (docs/receipts.md: five minutes) refuses replays. v1 names the scheme, so
// that another can be added beside it later.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// JSON is a receipt on the wire: in webhook bodies and in GET /v1/receipts.
type JSON struct {
	ID         string `json:"id"`
	Seq        uint64 `json:"seq"`
	MessageID  string `json:"message_id"`
	MailboxID  string `json:"mailbox_id"`
	Status     string `json:"status"`
	At         string `json:"at"`
	DeviceID   string `json:"device_id,omitempty"`
	ReplacedBy string `json:"replaced_by,omitempty"`
}

// timeLayout is the API's: RFC 3339, UTC, milliseconds.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// Wire returns r as it goes on the wire.
func Wire(r mailbox.Receipt) JSON {
	return JSON{
		ID:         r.ID(),
		Seq:        r.Seq,
		MessageID:  r.MessageID,
		MailboxID:  r.MailboxID,
		Status:     string(r.State),
		At:         time.Unix(0, r.At).UTC().Format(timeLayout),
		DeviceID:   r.DeviceID,
		ReplacedBy: r.ReplacedBy,
	}
}

// Body is a webhook's body: one mailbox's receipts, oldest first.
type Body struct {
	Receipts []JSON `json:"receipts"`
}
