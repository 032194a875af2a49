package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"os"
	"time"
)

// credentials are what this node proves itself with to the other nodes, and
// checks them against: the cluster secret, a CA bundle and this node's
// certificate, or both. See "Node-to-node traffic" in doc.go.
type credentials struct {
	secret []byte          // nil: no proof of a secret
	roots  *x509.CertPool  // nil: no certificate checks (zero-configuration mode)
	cert   tls.Certificate // the operator's, or a self-signed one made at Open
}

// errNoCredentials is why a node without credentials talks to nobody.
var errNoCredentials = errors.New("this node has no cluster secret and no TLS certificates: it talks to no other node " +
	"(set --cluster-secret, or --cluster-tls-ca, --cluster-tls-cert and --cluster-tls-key)")

// errPeerCert marks a peer certificate that the cluster CA did not sign.
var errPeerCert = errors.New("the peer's certificate is not signed by the cluster CA")

func newCredentials(cfg Config) (*credentials, error) {
	c := &credentials{}
	if cfg.Secret != "" {
		c.secret = []byte(cfg.Secret)
	}
	switch n := countSet(cfg.TLSCAFile, cfg.TLSCertFile, cfg.TLSKeyFile); n {
	case 0:
	case 3:
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: load the node certificate: %w", err)
		}
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("cluster: load the cluster CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cluster: load the cluster CA: no PEM certificate in %s", cfg.TLSCAFile)
		}
		c.cert, c.roots = cert, pool
		return c, nil
	default:
		return nil, errors.New("cluster: the TLS CA, certificate and key files go together: set all three or none")
	}
	if c.secret != nil {
		cert, err := selfSigned()
		if err != nil {
			return nil, fmt.Errorf("cluster: make the node certificate: %w", err)
		}
		c.cert = cert
	}
	return c, nil
}

func countSet(s ...string) int {
	n := 0
	for _, v := range s {
		if v != "" {
			n++
		}
	}
	return n
}

// none reports whether the node has no credentials at all.
func (c *credentials) none() bool { return c.secret == nil && c.roots == nil }

// selfSigned makes the certificate of the zero-configuration mode. Nobody
// checks it against a CA: it only gives the TLS session its keys, and the
// proofs of the secret, bound to that session, authenticate both ends.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "notifyhub node"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// verifyPeer checks, in mutual-TLS mode, that the peer's certificate chains
// to the cluster CA with the given usage. Host names are not checked: peers
// are dialled by raft address, and any certificate the cluster CA signed is
// a member (use a CA for the cluster alone).
func (c *credentials) verifyPeer(usage x509.ExtKeyUsage) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: it sent none", errPeerCert)
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: c.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			return fmt.Errorf("%w: %v", errPeerCert, err)
		}
		return nil
	}
}

func (c *credentials) serverTLS() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{c.cert}}
	if c.roots != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyConnection = c.verifyPeer(x509.ExtKeyUsageClientAuth)
	}
	return cfg
}

func (c *credentials) clientTLS() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The default check wants a host name in the certificate; peers are
		// raft addresses. The server is checked below (mutual TLS) and by
		// its proof of the secret (both modes with a secret).
		InsecureSkipVerify: true,
	}
	if c.roots != nil {
		cfg.Certificates = []tls.Certificate{c.cert}
		cfg.VerifyConnection = c.verifyPeer(x509.ExtKeyUsageServerAuth)
	}
	return cfg
}

// Roles of the proofs: the two ends prove different values, so that neither
// proof can be reflected back as the other.
const (
	roleDialer   = 'D'
	roleListener = 'L'
	// proofLabel is the exporter label (RFC 8446, 7.5) of the proofs.
	proofLabel = "EXPORTER-notifyhub-cluster-proof-v1"
	proofLen   = sha256.Size
)

// proof is one end's proof of the secret in the TLS session cs:
// HMAC-SHA256(secret, role || exporter). The exporter is unique to the
// session, so a proof is worth nothing in any other one, which is what
// defeats a relay. Without a secret it is all zeros (mutual TLS alone).
func (c *credentials) proof(cs tls.ConnectionState, role byte) ([]byte, error) {
	if c.secret == nil {
		return make([]byte, proofLen), nil
	}
	ekm, err := cs.ExportKeyingMaterial(proofLabel, nil, 32)
	if err != nil {
		return nil, fmt.Errorf("tls exporter: %w", err)
	}
	m := hmac.New(sha256.New, c.secret)
	m.Write([]byte{role})
	m.Write(ekm)
	return m.Sum(nil), nil
}
