package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestJoinWithoutCredentialsRefused: hubd --join with neither a cluster
// secret nor TLS files does not start, and says what to set; so does a
// --join given a URL (it takes a raft address now) and an incomplete set of
// TLS files.
func TestJoinWithoutCredentialsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--join", "127.0.0.1:7946"}, "--cluster-secret (HUB_CLUSTER_SECRET)"},
		{[]string{"--join", "http://127.0.0.1:8080", "--cluster-secret", "s"}, "raft address (host:port), not a URL"},
		{[]string{"--cluster-tls-ca", "ca.pem"}, "go together"},
	} {
		cmd := exec.Command(hubdBin, append([]string{"--data", t.TempDir(), "--listen", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, tc.args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("hubd %q: %v, want exit status 2; output %s", tc.args, err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("hubd %q said %q, want %q", tc.args, out, tc.want)
		}
	}
	if _, err := parseConfig([]string{"--join", "127.0.0.1:7946", "--cluster-tls-ca", "a", "--cluster-tls-cert", "b", "--cluster-tls-key", "c"}); err != nil {
		t.Errorf("--join with TLS files: %v", err)
	}
}
