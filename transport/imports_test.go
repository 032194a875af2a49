package transport_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the dependency direction of docs: transport may use
// hub, cluster and mailbox, never cmd/, loadtest or test helpers.
// ("testing" itself cannot be checked here: hashicorp/raft imports it.)
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-json=ImportPath", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct{ ImportPath string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(p.ImportPath, "github.com/notifyhub/hub/cmd/"),
			strings.HasPrefix(p.ImportPath, "github.com/notifyhub/hub/loadtest"),
			strings.HasPrefix(p.ImportPath, "github.com/notifyhub/hub/cluster/clustertest"):
			t.Errorf("transport imports %s", p.ImportPath)
		}
	}
}
