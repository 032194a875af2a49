package main

import (
	"errors"
	"flag"
	"strings"

	"github.com/notifyhub/hub/transport"
)

// letsEncrypt is the default ACME directory.
const letsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// servingFlags are how the public port is served: TLS from files or ACME,
// the public URL, and the internal listener for the operators' routes.
type servingFlags struct {
	tlsCert, tlsKey string // PEM files; reloaded on SIGHUP (tls.go)
	acmeDomains     string // comma-separated; certificates over ACME (tls.go)
	acmeEmail       string
	acmeDirURL      string
	acmeCA          string // PEM bundle trusted for the ACME server's own HTTPS; "" the system's
	publicURL       string
	internalListen  string
}

func (f *servingFlags) define(parsed func(v flag.Value, name, usage string)) {
	f.acmeDirURL = letsEncrypt
	parsed(stringValue{&f.tlsCert}, "tls-cert", "PEM file of the public port's certificate chain: the port serves https and wss; reread with --tls-key on SIGHUP")
	parsed(stringValue{&f.tlsKey}, "tls-key", "PEM file of the private key of --tls-cert")
	parsed(stringValue{&f.acmeDomains}, "acme-domain", "comma-separated domains to get certificates for over ACME (tls-alpn-01 on the public port, which must be reachable on 443); cached in <data>/acme")
	parsed(stringValue{&f.acmeEmail}, "acme-email", "contact address given to the ACME CA (optional)")
	parsed(stringValue{&f.acmeDirURL}, "acme-dir-url", "ACME directory URL")
	parsed(stringValue{&f.acmeCA}, "acme-ca", "PEM file of the CA to trust for the ACME server's own https (a private ACME CA); empty: the system's roots")
	parsed(stringValue{&f.publicURL}, "public-url", "base URL clients reach this hub at (https://hub.example); push_url and Locations are built from it; empty: from each request's Host")
	parsed(stringValue{&f.internalListen}, "internal-listen", "address of the internal listener (plain HTTP): /metrics and /admin move there from the public port; empty: they stay on the public port")
}

func (f *servingFlags) check() error {
	switch {
	case (f.tlsCert == "") != (f.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key go together: set both or none")
	case f.tlsCert != "" && f.acmeDomains != "":
		return errors.New("--tls-cert and --acme-domain exclude each other: certificates from files or from ACME")
	case f.acmeDomains == "" && (f.acmeEmail != "" || f.acmeCA != ""):
		return errors.New("--acme-email and --acme-ca need --acme-domain")
	}
	for _, d := range f.domains() {
		if d == "" || strings.ContainsAny(d, "/: ") {
			return errors.New("--acme-domain: not a domain list: " + f.acmeDomains)
		}
	}
	if f.publicURL != "" {
		if _, err := transport.CheckPublicURL(f.publicURL); err != nil {
			return errors.New("--public-url: " + err.Error())
		}
	}
	return nil
}

func (f *servingFlags) domains() []string {
	if f.acmeDomains == "" {
		return nil
	}
	ds := strings.Split(f.acmeDomains, ",")
	for i := range ds {
		ds[i] = strings.TrimSpace(ds[i])
	}
	return ds
}

func (f *servingFlags) tls() bool { return f.tlsCert != "" || f.acmeDomains != "" }

// scheme is the public port's URL scheme.
func (f *servingFlags) scheme() string {
	if f.tls() {
		return "https"
	}
	return "http"
}

type stringValue struct{ p *string }

func (v stringValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v stringValue) Set(s string) error { *v.p = s; return nil }
