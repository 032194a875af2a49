package transport

import (
	"errors"
	"net/http"
	"unicode"
	"unicode/utf8"

	"github.com/notifyhub/hub/mailbox"
)

// maxLabelRunes bounds a mailbox's label. (Receipt URLs are bounded by
// receipts.MaxURLLen.)
const maxLabelRunes = 200

type createMailboxRequest struct {
	Label      string `json:"label"`
	ReceiptURL string `json:"receipt_url"`
}

type createMailboxResponse struct {
	MailboxID     string   `json:"mailbox_id"`
	Label         string   `json:"label"`
	Token         string   `json:"token"`
	PushURL       string   `json:"push_url"`
	ReceiptURL    string   `json:"receipt_url,omitempty"`
	ReceiptSecret string   `json:"receipt_secret"`
	CreatedAt     wireTime `json:"created_at"`
}

type mailboxJSON struct {
	MailboxID  string    `json:"mailbox_id"`
	Label      string    `json:"label"`
	ReceiptURL string    `json:"receipt_url,omitempty"`
	CreatedAt  wireTime  `json:"created_at"`
	Revoked    bool      `json:"revoked"`
	RevokedAt  *wireTime `json:"revoked_at,omitempty"`
}

type mailboxesResponse struct {
	Mailboxes []mailboxJSON `json:"mailboxes"`
	Next      string        `json:"next,omitempty"` // pass as after for the next page; absent on the last
}

func toMailboxJSON(mb mailbox.Mailbox) mailboxJSON {
	out := mailboxJSON{
		MailboxID:  mb.ID,
		Label:      mb.Label,
		ReceiptURL: mb.ReceiptURL,
		CreatedAt:  wireTime(mb.CreatedAt),
		Revoked:    mb.Revoked(),
	}
	if mb.Revoked() {
		t := wireTime(mb.RevokedAt)
		out.RevokedAt = &t
	}
	return out
}

// validLabel reports whether s may label a mailbox: 1 to 200 characters,
// none of them control characters.
func validLabel(s string) bool {
	if s == "" || utf8.RuneCountInString(s) > maxLabelRunes {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// pushURL is the absolute URL a publisher posts to: under the public URL
// when one is configured, else as this request reached us.
func (s *Server) pushURL(r *http.Request, token string) string {
	if s.publicURL != "" {
		return s.publicURL + "/v1/push/" + token
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/v1/push/" + token
}

// POST /v1/mailboxes
func (s *Server) handleCreateMailbox(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req createMailboxRequest
	if err := decodeJSON(w, r, userBodyLimit, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !validLabel(req.Label) {
		s.writeError(w, r, errBadLabel)
		return
	}
	if req.ReceiptURL != "" {
		if err := s.checkReceiptURL(r.Context(), req.ReceiptURL); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	id := mailbox.NewID()
	token := mailbox.NewToken()
	receiptSecret := mailbox.NewToken()
	res, err := s.propose(r, &mailbox.Command{
		Kind: mailbox.KindCreateMailbox,
		CreateMailbox: &mailbox.CreateMailbox{
			MailboxID:     id,
			UserID:        u.ID,
			Label:         req.Label,
			TokenHash:     mailbox.Hash(token),
			ReceiptURL:    req.ReceiptURL,
			ReceiptSecret: receiptSecret,
			MaxMailboxes:  s.maxMailboxes(),
		},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if res.Mailbox == nil {
		s.writeError(w, r, errors.New("transport: create mailbox: no mailbox in the result"))
		return
	}
	w.Header().Set("Location", s.pathPrefix+"/v1/mailboxes/"+id)
	w.Header().Set("Cache-Control", "no-store")
	s.writeJSON(w, r, http.StatusCreated, createMailboxResponse{
		MailboxID:     id,
		Label:         req.Label,
		Token:         token,
		PushURL:       s.pushURL(r, token),
		ReceiptURL:    req.ReceiptURL,
		ReceiptSecret: receiptSecret,
		CreatedAt:     wireTime(res.Mailbox.CreatedAt),
	})
}

// GET /v1/mailboxes?limit=&after=: a page of the user's mailboxes, by id.
func (s *Server) handleListMailboxes(w http.ResponseWriter, r *http.Request) {
	u, err := s.authUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after, limit, err := userPage(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mbs, err := s.store.UserMailboxes(u.ID, after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := mailboxesResponse{Mailboxes: make([]mailboxJSON, 0, len(mbs))}
	for _, mb := range mbs {
		out.Mailboxes = append(out.Mailboxes, toMailboxJSON(mb))
	}
	if len(mbs) == limit {
		out.Next = mbs[len(mbs)-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

// userMailbox returns the request's user and the mailbox named in the path,
// which must be theirs.
func (s *Server) userMailbox(r *http.Request) (mailbox.User, mailbox.Mailbox, error) {
	u, err := s.authUser(r)
	if err != nil {
		return u, mailbox.Mailbox{}, err
	}
	id := r.PathValue("id")
	if !mailbox.ValidID(id) {
		return u, mailbox.Mailbox{}, mailbox.ErrMailboxUnknown
	}
	mb, err := s.store.Mailbox(u.ID, id)
	if errors.Is(err, mailbox.ErrMailboxUnknown) && s.caughtUp(r) {
		mb, err = s.store.Mailbox(u.ID, id) // made through another node a moment ago?
	}
	return u, mb, err
}

// GET /v1/mailboxes/{id}
func (s *Server) handleGetMailbox(w http.ResponseWriter, r *http.Request) {
	_, mb, err := s.userMailbox(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, toMailboxJSON(mb))
}

// DELETE /v1/mailboxes/{id}: revoking is idempotent for the owner; a
// mailbox already revoked answers 204 again without a new log entry.
func (s *Server) handleRevokeMailbox(w http.ResponseWriter, r *http.Request) {
	u, mb, err := s.userMailbox(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !mb.Revoked() {
		_, err = s.propose(r, &mailbox.Command{
			Kind:          mailbox.KindRevokeMailbox,
			RevokeMailbox: &mailbox.RevokeMailbox{MailboxID: mb.ID, UserID: u.ID},
		})
		if err != nil && !errors.Is(err, mailbox.ErrTokenRevoked) {
			s.writeError(w, r, err)
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
