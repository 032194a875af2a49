package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsFlagsAndEnvironment(t *testing.T) {
	c, err := parseConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != "./data" || c.listen != "127.0.0.1:8080" || c.pollWaitMax != time.Minute || c.pollInactivity != time.Minute ||
		c.raftAddr != "127.0.0.1:8079" || c.logFormat != "text" {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("HUB_POLL_WAIT_MAX", "30s")
	t.Setenv("HUB_POLL_INACTIVITY", "2m")
	c, err = parseConfig([]string{"--poll-inactivity", "90s"})
	if err != nil {
		t.Fatal(err)
	}
	// The variable beats the default; the flag beats the variable.
	if c.pollWaitMax != 30*time.Second || c.pollInactivity != 90*time.Second {
		t.Fatalf("poll wait max %s, inactivity %s", c.pollWaitMax, c.pollInactivity)
	}
}

func TestConfigRefusesBadValues(t *testing.T) {
	for _, args := range [][]string{
		{"--poll-wait-max", "0s"},
		{"--poll-wait-max", "1500ms"},
		{"--poll-inactivity", "10ms"},
		{"--ping-interval", "0s"},
		{"--session-queue", "0"},
		{"--payload-limit", "-1"},
		{"--default-ttl", "48h", "--max-ttl", "24h"},
		{"--log-format", "xml"},
		{"stray"},
	} {
		if _, err := parseConfig(args); err == nil {
			t.Errorf("%q: accepted", args)
		}
	}
	t.Setenv("HUB_POLL_WAIT_MAX", "soon")
	if _, err := parseConfig(nil); err == nil {
		t.Error("HUB_POLL_WAIT_MAX=soon: accepted")
	}
}

// writeFile writes body to a file in a fresh directory and returns its path.
func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConfigFileLayers: a key in the file beats the default, HUB_* beats
// the file, a flag beats both; HUB_CONFIG names the file too.
func TestConfigFileLayers(t *testing.T) {
	file := writeFile(t, "hubd.toml", `
payload-limit = 8192          # file only
session-queue = 10            # file, then env
max-ttl = "48h"               # file, env, then flag
open-registration = false
register-rate = 0.5
log-format = "json"
`)
	t.Setenv("HUB_SESSION_QUEUE", "20")
	t.Setenv("HUB_MAX_TTL", "72h")
	c, err := parseConfig([]string{"--config", file, "--max-ttl", "96h"})
	if err != nil {
		t.Fatal(err)
	}
	if c.payloadLimit != 8192 || c.sessionQueue != 20 || c.maxTTL != 96*time.Hour || c.openRegistration ||
		c.rates.limits.Register.PerSecond != 0.5 || c.logFormat != "json" {
		t.Fatalf("payload %d (file 8192), queue %d (env 20), max-ttl %s (flag 96h), open %v, register %v, log %s",
			c.payloadLimit, c.sessionQueue, c.maxTTL, c.openRegistration, c.rates.limits.Register.PerSecond, c.logFormat)
	}
	t.Setenv("HUB_CONFIG", file)
	if c, err = parseConfig(nil); err != nil || c.payloadLimit != 8192 {
		t.Fatalf("HUB_CONFIG: payload %d, %v", c.payloadLimit, err)
	}
}

func TestConfigFileRefusals(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"payload-limt = 1\n", `unknown key "payload-limt"`},
		{"config = 'other.toml'\n", `unknown key "config"`},
		{"[raft]\naddr = '1.2.3.4:1'\n", `key "raft"`},
		{"trusted-proxies = ['10.0.0.0/8']\n", `key "trusted-proxies"`},
		{"max-ttl = 'soon'\n", `key "max-ttl"`},
		{"payload-limit = \n", "config file"},
	} {
		_, err := parseConfig([]string{"--config", writeFile(t, "hubd.toml", tc.body)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.body, err, tc.want)
		}
	}
	if _, err := parseConfig([]string{"--config", filepath.Join(t.TempDir(), "missing.toml")}); err == nil {
		t.Error("a missing config file: accepted")
	}
}

// TestPrintConfig runs the real binary: --print-config shows the layered
// settings with secrets masked, and its output read back as a config file
// prints the same again.
func TestPrintConfig(t *testing.T) {
	bin := hubdBin
	file := writeFile(t, "hubd.toml", "payload-limit = 8192\nadmin-token = 'file-admin-secret'\n")
	run := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("hubd %q: %v: %s", args, err, stderr.String())
		}
		return string(out)
	}
	out := run([]string{"HUB_CLUSTER_SECRET=env-cluster-secret", "HUB_SESSION_QUEUE=20"},
		"--config", file, "--print-config", "--max-ttl", "96h")
	for _, want := range []string{"payload-limit = 8192\n", "session-queue = 20\n", "max-ttl = '96h0m0s'\n",
		"open-registration = true\n", "# admin-token is set (masked", "# cluster-secret is set (masked"} {
		if !strings.Contains(out, want) {
			t.Errorf("--print-config has no %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"file-admin-secret", "env-cluster-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("--print-config shows a secret:\n%s", out)
		}
	}
	again := run(nil, "--config", writeFile(t, "printed.toml", out), "--print-config")
	// Read back, the secrets are unset and say so; everything else is the same.
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !secret(strings.Fields(l + " x")[0]) && !strings.Contains(l, "masked") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if strip(again) != strip(out) {
		t.Errorf("printed config read back prints differently:\n%s\n---\n%s", out, again)
	}
	if help := runHelp(t, bin); !strings.Contains(help, "(HUB_PAYLOAD_LIMIT)") || !strings.Contains(help, "(HUB_CONFIG)") {
		t.Errorf("--help does not name the variables:\n%s", help)
	}
}

func runHelp(t *testing.T, bin string) string {
	t.Helper()
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return string(out)
}
