package main

import (
	"net/http"
	"testing"
)

// TestWalkthrough is the README's curl walkthrough against a real hubd:
// register, make a mailbox, publish, read the status, revoke, see 410; then
// stop the node (cleanly, then with SIGKILL) and find the message again.
func TestWalkthrough(t *testing.T) {
	data := t.TempDir()
	hub := startHubd(t, data)

	user := register(t, hub)
	var mb struct {
		MailboxID string `json:"mailbox_id"`
		Token     string `json:"token"`
		PushURL   string `json:"push_url"`
	}
	if s := call(t, "POST", hub.url+"/v1/mailboxes", user.Secret, nil, `{"label":"my app"}`, &mb); s != http.StatusCreated {
		t.Fatalf("create mailbox: %d", s)
	}
	if mb.PushURL != hub.url+"/v1/push/"+mb.Token {
		t.Fatalf("push_url %q", mb.PushURL)
	}
	var msg struct {
		ID        string `json:"id"`
		ExpiresAt string `json:"expires_at"`
	}
	if s := call(t, "POST", mb.PushURL, "", map[string]string{"TTL": "3600", "Content-Type": "text/plain"}, "Hello, Alice", &msg); s != http.StatusCreated {
		t.Fatalf("publish: %d", s)
	}
	status := func(p *proc) string {
		t.Helper()
		var st struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		if s := call(t, "GET", p.url+"/v1/messages/"+msg.ID, mb.Token, nil, "", &st); s != http.StatusOK || st.ID != msg.ID {
			t.Fatalf("status: %d %+v", s, st)
		}
		return st.State
	}
	if st := status(hub); st != "pending" {
		t.Fatalf("state %q, want pending", st)
	}
	if s := call(t, "DELETE", mb.PushURL, "", nil, "", nil); s != http.StatusNoContent {
		t.Fatalf("revoke: %d", s)
	}
	var e apiError
	if s := call(t, "POST", mb.PushURL, "", map[string]string{"Content-Type": "text/plain"}, "too late", &e); s != http.StatusGone || e.Error.Code != "token_revoked" {
		t.Fatalf("publish after revoke: %d %+v", s, e)
	}
	if st := status(hub); st != "revoked" {
		t.Fatalf("state after revoke %q, want revoked", st)
	}

	// Ctrl-C, start again: all there.
	hub.stop()
	hub = startHubd(t, data)
	if st := status(hub); st != "revoked" {
		t.Fatalf("after a clean restart: %q", st)
	}
	// kill -9, start again: all there, and the revoked token stays revoked.
	hub.kill()
	hub = startHubd(t, data)
	if st := status(hub); st != "revoked" {
		t.Fatalf("after SIGKILL: %q", st)
	}
	if s := call(t, "POST", hub.url+"/v1/push/"+mb.Token, "", map[string]string{"Content-Type": "text/plain"}, "again", &e); s != http.StatusGone {
		t.Fatalf("publish to a revoked token after restart: %d", s)
	}
	hub.stop()
}

type user struct {
	ID     string `json:"user_id"`
	Secret string `json:"secret"`
}

func register(t *testing.T, p *proc) user {
	t.Helper()
	var u user
	if s := call(t, "POST", p.url+"/v1/users", "", nil, "", &u); s != http.StatusCreated || u.Secret == "" {
		t.Fatalf("register: %d %+v", s, u)
	}
	return u
}
