package main

import (
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/notifyhub/hub/transport"
)

func TestRateLimitFlags(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := transport.DefaultRateLimits()
	want.MaxKeys = transport.DefaultMaxKeys
	got := c.rates.config()
	if got.Register != want.Register || got.AuthFailure != want.AuthFailure || got.Ticket != want.Ticket ||
		got.Mailbox != want.Mailbox || got.PublishToken != want.PublishToken || got.PublishAddr != want.PublishAddr ||
		got.MaxKeys != want.MaxKeys || len(got.TrustedProxies) != 0 {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
	if want.Register.PerSecond <= 0 || want.PublishToken.PerSecond <= 0 {
		t.Fatal("a production default is off")
	}

	t.Setenv("HUB_REGISTER_RATE", "30/m")
	t.Setenv("HUB_PUBLISH_TOKEN_BURST", "7")
	t.Setenv("HUB_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
	c, err = parseConfig([]string{"--ticket-rate", "0", "--register-burst", "3"})
	if err != nil {
		t.Fatal(err)
	}
	got = c.rates.config()
	if got.Register != (transport.Rate{PerSecond: 0.5, Burst: 3}) {
		t.Errorf("register %+v, want 0.5/s burst 3", got.Register)
	}
	if got.PublishToken.Burst != 7 || got.Ticket.PerSecond != 0 {
		t.Errorf("publish token %+v, ticket %+v", got.PublishToken, got.Ticket)
	}
	wantProxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
	if len(got.TrustedProxies) != 2 || got.TrustedProxies[0] != wantProxies[0] || got.TrustedProxies[1] != wantProxies[1] {
		t.Errorf("trusted proxies %v, want %v", got.TrustedProxies, wantProxies)
	}

	for _, args := range [][]string{
		{"--register-rate", "fast"},
		{"--register-rate", "5/d"},
		{"--register-rate", "-1"},
		{"--publish-token-burst", "0"},
		{"--rate-limit-keys", "0"},
		{"--trusted-proxies", "10.0.0.0/33"},
	} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
}

// TestHubdRateLimitsRegistration runs a real hubd with a registration
// limit of 3 (refilling one an hour) and registers from loopback: the
// fourth gets 429 rate_limited with Retry-After, and /metrics counts it.
func TestHubdRateLimitsRegistration(t *testing.T) {
	hub := startHubd(t, t.TempDir(), "--register-rate", "1/h", "--register-burst", "3")
	for range 3 {
		register(t, hub)
	}
	req, err := http.NewRequest("POST", hub.url+"/v1/users", nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth registration: %d, want 429", res.StatusCode)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 3000 || ra > 3600 {
		t.Fatalf("Retry-After %q, want about an hour (the refill of one)", res.Header.Get("Retry-After"))
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if s := call(t, "POST", hub.url+"/v1/users", "", nil, "", &e); s != http.StatusTooManyRequests || e.Error.Code != "rate_limited" {
		t.Fatalf("fifth registration: %d %q, want 429 rate_limited", s, e.Error.Code)
	}
	res, err = http.Get(hub.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	metrics, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := `hub_rate_limited_total{limit="register"} 2`; !strings.Contains(string(metrics), want+"\n") {
		t.Fatalf("metrics lack %q:\n%s", want, metrics)
	}
}
