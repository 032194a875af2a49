package transport

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"time"
)

// The browser client and the demo page, built into the binary: hub.js at
// GET /v1/hub.js (docs/client.md), the demo at GET / with its assets under
// GET /demo/.
//
//go:embed web/hub.js web/index.html web/demo.js web/demo.css
var webFiles embed.FS

// webFile is one embedded file, ready to serve.
type webFile struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

var webAssets = func() map[string]*webFile {
	types := map[string]string{
		".js":   "application/javascript; charset=utf-8",
		".html": "text/html; charset=utf-8",
		".css":  "text/css; charset=utf-8",
	}
	m := map[string]*webFile{}
	entries, err := fs.ReadDir(webFiles, "web")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, err := webFiles.ReadFile("web/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		m[e.Name()] = &webFile{
			name:  e.Name(),
			body:  b,
			ctype: types[path.Ext(e.Name())],
			etag:  `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
	}
	return m
}()

// demoCSP keeps the demo page to its own origin: no inline script, no third
// party, no framing.
const demoCSP = "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// GET /v1/hub.js
func (s *Server) handleHubJS(w http.ResponseWriter, r *http.Request) {
	serveWebFile(w, r, webAssets["hub.js"])
}

// GET /
func (s *Server) handleDemo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", demoCSP)
	w.Header().Set("X-Frame-Options", "DENY")
	serveWebFile(w, r, webAssets["index.html"])
}

// GET /demo/{file}
func (s *Server) handleDemoAsset(w http.ResponseWriter, r *http.Request) {
	f := webAssets[r.PathValue("file")]
	if f == nil || f.name == "index.html" || f.name == "hub.js" {
		s.writeError(w, r, errNotFound)
		return
	}
	serveWebFile(w, r, f)
}

// serveWebFile answers with f, or 304 for a matching If-None-Match. The
// files change only with the binary: no-cache makes browsers revalidate,
// which the ETag makes cheap.
func serveWebFile(w http.ResponseWriter, r *http.Request, f *webFile) {
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
}
