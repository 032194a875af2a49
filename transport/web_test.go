package transport_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestWebFiles: hub.js and the demo page are served from the binary, with
// the headers browsers need, and revalidate to 304 by ETag.
func TestWebFiles(t *testing.T) {
	t.Parallel()
	h := startHub(t, openConfig())
	for _, c := range []struct {
		path, ctype, contains string
	}{
		{"/v1/hub.js", "application/javascript; charset=utf-8", "global.Hub = Hub"},
		{"/", "text/html; charset=utf-8", `<script src="/v1/hub.js">`},
		{"/demo/demo.js", "application/javascript; charset=utf-8", "new Hub("},
		{"/demo/demo.css", "text/css; charset=utf-8", ".badge"},
	} {
		r := h.expect(t, http.StatusOK, "GET", c.path, nil, "")
		if got := r.header.Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := r.header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", c.path, got)
		}
		if !strings.Contains(string(r.body), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		etag := r.header.Get("ETag")
		if len(etag) < 3 || etag[0] != '"' {
			t.Fatalf("GET %s: ETag %q", c.path, etag)
		}
		if r := h.do(t, "GET", c.path, hdr("If-None-Match", etag), ""); r.status != http.StatusNotModified || len(r.body) != 0 {
			t.Errorf("GET %s with If-None-Match: %d %q, want 304", c.path, r.status, r.body)
		}
		if r := h.do(t, "HEAD", c.path, nil, ""); r.status != http.StatusOK || len(r.body) != 0 {
			t.Errorf("HEAD %s: %d", c.path, r.status)
		}
	}
	if r := h.expect(t, http.StatusOK, "GET", "/", nil, ""); !strings.Contains(r.header.Get("Content-Security-Policy"), "default-src 'self'") {
		t.Errorf("demo page CSP %q", r.header.Get("Content-Security-Policy"))
	}
	for _, path := range []string{"/demo/nope.js", "/demo/index.html", "/demo/hub.js", "/index.html"} {
		if r := h.do(t, "GET", path, nil, ""); r.status != http.StatusNotFound || errorCode(t, r) != "not_found" {
			t.Errorf("GET %s: %s, want 404 not_found", path, r)
		}
	}
	if r := h.do(t, "POST", "/", nil, ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %s Allow %q", r, r.header.Get("Allow"))
	}
}
