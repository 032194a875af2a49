package transport

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The request path allocates nothing for its metrics once a route has been
// seen: the wrapped mux allocates what the bare one does.
func TestHTTPMetricsAllocateNothingPerRequest(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/push/{token}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	m := newHTTPMetrics(mux)
	wrapped := m.wrap(mux)
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/v1/push/abc", nil)
	run := func(h http.Handler) float64 {
		h.ServeHTTP(w, r) // warm: the route's counters, the pool
		return testing.AllocsPerRun(200, func() { h.ServeHTTP(w, r) })
	}
	bare, with := run(mux), run(wrapped)
	if with > bare {
		t.Errorf("a request allocates %v times with the metrics, %v without", with, bare)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(m.collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "hub_http_requests_total" {
			continue
		}
		if len(f.Metric) != 1 {
			t.Fatalf("hub_http_requests_total has %d series, want 1", len(f.Metric))
		}
		labels := map[string]string{}
		for _, l := range f.Metric[0].Label {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["route"] != "POST /v1/push/{token}" || labels["code"] != "201" || f.Metric[0].Counter.GetValue() != 202 {
			t.Fatalf("hub_http_requests_total: %v = %v, want route POST /v1/push/{token}, code 201, 202 requests", labels, f.Metric[0].Counter.GetValue())
		}
		return
	}
	t.Fatal("no hub_http_requests_total")
}
