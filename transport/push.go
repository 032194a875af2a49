package transport

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/notifyhub/hub/mailbox"
)

// pushOptions are a publish's parameters besides its payload and token.
type pushOptions struct {
	ttl     int64 // seconds
	topic   string
	urgency mailbox.Urgency
	idemKey string
}

// Canonical header keys read on the hot path (http.Header is keyed by them).
const (
	hdrTTL         = "Ttl"
	hdrTopic       = "Topic"
	hdrUrgency     = "Urgency"
	hdrIdempotency = "Idempotency-Key"
	hdrContentType = "Content-Type"
)

// headerOnce returns the single value of header key. present is false when
// the header is absent; ok is false when it is repeated.
func headerOnce(h http.Header, key string) (v string, present, ok bool) {
	vs := h[key]
	switch len(vs) {
	case 0:
		return "", false, true
	case 1:
		return vs[0], true, true
	}
	return "", true, false
}

// parseTTL parses a TTL in whole decimal seconds, 0 to max. Only digits are
// accepted: no sign, no fraction, no spaces.
func parseTTL(s string, max int64) (int64, error) {
	if s == "" {
		return 0, errBadTTL
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errBadTTL
		}
		d := int64(c - '0')
		if d > max || n > (max-d)/10 {
			return 0, errBadTTL // over max, checked before it could overflow
		}
		n = n*10 + d
	}
	return n, nil
}

// parseUrgency parses an RFC 8030 urgency; "" is normal.
func parseUrgency(s string) (mailbox.Urgency, error) {
	if s == "" {
		return mailbox.UrgencyNormal, nil
	}
	u := mailbox.Urgency(s)
	if !u.Valid() {
		return "", errBadUrgency
	}
	return u, nil
}

// pushHeaders reads TTL, Topic, Urgency and Idempotency-Key. A header that
// is present must be valid, even when empty; a repeated one is refused.
func (s *Server) pushHeaders(h http.Header) (pushOptions, error) {
	o := pushOptions{ttl: s.defaultTTLSeconds, urgency: mailbox.UrgencyNormal}
	if v, present, ok := headerOnce(h, hdrTTL); !ok {
		return o, errBadTTL
	} else if present {
		ttl, err := parseTTL(v, s.maxTTLSeconds)
		if err != nil {
			return o, err
		}
		o.ttl = ttl
	}
	if v, present, ok := headerOnce(h, hdrTopic); !ok || present && !mailbox.ValidTopic(v) {
		return o, errBadTopic
	} else {
		o.topic = v
	}
	if v, present, ok := headerOnce(h, hdrUrgency); !ok || present && !mailbox.Urgency(v).Valid() {
		return o, errBadUrgency
	} else if present {
		o.urgency = mailbox.Urgency(v)
	}
	if v, present, ok := headerOnce(h, hdrIdempotency); !ok || present && !mailbox.ValidIdempotencyKey(v) {
		return o, errBadIdempotencyKey
	} else {
		o.idemKey = v
	}
	return o, nil
}

// payloadTypeOK reports whether a push body's Content-Type is accepted:
// absent, text/* or application/json.
func payloadTypeOK(h http.Header) bool {
	vs := h[hdrContentType]
	if len(vs) == 0 {
		return true
	}
	if len(vs) > 1 {
		return false
	}
	mt := mediaType(vs[0])
	if mt == "application/json" {
		return true
	}
	return len(mt) > len("text/") && mt[:len("text/")] == "text/"
}

// requestHash identifies a publish's content for its Idempotency-Key: the
// effective TTL, urgency and topic, then the payload.
func requestHash(payload []byte, o pushOptions) []byte {
	h := sha256.New()
	var meta [8 + 16 + 1 + 32 + 1]byte
	m := binary.BigEndian.AppendUint64(meta[:0], uint64(o.ttl))
	m = append(m, o.urgency...)
	m = append(m, 0)
	m = append(m, o.topic...)
	m = append(m, 0)
	h.Write(m)
	h.Write(payload)
	return h.Sum(nil)
}

// readPayload reads the request body into b (a pooled buffer of capacity
// PayloadLimit+1) and returns it.
func (s *Server) readPayload(w http.ResponseWriter, r *http.Request, b []byte) ([]byte, error) {
	limit := int64(s.cfg.PayloadLimit)
	if r.ContentLength > limit {
		return b, errPayloadTooLarge
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	for {
		if len(b) == cap(b) {
			return b, errPayloadTooLarge
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			clearReadDeadline(w) // limits.go
			return b, nil
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return b, errPayloadTooLarge
			}
			if isTimeout(err) { // limits.go: the body deadline passed
				return b, withDetail(errBodyTimeout, "the body did not arrive in time")
			}
			return b, withDetail(errBadJSON, "could not read the body")
		}
	}
}

// POST /v1/push/{token}: the publish hot path. It avoids reflection and
// encodes its answer by hand.
func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if !mailbox.ValidToken(token) {
		s.writeError(w, r, s.authFailed(r, mailbox.ErrTokenUnknown))
		return
	}
	o, err := s.pushHeaders(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !payloadTypeOK(r.Header) {
		s.writeError(w, r, withDetail(errUnsupportedMedia, "the payload must be text/* or application/json"))
		return
	}
	bp := s.bufs.Get().(*[]byte)
	payload, err := s.readPayload(w, r, (*bp)[:0])
	if err == nil && !utf8.Valid(payload) {
		err = errPayloadNotUTF8
	}
	if err != nil {
		s.bufs.Put(bp)
		s.writeError(w, r, err)
		return
	}
	item := mailbox.PublishItem{
		ID:             mailbox.NewID(),
		TokenHash:      mailbox.Hash(token),
		Data:           string(payload),
		TTL:            o.ttl,
		Topic:          o.topic,
		Urgency:        o.urgency,
		IdempotencyKey: o.idemKey,
	}
	if o.idemKey != "" {
		item.RequestHash = requestHash(payload, o)
	}
	s.bufs.Put(bp)
	// Refused here, not after a raft round (refuse.go).
	if err := s.pushable(r, token); err != nil {
		s.writeError(w, r, err)
		return
	}

	start := time.Now()
	out, err := s.cluster.Publish(r.Context(), []mailbox.PublishItem{item})
	if err == nil {
		s.m.commitSingle.Observe(time.Since(start).Seconds())
	}
	if err == nil && len(out) != 1 {
		err = errors.New("transport: publish: want 1 result, got " + strconv.Itoa(len(out)))
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res := out[0]
	if res.Err == nil && res.Status == nil {
		res.Err = errors.New("transport: publish: result without status")
	}
	if res.Err != nil {
		s.writeError(w, r, res.Err)
		return
	}
	h := w.Header()
	h["Location"] = []string{s.pathPrefix + "/v1/messages/" + res.Status.ID}
	if res.Duplicate {
		h["Idempotent-Replayed"] = replayedTrue
	}
	b := make([]byte, 0, 80)
	b = appendPublished(b, res.Status)
	writeRaw(w, http.StatusCreated, b)
}

var replayedTrue = []string{"true"}

// appendPublished appends "id" and "expires_at" fields, without braces.
func appendPublishedFields(b []byte, st *mailbox.MessageStatus) []byte {
	b = append(b, `"id":`...)
	b = appendString(b, st.ID)
	b = append(b, `,"expires_at":`...)
	return appendTime(b, st.ExpiresAt)
}

// appendPublished appends {"id":...,"expires_at":...}.
func appendPublished(b []byte, st *mailbox.MessageStatus) []byte {
	b = append(b, '{')
	b = appendPublishedFields(b, st)
	return append(b, '}')
}

type batchRequest struct {
	Messages []batchItem `json:"messages"`
}

type batchItem struct {
	Token          string          `json:"token"`
	Data           *string         `json:"data"`
	TTL            json.RawMessage `json:"ttl"`
	Topic          string          `json:"topic"`
	Urgency        string          `json:"urgency"`
	IdempotencyKey string          `json:"idempotency_key"`
}

// batchItemOptions validates one batch item the way handlePush validates
// headers and body.
func (s *Server) batchItemOptions(it *batchItem) (pushOptions, error) {
	o := pushOptions{ttl: s.defaultTTLSeconds, urgency: mailbox.UrgencyNormal}
	if !mailbox.ValidToken(it.Token) {
		return o, mailbox.ErrTokenUnknown
	}
	if it.Data == nil {
		return o, withDetail(errBadBatch, `"data" is required`)
	}
	if len(*it.Data) > s.cfg.PayloadLimit {
		return o, errPayloadTooLarge
	}
	if len(it.TTL) > 0 && string(it.TTL) != "null" {
		ttl, err := parseTTL(string(it.TTL), s.maxTTLSeconds)
		if err != nil {
			return o, err
		}
		o.ttl = ttl
	}
	if it.Topic != "" {
		if !mailbox.ValidTopic(it.Topic) {
			return o, errBadTopic
		}
		o.topic = it.Topic
	}
	u, err := parseUrgency(it.Urgency)
	if err != nil {
		return o, err
	}
	o.urgency = u
	if it.IdempotencyKey != "" {
		if !mailbox.ValidIdempotencyKey(it.IdempotencyKey) {
			return o, errBadIdempotencyKey
		}
		o.idemKey = it.IdempotencyKey
	}
	return o, nil
}

// POST /v1/push: many publishes in one request and one cluster call. Each
// item gets its own result; the request fails as a whole only when the body
// is malformed or the cluster cannot take the write.
func (s *Server) handleBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	if err := decodeJSON(w, r, s.batchBodyLimit, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Messages == nil {
		s.writeError(w, r, withDetail(errBadJSON, `"messages" is required`))
		return
	}
	if len(req.Messages) > s.cfg.MaxBatch {
		s.writeError(w, r, withDetail(errBatchTooLarge,
			"at most "+strconv.Itoa(s.cfg.MaxBatch)+" messages in one batch"))
		return
	}

	errs := make([]error, len(req.Messages))
	opts := make([]pushOptions, len(req.Messages))
	for i := range req.Messages {
		opts[i], errs[i] = s.batchItemOptions(&req.Messages[i])
		if isCredentialRefusal(errs[i]) { // a malformed token
			errs[i] = s.authFailed(r, errs[i])
		}
	}
	// Items over a rate limit are refused here (ratelimit.go).
	s.limitBatchItems(w, r, req.Messages, errs)
	// Items to tokens that open nothing are refused here, not after a raft
	// round (refuse.go).
	if err := s.pushableItems(r, req.Messages, errs); err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]mailbox.PublishItem, 0, len(req.Messages))
	slot := make([]int, 0, len(req.Messages)) // slot[i] = the message that items[i] is
	for i := range req.Messages {
		it, o := &req.Messages[i], opts[i]
		if errs[i] != nil {
			continue
		}
		item := mailbox.PublishItem{
			ID:             mailbox.NewID(),
			TokenHash:      mailbox.Hash(it.Token),
			Data:           *it.Data,
			TTL:            o.ttl,
			Topic:          o.topic,
			Urgency:        o.urgency,
			IdempotencyKey: o.idemKey,
		}
		if o.idemKey != "" {
			item.RequestHash = requestHash([]byte(*it.Data), o)
		}
		items = append(items, item)
		slot = append(slot, i)
	}

	published := make([]*mailbox.PublishedItem, len(req.Messages))
	if len(items) > 0 {
		start := time.Now()
		out, err := s.cluster.Publish(r.Context(), items)
		if err == nil {
			s.m.commitBatch.Observe(time.Since(start).Seconds())
		}
		if err == nil && len(out) != len(items) {
			err = errors.New("transport: batch: want " + strconv.Itoa(len(items)) +
				" results, got " + strconv.Itoa(len(out)))
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		for j := range out {
			published[slot[j]] = &out[j]
		}
	}

	b := make([]byte, 0, 16+len(req.Messages)*80)
	b = append(b, `{"results":[`...)
	for i := range req.Messages {
		if i > 0 {
			b = append(b, ',')
		}
		err := errs[i]
		p := published[i]
		if err == nil {
			switch {
			case p.Err != nil:
				err = p.Err
			case p.Status == nil:
				err = errors.New("transport: batch: result without status")
			}
		}
		if err != nil {
			we, known := lookup(err)
			if !known {
				s.log.LogAttrs(r.Context(), slog.LevelError, "internal error in batch item",
					slog.Int("item", i), slog.Any("err", err))
			}
			b = append(b, `{"status":`...)
			b = strconv.AppendInt(b, int64(we.status), 10)
			b = append(b, `,"error":`...)
			b = appendErrorBody(b, we.code, wireMessage(err, we))
			b = append(b, '}')
			continue
		}
		b = append(b, `{"status":201,`...)
		b = appendPublishedFields(b, p.Status)
		if p.Duplicate {
			b = append(b, `,"replayed":true`...)
		}
		b = append(b, '}')
	}
	b = append(b, `]}`...)
	writeRaw(w, http.StatusOK, b)
}

// DELETE /v1/push/{token}: the app revokes its own token.
func (s *Server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	if !mailbox.ValidToken(token) {
		s.writeError(w, r, s.authFailed(r, mailbox.ErrTokenUnknown))
		return
	}
	// Look first, so that an unknown or revoked token costs no log entry.
	mb, err := s.mailboxByToken(r, token)
	if err == nil && mb.Revoked() {
		err = mailbox.ErrTokenRevoked
	}
	if isCredentialRefusal(err) {
		err = s.authFailed(r, err)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	_, err = s.propose(r, &mailbox.Command{
		Kind:          mailbox.KindRevokeMailbox,
		RevokeMailbox: &mailbox.RevokeMailbox{TokenHash: mailbox.Hash(token)},
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type statusJSON struct {
	ID          string        `json:"id"`
	MailboxID   string        `json:"mailbox_id"`
	Seq         mailbox.Seq   `json:"seq"`
	Topic       string        `json:"topic,omitempty"`
	State       mailbox.State `json:"state"`
	CreatedAt   wireTime      `json:"created_at"`
	ExpiresAt   wireTime      `json:"expires_at"`
	FinalAt     *wireTime     `json:"final_at,omitempty"`
	DeliveredTo string        `json:"delivered_to,omitempty"`
	ReplacedBy  string        `json:"replaced_by,omitempty"`
	Receipt     *receiptJSON  `json:"receipt,omitempty"`
}

// GET /v1/messages/{id}, with the mailbox token as Bearer. A revoked token
// still reads its messages' statuses: that is how an app learns they ended
// "revoked".
func (s *Server) handleMessageStatus(w http.ResponseWriter, r *http.Request) {
	mb, err := s.authMailbox(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := r.PathValue("id")
	if !mailbox.ValidID(id) {
		s.writeError(w, r, mailbox.ErrMessageUnknown)
		return
	}
	st, err := s.store.Status(id)
	if errors.Is(err, mailbox.ErrMessageUnknown) && s.caughtUp(r) {
		st, err = s.store.Status(id) // published through another node a moment ago?
	}
	if err == nil && st.MailboxID != mb.ID {
		err = mailbox.ErrMessageUnknown // another mailbox's: indistinguishable from none
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := statusJSON{
		ID:          st.ID,
		MailboxID:   st.MailboxID,
		Seq:         st.Seq,
		Topic:       st.Topic,
		State:       st.State,
		CreatedAt:   wireTime(st.At),
		ExpiresAt:   wireTime(st.ExpiresAt),
		DeliveredTo: st.DeliveredTo,
		ReplacedBy:  st.ReplacedBy,
		Receipt:     statusReceipt(st),
	}
	if st.FinalAt != 0 {
		t := wireTime(st.FinalAt)
		out.FinalAt = &t
	}
	s.writeJSON(w, r, http.StatusOK, out)
}
