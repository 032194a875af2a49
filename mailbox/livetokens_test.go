package mailbox

import (
	"errors"
	"testing"
)

// TestTokenOpenForgetsOnClose: TokenOpen serves an open token from memory,
// and a revoke or a user's deletion is seen by the very next call, though
// the token was remembered open just before.
func TestTokenOpenForgetsOnClose(t *testing.T) {
	m := newMachine(t)
	alice, _ := m.user()
	_, tok := m.mailbox(alice)
	_, tok2 := m.mailbox(alice)
	for range 2 { // the second answer comes from memory
		if err := m.s.TokenOpen(tok); err != nil {
			t.Fatalf("open token: %v", err)
		}
	}
	if !m.s.live.has(string(Hash(tok))) {
		t.Fatal("an open token was not remembered")
	}
	if err := m.s.TokenOpen("made-up-token-that-no-mailbox-has"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("unknown token: %v", err)
	}
	m.must(&Command{Kind: KindRevokeMailbox, RevokeMailbox: &RevokeMailbox{TokenHash: Hash(tok)}})
	if err := m.s.TokenOpen(tok); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("after the revoke: %v, want ErrTokenRevoked", err)
	}
	if err := m.s.TokenOpen(tok2); err != nil {
		t.Fatalf("the other token: %v", err)
	}
	m.must(&Command{Kind: KindDeleteUser, DeleteUser: &DeleteUser{UserID: alice}})
	if err := m.s.TokenOpen(tok2); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("after the user's deletion: %v, want ErrTokenUnknown", err)
	}
}
