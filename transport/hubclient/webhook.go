package hubclient

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader is the header of a receipt webhook that carries its
// signature: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">", keyed
// with the mailbox's receipt_secret.
const SignatureHeader = "Hub-Signature"

// DefaultTolerance is the replay window: a signature whose time is further
// than this from the receiver's clock is refused.
const DefaultTolerance = 5 * time.Minute

// ErrSignature means a webhook's signature is missing, malformed, wrong, or
// outside the replay window.
var ErrSignature = errors.New("hubclient: bad receipt signature")

// Receipt tells the app the fate of one of its messages. A message gets
// exactly one, but it may be delivered more than once: drop duplicates by
// ID. Seq orders a mailbox's receipts.
type Receipt struct {
	ID         string    `json:"id"`
	Seq        uint64    `json:"seq"`
	MessageID  string    `json:"message_id"`
	MailboxID  string    `json:"mailbox_id"`
	Status     string    `json:"status"` // delivered, expired, replaced, revoked
	At         time.Time `json:"at"`
	DeviceID   string    `json:"device_id,omitempty"`   // delivered: the device that acked first
	ReplacedBy string    `json:"replaced_by,omitempty"` // replaced: the newer message's id
}

// VerifySignature checks a webhook's Hub-Signature header against its raw
// body and the mailbox's receipt secret, with DefaultTolerance around now.
func VerifySignature(secret, header string, body []byte) error {
	return VerifySignatureAt(secret, header, body, time.Now(), DefaultTolerance)
}

// VerifySignatureAt is VerifySignature with the receiver's clock and
// replay window given.
func VerifySignatureAt(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("%w: malformed header", ErrSignature)
	}
	if d := now.Sub(time.Unix(t, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: timestamp %d is outside the replay window", ErrSignature, t)
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range sigs {
		got, err := hex.DecodeString(s)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no matching v1 signature", ErrSignature)
}

// maxWebhookBody bounds the body ReadWebhook reads: a batch of 100 receipts
// is about 30 KiB.
const maxWebhookBody = 1 << 20

// MailboxHeader names the mailbox whose receipts a webhook carries, so that
// a receiver serving many mailboxes picks the secret before it parses.
const MailboxHeader = "Hub-Mailbox"

// ReadWebhook reads a receipt webhook request, verifies its signature with
// the receipt secret that secretOf returns for its mailbox (false: unknown
// mailbox), and returns its receipts, oldest first. Answer 2xx once they
// are stored: anything else makes the hub retry.
func ReadWebhook(r *http.Request, secretOf func(mailboxID string) (string, bool)) ([]Receipt, error) {
	mb := r.Header.Get(MailboxHeader)
	secret, ok := secretOf(mb)
	if !ok {
		return nil, fmt.Errorf("%w: unknown mailbox %q", ErrSignature, mb)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil {
		return nil, fmt.Errorf("hubclient: read webhook: %w", err)
	}
	if len(body) > maxWebhookBody {
		return nil, fmt.Errorf("hubclient: webhook body over %d bytes", maxWebhookBody)
	}
	if err := VerifySignature(secret, r.Header.Get(SignatureHeader), body); err != nil {
		return nil, err
	}
	var b struct {
		Receipts []Receipt `json:"receipts"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		return nil, fmt.Errorf("hubclient: decode webhook: %w", err)
	}
	for _, rc := range b.Receipts {
		if rc.MailboxID != mb {
			return nil, fmt.Errorf("hubclient: webhook of mailbox %s carries a receipt of %s", mb, rc.MailboxID)
		}
	}
	return b.Receipts, nil
}
