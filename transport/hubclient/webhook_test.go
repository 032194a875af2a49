package hubclient_test

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/transport/hubclient"
)

// The hub's signer and the client's verifier agree, and the verifier
// refuses every way a signature can be wrong.
func TestVerifySignature(t *testing.T) {
	const secret = "s3cret"
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"receipts":[{"id":"m.1"}]}`)
	good := receipts.Sign(secret, now, body)
	if err := hubclient.VerifySignatureAt(secret, good, body, now, hubclient.DefaultTolerance); err != nil {
		t.Fatalf("hub's own signature: %v", err)
	}
	for name, c := range map[string]struct {
		secret, header string
		body           []byte
		now            time.Time
	}{
		"wrong secret":     {"other", good, body, now},
		"changed body":     {secret, good, append(bytes.Clone(body), ' '), now},
		"replayed later":   {secret, good, body, now.Add(hubclient.DefaultTolerance + time.Second)},
		"from the future":  {secret, good, body, now.Add(-hubclient.DefaultTolerance - time.Second)},
		"no header":        {secret, "", body, now},
		"no v1":            {secret, strings.Split(good, ",")[0], body, now},
		"no t":             {secret, strings.Split(good, ",")[1], body, now},
		"t changed":        {secret, strings.Replace(good, "t=", "t=1", 1), body, now},
		"v1 not hex":       {secret, strings.Split(good, ",")[0] + ",v1=zz", body, now},
		"unknown scheme":   {secret, strings.Replace(good, "v1=", "v0=", 1), body, now},
		"signature halved": {secret, good[:len(good)-32], body, now},
	} {
		t.Run(name, func(t *testing.T) {
			err := hubclient.VerifySignatureAt(c.secret, c.header, c.body, c.now, hubclient.DefaultTolerance)
			if !errors.Is(err, hubclient.ErrSignature) {
				t.Fatalf("verify: %v", err)
			}
		})
	}
	// A second v1 (a secret being rotated) may sit beside the first.
	two := good + ",v1=" + strings.Repeat("0", 64)
	if err := hubclient.VerifySignatureAt(secret, two, body, now, hubclient.DefaultTolerance); err != nil {
		t.Fatalf("two signatures: %v", err)
	}
}

func TestReadWebhook(t *testing.T) {
	body := []byte(`{"receipts":[{"id":"mb1.1","seq":1,"message_id":"m1","mailbox_id":"mb1","status":"delivered","at":"2026-01-02T03:04:05.678Z","device_id":"laptop"}]}`)
	secrets := func(mb string) (string, bool) { return map[string]string{"mb1": "s"}[mb], mb == "mb1" }
	req := func(mb, sig string, b []byte) *hubclient.Receipt {
		r := httptest.NewRequest("POST", "/hook", bytes.NewReader(b))
		r.Header.Set(hubclient.MailboxHeader, mb)
		r.Header.Set(hubclient.SignatureHeader, sig)
		rs, err := hubclient.ReadWebhook(r, secrets)
		if err != nil {
			return nil
		}
		return &rs[0]
	}
	rc := req("mb1", receipts.Sign("s", time.Now(), body), body)
	if rc == nil || rc.ID != "mb1.1" || rc.Status != "delivered" || rc.DeviceID != "laptop" || rc.At.Year() != 2026 {
		t.Fatalf("receipt: %+v", rc)
	}
	if req("mb2", receipts.Sign("s", time.Now(), body), body) != nil {
		t.Fatal("an unknown mailbox was read")
	}
	if req("mb1", receipts.Sign("x", time.Now(), body), body) != nil {
		t.Fatal("a wrong signature was read")
	}
	other := bytes.ReplaceAll(body, []byte(`"mailbox_id":"mb1"`), []byte(`"mailbox_id":"mb9"`))
	if req("mb1", receipts.Sign("s", time.Now(), other), other) != nil {
		t.Fatal("a receipt of another mailbox was read")
	}
}

// FuzzVerifySignature: any header and body is refused with ErrSignature or
// accepted only when the hub's signer made it; never a panic.
func FuzzVerifySignature(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"receipts":[]}`)
	f.Add(receipts.Sign("k", now, body), body)
	f.Add("t=1800000000,v1=zz,v1=", body)
	f.Add(",,,t=,v1", []byte{})
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		err := hubclient.VerifySignatureAt("k", header, body, now, hubclient.DefaultTolerance)
		if err != nil && !errors.Is(err, hubclient.ErrSignature) {
			t.Fatalf("error without ErrSignature: %v", err)
		}
		if err != nil {
			return
		}
		// Accepted: the header must hold the hub's MAC of this body at its t.
		var mac string
		for _, part := range strings.Split(header, ",") {
			if k, v, _ := strings.Cut(strings.TrimSpace(part), "="); k == "t" {
				if ts, perr := strconv.ParseInt(v, 10, 64); perr == nil {
					mac = strings.SplitN(receipts.Sign("k", time.Unix(ts, 0), body), ",v1=", 2)[1]
				}
			}
		}
		if mac == "" || !strings.Contains(strings.ToLower(header), mac) {
			t.Fatalf("accepted a header the signer did not make: %q", header)
		}
	})
}
