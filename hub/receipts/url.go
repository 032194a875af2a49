package receipts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"code.dny.dev/ssrf"
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

// Dialer returns the dialer receipt POSTs go through: it resolves with the
// policy's Resolver and checks every address it is about to dial (after
// DNS, so a name that resolves elsewhere than at creation is still
// checked).
func (p URLPolicy) Dialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: p.control, Resolver: p.Resolver}
}

// control is the dialer's net.Dialer.Control: it runs after DNS, on the
// address about to be dialled.
func (p URLPolicy) control(network, address string, c syscall.RawConn) error {
	if p.AllowPrivate {
		return nil
	}
	if err := guard.Safe(network, address, c); err != nil {
		return fmt.Errorf("%w: %w", ErrBlockedAddress, err)
	}
	return nil
}

// guard is the maintained list of addresses that are not the public
// internet: the IANA special-purpose registries for IPv4 and IPv6, and for
// IPv6 anything outside global unicast (2000::/3), which covers ::/96,
// ::ffff:0:0/96 (IPv4-mapped) and loopback written as ::127.0.0.1. Any
// port is allowed: receipt endpoints choose theirs.
var guard = ssrf.New(ssrf.WithAnyPort())

// Blocked reports whether the hub refuses to call ip unless private
// targets are allowed: anything but a public unicast address.
func Blocked(ip netip.Addr) bool {
	return guard.SafeAddr(ip) != nil
}
