package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// samples is a scrape of /metrics: the sum of every family's samples by
// sample name (hub_delivery_seconds_count, hub_raft_term, ...).
type samples struct {
	body string
	sum  map[string]float64
}

func scrape(t *testing.T, p *proc) samples {
	t.Helper()
	res, err := http.Get(p.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", res.StatusCode, err)
	}
	s := samples{body: string(b), sum: map[string]float64{}}
	for line := range strings.SplitSeq(s.body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name := line[:strings.IndexAny(line, "{ ")]
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.sum[name] += v
	}
	return s
}

// needTool returns the path of a tool the test needs; without it the test
// skips, unless CI is set (.ci/run installs it): then it fails.
func needTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if _, ci := os.LookupEnv("CI"); !ci {
			t.Skipf("no %s on PATH (apt-get install prometheus); skipped because CI is unset", name)
		}
		t.Fatalf("no %s on PATH, and CI is set: .ci/run installs it", name)
	}
	return path
}

// TestMetricsUnderLoad: a real hubd, a device on each transport, a publish
// that reaches all three, an ack whose receipt a webhook takes, a snapshot,
// and the sessions' ends. Every series docs/operations.md lists is in the
// scrape after it and the ones the load drives have moved; promtool accepts
// the exposition; the dashboard and the alert rules name only series the
// scrape has, and the rules pass their unit tests.
func TestMetricsUnderLoad(t *testing.T) {
	receipts := make(chan struct{}, 16)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
		receipts <- struct{}{}
	}))
	t.Cleanup(app.Close)
	const admin = "metrics-admin-token"
	p := startHubd(t, t.TempDir(), "--admin-token", admin, "--receipt-allow-http", "--receipt-allow-private")
	before := scrape(t, p)

	u := register(t, p)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", p.url+"/v1/mailboxes", u.Secret, nil, `{"label":"metrics","receipt_url":"`+app.URL+`/r"}`, &mb); s != http.StatusCreated {
		t.Fatalf("create mailbox: %d", s)
	}
	ticket := func() string {
		var tk struct {
			Ticket string `json:"ticket"`
		}
		if s := call(t, "POST", p.url+"/v1/tickets", u.Secret, nil, "", &tk); s != http.StatusCreated && s != http.StatusOK {
			t.Fatalf("ticket: %d", s)
		}
		return tk.Ticket
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// WebSocket: hello, welcome.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(p.url, "http")+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","ticket":"`+ticket()+`","device":"ws1"}`)); err != nil {
		t.Fatal(err)
	}
	wsFrame := func(want string) map[string]any {
		t.Helper()
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("websocket read, waiting for %s: %v", want, err)
			}
			var f map[string]any
			if err := json.Unmarshal(b, &f); err != nil {
				t.Fatal(err)
			}
			if f["type"] == want {
				return f
			}
		}
	}
	wsFrame("welcome")

	// Long-poll: the first request opens the session; the second is held
	// until the publish.
	var opened struct {
		Sid string `json:"sid"`
	}
	if s := call(t, "POST", p.url+"/v1/poll", "", nil, `{"hello":{"ticket":"`+ticket()+`","device":"poll1"},"rid":1}`, &opened); s != http.StatusOK {
		t.Fatalf("poll open: %d", s)
	}
	polled := make(chan error, 1)
	go func() {
		var a struct {
			Messages []json.RawMessage `json:"messages"`
		}
		s, err := tryCall("POST", p.url+"/v1/poll", "", nil, `{"sid":"`+opened.Sid+`","rid":2,"wait":30}`, &a)
		if err == nil && (s != http.StatusOK || len(a.Messages) != 1) {
			err = fmt.Errorf("held poll: %d with %d messages", s, len(a.Messages))
		}
		polled <- err
	}()

	// Server-sent events: the stream, its welcome.
	sctx, stopSSE := context.WithCancel(ctx)
	defer stopSSE()
	req, _ := http.NewRequestWithContext(sctx, "GET", p.url+"/v1/sse?device=sse1&ticket="+ticket(), nil)
	sse, err := http.DefaultClient.Do(req)
	if err != nil || sse.StatusCode != http.StatusOK {
		t.Fatalf("sse: %v %v", sse, err)
	}
	defer sse.Body.Close()
	events := bufio.NewScanner(sse.Body)
	sseEvent := func(want string) {
		t.Helper()
		for events.Scan() {
			if events.Text() == "event: "+want {
				return
			}
		}
		t.Fatalf("sse ended before event %s: %v", want, events.Err())
	}
	sseEvent("welcome")

	publishN(t, p, mb.Token, 1, 1)
	f := wsFrame("msg")
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ack","seq":`+fmt.Sprint(f["seq"])+`}`)); err != nil {
		t.Fatal(err)
	}
	sseEvent("msg")
	if err := <-polled; err != nil {
		t.Fatal(err)
	}
	select {
	case <-receipts: // the delivered receipt, POSTed
	case <-ctx.Done():
		t.Fatal("no receipt reached the webhook")
	}
	if s := call(t, "POST", p.url+"/admin/v1/snapshot", admin, nil, "", nil); s/100 != 2 {
		t.Fatalf("snapshot: %d", s)
	}
	// A request no route takes, and a refused one.
	call(t, "GET", p.url+"/no/such/path", "", nil, "", nil)
	call(t, "POST", p.url+"/v1/push/not-a-token", "", nil, "x", nil)

	// End the sessions: close the socket, terminate the poll, drop the stream.
	ws.Close(websocket.StatusNormalClosure, "")
	if s := call(t, "POST", p.url+"/v1/poll", "", nil, `{"sid":"`+opened.Sid+`","rid":3,"terminate":true}`, nil); s/100 != 2 {
		t.Fatalf("poll terminate: %d", s)
	}
	stopSSE()
	// The ends happen in hubd as each connection is noticed gone: scrape
	// until all three are counted (the failsafe is ctx).
	var after samples
	for {
		after = scrape(t, p)
		if after.sum["hub_session_ends_total"] >= 3 && after.sum["hub_transport_sessions"] == 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the sessions' ends were not counted:\n%s", grep(after.body, "hub_session"))
		case <-time.After(20 * time.Millisecond):
		}
	}

	// moved: the load changed the family's sum; present: it is there.
	for _, tc := range []struct {
		name  string
		moved bool
	}{
		{"hub_publish_commit_seconds_count", true},
		{"hub_delivery_seconds_count", true},
		{"hub_receipt_delay_seconds_count", true},
		{"hub_receipt_post_seconds_count", true},
		{"hub_transport_sessions", false},
		{"hub_session_ends_total", true},
		{"hub_http_requests_total", true},
		{"hub_http_request_duration_seconds_count", true},
		{"hub_raft_state", false},
		{"hub_raft_term", false},
		{"hub_raft_leader_known", false},
		{"hub_raft_last_contact_seconds", false},
		{"hub_raft_commit_index", true},
		{"hub_raft_applied_index", true},
		{"hub_raft_last_index", true},
		{"hub_raft_last_snapshot_index", false}, // absent before the snapshot
		{"hub_raft_last_snapshot_timestamp_seconds", false},
		{"hub_raft_log_bytes", false},
		{"hub_raft_snapshot_bytes", true},
		{"hub_receipt_outbox_depth", false},
		{"hub_receipt_outbox_oldest_age_seconds", false},
		{"hub_badger_bytes", false},
		{"hub_disk_free_bytes", false},
		{"hub_disk_reserve_bytes", false},
	} {
		v, ok := after.sum[tc.name]
		switch {
		case !ok:
			t.Errorf("%s is not in the scrape", tc.name)
		case tc.moved && v == before.sum[tc.name]:
			t.Errorf("%s did not move under the load: %v", tc.name, v)
		}
	}
	for _, nonzero := range []string{"hub_raft_term", "hub_raft_leader_known", "hub_raft_log_bytes",
		"hub_badger_bytes", "hub_disk_free_bytes", "hub_raft_last_snapshot_index", "hub_raft_last_snapshot_timestamp_seconds"} {
		if after.sum[nonzero] <= 0 {
			t.Errorf("%s = %v, want > 0", nonzero, after.sum[nonzero])
		}
	}
	for _, line := range []string{
		`hub_raft_state{state="leader"} 1`,
		`hub_session_ends_total{reason="disconnected",transport="ws"} 1`,
		`hub_session_ends_total{reason="terminated",transport="poll"} 1`,
		`hub_session_ends_total{reason="disconnected",transport="sse"} 1`,
		`hub_delivery_seconds_count{transport="ws"} 1`,
		`hub_delivery_seconds_count{transport="poll"} 1`,
		`hub_delivery_seconds_count{transport="sse"} 1`,
		`hub_http_requests_total{code="201",route="POST /v1/push/{token}"} 1`,
		`hub_http_requests_total{code="404",route="other"} 1`,
		`hub_http_requests_total{code="101",route="GET /v1/ws"} 1`,
	} {
		if !strings.Contains(after.body, line+"\n") {
			t.Errorf("the scrape has no line %q", line)
		}
	}
	if strings.Contains(after.body, "/no/such/path") || strings.Contains(after.body, "not-a-token") {
		t.Error("a raw path is a label value")
	}

	t.Run("promtool check metrics", func(t *testing.T) {
		cmd := exec.Command(needTool(t, "promtool"), "check", "metrics")
		cmd.Stdin = strings.NewReader(after.body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})
	t.Run("dashboard and alerts name scraped series", func(t *testing.T) {
		checkDashboard(t, after)
		checkAlerts(t, after)
	})
	t.Run("promtool test rules", func(t *testing.T) {
		promtool := needTool(t, "promtool")
		for _, args := range [][]string{
			{"check", "rules", "alerts.yml"},
			{"test", "rules", "alerts_test.yml"},
		} {
			cmd := exec.Command(promtool, args...)
			cmd.Dir = filepath.Join("..", "..", "docs", "prometheus")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %v: %v\n%s", args, err, out)
			}
		}
	})
}

// grep returns the lines of body that contain s.
func grep(body, s string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(body, "\n") {
		if strings.Contains(line, s) {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// seriesName finds the hub's series names in a PromQL expression.
var seriesName = regexp.MustCompile(`\bhub_[a-z0-9_]+`)

// checkExpr fails unless every series expr names is in the scrape.
func checkExpr(t *testing.T, where, expr string, s samples) {
	t.Helper()
	names := seriesName.FindAllString(expr, -1)
	if len(names) == 0 && !strings.Contains(expr, "up{") {
		t.Errorf("%s: %q names no series of the hub", where, expr)
	}
	for _, n := range names {
		if _, ok := s.sum[n]; !ok {
			t.Errorf("%s: %q names %s, which the scrape does not have", where, expr, n)
		}
	}
}

// checkDashboard parses docs/grafana/hub.json and checks every panel's
// queries.
func checkDashboard(t *testing.T, s samples) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "grafana", "hub.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("docs/grafana/hub.json: %v", err)
	}
	exprs := 0
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			checkExpr(t, "panel "+p.Title, tg.Expr, s)
			exprs++
		}
	}
	if exprs < 8 {
		t.Errorf("the dashboard has %d queries; want the latency, sessions, raft and receipt panels", exprs)
	}
}

// checkAlerts checks the expr of every rule in docs/prometheus/alerts.yml
// (one line each: promtool check rules, in its own subtest, parses the
// file as YAML).
func checkAlerts(t *testing.T, s samples) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		if expr, ok := strings.CutPrefix(strings.TrimSpace(line), "expr: "); ok {
			checkExpr(t, "alert rule", expr, s)
			n++
		}
	}
	if n < 5 {
		t.Errorf("alerts.yml has %d rules with a one-line expr", n)
	}
}
