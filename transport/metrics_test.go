package transport_test

import (
	"net/http"
	"strings"
	"testing"
)

// metricValue returns the value of the unlabelled sample name in a
// Prometheus text exposition, or "" when it is absent.
func metricValue(body, name string) string {
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func TestMetricsCountSessionsPublishesAndDeliveries(t *testing.T) {
	h := startHub(t, openConfig())
	a := h.newAccount(t) // publishes "first"
	c, _ := h.wsHello(t, a.secret, "laptop", nil)
	recvMsgs(t, c, 0, 1)
	h.publish(t, a.token, "second", nil)
	recvMsgs(t, c, 1, 1)

	body := string(h.expect(t, http.StatusOK, "GET", "/metrics", nil, "").body)
	for name, want := range map[string]string{
		"hub_sessions":                 "1",
		"hub_session_users":            "1",
		"hub_published_messages_total": "2",
		"hub_delivered_messages_total": "1", // "first" was read from the store, "second" pushed live
		"hub_sessions_too_slow_total":  "0",
	} {
		if got := metricValue(body, name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if v := metricValue(body, "process_resident_memory_bytes"); v == "" || v == "0" {
		t.Errorf("process_resident_memory_bytes = %q, want the process's RSS", v)
	}
}
