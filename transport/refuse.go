package transport

import (
	"context"
	"errors"
	"net/http"

	"github.com/notifyhub/hub/mailbox"
)

// Refusals from local state. A publish to a token this node does not know,
// a hello with a ticket it does not hold, a call with a wrong user secret:
// each would be refused by the state machine anyway, but only after it was
// proposed, fsynced on a quorum and applied everywhere. A stranger could
// fill every node's disk that way for free. So each is looked up in this
// node's store first, and refused here. A follower's store may trail the
// leader (something made a moment ago through another node), so a miss is
// final only after the follower caught up (consistency.go; coalesced, so a
// flood of made-up tokens costs a few heartbeat rounds, not one each). The
// state machine still has the last word: a token revoked between the look
// and the apply is refused there.

// authFailed is where every refusal of a credential passes (unknown or
// revoked token, wrong secret, bad ticket), so that counting or limiting
// failed authentications has one place to hook into. It returns err. r is
// nil for a WebSocket hello, whose upgrade request is over by then.
func (s *Server) authFailed(r *http.Request, err error) error {
	s.rates.failed(r, err) // ratelimit.go
	return err
}

// pushable reports why token cannot be published to, or nil: an unknown
// token is mailbox.ErrTokenUnknown (404), a revoked one
// mailbox.ErrTokenRevoked (410). A follower that cannot catch up does not
// refuse: the publish goes to the log, which decides (or answers 503).
func (s *Server) pushable(r *http.Request, token string) error {
	err := s.store.TokenOpen(token)
	if errors.Is(err, mailbox.ErrTokenUnknown) {
		again, final := s.afterMiss(r.Context())
		if !final {
			return nil
		}
		if again {
			err = s.store.TokenOpen(token)
		}
	}
	if isCredentialRefusal(err) {
		return s.authFailed(r, err)
	}
	return err
}

// pushableItems checks the tokens of a batch's items that passed
// validation (errs[i] == nil), setting errs[i] for those that cannot be
// published to. A token is looked up once however many items name it, and
// all misses share one catch-up. A store failure is returned whole.
func (s *Server) pushableItems(r *http.Request, msgs []batchItem, errs []error) error {
	known := make(map[string]error) // token -> nil, ErrTokenUnknown or ErrTokenRevoked
	look := s.store.TokenOpen
	missed := false
	for i := range msgs {
		if errs[i] != nil {
			continue
		}
		tok := msgs[i].Token
		if _, ok := known[tok]; ok {
			continue
		}
		err := look(tok)
		if err != nil && !isCredentialRefusal(err) {
			return err
		}
		known[tok] = err
		missed = missed || errors.Is(err, mailbox.ErrTokenUnknown)
	}
	again, final := true, true
	if missed {
		again, final = s.afterMiss(r.Context())
	}
	if missed && !final {
		// This follower could not catch up: leave the misses to the log.
		for tok, err := range known {
			if errors.Is(err, mailbox.ErrTokenUnknown) {
				known[tok] = nil
			}
		}
	}
	if missed && again {
		for tok, err := range known {
			if !errors.Is(err, mailbox.ErrTokenUnknown) {
				continue
			}
			err = look(tok)
			if err != nil && !isCredentialRefusal(err) {
				return err
			}
			known[tok] = err
		}
	}
	for i := range msgs {
		if errs[i] == nil {
			if err := known[msgs[i].Token]; err != nil {
				errs[i] = s.authFailed(r, err)
			}
		}
	}
	return nil
}

// ticketHeld refuses a hello's ticket that this node does not hold (never
// issued, used, or expired and collected) with mailbox.ErrTicketInvalid,
// after catching up once. A ticket that is held is redeemed through the
// log, which refuses it if it expired or was used meanwhile; so is one that
// a follower that cannot catch up does not hold.
func (s *Server) ticketHeld(ctx context.Context, ticket string) error {
	h := mailbox.Hash(ticket)
	_, err := s.store.TicketByHash(h)
	if errors.Is(err, mailbox.ErrTicketInvalid) {
		again, final := s.afterMiss(ctx)
		if !final {
			return nil
		}
		if again {
			_, err = s.store.TicketByHash(h)
		}
	}
	if errors.Is(err, mailbox.ErrTicketInvalid) {
		return s.authFailed(nil, err)
	}
	return err
}

// isCredentialRefusal reports whether err says a token opens nothing here.
func isCredentialRefusal(err error) bool {
	return errors.Is(err, mailbox.ErrTokenUnknown) || errors.Is(err, mailbox.ErrTokenRevoked)
}
