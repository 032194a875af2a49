package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// config is everything hubd can be told.
type config struct {
	dataDir          string
	listen           string
	nodeID           string
	raftAddr         string
	bootstrap        bool
	adminToken       string
	clusterSecret    string // authenticates the nodes of a cluster to each other
	clusterTLSCA     string // mutual TLS between nodes: the cluster CA bundle,
	clusterTLSCert   string // this node's certificate
	clusterTLSKey    string // and its key
	join             string // raft address of a member to join through, on first start
	advertise        string // this node's API base URL for the other nodes
	openRegistration bool
	payloadLimit     int
	defaultTTL       time.Duration
	maxTTL           time.Duration
	shutdownGrace    time.Duration
	pingInterval     time.Duration
	pollWaitMax      time.Duration
	pollInactivity   time.Duration
	sessionQueue     int
	logLevel         slog.Level
	showVersion      bool          // --version: print the build and exit (main.go)
	printConfig      bool          // --print-config: print the effective settings and exit (main.go)
	configFile       string        // --config: the TOML file (config_file.go)
	logFormat        string        // text or json
	flags            *flag.FlagSet // the parsed flags, for --print-config
	diskReserve      uint64        // free bytes below which writes are refused; 0: diskguard.DefaultReserve

	receipts receiptFlags // receipts.go
	limits   limitFlags   // limits.go
	quotas   quotaFlags   // quotas.go
	rates    rateFlags    // ratelimits.go
	serving  servingFlags // serving.go: TLS, ACME, public URL, internal listener
}

// envName is the HUB_* variable of flag name: payload-limit is
// HUB_PAYLOAD_LIMIT (ff's mapping, with the prefix HUB).
func envName(name string) string {
	return "HUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// parseConfig reads the settings with ff (config_file.go): a flag on the
// command line wins over its HUB_* variable, which wins over the config
// file's key of the flag's name, which wins over the built-in default.
func parseConfig(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("hubd", flag.ContinueOnError)
	str := func(p *string, name, def, usage string) {
		fs.StringVar(p, name, def, usage+" ("+envName(name)+")")
	}
	parsed := func(v flag.Value, name, usage string) {
		fs.Var(v, name, usage+" ("+envName(name)+")")
	}
	c.bootstrap, c.openRegistration = true, true
	c.payloadLimit = 4096
	c.defaultTTL, c.maxTTL, c.shutdownGrace = 24*time.Hour, 28*24*time.Hour, 10*time.Second
	c.pingInterval, c.sessionQueue = 25*time.Second, 1024
	c.pollWaitMax, c.pollInactivity = 60*time.Second, 60*time.Second
	c.logFormat = "text"

	str(&c.configFile, "config", "", "TOML file of settings whose keys are these flags' names (payload-limit = 8192); a flag or HUB_* variable wins over it")
	str(&c.dataDir, "data", "./data", "data directory: badger state in state/, raft log and snapshots in raft/")
	str(&c.listen, "listen", "127.0.0.1:8080", "HTTP listen address (port 0 picks a free one; the address is printed)")
	str(&c.nodeID, "node-id", "node1", "raft server id of this node")
	str(&c.raftAddr, "raft-addr", "127.0.0.1:"+defaultRaftPort, "raft TCP address, bound and advertised")
	str(&c.adminToken, "admin-token", "", "bearer token for admin calls; empty refuses them")
	str(&c.clusterSecret, "cluster-secret", "", "shared secret the nodes authenticate each other with (every raft and internal connection); it or the TLS files are needed for more than one node")
	str(&c.clusterTLSCA, "cluster-tls-ca", "", "mutual TLS between nodes: PEM file of the CA that signs every node's certificate")
	str(&c.clusterTLSCert, "cluster-tls-cert", "", "mutual TLS between nodes: PEM file of this node's certificate")
	str(&c.clusterTLSKey, "cluster-tls-key", "", "mutual TLS between nodes: PEM file of this node's private key")
	str(&c.join, "join", "", "on first start, join the cluster through this member's raft address (host:port) instead of bootstrapping")
	str(&c.advertise, "advertise", "", "this node's HTTP base URL as other nodes reach it; default http://<listen address>")
	parsed(boolValue{&c.bootstrap}, "bootstrap", "on first start, make this node the single voter of a new cluster")
	parsed(boolValue{&c.openRegistration}, "open-registration", "anyone may POST /v1/users (otherwise the admin token is needed)")
	parsed(intValue{&c.payloadLimit}, "payload-limit", "largest message payload, in bytes")
	parsed(durationValue{&c.defaultTTL}, "default-ttl", "TTL of a message published without a TTL header")
	parsed(durationValue{&c.maxTTL}, "max-ttl", "largest TTL a publisher may ask for")
	parsed(durationValue{&c.shutdownGrace}, "shutdown-grace", "how long a clean shutdown waits for requests in flight")
	parsed(durationValue{&c.pingInterval}, "ping-interval", "how often WebSocket devices are pinged; silent for two intervals, they are closed")
	parsed(durationValue{&c.pollWaitMax}, "poll-wait-max", "longest a long-poll request may be held (whole seconds)")
	parsed(durationValue{&c.pollInactivity}, "poll-inactivity", "a long-poll session with no request for this long ends")
	parsed(intValue{&c.sessionQueue}, "session-queue", "messages a device session may hold unsent before it is closed as too slow")
	parsed(levelValue{&c.logLevel}, "log-level", "debug, info, warn or error")
	parsed(choiceValue{&c.logFormat, []string{"text", "json"}}, "log-format", "text (logfmt key=value lines) or json (one JSON object a line), both from log/slog")
	parsed(sizeValue{&c.diskReserve}, "disk-reserve", "free space kept on the data filesystems: below it writes get 507 disk_full, below half of it applying pauses (units B, KB, MB, GB, KiB, MiB, GiB); 0 is 640MiB, what badger's files, raft's log and a compaction may still need")
	c.receipts.define(parsed)
	c.limits.define(parsed)
	c.quotas.define(parsed)
	c.rates.define(parsed)
	c.serving.define(parsed)
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&c.printConfig, "print-config", false, "print the effective settings as a TOML config file, secrets masked, and exit")

	if err := parseLayers(fs, args); err != nil {
		if c.showVersion {
			return c, nil // whatever else is wrong, --version answers
		}
		return c, err
	}
	if c.showVersion {
		return c, nil
	}
	c.flags = fs
	tlsFiles := 0
	for _, f := range []string{c.clusterTLSCA, c.clusterTLSCert, c.clusterTLSKey} {
		if f != "" {
			tlsFiles++
		}
	}
	switch {
	case tlsFiles != 0 && tlsFiles != 3:
		return c, fmt.Errorf("--cluster-tls-ca, --cluster-tls-cert and --cluster-tls-key go together: set all three or none")
	case c.join != "" && c.clusterSecret == "" && tlsFiles == 0:
		return c, fmt.Errorf("--join needs the cluster's credentials: set --cluster-secret (HUB_CLUSTER_SECRET), " +
			"or --cluster-tls-ca, --cluster-tls-cert and --cluster-tls-key (HUB_CLUSTER_TLS_CA, HUB_CLUSTER_TLS_CERT, HUB_CLUSTER_TLS_KEY)")
	case strings.Contains(c.join, "://"):
		return c, fmt.Errorf("--join takes a member's raft address (host:port), not a URL: node-to-node traffic goes to the raft port")
	}
	if err := c.limits.check(); err != nil {
		return c, err
	}
	if err := c.quotas.check(); err != nil {
		return c, err
	}
	if err := c.serving.check(); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch {
	case c.payloadLimit <= 0:
		return c, fmt.Errorf("--payload-limit must be positive")
	case c.maxTTL < time.Second || c.defaultTTL < 0 || c.defaultTTL > c.maxTTL:
		return c, fmt.Errorf("need 0 <= --default-ttl <= --max-ttl and --max-ttl >= 1s")
	case c.pingInterval < time.Second:
		return c, fmt.Errorf("--ping-interval must be at least 1s")
	case c.sessionQueue <= 0:
		return c, fmt.Errorf("--session-queue must be positive")
	case c.pollWaitMax < time.Second || c.pollWaitMax%time.Second != 0:
		return c, fmt.Errorf("--poll-wait-max must be whole seconds, at least 1s")
	case c.pollInactivity < time.Second:
		return c, fmt.Errorf("--poll-inactivity must be at least 1s")
	case c.receipts.check() != nil:
		return c, c.receipts.check()
	case c.rates.check() != nil:
		return c, c.rates.check()
	}
	return c, nil
}

type boolValue struct{ p *bool }

func (v boolValue) String() string {
	if v.p == nil {
		return "false"
	}
	return fmt.Sprint(*v.p)
}
func (v boolValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "1", "t", "true", "yes", "on":
		*v.p = true
	case "0", "f", "false", "no", "off":
		*v.p = false
	default:
		return fmt.Errorf("not a boolean: %q", s)
	}
	return nil
}
func (v boolValue) IsBoolFlag() bool { return true }

type intValue struct{ p *int }

func (v intValue) String() string {
	if v.p == nil {
		return "0"
	}
	return fmt.Sprint(*v.p)
}
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

type durationValue struct{ p *time.Duration }

func (v durationValue) String() string {
	if v.p == nil {
		return "0s"
	}
	return v.p.String()
}
func (v durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*v.p = d
	return nil
}

type levelValue struct{ p *slog.Level }

func (v levelValue) String() string {
	if v.p == nil {
		return "INFO"
	}
	return v.p.String()
}
func (v levelValue) Set(s string) error { return v.p.UnmarshalText([]byte(s)) }

// choiceValue is a string that must be one of choices.
type choiceValue struct {
	p       *string
	choices []string
}

func (v choiceValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}
func (v choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", s, strings.Join(v.choices, ", "))
}
