package mailbox

import (
	"errors"
	"reflect"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	cmd := &Command{Kind: KindPublish, At: 42, Publish: &Publish{Items: []PublishItem{{
		ID: NewID(), TokenHash: Hash("t"), Data: "héllo \"world\"", TTL: 60, Topic: "t1", Urgency: UrgencyHigh,
		IdempotencyKey: "k", RequestHash: Hash("r"),
	}}}}
	b, err := cmd.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmd) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, cmd)
	}
}

func TestDecodeCommandRefuses(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":        nil,
		"one byte":     {1},
		"version":      append([]byte{9, byte(KindAck)}, `{"ack":{}}`...),
		"unknown kind": append([]byte{1, 200}, `{}`...),
		"no body":      append([]byte{1, byte(KindAck)}, `{"at":1}`...),
		"other body":   append([]byte{1, byte(KindAck)}, `{"expire":{}}`...),
		"not json":     append([]byte{1, byte(KindAck)}, `{`...),
	} {
		if _, err := DecodeCommand(b); !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzCommandDecode: whatever bytes a log entry holds, decoding either fails
// with ErrBadCommand or yields a command that encodes and decodes to itself.
func FuzzCommandDecode(f *testing.F) {
	for _, c := range []*Command{
		{Kind: KindAck, At: 1, Ack: &Ack{UserID: "u", DeviceID: "d", Seq: 3}},
		{Kind: KindExpire, Expire: &Expire{Limit: 10}},
		{Kind: KindAcks, At: 2, Acks: &Acks{Items: []Ack{{UserID: "u", DeviceID: "d", Seq: 1}}}},
		{Kind: KindPublish, Publish: &Publish{Items: []PublishItem{{ID: "i", Data: "x"}}}},
		{Kind: KindSettleReceipts, At: 3, SettleReceipts: &SettleReceipts{Items: []Settle{{MailboxID: "m", From: 1, Through: 4, Failed: true}}}},
	} {
		b, _ := c.Encode()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error without ErrBadCommand: %v", err)
			}
			return
		}
		again, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeCommand(again)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-decode: %v\n%+v\n%+v", err, c, c2)
		}
	})
}

func TestMessageRecordRoundTrip(t *testing.T) {
	m := Message{ID: NewID(), Seq: 1 << 40, UserID: NewID(), MailboxID: NewID(), Topic: "t",
		Urgency: UrgencyLow, At: -5, ExpiresAt: 1 << 62, Data: "héllo"}
	b := encodeMessage(&m)
	var got Message
	if err := decodeMessage(b, &got); err != nil || got != m {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, m)
	}
	for i := range b {
		if err := decodeMessage(b[:i], &got); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", i, len(b))
		}
	}
}
