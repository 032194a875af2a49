package transport

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/diskguard"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// Refusals made by the transport itself, before anything reaches the log.
// The sentinels of mailbox and cluster are mapped by the same table.
var (
	errBadJSON           = errors.New("malformed JSON body")
	errUnsupportedMedia  = errors.New("unsupported media type")
	errRequestTooLarge   = errors.New("request body too large")
	errPayloadTooLarge   = errors.New("payload too large")
	errPayloadNotUTF8    = errors.New("payload is not valid UTF-8")
	errBadTTL            = errors.New("bad TTL")
	errBadTopic          = errors.New("bad Topic")
	errBadUrgency        = errors.New("bad Urgency")
	errBadIdempotencyKey = errors.New("bad Idempotency-Key")
	errBadLabel          = errors.New("bad label")
	errBadReceiptURL     = errors.New("bad receipt_url")
	errBadBatch          = errors.New("bad batch")
	errBatchTooLarge     = errors.New("too many messages in batch")
	errUnauthorized      = errors.New("unauthorized")
	errRegistrationShut  = errors.New("registration closed")
	errNotFound          = errors.New("not found")
	errMethodNotAllowed  = errors.New("method not allowed")
	errNotReady          = errors.New("not ready")
	errBadPage           = errors.New("bad page")
)

// wireError is one row of the error table: what a client sees for a sentinel.
type wireError struct {
	err     error
	status  int
	code    string // stable: clients switch on it
	message string // for humans; may change
	retry   bool   // send Retry-After: 1
}

// errorTable is the only mapping from errors to HTTP responses. Rows are
// matched in order with errors.Is; docs/protocol.md lists the same rows.
var errorTable = []wireError{
	// Request shape.
	{errBadJSON, http.StatusBadRequest, "bad_json", "the body is not the JSON this endpoint expects", false},
	{errUnsupportedMedia, http.StatusUnsupportedMediaType, "unsupported_media_type", "unsupported Content-Type", false},
	{errBodyTimeout, http.StatusRequestTimeout, "body_timeout", "the request body did not arrive in time", false},
	{errRequestTooLarge, http.StatusRequestEntityTooLarge, "request_too_large", "the request body is over the limit", false},
	{errPayloadTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large", "the payload is over the limit", false},
	{mailbox.ErrPayloadTooLarge, http.StatusRequestEntityTooLarge, "payload_too_large", "the payload is over the limit", false},
	{errPayloadNotUTF8, http.StatusBadRequest, "payload_not_utf8", "the payload is not valid UTF-8", false},
	{errBadTTL, http.StatusBadRequest, "bad_ttl", "TTL must be whole seconds within the allowed range", false},
	{mailbox.ErrTTLTooLarge, http.StatusBadRequest, "bad_ttl", "TTL must be whole seconds within the allowed range", false},
	{mailbox.ErrChangeTooLarge, http.StatusRequestEntityTooLarge, "change_too_large", "the change touches more data than one step may hold", false},
	{errBadTopic, http.StatusBadRequest, "bad_topic", "Topic must be 1 to 32 characters of A-Z a-z 0-9 - _", false},
	{errBadUrgency, http.StatusBadRequest, "bad_urgency", "Urgency must be very-low, low, normal or high", false},
	{errBadIdempotencyKey, http.StatusBadRequest, "bad_idempotency_key", "Idempotency-Key must be 1 to 255 printable ASCII characters", false},
	{errBadLabel, http.StatusBadRequest, "bad_label", "label must be 1 to 200 characters without control characters", false},
	{errBadReceiptURL, http.StatusBadRequest, "bad_receipt_url", "receipt_url must be an absolute http or https URL", false},
	{errReceiptURLHTTP, http.StatusBadRequest, "bad_receipt_url", "receipt_url must be https", false},
	{errReceiptURLUnres, http.StatusBadRequest, "bad_receipt_url", "receipt_url's host does not resolve", false},
	{errReceiptURLBlocks, http.StatusBadRequest, "receipt_url_blocked", "receipt_url resolves to a loopback, private or otherwise blocked address", false},
	{errReceiptURLLookup, http.StatusServiceUnavailable, "receipt_url_unresolved", "receipt_url's host could not be looked up now; retry", true},
	{errBadCursor, http.StatusBadRequest, "bad_cursor", "cursor must be a receipt seq (a whole number)", false},
	{errBadBatch, http.StatusBadRequest, "bad_request", "the batch item is malformed", false},
	{errBatchTooLarge, http.StatusRequestEntityTooLarge, "batch_too_large", "too many messages in one batch", false},
	{errBadPage, http.StatusBadRequest, "bad_page", "limit must be 1 to 1000, and after a next value of a previous page", false},
	{mailbox.ErrInvalid, http.StatusBadRequest, "bad_request", "the request is malformed", false},

	// Who is asking.
	{errUnauthorized, http.StatusUnauthorized, "unauthorized", "missing or wrong credentials", false},
	{mailbox.ErrUserUnknown, http.StatusUnauthorized, "unauthorized", "missing or wrong credentials", false},
	{errRegistrationShut, http.StatusForbidden, "registration_closed", "registration needs the admin token", false},
	{mailbox.ErrQuotaExceeded, http.StatusForbidden, "quota_exceeded", "the user holds as many mailboxes or devices as its quota allows", false},

	// What they ask about.
	{errNotFound, http.StatusNotFound, "not_found", "not found", false},
	{mailbox.ErrMailboxUnknown, http.StatusNotFound, "not_found", "no such mailbox", false},
	{mailbox.ErrMessageUnknown, http.StatusNotFound, "not_found", "no such message", false},
	{mailbox.ErrDeviceUnknown, http.StatusNotFound, "not_found", "no such device", false},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed", false},
	{mailbox.ErrTokenUnknown, http.StatusNotFound, "token_unknown", "no mailbox has this token", false},
	{mailbox.ErrTokenRevoked, http.StatusGone, "token_revoked", "this mailbox token was revoked", false},
	{mailbox.ErrIdempotencyConflict, http.StatusConflict, "idempotency_conflict", "Idempotency-Key was used with a different request", false},
	{mailbox.ErrUserExists, http.StatusConflict, "conflict", "already exists", false},
	{mailbox.ErrMailboxExists, http.StatusConflict, "conflict", "already exists", false},
	// The device transports (WebSocket, poll, SSE).
	{mailbox.ErrTicketInvalid, http.StatusUnauthorized, "ticket_invalid", "invalid, expired or used ticket", false},
	{mailbox.ErrAckBeyondStream, http.StatusBadRequest, "ack_beyond_stream", "ack beyond the end of the stream", false},
	{hub.ErrAckBeyondSent, http.StatusBadRequest, "ack_beyond_sent", "ack beyond what this session sent", false},
	{hub.ErrAckBackwards, http.StatusBadRequest, "ack_backwards", "ack below an earlier ack of this session", false},
	{errProtocol, http.StatusBadRequest, "bad_request", "the hello or request is malformed", false},
	{errBadWait, http.StatusBadRequest, "bad_wait", "wait must be whole seconds from 0 to the maximum", false},
	{errRidWindow, http.StatusBadRequest, "rid_out_of_window", "rid is neither a repeat of the last two nor the next", false},
	{errSessionUnknown, http.StatusNotFound, "session_unknown", "no such session", false},
	{hub.ErrTooSlow, http.StatusGone, "too_slow", "the device did not keep up; reconnect and resume", false},
	{hub.ErrRestored, http.StatusGone, "restored", "the hub's state was restored from a backup; reconnect and resume", false},
	{hub.ErrUserDeleted, http.StatusGone, "user_revoked", "the user was deleted", false},
	{hub.ErrDeviceDeleted, http.StatusGone, "device_deleted", "the device was deleted", false},
	{hub.ErrClosed, http.StatusGone, "going_away", "the node is shutting down; reconnect", false},

	// Limits (ratelimit.go): Retry-After comes from the bucket, not the table.
	{errRateLimited, http.StatusTooManyRequests, "rate_limited", "too many requests; retry after the Retry-After seconds", false},

	// The cluster.
	{errTooManyWaits, http.StatusTooManyRequests, "too_many_waits", "too many held waits; retry later", true},
	{errNotReady, http.StatusServiceUnavailable, "not_ready", "the node is not ready", false},
	{cluster.ErrNotLeader, http.StatusServiceUnavailable, "not_leader", "no leader to take the write; retry", true},
	{cluster.ErrNoQuorum, http.StatusServiceUnavailable, "no_quorum", "no quorum to commit the write; retry", true},
	{mailbox.ErrRestoring, http.StatusServiceUnavailable, "restoring", "a restore from a backup is under way; retry", true},
	{cluster.ErrClosed, http.StatusServiceUnavailable, "unavailable", "the node is shutting down; retry", true},
	{diskguard.ErrDiskFull, http.StatusInsufficientStorage, "disk_full", "the node's disk is nearly full; writes are refused until space is freed", true},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", "the write timed out; retry", true},
	{context.Canceled, http.StatusServiceUnavailable, "unavailable", "the request was cancelled; retry", true},

	// Operators (admin.go).
	{errAdminDisabled, http.StatusForbidden, "admin_disabled", "no admin token is configured on this node", false},
	{errNotClustered, http.StatusServiceUnavailable, "not_clustered", "this node runs without the cluster admin interface", false},
	{cluster.ErrMemberExists, http.StatusConflict, "member_exists", "a member with this id, raft address or API address exists", false},
	{cluster.ErrMemberUnknown, http.StatusNotFound, "member_unknown", "no such member", false},
	{cluster.ErrLastVoter, http.StatusConflict, "last_voter", "the last voter cannot be removed", false},
	{cluster.ErrMembershipBusy, http.StatusServiceUnavailable, "membership_busy", "another membership change is in progress; retry", true},
	{cluster.ErrBadMember, http.StatusBadRequest, "bad_member", "the member id or an address is malformed", false},
	{cluster.ErrBadSecret, http.StatusUnauthorized, "bad_secret", "wrong or missing cluster secret", false},
	{mailbox.ErrBadSnapshot, http.StatusBadRequest, "bad_backup", "the backup is not a hub backup, or it is damaged", false},
}

// internalError is what an error outside the table becomes.
var internalError = wireError{status: http.StatusInternalServerError, code: "internal", message: "internal error"}

// detailError carries a message for the client that is safe to show (made by
// the transport from the client's own input), instead of the table's.
type detailError struct {
	err    error
	detail string
}

func (e *detailError) Error() string { return e.err.Error() + ": " + e.detail }
func (e *detailError) Unwrap() error { return e.err }

// withDetail wraps sentinel err with a message the client sees.
func withDetail(err error, detail string) error { return &detailError{err: err, detail: detail} }

// lookup returns err's row of the table, or internalError.
func lookup(err error) (wireError, bool) {
	for _, we := range errorTable {
		if errors.Is(err, we.err) {
			return we, true
		}
	}
	return internalError, false
}

// wireMessage is the message the client sees for err, given its row.
func wireMessage(err error, we wireError) string {
	var de *detailError
	if errors.As(err, &de) && de.detail != "" {
		return de.detail
	}
	return we.message
}

// writeError writes err as the error body: the one way a handler refuses.
// Errors outside the table are logged and become 500 "internal"; their text
// never reaches the client.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	we, known := lookup(err)
	if !known {
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	h := w.Header()
	if we.retry {
		h.Set("Retry-After", "1")
	}
	if we.status == http.StatusUnauthorized && we.code == "unauthorized" {
		h.Set("WWW-Authenticate", `Bearer realm="hub"`)
	}
	b := make([]byte, 0, 128)
	b = appendErrorObject(b, we.code, wireMessage(err, we))
	writeRaw(w, we.status, b)
}

// appendErrorObject appends {"error":{"code":...,"message":...}}.
func appendErrorObject(b []byte, code, message string) []byte {
	b = append(b, `{"error":`...)
	b = appendErrorBody(b, code, message)
	return append(b, '}')
}

// appendErrorBody appends {"code":...,"message":...}.
func appendErrorBody(b []byte, code, message string) []byte {
	b = append(b, `{"code":`...)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	return append(b, '}')
}
