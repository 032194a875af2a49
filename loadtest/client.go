package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// client is the load generator's side of the HTTP API: setup calls and
// publishes, spread round-robin over the nodes.
type client struct {
	nodes []string
	http  *http.Client
	next  atomic.Uint64
}

func newClient(nodes []string, conns int) *client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = conns * len(nodes)
	tr.MaxIdleConnsPerHost = conns
	return &client{nodes: nodes, http: &http.Client{Transport: tr}}
}

// node returns the next node's base URL.
func (c *client) node() string {
	return c.nodes[int(c.next.Add(1)-1)%len(c.nodes)]
}

// apiError is a non-2xx answer: its status and the hub's error code.
type apiError struct {
	Status     int
	Code       string
	RetryAfter bool
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d %s", e.Status, e.Code) }

// retryable reports whether a request that failed with err may succeed if
// repeated (on another node, or after the cluster elected a leader).
func retryable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// call sends one request to base and decodes a 2xx JSON answer into out.
func (c *client) call(ctx context.Context, method, url string, header http.Header, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, url, err)
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return &apiError{Status: res.StatusCode, Code: e.Error.Code, RetryAfter: res.Header.Get("Retry-After") != ""}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer %.100q: %w", method, url, b, err)
		}
	}
	return nil
}

func bearer(cred string) http.Header {
	return http.Header{"Authorization": {"Bearer " + cred}, "Content-Type": {"application/json"}}
}

// setupCall is call on the next node, retried while the cluster is
// electing (setup happens before the clock of a run starts).
func (c *client) setupCall(ctx context.Context, method, path string, header http.Header, body []byte, out any) error {
	var err error
	for attempt := range 20 {
		if err = c.call(ctx, method, c.node()+path, header, body, out); err == nil || !retryable(err) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 50 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// newUser registers a user with a mailbox.
func (c *client) newUser(ctx context.Context, adminToken string) (*user, error) {
	var h http.Header
	if adminToken != "" {
		h = bearer(adminToken)
	}
	var u struct {
		UserID string `json:"user_id"`
		Secret string `json:"secret"`
	}
	if err := c.setupCall(ctx, "POST", "/v1/users", h, nil, &u); err != nil {
		return nil, err
	}
	var mb struct {
		Token string `json:"token"`
	}
	if err := c.setupCall(ctx, "POST", "/v1/mailboxes", bearer(u.Secret), []byte(`{"label":"hubload"}`), &mb); err != nil {
		return nil, err
	}
	return &user{id: u.UserID, secret: u.Secret, token: mb.Token}, nil
}

// ticket issues a connect ticket for u at node base.
func (c *client) ticket(ctx context.Context, base string, u *user) (string, error) {
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if err := c.call(ctx, "POST", base+"/v1/tickets", bearer(u.secret), nil, &tk); err != nil {
		return "", fmt.Errorf("ticket: %w", err)
	}
	return tk.Ticket, nil
}

// publish posts one message to u's mailbox on the next node. With a key it
// is safe to repeat, and it is repeated (on the next node) while the answer
// is retryable and ctx lasts.
func (c *client) publish(ctx context.Context, u *user, payload []byte, key string) error {
	h := http.Header{"Content-Type": {"text/plain"}}
	if key != "" {
		h["Idempotency-Key"] = []string{key}
	}
	for attempt := 0; ; attempt++ {
		err := c.call(ctx, "POST", c.node()+"/v1/push/"+u.token, h, payload, nil)
		if err == nil || key == "" || !retryable(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff(attempt)):
		}
	}
}

// batchItem is one message of a batch publish.
type batchItem struct {
	Token string `json:"token"`
	Data  string `json:"data"`
	Key   string `json:"idempotency_key,omitempty"`
}

// publishBatch posts items in one request and returns each item's status
// (201 when stored), retrying the whole batch while it is refused as a whole
// with a retryable error (its items carry keys, so a retry stores nothing
// twice).
func (c *client) publishBatch(ctx context.Context, items []batchItem) ([]int, error) {
	body, err := json.Marshal(map[string]any{"messages": items})
	if err != nil {
		return nil, err
	}
	var out struct {
		Results []struct {
			Status int `json:"status"`
		} `json:"results"`
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for attempt := 0; ; attempt++ {
		err = c.call(ctx, "POST", c.node()+"/v1/push", h, body, &out)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff(attempt)):
		}
	}
	if err != nil {
		return nil, fmt.Errorf("batch publish: %w", err)
	}
	if len(out.Results) != len(items) {
		return nil, fmt.Errorf("batch publish: %d results for %d items", len(out.Results), len(items))
	}
	statuses := make([]int, len(items))
	for i, r := range out.Results {
		statuses[i] = r.Status
	}
	return statuses, nil
}

// backoff is the wait before retry number attempt (from 0): 25 ms doubling
// to 400 ms.
func backoff(attempt int) time.Duration {
	return 25 * time.Millisecond << min(attempt, 4)
}
