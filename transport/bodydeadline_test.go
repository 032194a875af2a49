package transport

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBodyDeadlineRestores: a backup upload bearing the admin token may
// take longer than the body deadline (/admin/v1/restore); a handler that has
// read its body and then waits longer than the deadline keeps its request's
// context (a write waiting for raft); and elsewhere a late body is still
// cut off, as is a restore that does not bear the token.
//
// The waits below are longer than the deadline on purpose: what is tested
// is whether a deadline fires, so the time passing is the input, not a way
// to synchronise.
func TestBodyDeadlineRestores(t *testing.T) {
	const timeout = 100 * time.Millisecond
	s := &Server{limits: Limits{BodyTimeout: timeout, BatchBodyTimeout: timeout},
		cfg: Config{AdminToken: "admin-token"}}
	srv := httptest.NewServer(s.bodyDeadlines(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/internal/v1/propose" {
			select {
			case <-r.Context().Done():
				http.Error(w, "cancelled while waiting", http.StatusServiceUnavailable)
				return
			case <-time.After(3 * timeout):
			}
		}
		fmt.Fprintf(w, "%d", len(body))
	})))
	defer srv.Close()

	send := func(t *testing.T, path, cred string, late bool) string {
		t.Helper()
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second)) // failsafe only
		fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer %s\r\nContent-Length: 5\r\n\r\n", path, cred)
		if late {
			time.Sleep(3 * timeout) // past the deadline a bounded body would have
		}
		io.WriteString(conn, "hello")
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(res.Body)
		return fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(b)))
	}
	if got := send(t, "/internal/v1/propose", "", false); got != "200 5" {
		t.Errorf("a handler waiting after its body: %s, want 200 5", got)
	}
	for p, cred := range map[string]string{"/admin/v1/restore": "admin-token"} {
		if got := send(t, p, cred, true); got != "200 5" {
			t.Errorf("%s: a backup arriving late: %s, want 200 5", p, got)
		}
		if got := send(t, p, "wrong", true); !strings.HasPrefix(got, "400 body") {
			t.Errorf("%s: a late body without the credential: %s, want it cut off", p, got)
		}
	}
	if got := send(t, "/v1/mailboxes", "admin-token", true); !strings.HasPrefix(got, "400 body") {
		t.Errorf("a late body elsewhere: %s, want it cut off", got)
	}
}
