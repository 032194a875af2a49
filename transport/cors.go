package transport

import (
	"net/http"
	"strings"
)

// cors lets pages of any origin call the /v1/ endpoints: devices' pages
// (long-poll, SSE, acks, tickets) and apps that publish. No endpoint reads a
// cookie or any other ambient credential (a ticket, token or secret is
// always sent explicitly), so "*" opens nothing that another site could ride
// on. A preflight is answered here; every other request gets the headers and
// goes on.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/") {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h["Access-Control-Allow-Origin"] = corsAnyOrigin
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h["Access-Control-Allow-Methods"] = corsMethods
			h["Access-Control-Allow-Headers"] = corsHeaders
			h["Access-Control-Max-Age"] = corsMaxAge
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h["Access-Control-Expose-Headers"] = corsExposed
		next.ServeHTTP(w, r)
	})
}

var (
	corsAnyOrigin = []string{"*"}
	corsMethods   = []string{"GET, POST, DELETE"}
	corsHeaders   = []string{"Content-Type, Authorization, Last-Event-ID, Idempotency-Key, TTL, Topic, Urgency"}
	corsMaxAge    = []string{"86400"}
	corsExposed   = []string{"Location, Retry-After, Idempotent-Replayed, WWW-Authenticate"}
)
