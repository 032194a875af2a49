package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/notifyhub/hub/transport"
)

// rateFlags are hubd's rate limits (transport.RateLimits): a rate and a
// burst for each, defaults from transport.DefaultRateLimits. A rate of 0
// turns its limit off.
type rateFlags struct {
	limits  transport.RateLimits
	proxies prefixList
}

func (f *rateFlags) define(parsed func(v flag.Value, name, usage string)) {
	f.limits = transport.DefaultRateLimits()
	f.limits.MaxKeys = transport.DefaultMaxKeys
	pair := func(r *transport.Rate, name, what string) {
		parsed(rateValue{&r.PerSecond}, name+"-rate", what+": sustained rate, per second (or N/m, N/h); 0 turns the limit off")
		parsed(intValue{&r.Burst}, name+"-burst", what+": how many at once")
	}
	pair(&f.limits.Register, "register", "user registrations (POST /v1/users) per client address, admin token exempt")
	pair(&f.limits.AuthFailure, "auth-failure", "refused credentials per client address; over it, the address's API requests get 429")
	pair(&f.limits.Ticket, "ticket", "connect tickets (POST /v1/tickets) per user")
	pair(&f.limits.Mailbox, "mailbox", "mailbox creations (POST /v1/mailboxes) per user")
	pair(&f.limits.PublishToken, "publish-token", "messages published per mailbox token (a batch counts its items)")
	pair(&f.limits.PublishAddr, "publish-address", "messages published per client address (a batch counts its items)")
	parsed(intValue{&f.limits.MaxKeys}, "rate-limit-keys", "addresses, users or tokens each limit tracks at most (least recently used dropped)")
	parsed(&f.proxies, "trusted-proxies", "comma-separated addresses or CIDR prefixes of proxies whose X-Forwarded-For names the client; empty trusts none")
}

func (f *rateFlags) check() error {
	for _, p := range []struct {
		name string
		r    transport.Rate
	}{
		{"register", f.limits.Register}, {"auth-failure", f.limits.AuthFailure},
		{"ticket", f.limits.Ticket}, {"mailbox", f.limits.Mailbox},
		{"publish-token", f.limits.PublishToken}, {"publish-address", f.limits.PublishAddr},
	} {
		if p.r.PerSecond < 0 {
			return fmt.Errorf("--%s-rate must not be negative (0 turns the limit off)", p.name)
		}
		if p.r.PerSecond > 0 && p.r.Burst < 1 {
			return fmt.Errorf("--%s-burst must be at least 1", p.name)
		}
	}
	if f.limits.MaxKeys < 1 {
		return fmt.Errorf("--rate-limit-keys must be positive")
	}
	return nil
}

func (f *rateFlags) config() transport.RateLimits {
	l := f.limits
	l.TrustedProxies = f.proxies
	return l
}

// rateValue is a rate per second: a number, or N/s, N/m, N/h.
type rateValue struct{ p *float64 }

func (v rateValue) String() string {
	if v.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*v.p, 'g', -1, 64)
}

func (v rateValue) Set(s string) error {
	num, per, _ := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil {
		return fmt.Errorf("not a rate: %q (want a number per second, or N/s, N/m, N/h)", s)
	}
	switch strings.TrimSpace(per) {
	case "", "s":
	case "m":
		n /= 60
	case "h":
		n /= 3600
	default:
		return fmt.Errorf("not a rate: %q (want a number per second, or N/s, N/m, N/h)", s)
	}
	*v.p = n
	return nil
}

// prefixList is a comma-separated list of addresses and CIDR prefixes.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(s string) error {
	*l = nil
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			a, aerr := netip.ParseAddr(item)
			if aerr != nil {
				return fmt.Errorf("not an address or CIDR prefix: %q", item)
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		*l = append(*l, p.Masked())
	}
	return nil
}
