package cluster

import (
	"context"
	"errors"

	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/mailbox"
)

// The wire form of what a leader answers a forwarded call: the results of
// mailbox commands, with their errors as codes, so that a follower hands
// its caller the same sentinels (and the transport the same HTTP answer) as
// the leader would have.

// wireErrors names every sentinel an answer may carry. A new sentinel of
// mailbox or cluster needs a row here (TestWireErrorsCoverMailbox checks
// mailbox's); an error outside the table crosses as its text only, and a
// caller sees it as an internal error.
var wireErrors = map[string]error{
	"user_unknown":         mailbox.ErrUserUnknown,
	"user_exists":          mailbox.ErrUserExists,
	"mailbox_unknown":      mailbox.ErrMailboxUnknown,
	"mailbox_exists":       mailbox.ErrMailboxExists,
	"token_unknown":        mailbox.ErrTokenUnknown,
	"token_revoked":        mailbox.ErrTokenRevoked,
	"idempotency_conflict": mailbox.ErrIdempotencyConflict,
	"message_unknown":      mailbox.ErrMessageUnknown,
	"device_unknown":       mailbox.ErrDeviceUnknown,
	"ack_beyond_stream":    mailbox.ErrAckBeyondStream,
	"ticket_invalid":       mailbox.ErrTicketInvalid,
	"invalid":              mailbox.ErrInvalid,
	"payload_too_large":    mailbox.ErrPayloadTooLarge,
	"ttl_too_large":        mailbox.ErrTTLTooLarge,
	"change_too_large":     mailbox.ErrChangeTooLarge,
	"restoring":            mailbox.ErrRestoring,
	"quota_exceeded":       mailbox.ErrQuotaExceeded,
	"bad_command":          mailbox.ErrBadCommand,
	"bad_snapshot":         mailbox.ErrBadSnapshot,
	"not_leader":           ErrNotLeader,
	"no_quorum":            ErrNoQuorum,
	"closed":               ErrClosed,
	"member_exists":        ErrMemberExists,
	"member_unknown":       ErrMemberUnknown,
	"last_voter":           ErrLastVoter,
	"membership_busy":      ErrMembershipBusy,
	"bad_member":           ErrBadMember,
	"disk_full":            diskguard.ErrDiskFull,
	"bad_secret":           ErrBadSecret,
	"deadline":             context.DeadlineExceeded,
	"canceled":             context.Canceled,
}

// wireError is an error as it crosses between nodes.
type wireError struct {
	Code    string `json:"code,omitempty"` // a key of wireErrors; "" for an error outside it
	Message string `json:"message"`
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	we := &wireError{Message: err.Error()}
	// The most specific sentinel wins: ErrNoQuorum also wraps a deadline.
	for _, code := range wireOrder {
		if errors.Is(err, wireErrors[code]) {
			we.Code = code
			break
		}
	}
	return we
}

// wireOrder is the order toWire tries the sentinels in: cluster's first,
// since they may wrap a context error.
var wireOrder = func() []string {
	first := []string{"not_leader", "no_quorum", "closed", "member_exists", "member_unknown", "last_voter", "membership_busy", "bad_member", "bad_secret"}
	seen := map[string]bool{}
	for _, c := range first {
		seen[c] = true
	}
	out := first
	for c := range wireErrors {
		if !seen[c] {
			out = append(out, c)
		}
	}
	return out
}()

// remoteError is an error that came from another node: its text, and the
// sentinel it wrapped there.
type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

func (we *wireError) err() error {
	if we == nil {
		return nil
	}
	return &remoteError{msg: we.Message, sentinel: wireErrors[we.Code]}
}

// wireResult is a mailbox.Result on the wire. The embedded Result carries
// the fields without errors as they are; the fields with errors are
// shadowed by their wire forms.
type wireResult struct {
	*mailbox.Result
	Err       *wireError      `json:"Err"`
	Published []wirePublished `json:"Published"`
	Refused   []*wireError    `json:"Refused"`
}

type wirePublished struct {
	Err       *wireError             `json:"err,omitempty"`
	Status    *mailbox.MessageStatus `json:"status,omitempty"`
	Duplicate bool                   `json:"duplicate,omitempty"`
}

func resultToWire(res *mailbox.Result) wireResult {
	w := wireResult{Result: res, Err: toWire(res.Err)}
	for _, p := range res.Published {
		w.Published = append(w.Published, wirePublished{Err: toWire(p.Err), Status: p.Status, Duplicate: p.Duplicate})
	}
	for _, e := range res.Refused {
		w.Refused = append(w.Refused, toWire(e))
	}
	return w
}

func (w *wireResult) result() mailbox.Result {
	var res mailbox.Result
	if w.Result != nil {
		res = *w.Result
	}
	res.Err = w.Err.err()
	res.Published = nil
	for _, p := range w.Published {
		res.Published = append(res.Published, mailbox.PublishedItem{Err: p.Err.err(), Status: p.Status, Duplicate: p.Duplicate})
	}
	res.Refused = nil
	for _, e := range w.Refused {
		res.Refused = append(res.Refused, e.err())
	}
	return res
}

// answer is the body of a leader's answer to a forwarded command.
type answer struct {
	Index  uint64      `json:"index"` // the raft index the follower waits for before it answers
	Result *wireResult `json:"result,omitempty"`
	Error  *wireError  `json:"error,omitempty"`
}
