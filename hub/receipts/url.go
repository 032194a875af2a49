package receipts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// Refusals of a receipt URL. The transport maps them to wire codes at
// mailbox creation; the dispatcher meets ErrBlockedAddress at dial time.
var (
	// ErrBadURL: not an absolute http(s) URL with a host, or it carries
	// user info or a fragment, or it is too long.
	ErrBadURL = errors.New("receipt URL is malformed")
	// ErrNotHTTPS: an http URL while plain http is not allowed.
	ErrNotHTTPS = errors.New("receipt URL must be https")
	// ErrUnresolvable: the host definitely has no address: the name does
	// not exist (NXDOMAIN) or has no A or AAAA record.
	ErrUnresolvable = errors.New("receipt URL's host does not resolve")
	// ErrLookupFailed: the host could not be looked up now (a timeout, a
	// failing server): asking again later may succeed, so it is no verdict
	// on the URL.
	ErrLookupFailed = errors.New("receipt URL's host could not be looked up")
	// ErrBlockedAddress: the host is, or resolves to, an address the hub
	// does not call: loopback, private, link-local and the like.
	ErrBlockedAddress = errors.New("receipt URL resolves to a blocked address")
)

// MaxURLLen bounds a receipt URL.
const MaxURLLen = 2048

// URLPolicy decides which receipt URLs the hub calls. Its zero value is
// the production one: https only, public addresses only. The address check
// runs twice: at mailbox creation (Check, after DNS resolution) and on
// every dial (the dispatcher's net.Dialer.Control), so a name that resolves
// to a public address at creation and to a private one later (DNS
// rebinding) is still refused.
type URLPolicy struct {
	// AllowHTTP accepts plain http URLs (development).
	AllowHTTP bool
	// AllowPrivate accepts loopback, private and link-local targets
	// (development, tests, and hubs whose apps live on the same network).
	AllowPrivate bool
	// Resolver resolves hosts for Check; nil is net.DefaultResolver.
	Resolver *net.Resolver
}

// Parse checks the form of a receipt URL, without resolving it.
func (p URLPolicy) Parse(raw string) (*url.URL, error) {
	if len(raw) > MaxURLLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadURL, MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, ErrBadURL
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !p.AllowHTTP {
			return nil, ErrNotHTTPS
		}
	default:
		return nil, ErrBadURL
	}
	if u.Hostname() == "" {
		return nil, ErrBadURL
	}
	return u, nil
}

// Check parses raw and resolves its host: every address it resolves to must
// be allowed.
func (p URLPolicy) Check(ctx context.Context, raw string) error {
	u, err := p.Parse(raw)
	if err != nil {
		return err
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return p.checkAddr(ip)
	}
	r := p.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	ips, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		// Only a definite answer condemns the URL; a passing failure of
		// DNS must not become a permanent refusal.
		if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return fmt.Errorf("%w: %s", ErrUnresolvable, host)
		}
		return fmt.Errorf("%w: %s: %w", ErrLookupFailed, host, err)
	}
	if len(ips) == 0 {
		return fmt.Errorf("%w: %s", ErrUnresolvable, host)
	}
	for _, ip := range ips {
		if err := p.checkAddr(ip); err != nil {
			return err
		}
	}
	return nil
}

func (p URLPolicy) checkAddr(ip netip.Addr) error {
	if !p.AllowPrivate && Blocked(ip) {
		return fmt.Errorf("%w: %s", ErrBlockedAddress, ip)
	}
	return nil
}

// control is the dispatcher's net.Dialer.Control: it runs after DNS, on the
// address about to be dialled.
func (p URLPolicy) control(_, address string, _ syscall.RawConn) error {
	if p.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("receipts: dial %s: %w", address, err)
	}
	return p.checkAddr(ap.Addr())
}

// blockedPrefixes are ranges that are global unicast to netip but are not
// the public internet.
var blockedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: may embed a private IPv4
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("2002::/16"),       // 6to4: may embed a private IPv4
	netip.MustParsePrefix("2001::/32"),       // Teredo
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
}

// Blocked reports whether the hub refuses to call ip unless private
// targets are allowed: anything but a public unicast address.
func Blocked(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return true // loopback, link-local, multicast, unspecified, RFC 1918, ULA
	}
	for _, p := range blockedPrefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
