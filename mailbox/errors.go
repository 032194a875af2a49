package mailbox

import "errors"

// Refusals. Apply returns them inside a Result (wrapped with context); reads
// return them directly. The transport maps each to a stable wire code.
var (
	// ErrUserUnknown: no user has that id, or the secret does not match.
	// Both read the same to a caller, so nothing tells which ids exist.
	ErrUserUnknown = errors.New("unknown user or wrong secret")
	// ErrUserExists: a user with that id was already created.
	ErrUserExists = errors.New("user already exists")
	// ErrMailboxUnknown: no mailbox with that id belongs to the user.
	ErrMailboxUnknown = errors.New("unknown mailbox")
	// ErrMailboxExists: a mailbox with that id or token already exists.
	ErrMailboxExists = errors.New("mailbox already exists")
	// ErrTokenUnknown: no mailbox has that token.
	ErrTokenUnknown = errors.New("unknown mailbox token")
	// ErrTokenRevoked: the token's mailbox was revoked; it never publishes again.
	ErrTokenRevoked = errors.New("mailbox token revoked")
	// ErrIdempotencyConflict: the Idempotency-Key was used with another request.
	ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")
	// ErrMessageUnknown: no message with that id is known (to this caller).
	ErrMessageUnknown = errors.New("unknown message")
	// ErrDeviceUnknown: the user has no device with that id.
	ErrDeviceUnknown = errors.New("unknown device")
	// ErrAckBeyondStream: an ack names a seq the stream has not reached.
	ErrAckBeyondStream = errors.New("ack beyond the end of the stream")
	// ErrTicketInvalid: the ticket is unknown, expired or already used.
	ErrTicketInvalid = errors.New("invalid, expired or used ticket")
	// ErrInvalid: a field of a command or request is malformed.
	ErrInvalid = errors.New("invalid request")
	// ErrPayloadTooLarge: a payload is over the configured limit.
	ErrPayloadTooLarge = errors.New("payload too large")
	// ErrTTLTooLarge: a TTL is over the configured maximum.
	ErrTTLTooLarge = errors.New("ttl over the maximum")
	// ErrChangeTooLarge: the command would write more than one badger
	// transaction holds (about a hundred thousand keys), such as deleting
	// a user with a very long stream. It is refused whole, on every node
	// alike, rather than stopping the node on an entry it can never apply.
	ErrChangeTooLarge = errors.New("change too large to apply in one step")
	// ErrQuotaExceeded: the user has as many mailboxes or devices as its
	// quota allows.
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrRestoring: a restore is under way (Seal): publishing waits for it.
	ErrRestoring = errors.New("a restore is under way")
)
