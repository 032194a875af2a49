package transport_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/notifyhub/hub/transport"
)

// TestMailboxQuotaAndPages: a user past its mailbox quota gets 403
// quota_exceeded and nothing changes; a revoke makes room. GET
// /v1/mailboxes pages by limit and after, each page's next leading to the
// following one, and the pages together are every mailbox once.
func TestMailboxQuotaAndPages(t *testing.T) {
	h := startHub(t, transport.Config{OpenRegistration: true, Quotas: transport.Quotas{MailboxesPerUser: 3}})
	_, secret := h.register(t)
	var ids []string
	for range 3 {
		ids = append(ids, h.newMailbox(t, secret, "app").MailboxID)
	}
	before := h.store.Applied()
	r := h.expect(t, http.StatusForbidden, "POST", "/v1/mailboxes", jsonHeader(secret), `{"label":"one too many"}`)
	if !strings.Contains(string(r.body), `"quota_exceeded"`) {
		t.Fatalf("past the quota: %s", r)
	}
	if got := h.store.Applied(); got != before+1 {
		t.Fatalf("applied moved %d entries for one refusal", got-before)
	}
	h.expect(t, http.StatusNoContent, "DELETE", "/v1/mailboxes/"+ids[0], bearer(secret), "")
	ids = append(ids, h.newMailbox(t, secret, "after a revoke").MailboxID)
	ids = append(ids, h.newMailboxAllowed(t, secret, http.StatusForbidden)...)

	var seen []string
	after, pages := "", 0
	for {
		var page struct {
			Mailboxes []struct {
				MailboxID string `json:"mailbox_id"`
			} `json:"mailboxes"`
			Next string `json:"next"`
		}
		decodeLoose(t, h.expect(t, http.StatusOK, "GET", "/v1/mailboxes?limit=3&after="+url.QueryEscape(after), bearer(secret), ""), &page)
		pages++
		for _, mb := range page.Mailboxes {
			seen = append(seen, mb.MailboxID)
		}
		if page.Next == "" {
			break
		}
		if len(page.Mailboxes) != 3 || pages > 3 {
			t.Fatalf("page %d: %d mailboxes, next %q", pages, len(page.Mailboxes), page.Next)
		}
		after = page.Next
	}
	slices.Sort(ids)
	if !slices.Equal(seen, ids) || pages != 2 {
		t.Fatalf("pages gave %q in %d pages, want %q", seen, pages, ids)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		r := h.expect(t, http.StatusBadRequest, "GET", "/v1/mailboxes?"+q, bearer(secret), "")
		if !strings.Contains(string(r.body), `"bad_page"`) {
			t.Fatalf("%s: %s", q, r)
		}
	}
}

// newMailboxAllowed tries one more mailbox and expects status; it returns
// the new id if one was made.
func (h *testHub) newMailboxAllowed(t *testing.T, secret string, status int) []string {
	t.Helper()
	r := h.expect(t, status, "POST", "/v1/mailboxes", jsonHeader(secret), `{"label":"x"}`)
	if status != http.StatusCreated {
		return nil
	}
	var mb newMailboxJSON
	decode(t, r, &mb)
	return []string{mb.MailboxID}
}

// TestDeviceQuotaAndPages: a new device past the user's quota is closed
// 4413 quota_exceeded at its hello, a known one still connects, and GET
// /v1/devices pages like the mailboxes.
func TestDeviceQuotaAndPages(t *testing.T) {
	h := startHub(t, transport.Config{OpenRegistration: true, Quotas: transport.Quotas{DevicesPerUser: 2}})
	_, secret := h.register(t)
	for _, d := range []string{"laptop", "phone"} {
		c, _ := h.wsHello(t, secret, d, nil)
		c.CloseNow()
	}
	c := h.dialWS(t)
	wsSend(t, c, fmt.Sprintf(`{"type":"hello","ticket":%q,"device":"tablet"}`, h.ticket(t, secret)))
	if code := closeCode(t, c); code != 4413 {
		t.Fatalf("a third device under a quota of 2: closed %d, want 4413", code)
	}
	h.wsHello(t, secret, "laptop", nil) // known: connects

	var page struct {
		Devices []struct {
			DeviceID string `json:"device_id"`
		} `json:"devices"`
		Next string `json:"next"`
	}
	decodeLoose(t, h.expect(t, http.StatusOK, "GET", "/v1/devices?limit=1", bearer(secret), ""), &page)
	if len(page.Devices) != 1 || page.Devices[0].DeviceID != "laptop" || page.Next != "laptop" {
		t.Fatalf("first page: %+v", page)
	}
	page.Next = ""
	decodeLoose(t, h.expect(t, http.StatusOK, "GET", "/v1/devices?limit=1&after="+page.Devices[0].DeviceID, bearer(secret), ""), &page)
	if len(page.Devices) != 1 || page.Devices[0].DeviceID != "phone" {
		t.Fatalf("second page: %+v", page)
	}
	page.Next = ""
	decodeLoose(t, h.expect(t, http.StatusOK, "GET", "/v1/devices?after=phone", bearer(secret), ""), &page)
	if len(page.Devices) != 0 || page.Next != "" {
		t.Fatalf("past the last: %+v", page)
	}
}
