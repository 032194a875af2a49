package mailbox

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
)

// Identifiers and secrets are made by the proposer, before a command enters
// the log (Apply must not draw random numbers). Ids use the URL-safe base64
// alphabet without padding, so they never contain '/' and sort as bytes.

// newRandom returns n random bytes, URL-safe base64 encoded.
func newRandom(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand panics rather than return an error
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewID returns a new id for a user, mailbox or message: 96 random bits.
func NewID() string { return newRandom(12) }

// NewToken returns a new mailbox token or connect ticket: 256 random bits.
func NewToken() string { return newRandom(32) }

// NewSecret returns a new secret for the user: the user id, a dot and 256
// random bits. The id inside lets the hub find the user's hash, and then
// compare in constant time.
func NewSecret(userID string) string { return userID + "." + newRandom(32) }

// SecretUser returns the user id a secret names, or "" if it names none.
func SecretUser(secret string) string {
	id, _, ok := strings.Cut(secret, ".")
	if !ok || !ValidID(id) {
		return ""
	}
	return id
}

// Hash is the one-way hash of a token, secret or ticket, as stored.
func Hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// hashEqual compares two hashes in constant time.
func hashEqual(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// ValidID reports whether s looks like an id made by NewID.
func ValidID(s string) bool { return len(s) == 16 && urlSafe(s) }

// ValidToken reports whether s looks like a token made by NewToken.
func ValidToken(s string) bool { return len(s) == 43 && urlSafe(s) }

// ValidDeviceID reports whether s may name a device: 1 to 64 characters of
// letters, digits, '.', '_', '-' and ':'.
func ValidDeviceID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isURLSafe(c) && c != '.' && c != ':' {
			return false
		}
	}
	return true
}

// ValidTopic reports whether s may be a topic: as RFC 8030 says, at most 32
// characters of the URL-safe base64 alphabet.
func ValidTopic(s string) bool { return len(s) >= 1 && len(s) <= 32 && urlSafe(s) }

// ValidIdempotencyKey reports whether s may be an Idempotency-Key: 1 to 255
// printable ASCII characters.
func ValidIdempotencyKey(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func urlSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isURLSafe(s[i]) {
			return false
		}
	}
	return true
}

func isURLSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}
