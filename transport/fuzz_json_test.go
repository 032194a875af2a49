package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fuzzDecode checks decodeStrict on any bytes: it never panics, and a
// refusal is errBadJSON, whose row is a 400.
func fuzzDecode(t *testing.T, data []byte, v any, rejectUnknown bool) bool {
	err := decodeStrict(data, v, rejectUnknown)
	if err == nil {
		return true
	}
	if !errors.Is(err, errBadJSON) {
		t.Fatalf("%q: %v, want errBadJSON", data, err)
	}
	if we, _ := lookup(err); we.status != 400 {
		t.Fatalf("%q: status %d", data, we.status)
	}
	return false
}

// FuzzDeviceFrame: the WebSocket frame decoder, strict JSON included.
func FuzzDeviceFrame(f *testing.F) {
	for _, s := range []string{`{"type":"hello","ticket":"t","device":"d","ack":3}`, `{"type":"ack","seq":7}`,
		`{"type":"ack","seq":-1}`, `{"type":"hello","type":"ack"}`, `{"TYPE":"hello"}`, `{"type":"ping"}`, `[]`, ``, "{\"type\":\"\xff\"}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr frame
		fuzzDecode(t, data, &fr, false)
	})
}

// FuzzPollBody: POST /v1/poll bodies, and the wait field they carry.
func FuzzPollBody(f *testing.F) {
	for _, s := range []string{`{"hello":{"ticket":"t","device":"d"},"rid":1}`, `{"sid":"s","rid":2,"ack":1,"wait":30}`,
		`{"sid":"s","rid":2,"wait":"30"}`, `{"sid":"s","rid":2,"wait":1e3}`, `{"rid":1,"rid":2}`, `{"Sid":"s"}`} {
		f.Add([]byte(s))
	}
	s := New(Config{PollWaitMax: time.Minute}, nil, nil, nil)
	f.Cleanup(func() { s.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pollRequest
		if !fuzzDecode(t, data, &req, true) {
			return
		}
		if w, err := s.pollWait(req.Wait); err == nil && (w < 0 || w > time.Minute) {
			t.Fatalf("%q: wait %v accepted", data, w)
		} else if err != nil && !errors.Is(err, errBadWait) {
			t.Fatalf("%q: %v", data, err)
		}
	})
}

// FuzzBatchBody: POST /v1/push bodies and the validation of their items.
func FuzzBatchBody(f *testing.F) {
	for _, s := range []string{`{"messages":[{"token":"` + "0123456789012345678901234567890123456789012" + `","data":"x","ttl":60,"topic":"t","urgency":"high","idempotency_key":"k"}]}`,
		`{"messages":[{"token":"t","data":"x","ttl":"60"}]}`, `{"messages":[{"data":"x","data":"y"}]}`, `{"MESSAGES":[]}`, `{"messages":null}`} {
		f.Add([]byte(s))
	}
	s := New(Config{MaxTTL: time.Hour, PayloadLimit: 64}, nil, nil, nil)
	f.Cleanup(func() { s.Close(context.Background()) })
	f.Fuzz(func(t *testing.T, data []byte) {
		var req batchRequest
		if !fuzzDecode(t, data, &req, true) {
			return
		}
		for i := range req.Messages {
			o, err := s.batchItemOptions(&req.Messages[i])
			if err != nil {
				if _, known := lookup(err); !known {
					t.Fatalf("%q: item %d: %v outside the error table", data, i, err)
				}
				continue
			}
			if o.ttl < 0 || o.ttl > 3600 || len(*req.Messages[i].Data) > 64 {
				t.Fatalf("%q: item %d accepted with ttl %d", data, i, o.ttl)
			}
		}
	})
}
