package main

import (
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// The test binary (built in TestMain) is stamped the way packaging/build.sh
// stamps a release, so these tests see what a packaged hubd prints.
const (
	stampVersion = "v9.8.7-test"
	stampCommit  = "c0ffee1234"
	stampFlags   = "-X github.com/notifyhub/hub/internal/version.Version=" + stampVersion +
		" -X github.com/notifyhub/hub/internal/version.Commit=" + stampCommit
)

// TestVersionFlag: --version prints the stamped version and commit and the
// Go version, exits 0, and answers even with a configuration that would
// not start (--join without a secret).
func TestVersionFlag(t *testing.T) {
	want := "hubd " + stampVersion + " (" + stampCommit + ", " + runtime.Version() + ")\n"
	for _, args := range [][]string{{"--version"}, {"-version"}, {"--join", "http://127.0.0.1:1", "--version"}} {
		out, err := exec.Command(hubdBin, args...).Output()
		if err != nil {
			t.Fatalf("hubd %v: %v", args, err)
		}
		if string(out) != want {
			t.Errorf("hubd %v printed %q, want %q", args, out, want)
		}
	}
}

// TestBuildInfoMetric: a running node's /metrics has hub_build_info with
// the stamped labels and value 1.
func TestBuildInfoMetric(t *testing.T) {
	p := startHubd(t, t.TempDir())
	resp, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	want := `hub_build_info{commit="` + stampCommit + `",goversion="` + runtime.Version() + `",version="` + stampVersion + `"} 1`
	for _, line := range strings.Split(string(body), "\n") {
		if line == want {
			return
		}
	}
	t.Fatalf("GET /metrics has no line %q:\n%s", want, body)
}
