package transport

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/mailbox"
)

// ReceiptFeed wakes GET /v1/receipts long-polls; *receipts.Dispatcher
// satisfies it. Changed returns a channel closed at the mailbox's next
// receipt, and a release function called when the poll stops waiting.
type ReceiptFeed interface {
	Changed(mailboxID string) (<-chan struct{}, func())
}

// Limits of GET /v1/receipts.
const (
	receiptsDefaultLimit = 100
	receiptsMaxLimit     = 1000
	// receiptURLCheckTimeout bounds the DNS lookup of a new receipt URL.
	receiptURLCheckTimeout = 5 * time.Second
)

var (
	errBadCursor        = errors.New("bad cursor")
	errReceiptURLUnres  = errors.New("receipt_url does not resolve")
	errReceiptURLHTTP   = errors.New("receipt_url is not https")
	errReceiptURLBlocks = errors.New("receipt_url is blocked")
	errReceiptURLLookup = errors.New("receipt_url's host could not be looked up now")
)

// checkReceiptURL checks a new mailbox's receipt URL under the configured
// policy, resolving its host. The dispatcher checks the address again on
// every dial.
func (s *Server) checkReceiptURL(ctx context.Context, raw string) error {
	ctx, cancel := context.WithTimeout(ctx, receiptURLCheckTimeout)
	defer cancel()
	err := s.cfg.ReceiptURLs.Check(ctx, raw)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, receipts.ErrNotHTTPS):
		return errReceiptURLHTTP
	case errors.Is(err, receipts.ErrUnresolvable):
		return errReceiptURLUnres
	case errors.Is(err, receipts.ErrLookupFailed):
		// A DNS timeout or SERVFAIL says nothing about the URL: the app
		// asks again (503, Retry-After), rather than being told for good
		// that its URL is bad.
		return errReceiptURLLookup
	case errors.Is(err, receipts.ErrBlockedAddress):
		return errReceiptURLBlocks
	}
	return errBadReceiptURL
}

// receiptPolls ends the held GET /v1/receipts requests when the node
// shuts down.
type receiptPolls struct {
	once sync.Once
	done chan struct{}
}

// BeginClose answers every held GET /v1/receipts with what it has, now and
// from now on. Register it with http.Server.RegisterOnShutdown: Shutdown
// waits for plain requests, and a held poll would keep it waiting. Close
// calls it too.
func (s *Server) BeginClose() {
	s.receiptPolls.once.Do(func() { close(s.receiptPolls.done) })
}

type receiptsResponse struct {
	Receipts []receipts.JSON `json:"receipts"`
	Cursor   uint64          `json:"cursor"`
}

// GET /v1/receipts?cursor=N&wait=S&limit=L, with the mailbox token as
// Bearer: the mailbox's receipts after cursor, oldest first. With wait, an
// empty answer waits up to that many seconds for the next receipt. The
// answer's cursor is the seq of its last receipt (or the cursor given), to
// pass back next time. A revoked token still reads: the last receipts of a
// revoked mailbox say "revoked".
func (s *Server) handleReceipts(w http.ResponseWriter, r *http.Request) {
	mb, err := s.authMailbox(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	var cursor uint64
	if v := q.Get("cursor"); v != "" || q.Has("cursor") {
		cursor, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.writeError(w, r, errBadCursor)
			return
		}
	}
	limit := receiptsDefaultLimit
	if q.Has("limit") {
		limit, err = strconv.Atoi(q.Get("limit"))
		if err != nil || limit < 1 || limit > receiptsMaxLimit {
			s.writeError(w, r, withDetail(mailbox.ErrInvalid, "limit must be 1 to "+strconv.Itoa(receiptsMaxLimit)))
			return
		}
	}
	var wait time.Duration
	if q.Has("wait") {
		n, err := strconv.ParseUint(q.Get("wait"), 10, 32)
		if err != nil || time.Duration(n) > s.cfg.PollWaitMax/time.Second {
			s.writeError(w, r, withDetail(errBadWait, "wait must be whole seconds from 0 to "+
				strconv.FormatInt(int64(s.cfg.PollWaitMax/time.Second), 10)))
			return
		}
		wait = time.Duration(n) * time.Second
	}
	if s.cfg.Receipts == nil {
		wait = 0
	}

	var timer *time.Timer
	if wait > 0 {
		release, err := s.acquireReceiptWait(r, mb.ID)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer release()
		timer = time.NewTimer(wait)
		defer timer.Stop()
	}
	for {
		var changed <-chan struct{}
		release := func() {}
		if timer != nil {
			changed, release = s.cfg.Receipts.Changed(mb.ID) // before the read: nothing slips between
		}
		rs, err := s.store.Receipts(mb.ID, cursor, limit)
		if err != nil {
			release()
			s.writeError(w, r, err)
			return
		}
		if len(rs) > 0 || timer == nil {
			release()
			s.writeReceipts(w, r, rs, cursor)
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			timer = nil
		case <-s.receiptPolls.done:
			timer = nil // the node is shutting down: answer what there is
		case <-r.Context().Done():
			release()
			return
		}
		release()
	}
}

func (s *Server) writeReceipts(w http.ResponseWriter, r *http.Request, rs []mailbox.Receipt, cursor uint64) {
	out := receiptsResponse{Receipts: make([]receipts.JSON, len(rs)), Cursor: cursor}
	for i, rc := range rs {
		out.Receipts[i] = receipts.Wire(rc)
		out.Cursor = rc.Seq
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusOK, out)
}

// receiptJSON is a final message's receipt in GET /v1/messages/{id}.
type receiptJSON struct {
	ID              string    `json:"id"`
	Webhook         string    `json:"webhook,omitempty"`
	WebhookFailedAt *wireTime `json:"webhook_failed_at,omitempty"`
}

// statusReceipt is st's receipt on the wire, nil while st is pending.
func statusReceipt(st mailbox.MessageStatus) *receiptJSON {
	if st.Receipt == 0 {
		return nil
	}
	out := &receiptJSON{ID: st.ReceiptID(), Webhook: string(st.Webhook)}
	if st.WebhookFailedAt != 0 {
		t := wireTime(st.WebhookFailedAt)
		out.WebhookFailedAt = &t
	}
	return out
}
