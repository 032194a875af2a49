package transport

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/notifyhub/hub/mailbox"
)

// bearer returns the credentials of an "Authorization: Bearer <cred>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	cred := strings.TrimSpace(h[len(prefix):])
	return cred, cred != ""
}

// authUser returns the user whose secret the request bears. A missing,
// malformed or wrong secret is errUnauthorized.
func (s *Server) authUser(r *http.Request) (mailbox.User, error) {
	secret, ok := bearer(r)
	if !ok || mailbox.SecretUser(secret) == "" {
		return mailbox.User{}, s.authFailed(r, errUnauthorized)
	}
	u, err := s.store.Authenticate(secret)
	if errors.Is(err, mailbox.ErrUserUnknown) && s.caughtUp(r) {
		u, err = s.store.Authenticate(secret) // made through another node a moment ago?
	}
	if errors.Is(err, mailbox.ErrUserUnknown) {
		return mailbox.User{}, s.authFailed(r, errUnauthorized)
	}
	return u, err
}

// authMailbox returns the mailbox whose token the request bears, revoked or
// not. A missing, malformed or unknown token is errUnauthorized.
func (s *Server) authMailbox(r *http.Request) (mailbox.Mailbox, error) {
	token, ok := bearer(r)
	if !ok || !mailbox.ValidToken(token) {
		return mailbox.Mailbox{}, s.authFailed(r, errUnauthorized)
	}
	mb, err := s.mailboxByToken(r, token)
	if errors.Is(err, mailbox.ErrTokenUnknown) {
		return mailbox.Mailbox{}, s.authFailed(r, errUnauthorized)
	}
	return mb, err
}

// mailboxByToken looks a token's mailbox up, catching up with the leader
// once if it is not here (made through another node a moment ago?).
func (s *Server) mailboxByToken(r *http.Request, token string) (mailbox.Mailbox, error) {
	mb, err := s.store.MailboxByToken(token)
	if errors.Is(err, mailbox.ErrTokenUnknown) && s.caughtUp(r) {
		mb, err = s.store.MailboxByToken(token)
	}
	return mb, err
}

// isAdmin reports whether the request bears the admin token. With no admin
// token configured, nobody is admin.
func (s *Server) isAdmin(r *http.Request) (present, ok bool) {
	cred, present := bearer(r)
	if !present || s.cfg.AdminToken == "" {
		return present, false
	}
	return true, subtle.ConstantTimeCompare([]byte(cred), []byte(s.cfg.AdminToken)) == 1
}
