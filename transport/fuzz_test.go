package transport

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/notifyhub/hub/mailbox"
)

// FuzzPushHeaders checks the parsing of TTL, Topic, Urgency and
// Idempotency-Key against a plain reading of the rules: whatever the bytes,
// the parser never panics, accepts exactly the valid headers, and refuses
// with a 400 from the error table.
func FuzzPushHeaders(f *testing.F) {
	for _, seed := range []struct {
		ttl, topic, urgency, key string
		present                  uint8 // bit 0 TTL, 1 Topic, 2 Urgency, 3 Idempotency-Key; bit 4 repeats TTL
	}{
		{"60", "meeting-42", "high", "order-7", 0xf},
		{"", "", "", "", 0},
		{"0", "", "", "", 1},
		{"3600", "", "", "", 1},
		{"3601", "", "", "", 1},
		{"-1", "", "", "", 1},
		{"+5", "", "", "", 1},
		{"1.5", "", "", "", 1},
		{"00000000000000000000000000060", "", "", "", 1},
		{"99999999999999999999", "", "", "", 1},
		{"5", "", "", "", 0x11},
		{"", "a.b", "", "", 2},
		{"", "", "", "", 2},
		{"", "0123456789012345678901234567890123", "", "", 2},
		{"", "", "very-low", "", 4},
		{"", "", "High", "", 4},
		{"", "", "", "a b", 8},
		{"", "", "", "clé", 8},
	} {
		f.Add(seed.ttl, seed.topic, seed.urgency, seed.key, seed.present)
	}
	s := New(Config{DefaultTTL: 10 * time.Minute, MaxTTL: time.Hour}, nil, nil, nil)
	f.Cleanup(func() { s.Close(context.Background()) })
	const maxTTL = 3600
	f.Fuzz(func(t *testing.T, ttl, topic, urgency, key string, present uint8) {
		h := http.Header{}
		if present&1 != 0 {
			h.Add("TTL", ttl)
		}
		if present&16 != 0 {
			h.Add("TTL", ttl)
		}
		if present&2 != 0 {
			h.Set("Topic", topic)
		}
		if present&4 != 0 {
			h.Set("Urgency", urgency)
		}
		if present&8 != 0 {
			h.Set("Idempotency-Key", key)
		}
		o, err := s.pushHeaders(h)

		// The rules, read plainly.
		var want error
		wantTTL := int64(600)
		if present&1 != 0 || present&16 != 0 {
			n, perr := strconv.ParseUint(ttl, 10, 64)
			switch {
			case present&1 != 0 && present&16 != 0, perr != nil, n > maxTTL:
				want = errBadTTL
			default:
				wantTTL = int64(n)
			}
		}
		if want == nil && present&2 != 0 && !mailbox.ValidTopic(topic) {
			want = errBadTopic
		}
		if want == nil && present&4 != 0 && !mailbox.Urgency(urgency).Valid() {
			want = errBadUrgency
		}
		if want == nil && present&8 != 0 && !mailbox.ValidIdempotencyKey(key) {
			want = errBadIdempotencyKey
		}

		if !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Fatalf("headers %q: got %v, want %v", h, err, want)
		}
		if err != nil {
			if we, ok := lookup(err); !ok || we.status != http.StatusBadRequest {
				t.Fatalf("%v maps to %d %s", err, we.status, we.code)
			}
			return
		}
		if o.ttl != wantTTL || o.ttl < 0 || o.ttl > maxTTL {
			t.Fatalf("TTL %q: got %d, want %d", ttl, o.ttl, wantTTL)
		}
		if !o.urgency.Valid() {
			t.Fatalf("urgency %q", o.urgency)
		}
		if o.topic != "" && !mailbox.ValidTopic(o.topic) || present&2 == 0 && o.topic != "" {
			t.Fatalf("topic %q", o.topic)
		}
		if present&8 != 0 && o.idemKey != key || present&8 == 0 && o.idemKey != "" {
			t.Fatalf("key %q from %q", o.idemKey, key)
		}
	})
}

func TestParseTTLBounds(t *testing.T) {
	for _, c := range []struct {
		s   string
		max int64
		ok  bool
	}{
		{"0", 0, true}, {"1", 0, false}, {"9", 9, true}, {"10", 9, false},
		{"9223372036854775807", 1<<63 - 1, true}, {"9223372036854775808", 1<<63 - 1, false},
		{"99999999999999999999", 1<<63 - 1, false},
	} {
		_, err := parseTTL(c.s, c.max)
		if (err == nil) != c.ok {
			t.Errorf("parseTTL(%q, %d): %v", c.s, c.max, err)
		}
	}
}

func TestAppendString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           `"plain"`,
		`q"b\`:            `"q\"b\\"`,
		"tab\tnl\n":       `"tab\u0009nl\u000a"`,
		"<&>":             `"\u003c\u0026\u003e"`,
		"é✓":              `"é✓"`,
		"bad\xff":         `"bad\ufffd"`,
		"sep\u2028\u2029": `"sep\u2028\u2029"`,
	} {
		if got := string(appendString(nil, in)); got != want {
			t.Errorf("appendString(%q) = %s, want %s", in, got, want)
		}
	}
}
