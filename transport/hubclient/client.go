// Package hubclient is the hub's client for publishing apps: publish (one or
// a batch) with retries that are safe across leader changes, revoke a
// mailbox token, read a message's status, long-poll receipts, and verify the
// signature of a receipt webhook.
//
// It depends on the standard library only, so an app links none of the
// hub's own packages. Its types mirror the wire format of docs/protocol.md.
//
// # Retries
//
// Publish and PublishBatch send an Idempotency-Key with every message (one
// is made when the Message has none) and retry, with the same key, when the
// hub cannot take the write now: a network error, 503 (no leader, no
// quorum, shutting down) or 429, waiting Retry-After or an exponential
// backoff with jitter. The hub stores a message once per key, so a retry
// after a lost answer returns the first message (Published.Replayed) and
// stores nothing new. Retries stop at Client.MaxAttempts or when ctx ends.
// Refusals (4xx) are returned at once as *Error.
package hubclient

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one hub (any node of a cluster: followers forward
// writes). Its zero value is not usable; make one with New. A Client is
// safe for concurrent use.
type Client struct {
	base string
	// HTTP is the client requests go through; New sets http.DefaultClient.
	HTTP *http.Client
	// MaxAttempts bounds the tries of one publish (first try included);
	// New sets 8.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the pause between tries when the hub
	// gave no Retry-After; New sets 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
}

// New returns a client of the hub at baseURL, such as "https://hub.example".
func New(baseURL string) *Client {
	return &Client{
		base:        strings.TrimRight(baseURL, "/"),
		HTTP:        http.DefaultClient,
		MaxAttempts: 8,
		MinBackoff:  100 * time.Millisecond,
		MaxBackoff:  5 * time.Second,
	}
}

// Error is a refusal by the hub: its HTTP status and the stable code of its
// JSON error body (docs/protocol.md lists them).
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration // from Retry-After, when the hub sent one
}

func (e *Error) Error() string {
	return fmt.Sprintf("hub: %d %s: %s", e.Status, e.Code, e.Message)
}

// Temporary reports whether the same request may succeed later: 503 and 429.
func (e *Error) Temporary() bool {
	return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests
}

// Urgency is RFC 8030's urgency of a message.
type Urgency string

// The urgencies.
const (
	UrgencyVeryLow Urgency = "very-low"
	UrgencyLow     Urgency = "low"
	UrgencyNormal  Urgency = "normal"
	UrgencyHigh    Urgency = "high"
)

// Message is one notification to publish.
type Message struct {
	Data string
	// TTL is how long the hub keeps the message for devices that are
	// offline, in whole seconds; 0 means the hub's default.
	TTL time.Duration
	// Ephemeral sends TTL 0: the devices connected now get it, or no one.
	Ephemeral bool
	// Topic, if set, replaces the mailbox's pending message with the same
	// topic (1 to 32 characters of A-Z a-z 0-9 - _).
	Topic   string
	Urgency Urgency
	// IdempotencyKey names the message for retries; empty makes a random
	// one, so that the client's own retries are safe. Set it to your own
	// id to make retries across process restarts safe too.
	IdempotencyKey string
}

// Published is a message the hub accepted.
type Published struct {
	ID        string
	ExpiresAt time.Time
	// Replayed is true when the key was seen before: this is the first
	// message, and nothing new was stored.
	Replayed bool
}

// Publish posts m to the mailbox of token.
func (c *Client) Publish(ctx context.Context, token string, m Message) (Published, error) {
	key := m.IdempotencyKey
	if key == "" {
		key = newKey()
	}
	var out Published
	err := c.retry(ctx, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/push/"+url.PathEscape(token), strings.NewReader(m.Data))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "text/plain; charset=utf-8")
		req.Header.Set("Idempotency-Key", key)
		setMessageHeaders(req.Header, m)
		return req, nil
	}, func(res *http.Response, body []byte) error {
		var p struct {
			ID        string    `json:"id"`
			ExpiresAt time.Time `json:"expires_at"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return fmt.Errorf("hubclient: publish answer %q: %w", body, err)
		}
		out = Published{ID: p.ID, ExpiresAt: p.ExpiresAt, Replayed: res.Header.Get("Idempotent-Replayed") == "true"}
		return nil
	})
	return out, err
}

func setMessageHeaders(h http.Header, m Message) {
	switch {
	case m.Ephemeral:
		h.Set("TTL", "0")
	case m.TTL > 0:
		h.Set("TTL", strconv.FormatInt(int64(m.TTL/time.Second), 10))
	}
	if m.Topic != "" {
		h.Set("Topic", m.Topic)
	}
	if m.Urgency != "" {
		h.Set("Urgency", string(m.Urgency))
	}
}

// BatchItem is one message of a batch, to the mailbox of Token.
type BatchItem struct {
	Token string
	Message
}

// BatchResult is one item's outcome: Err is an *Error when the hub refused
// that item (unknown or revoked token, bad field), and the others went on.
type BatchResult struct {
	Published
	Err error
}

// PublishBatch posts many messages in one request. The request is retried
// as a whole, each item with its key; each item has its own result.
func (c *Client) PublishBatch(ctx context.Context, items []BatchItem) ([]BatchResult, error) {
	type wireItem struct {
		Token          string  `json:"token"`
		Data           string  `json:"data"`
		TTL            *int64  `json:"ttl,omitempty"`
		Topic          string  `json:"topic,omitempty"`
		Urgency        Urgency `json:"urgency,omitempty"`
		IdempotencyKey string  `json:"idempotency_key"`
	}
	req := struct {
		Messages []wireItem `json:"messages"`
	}{Messages: make([]wireItem, len(items))}
	for i, it := range items {
		w := wireItem{Token: it.Token, Data: it.Data, Topic: it.Topic, Urgency: it.Urgency, IdempotencyKey: it.IdempotencyKey}
		if w.IdempotencyKey == "" {
			w.IdempotencyKey = newKey()
		}
		switch {
		case it.Ephemeral:
			w.TTL = new(int64)
		case it.TTL > 0:
			ttl := int64(it.TTL / time.Second)
			w.TTL = &ttl
		}
		req.Messages[i] = w
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("hubclient: encode batch: %w", err)
	}
	var out []BatchResult
	err = c.retry(ctx, func() (*http.Request, error) {
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v1/push", bytes.NewReader(body))
		if err == nil {
			r.Header.Set("Content-Type", "application/json")
		}
		return r, err
	}, func(_ *http.Response, b []byte) error {
		var res struct {
			Results []struct {
				Status    int        `json:"status"`
				ID        string     `json:"id"`
				ExpiresAt time.Time  `json:"expires_at"`
				Replayed  bool       `json:"replayed"`
				Error     *wireError `json:"error"`
			} `json:"results"`
		}
		if err := json.Unmarshal(b, &res); err != nil || len(res.Results) != len(items) {
			return fmt.Errorf("hubclient: batch answer with %d results for %d items: %v", len(res.Results), len(items), err)
		}
		out = make([]BatchResult, len(items))
		for i, r := range res.Results {
			if r.Error != nil {
				out[i].Err = &Error{Status: r.Status, Code: r.Error.Code, Message: r.Error.Message}
				continue
			}
			out[i].Published = Published{ID: r.ID, ExpiresAt: r.ExpiresAt, Replayed: r.Replayed}
		}
		return nil
	})
	return out, err
}

// Revoke revokes token: it never publishes again. A token already revoked
// is not an error, so a retried revoke succeeds.
func (c *Client) Revoke(ctx context.Context, token string) error {
	err := c.retry(ctx, func() (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodDelete, c.base+"/v1/push/"+url.PathEscape(token), nil)
	}, nil)
	var he *Error
	if errors.As(err, &he) && he.Code == "token_revoked" {
		return nil
	}
	return err
}

// Status is what the hub knows of one message.
type Status struct {
	ID          string    `json:"id"`
	MailboxID   string    `json:"mailbox_id"`
	Seq         uint64    `json:"seq"`
	Topic       string    `json:"topic,omitempty"`
	State       string    `json:"state"` // pending, delivered, expired, replaced, revoked
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	FinalAt     time.Time `json:"final_at"`
	DeliveredTo string    `json:"delivered_to,omitempty"`
	ReplacedBy  string    `json:"replaced_by,omitempty"`
	// Receipt is set once the state is final.
	Receipt *StatusReceipt `json:"receipt,omitempty"`
}

// StatusReceipt is a final message's receipt and, for a mailbox with a
// receipt URL, where its webhook stands: pending, sent or failed.
type StatusReceipt struct {
	ID              string    `json:"id"`
	Webhook         string    `json:"webhook,omitempty"`
	WebhookFailedAt time.Time `json:"webhook_failed_at"`
}

// Status reads a message's status with its mailbox's token. Another
// mailbox's message is a 404 *Error, like one that does not exist.
func (c *Client) Status(ctx context.Context, token, messageID string) (Status, error) {
	var st Status
	err := c.retry(ctx, func() (*http.Request, error) {
		return c.bearerRequest(ctx, http.MethodGet, "/v1/messages/"+url.PathEscape(messageID), token)
	}, func(_ *http.Response, b []byte) error { return json.Unmarshal(b, &st) })
	return st, err
}

// Receipts returns the mailbox's receipts after cursor (0: from the oldest
// the hub keeps), waiting up to wait (whole seconds, at most the hub's
// maximum) when there are none yet, and the cursor to pass next time.
func (c *Client) Receipts(ctx context.Context, token string, cursor uint64, wait time.Duration) ([]Receipt, uint64, error) {
	var res struct {
		Receipts []Receipt `json:"receipts"`
		Cursor   uint64    `json:"cursor"`
	}
	path := "/v1/receipts?cursor=" + strconv.FormatUint(cursor, 10) + "&wait=" + strconv.FormatInt(int64(wait/time.Second), 10)
	err := c.retry(ctx, func() (*http.Request, error) {
		return c.bearerRequest(ctx, http.MethodGet, path, token)
	}, func(_ *http.Response, b []byte) error { return json.Unmarshal(b, &res) })
	if err != nil {
		return nil, cursor, err
	}
	return res.Receipts, res.Cursor, nil
}

func (c *Client) bearerRequest(ctx context.Context, method, path, token string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err == nil {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req, err
}

type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 8 << 20

// retry sends the request made by mk until it is answered 2xx, refused, or
// out of tries, and hands a 2xx answer to ok (nil: ignore the body).
func (c *Client) retry(ctx context.Context, mk func() (*http.Request, error), ok func(*http.Response, []byte) error) error {
	var last error
	for attempt := 1; ; attempt++ {
		req, err := mk()
		if err != nil {
			return fmt.Errorf("hubclient: %w", err)
		}
		wait, err := c.once(req, ok)
		if err == nil {
			return nil
		}
		last = err
		var he *Error
		if errors.As(err, &he) && !he.Temporary() {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(last, ctx.Err())
		}
		if attempt >= c.MaxAttempts {
			return last
		}
		if wait <= 0 {
			wait = c.backoff(attempt)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return errors.Join(last, ctx.Err())
		}
	}
}

// once sends req; it returns the hub's Retry-After with a temporary error.
func (c *Client) once(req *http.Request, ok func(*http.Response, []byte) error) (time.Duration, error) {
	res, err := c.HTTP.Do(req)
	if err != nil {
		return 0, fmt.Errorf("hubclient: %s %s: %w", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return 0, fmt.Errorf("hubclient: %s %s: read answer: %w", req.Method, req.URL.Path, err)
	}
	if res.StatusCode/100 == 2 {
		if ok == nil {
			return 0, nil
		}
		return 0, ok(res, body)
	}
	he := &Error{Status: res.StatusCode}
	var eb struct {
		Error wireError `json:"error"`
	}
	if json.Unmarshal(body, &eb) == nil {
		he.Code, he.Message = eb.Error.Code, eb.Error.Message
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s >= 0 {
		he.RetryAfter = time.Duration(s) * time.Second
	}
	return he.RetryAfter, he
}

// backoff is MinBackoff doubled per failed try up to MaxBackoff, less up to
// half of it at random.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.MinBackoff
	for i := 1; i < attempt && d < c.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.MaxBackoff)
	return d - time.Duration(rand.Int64N(int64(d)/2+1))
}

// newKey is a random Idempotency-Key: 128 bits.
func newKey() string {
	var b [16]byte
	cryptorand.Read(b[:]) // never fails: crypto/rand crashes rather than return an error
	return base64.RawURLEncoding.EncodeToString(b[:])
}
