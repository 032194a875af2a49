package receipts_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

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

// TestSpecialPurposeV6: addresses that are not the public internet and
// that a hand-kept list missed (found in the security review) are refused
// at mailbox creation, written in the URL or behind a DNS name, and at dial
// time, where the name resolves (through a real DNS server on loopback) to
// them; the development policy still dials loopback.
func TestSpecialPurposeV6(t *testing.T) {
	resolver := receiptstest.Resolver(t)
	strict := receipts.URLPolicy{Resolver: resolver}
	for _, c := range []struct {
		addr string
		dial bool // also dialled: never a public address, which would connect
	}{
		{"2001:2::1", true},        // 2001:2::/48, benchmarking
		{"3fff::1", true},          // 3fff::/20, documentation
		{"5f00::1", true},          // 5f00::/16, segment routing SIDs
		{"::1.2.3.4", true},        // ::/96, IPv4-compatible (deprecated)
		{"::127.0.0.1", true},      // loopback in ::/96: http://[::127.0.0.1]/ passed before
		{"::ffff:10.0.0.1", true},  // ::ffff:0:0/96, IPv4-mapped: a private IPv4
		{"::ffff:127.0.0.1", true}, // and loopback
		{"::ffff:8.8.8.8", false},  // refused as written; the resolver hands a dial 8.8.8.8 itself
	} {
		s := c.addr
		ip := netip.MustParseAddr(s)
		t.Run(s, func(t *testing.T) {
			if !receipts.Blocked(ip) {
				t.Errorf("Blocked(%s) = false", ip)
			}
			literal := "https://[" + s + "]/hook"
			if err := strict.Check(context.Background(), literal); !errors.Is(err, receipts.ErrBlockedAddress) {
				t.Errorf("Check(%s) = %v, want ErrBlockedAddress", literal, err)
			}
			name := receiptstest.V6Name(ip)
			if err := strict.Check(context.Background(), "https://"+name+"/hook"); !errors.Is(err, receipts.ErrBlockedAddress) {
				t.Errorf("Check(https://%s/hook) = %v, want ErrBlockedAddress", name, err)
			}
			if !c.dial {
				return
			}
			// At dial time: the name resolves to the address only now (as
			// after a DNS rebinding); the dialer refuses before connecting.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := strict.Dialer(5*time.Second).DialContext(ctx, "tcp", net.JoinHostPort(name, "443"))
			if err == nil {
				c.Close()
			}
			if !errors.Is(err, receipts.ErrBlockedAddress) {
				t.Errorf("dial %s: %v, want ErrBlockedAddress", name, err)
			}
		})
	}
	t.Run("a public v6 address is allowed", func(t *testing.T) {
		ip := netip.MustParseAddr("2606:4700:4700::1111")
		if err := strict.Check(context.Background(), "https://"+receiptstest.V6Name(ip)+"/hook"); err != nil {
			t.Fatalf("Check: %v", err)
		}
	})
	t.Run("the test escape hatch dials loopback", func(t *testing.T) {
		ln, err := net.Listen("tcp", "[::1]:0")
		if err != nil {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Close()
			}
		}()
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		dev := receipts.URLPolicy{AllowHTTP: true, AllowPrivate: true, Resolver: resolver}
		name := receiptstest.V6Name(netip.MustParseAddr("::1"))
		if err := dev.Check(context.Background(), "http://"+name+":"+port+"/hook"); err != nil {
			t.Fatalf("Check: %v", err)
		}
		c, err := dev.Dialer(5*time.Second).DialContext(context.Background(), "tcp", net.JoinHostPort(name, port))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		c.Close()
		// And the strict policy refuses the same dial.
		if _, err := strict.Dialer(5*time.Second).DialContext(context.Background(), "tcp", net.JoinHostPort(name, port)); !errors.Is(err, receipts.ErrBlockedAddress) {
			t.Fatalf("strict dial of loopback: %v", err)
		}
	})
}
