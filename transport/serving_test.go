package transport_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/transport"
)

// TestPublicURL: with a public URL, push_url and the Locations the hub
// hands out are built from it, not from the Host the request came with.
func TestPublicURL(t *testing.T) {
	for _, tc := range []struct{ public, wantPush, wantLoc string }{
		{"", "", "/v1/messages/"}, // "" checks push_url against the request's host below
		{"https://hub.example", "https://hub.example/v1/push/", "/v1/messages/"},
		{"https://example.com/hub/", "https://example.com/hub/v1/push/", "/hub/v1/messages/"},
	} {
		t.Run(tc.public, func(t *testing.T) {
			cfg := openConfig()
			cfg.PublicURL = tc.public
			h := startHub(t, cfg)
			_, secret := h.register(t)
			mb := h.newMailbox(t, secret, "app")
			want := tc.wantPush
			if want == "" {
				want = h.srv.URL + "/v1/push/"
			}
			if mb.PushURL != want+mb.Token {
				t.Fatalf("push_url %q, want %q", mb.PushURL, want+mb.Token)
			}
			r := h.expect(t, http.StatusCreated, "POST", "/v1/push/"+mb.Token, nil, "hi")
			if loc := r.header.Get("Location"); !strings.HasPrefix(loc, tc.wantLoc) {
				t.Fatalf("Location %q, want it under %q", loc, tc.wantLoc)
			}
		})
	}
}

func TestCheckPublicURL(t *testing.T) {
	for _, bad := range []string{"hub.example", "ftp://hub.example", "https://", "https://hub.example/?a=1", "https://u:p@hub.example", "https://hub.example/#x"} {
		if _, err := transport.CheckPublicURL(bad); err == nil {
			t.Errorf("CheckPublicURL(%q) accepted it", bad)
		}
	}
	for _, good := range []string{"https://hub.example", "http://127.0.0.1:8080/", "https://example.com/hub"} {
		if _, err := transport.CheckPublicURL(good); err != nil {
			t.Errorf("CheckPublicURL(%q): %v", good, err)
		}
	}
}

// TestHandlerSplit: the public handler serves the public API and not the
// operators' routes; the internal handler serves those and nothing else.
func TestHandlerSplit(t *testing.T) {
	cfg := openConfig()
	cfg.AdminToken = "admin-secret"
	h := startHub(t, cfg)
	pub := httptest.NewServer(h.api.PublicHandler())
	t.Cleanup(pub.Close)
	internal := httptest.NewServer(h.api.InternalHandler())
	t.Cleanup(internal.Close)

	get := func(base, path string, auth bool) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", base+path, nil)
		if auth {
			req.Header.Set("Authorization", "Bearer admin-secret")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s%s: %v", base, path, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	for _, tc := range []struct {
		path          string
		pub, internal int
	}{
		{"/metrics", 404, 200},
		{"/admin", 404, 200},
		{"/admin/v1/status", 404, 200},
		{"/admin/v1/members", 404, 200},
		{"/healthz", 200, 200},
		{"/readyz", 200, 200},
		{"/v1/hub.js", 200, 404},
		{"/", 200, 404},
	} {
		if got := get(pub.URL, tc.path, true); got != tc.pub {
			t.Errorf("public GET %s: %d, want %d", tc.path, got, tc.pub)
		}
		if got := get(internal.URL, tc.path, true); got != tc.internal {
			t.Errorf("internal GET %s: %d, want %d", tc.path, got, tc.internal)
		}
	}
	// The public API works on the public handler.
	if got := get(pub.URL, "/v1/mailboxes", false); got != http.StatusUnauthorized {
		t.Errorf("public GET /v1/mailboxes without credentials: %d, want 401", got)
	}
}
