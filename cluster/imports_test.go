package cluster_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the dependency direction of the design: cluster adapts
// mailbox to raft and knows nothing of the layers above it.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/notifyhub/hub/cluster").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	forbidden := []string{
		"github.com/notifyhub/hub/hub",
		"github.com/notifyhub/hub/transport",
		"github.com/notifyhub/hub/cmd/",
		"github.com/coder/websocket",
	}
	// net/http and testing are not listed: hashicorp/raft brings both (its
	// testing.go is part of the package, and go-metrics serves HTTP).
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f) {
				t.Errorf("cluster imports %s", dep)
			}
		}
	}
}
