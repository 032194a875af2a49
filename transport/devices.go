package transport

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/mailbox"
)

// What the device transports share: the hello that opens a session, the
// message object, and the reasons a session ends. docs/protocol.md,
// "Devices", is the contract.

// Refusals of the device transports.
var (
	errProtocol       = errors.New("protocol error")
	errTooBig         = errors.New("frame too large")
	errBadWait        = errors.New("bad wait")
	errRidWindow      = errors.New("rid out of window")
	errSessionUnknown = errors.New("unknown session")
)

// hello opens a session on every transport.
type hello struct {
	Ticket string       `json:"ticket"`
	Device string       `json:"device"`
	Ack    *mailbox.Seq `json:"ack"`
}

// welcome is what a session starts with.
type welcome struct {
	user    string      // the user the ticket named
	session string      // sid: a capability for poll and SSE sessions
	device  string      //
	from    mailbox.Seq // the session starts after this seq
	lastSeq mailbox.Seq // the newest seq of the stream when it opened
}

// openTimeout bounds opening a session: redeeming the ticket and touching
// the device, two raft round trips.
const openTimeout = 10 * time.Second

// openSession redeems the hello's ticket, records the device (moving its
// cursor to the hello's ack if that is ahead), and attaches a hub session
// that starts after the ack, or after the stored cursor when the hello has
// none. A refusal is errProtocol (malformed hello), mailbox.ErrTicketInvalid,
// or a cluster error; a hub that is shutting down is cluster.ErrClosed, to
// retry (on another node), not the going_away that ends an open session.
// Failures outside those are logged here.
func (s *Server) openSession(ctx context.Context, h hello, wake func()) (*hub.Session, welcome, error) {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	sess, wel, err := s.attach(ctx, h, wake)
	if errors.Is(err, hub.ErrClosed) {
		err = cluster.ErrClosed
	}
	if err != nil && reasonOf(err) == reasonInternal {
		s.log.Error("transport: open device session", slog.Any("err", err))
	}
	return sess, wel, err
}

func (s *Server) attach(ctx context.Context, h hello, wake func()) (*hub.Session, welcome, error) {
	if !mailbox.ValidDeviceID(h.Device) {
		return nil, welcome{}, withDetail(errProtocol, "device must be 1 to 64 characters of A-Z a-z 0-9 - _ . :")
	}
	if !mailbox.ValidToken(h.Ticket) {
		return nil, welcome{}, mailbox.ErrTicketInvalid
	}
	if err := s.ticketHeld(ctx, h.Ticket); err != nil {
		return nil, welcome{}, err // refused without a log entry (refuse.go)
	}
	res, err := s.cluster.Propose(ctx, &mailbox.Command{
		Kind:         mailbox.KindRedeemTicket,
		RedeemTicket: &mailbox.RedeemTicket{TicketHash: mailbox.Hash(h.Ticket)},
	})
	if err != nil {
		return nil, welcome{}, err
	}
	userID := res.Ticket.UserID
	var ack mailbox.Seq
	if h.Ack != nil {
		ack = *h.Ack
	}
	res, err = s.cluster.Propose(ctx, &mailbox.Command{
		Kind:        mailbox.KindTouchDevice,
		TouchDevice: &mailbox.TouchDevice{UserID: userID, DeviceID: h.Device, From: ack, MaxDevices: s.maxDevices()},
	})
	if err != nil {
		return nil, welcome{}, err
	}
	u := res.User
	from := res.Device.Cursor
	if h.Ack != nil {
		// An ack beyond the stream cannot be resumed from: the session
		// starts at the stream's end, and the welcome says so.
		from = min(ack, u.LastSeq)
	}
	sess, err := s.hub.Attach(userID, h.Device, from, wake)
	if err != nil {
		return nil, welcome{}, err
	}
	return sess, welcome{
		user:    userID,
		session: mailbox.NewToken(),
		device:  h.Device,
		from:    from,
		lastSeq: u.LastSeq,
	}, nil
}

// appendWelcome appends the welcome's fields of a WebSocket or an event
// stream, without braces: the sid, the welcome's fields and the ping interval.
func (s *Server) appendWelcome(b []byte, w welcome) []byte {
	b = append(b, `"session":`...)
	b = appendString(b, w.session)
	b = append(b, ',')
	b = appendWelcomeFields(b, w)
	b = append(b, `,"ping_interval":`...)
	return strconv.AppendInt(b, int64(s.cfg.PingInterval/time.Second), 10)
}

// appendWelcomeFields appends the fields every transport's welcome has,
// without braces.
func appendWelcomeFields(b []byte, w welcome) []byte {
	b = append(b, `"device":`...)
	b = appendString(b, w.device)
	b = append(b, `,"from":`...)
	b = strconv.AppendUint(b, uint64(w.from), 10)
	b = append(b, `,"last_seq":`...)
	b = strconv.AppendUint(b, uint64(w.lastSeq), 10)
	return b
}

// appendMsg appends the message object of docs/protocol.md.
func appendMsg(b []byte, m *mailbox.Message) []byte {
	b = append(b, `{"type":"msg","seq":`...)
	b = strconv.AppendUint(b, uint64(m.Seq), 10)
	b = append(b, `,"id":`...)
	b = appendString(b, m.ID)
	b = append(b, `,"mailbox":`...)
	b = appendString(b, m.MailboxID)
	if m.Topic != "" {
		b = append(b, `,"topic":`...)
		b = appendString(b, m.Topic)
	}
	b = append(b, `,"urgency":`...)
	b = appendString(b, string(m.Urgency))
	b = append(b, `,"ts":`...)
	b = appendTime(b, m.At)
	b = append(b, `,"expires_at":`...)
	b = appendTime(b, m.ExpiresAt)
	b = append(b, `,"data":`...)
	b = appendString(b, m.Data)
	return append(b, '}')
}

// wakeSignal is a session's wake callback for a transport that waits on a
// channel (a held long-poll, an event stream): a wake never blocks, and wakes
// that come while nobody waits fold into one.
type wakeSignal chan struct{}

func newWakeSignal() wakeSignal { return make(wakeSignal, 1) }

func (w wakeSignal) wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// endReason is how a session's end reads on the wire.
type endReason struct {
	code    string               // the reason's name: the poll/SSE error code and the close reason
	ws      websocket.StatusCode // the WebSocket close code
	message string
}

var (
	reasonProtocol      = endReason{"protocol_error", 4400, "protocol error"}
	reasonTooBig        = endReason{"message_too_big", websocket.StatusMessageTooBig, "frame over 8 KiB"}
	reasonTicketInvalid = endReason{"ticket_invalid", 4401, "invalid, expired or used ticket"}
	reasonUserRevoked   = endReason{"user_revoked", 4403, "the user was deleted"}
	reasonDeviceDeleted = endReason{"device_deleted", 4404, "the device was deleted"}
	reasonTooSlow       = endReason{"too_slow", 4408, "the device did not keep up; reconnect and resume"}
	reasonRestored      = endReason{"restored", 4409, "the hub's state was restored from a backup; reconnect and resume"}
	reasonQuota         = endReason{"quota_exceeded", 4413, "the user has as many devices as its quota allows"}
	reasonPingTimeout   = endReason{"ping_timeout", 4410, "nothing heard from the device"}
	reasonUnavailable   = endReason{"unavailable", 4503, "the node cannot serve this now; retry"}
	reasonGoingAway     = endReason{"going_away", websocket.StatusGoingAway, "the node is shutting down"}
	reasonInternal      = endReason{"internal", websocket.StatusInternalError, "internal error"}
)

// reasonOf maps why a session ended, or why it could not open, to its reason.
func reasonOf(err error) endReason {
	switch {
	case errors.Is(err, hub.ErrTooSlow):
		return reasonTooSlow
	case errors.Is(err, hub.ErrRestored):
		return reasonRestored
	case errors.Is(err, mailbox.ErrQuotaExceeded):
		return reasonQuota
	case errors.Is(err, hub.ErrUserDeleted), errors.Is(err, mailbox.ErrUserUnknown):
		return reasonUserRevoked
	case errors.Is(err, hub.ErrDeviceDeleted):
		return reasonDeviceDeleted
	case errors.Is(err, hub.ErrClosed), errors.Is(err, cluster.ErrClosed):
		return reasonGoingAway
	case errors.Is(err, errProtocol), errors.Is(err, mailbox.ErrInvalid):
		return reasonProtocol
	case errors.Is(err, mailbox.ErrTicketInvalid):
		return reasonTicketInvalid
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrNoQuorum),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return reasonUnavailable
	}
	return reasonInternal
}
