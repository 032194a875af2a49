package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/notifyhub/hub/cluster/clustertest"
	"github.com/notifyhub/hub/hub"
	"github.com/notifyhub/hub/loadtest"
	"github.com/notifyhub/hub/mailbox"
	"github.com/notifyhub/hub/transport"
)

// startHub serves a real node (raft, badger, hub) over HTTP.
func startHub(t *testing.T) string {
	t.Helper()
	var st struct{ *mailbox.Store }
	h := hub.New(hub.Config{}, &st)
	store, node := clustertest.Start(t, clustertest.WithApplied(h))
	st.Store = store
	h.Start(node)
	api := transport.New(transport.Config{OpenRegistration: true}, store, node, h)
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), clustertest.Timeout)
		defer cancel()
		h.Close(ctx)
		api.Close(ctx)
		srv.Close()
	})
	return srv.URL
}

func runHubload(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpListsEveryScenario(t *testing.T) {
	code, out, _ := runHubload("--help")
	if code != exitPass {
		t.Fatalf("exit %d", code)
	}
	for _, s := range loadtest.Scenarios {
		if !strings.Contains(out, s.Name) {
			t.Errorf("--help does not list %s:\n%s", s.Name, out)
		}
	}
}

func TestBadInvocations(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"no-such-scenario"},
		{"throughput", "--rate", "fast"},
		{"throughput", "extra"},
		{"throughput", "--transport", "carrier-pigeon", "--report", ""},
		{"throughput", "--nodes", "not a url", "--report", ""},
		{"throughput", "--duration", "2h", "--report", ""},
	} {
		if code, _, _ := runHubload(args...); code != exitError {
			t.Errorf("hubload %q: exit %d, want %d", args, code, exitError)
		}
	}
}

func TestThroughputWritesAPassingReport(t *testing.T) {
	url := startHub(t)
	prefix := filepath.Join(t.TempDir(), "run")
	code, out, errOut := runHubload("throughput", "--nodes", url, "--users", "3", "--devices", "2",
		"--rate", "100", "--duration", "1s", "--quiet", "--report", prefix)
	if code != exitPass {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(out, "verdict: PASS: 100 published, 200 of 200 expected deliveries made; lost 0, duplicated 0, out of order 0") {
		t.Errorf("no passing verdict in:\n%s", out)
	}
	b, err := os.ReadFile(prefix + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var res loadtest.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Verdict == nil || !res.Verdict.Pass || res.Verdict.Delivered != 200 || res.Deliver.Count != 200 || len(res.Series) == 0 {
		t.Errorf("json result: %+v", res)
	}
	page, err := os.ReadFile(prefix + ".html")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "Throughput", "Latency", "PASS", "publish to deliver"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report has no %q", want)
		}
	}
	for _, fetch := range []string{"<script", "<link", "src=", "href="} {
		if bytes.Contains(page, []byte(fetch)) {
			t.Errorf("the report is not self-contained: it has %q", fetch)
		}
	}
}
