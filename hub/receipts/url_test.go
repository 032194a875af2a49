package receipts_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/notifyhub/hub/hub/receipts"
	"github.com/notifyhub/hub/hub/receipts/receiptstest"
)

func TestURLPolicy(t *testing.T) {
	// Names resolve from /etc/hosts only: tests reach no network but
	// loopback, so every DNS query fails.
	offline := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in tests")
	}}
	strict := receipts.URLPolicy{Resolver: offline}
	dev := receipts.URLPolicy{AllowHTTP: true, AllowPrivate: true, Resolver: offline}
	for _, c := range []struct {
		name   string
		policy receipts.URLPolicy
		url    string
		want   error
	}{
		{"public https", strict, "https://8.8.8.8/hook", nil},
		{"public https with port", strict, "https://1.1.1.1:8443/hook?x=1", nil},
		{"http refused", strict, "http://8.8.8.8/hook", receipts.ErrNotHTTPS},
		{"http allowed", dev, "http://8.8.8.8/hook", nil},
		{"loopback", strict, "https://127.0.0.1/hook", receipts.ErrBlockedAddress},
		{"loopback v6", strict, "https://[::1]/hook", receipts.ErrBlockedAddress},
		{"loopback by name", strict, "https://localhost/hook", receipts.ErrBlockedAddress},
		{"private 10/8", strict, "https://10.1.2.3/hook", receipts.ErrBlockedAddress},
		{"private 192.168", strict, "https://192.168.0.10/hook", receipts.ErrBlockedAddress},
		{"link-local metadata", strict, "https://169.254.169.254/latest", receipts.ErrBlockedAddress},
		{"unspecified", strict, "https://0.0.0.0/hook", receipts.ErrBlockedAddress},
		{"v4-mapped loopback", strict, "https://[::ffff:127.0.0.1]/hook", receipts.ErrBlockedAddress},
		{"carrier-grade NAT", strict, "https://100.64.1.1/hook", receipts.ErrBlockedAddress},
		{"ULA", strict, "https://[fd00::1]/hook", receipts.ErrBlockedAddress},
		{"private allowed", dev, "http://127.0.0.1:9/hook", nil},
		{"no scheme", strict, "app.example/hook", receipts.ErrBadURL},
		{"ftp", strict, "ftp://app.example/hook", receipts.ErrBadURL},
		{"user info", strict, "https://u:p@8.8.8.8/hook", receipts.ErrBadURL},
		{"fragment", strict, "https://8.8.8.8/hook#x", receipts.ErrBadURL},
		{"no host", strict, "https:///hook", receipts.ErrBadURL},
		{"too long", strict, "https://8.8.8.8/" + strings.Repeat("a", receipts.MaxURLLen), receipts.ErrBadURL},
		// No DNS server reachable is no verdict on the name.
		{"no DNS", strict, "https://no-such-host.invalid/hook", receipts.ErrLookupFailed},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := c.policy.Check(context.Background(), c.url)
			if c.want == nil && err != nil || c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("Check(%q) = %v, want %v", c.url, err, c.want)
			}
		})
	}
}

// TestLookupFailures: only a definite answer that the host has no address
// refuses a URL for good (ErrUnresolvable); a failing or silent DNS server
// (and an unreachable one, in TestURLPolicy) is ErrLookupFailed, which the transport answers with 503 and Retry-After.
func TestLookupFailures(t *testing.T) {
	p := receipts.URLPolicy{Resolver: receiptstest.Resolver(t)}
	for _, c := range []struct {
		host string
		want error
	}{
		{receiptstest.NXDomain + ".example", receipts.ErrUnresolvable},
		{"nothing.example", receipts.ErrUnresolvable}, // the name exists, with no address
		{receiptstest.ServFail + ".example", receipts.ErrLookupFailed},
	} {
		t.Run(c.host, func(t *testing.T) {
			err := p.Check(context.Background(), "https://"+c.host+"/hook")
			if !errors.Is(err, c.want) {
				t.Fatalf("Check: %v, want %v", err, c.want)
			}
			other := receipts.ErrLookupFailed
			if c.want == other {
				other = receipts.ErrUnresolvable
			}
			if errors.Is(err, other) {
				t.Fatalf("Check: %v is both", err)
			}
		})
	}
}

func TestBlocked(t *testing.T) {
	for _, s := range []string{"127.0.0.1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.0.1", "::1", "fe80::1", "fc00::1", "224.0.0.1", "255.255.255.255", "64:ff9b::a00:1"} {
		if !receipts.Blocked(netip.MustParseAddr(s)) {
			t.Errorf("%s is not blocked", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"} {
		if receipts.Blocked(netip.MustParseAddr(s)) {
			t.Errorf("%s is blocked", s)
		}
	}
}
