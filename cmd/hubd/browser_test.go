package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The browser tests drive hub.js (transport/web/hub.js) and the demo page in
// a headless Chromium against a real hubd child process. Without a Chromium
// they skip, unless CI is set: then they fail, so that CI cannot pass by
// skipping them.

// browserWait is the failsafe bound of every wait in the page. It is never a
// timing assertion: the waits end on the condition.
const browserWait = 90 * time.Second

// newBrowser starts a headless Chromium with a fresh profile and returns the
// context of its first tab. It is stopped in t.Cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		if _, ci := os.LookupEnv("CI"); !ci {
			t.Skip("no chromium on PATH (install it with apt-get install chromium); skipped because CI is unset")
		}
		t.Fatal("no chromium on PATH, and CI is set: the browser tests must run in CI")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root
		chromedp.WindowSize(1100, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser; its context must have no deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browse runs browser actions under the failsafe bound.
func browse(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v\n%s", err, pageLog(ctx))
	}
}

// evalJS evaluates expr in the page and decodes its value.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v\n%s", expr, err, pageLog(ctx))
	}
	return v
}

// waitJS waits until the JavaScript condition holds in the page.
func waitJS(t *testing.T, ctx context.Context, cond string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, browserWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(wctx, chromedp.Poll[bool](cond,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		t.Fatalf("waiting for %s: %v\n%s", cond, err, pageLog(ctx))
	}
}

// pageLog is what the test page noted (window.__log), for failure messages.
func pageLog(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(window.__log || []).join("\n")`))
	if err != nil {
		return "(no page log: " + err.Error() + ")"
	}
	return "page log:\n" + s
}

// startTestClient opens the hub's own page (so that hub.js is loaded from
// the hub and everything is same-origin) and starts a Hub in it that gets
// its tickets with the user secret. The page records what it handles in
// window.__got as "seq:data", and its state in window.__state and
// window.__transport.
func startTestClient(t *testing.T, ctx context.Context, hubURL, secret, device string, transports ...string) {
	t.Helper()
	startTestClientWith(t, ctx, hubURL, secret, device, nil, transports...)
}

// startTestClientWith is startTestClient with more of hub.js's options.
func startTestClientWith(t *testing.T, ctx context.Context, hubURL, secret, device string, options map[string]any, transports ...string) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"secret": secret, "device": device, "transports": transports, "options": options})
	browse(t, ctx, chromedp.Navigate(hubURL+"/"))
	evalJS[bool](t, ctx, fmt.Sprintf(testClientJS, cfg))
}

const testClientJS = `(() => {
  const cfg = %s;
  window.__got = []; window.__log = []; window.__state = ''; window.__transport = ''; window.__welcomes = [];
  window.__holdSeq = 0; // the handler of this seq waits for window.__release()
  window.__tickets = 0; // tickets the page asked for: one per connection attempt
  const log = (...a) => __log.push(new Date().toISOString().slice(11, 23) + ' ' + a.join(' '));
  const hub = new Hub(Object.assign({
    url: location.origin,
    device: cfg.device,
    storageKey: 'test',
    transports: cfg.transports || undefined,
    ticket: async () => {
      __tickets++;
      const r = await fetch('/v1/tickets', {method: 'POST', headers: {Authorization: 'Bearer ' + cfg.secret}});
      if (r.status !== 201) throw new Error('ticket: ' + r.status);
      return (await r.json()).ticket;
    },
  }, cfg.options || {}));
  hub.on('state', (s) => {
    __state = s.state; __transport = s.transport || ''; window.__closedReason = s.reason || '';
    log('state', JSON.stringify(s));
  });
  hub.on('welcome', (w) => { __welcomes.push(w); log('welcome', JSON.stringify(w)); });
  hub.on('error', (e) => log('error', JSON.stringify(e)));
  hub.onMessage(async (m) => {
    if (m.seq === __holdSeq) await new Promise((resolve) => { window.__release = resolve; });
    __got.push(m.seq + ':' + m.data); log('msg', m.seq);
  });
  window.__hub = hub;
  hub.connect();
  return true;
})()`

// browserMailbox registers a user and makes a mailbox; it returns the user
// secret and the mailbox token.
func browserMailbox(t *testing.T, p *proc) (secret, token string) {
	t.Helper()
	u := register(t, p)
	var mb struct {
		Token string `json:"token"`
	}
	if s := call(t, "POST", p.url+"/v1/mailboxes", u.Secret, nil, `{"label":"browser"}`, &mb); s != http.StatusCreated {
		t.Fatalf("create mailbox: %d", s)
	}
	return u.Secret, mb.Token
}

// publishN publishes "m<i>" for i in [from, to] and checks each got a 201.
func publishN(t *testing.T, p *proc, token string, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		var r struct {
			ID string `json:"id"`
		}
		if s := call(t, "POST", p.url+"/v1/push/"+token, "", map[string]string{"Content-Type": "text/plain", "TTL": "3600"}, fmt.Sprintf("m%d", i), &r); s != http.StatusCreated {
			t.Fatalf("publish m%d: %d", i, s)
		}
	}
}

// wantGot is what the page must have handled after seqs 1..n: each once,
// in order.
func wantGot(n int) []string {
	var w []string
	for i := 1; i <= n; i++ {
		w = append(w, fmt.Sprintf("%d:m%d", i, i))
	}
	return w
}

// checkGot waits until the page handled n messages, then checks they are
// exactly 1..n, in order.
func checkGot(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	waitJS(t, ctx, fmt.Sprintf("window.__got && window.__got.length >= %d", n))
	got := evalJS[[]string](t, ctx, "window.__got")
	if !slices.Equal(got, wantGot(n)) {
		t.Fatalf("page handled %q, want %q\n%s", got, wantGot(n), pageLog(ctx))
	}
}

// waitCursor waits until the hub's cursor of the device is want: the page's
// acks were committed. It reads GET /v1/devices until then (the acks reach
// the raft log in batches, and nothing outside the process can wait on
// them otherwise).
func waitCursor(t *testing.T, p *proc, secret, device string, want int) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	failsafe := time.After(browserWait)
	last := -1
	for {
		var l struct {
			Devices []struct {
				DeviceID string `json:"device_id"`
				Cursor   int    `json:"cursor"`
			} `json:"devices"`
		}
		if s := call(t, "GET", p.url+"/v1/devices", secret, nil, "", &l); s != http.StatusOK {
			t.Fatalf("list devices: %d", s)
		}
		for _, d := range l.Devices {
			if d.DeviceID == device {
				last = d.Cursor
			}
		}
		if last == want {
			return
		}
		if last > want {
			t.Fatalf("cursor of %s is %d, beyond %d", device, last, want)
		}
		select {
		case <-tick.C:
		case <-failsafe:
			t.Fatalf("cursor of %s is %d, want %d", device, last, want)
		}
	}
}

// waitForRoute skips (or, with CI set, fails) a test whose endpoint is not
// in this build yet.
func needRoute(t *testing.T, p *proc, method, path string) {
	t.Helper()
	var e apiError
	s := call(t, method, p.url+path, "", nil, "", &e)
	if s == http.StatusNotFound && e.Error.Code == "not_found" {
		if _, ci := os.LookupEnv("CI"); !ci {
			t.Skipf("%s %s is not served by this build yet", method, path)
		}
		t.Fatalf("%s %s is not served", method, path)
	}
}

// TestBrowserWebSocket: hub.js in a page connects over WebSocket, gets five
// messages in order, and acks them: the device's cursor reaches 5.
func TestBrowserWebSocket(t *testing.T) {
	p := startHubd(t, t.TempDir())
	secret, token := browserMailbox(t, p)
	ctx := newBrowser(t)

	startTestClient(t, ctx, p.url, secret, "browser:ws")
	waitJS(t, ctx, "window.__state === 'open'")
	if tr := evalJS[string](t, ctx, "window.__transport"); tr != "websocket" {
		t.Fatalf("transport %q, want websocket\n%s", tr, pageLog(ctx))
	}
	publishN(t, p, token, 1, 5)
	checkGot(t, ctx, 5)
	waitCursor(t, p, secret, "browser:ws", 5)
	if s := evalJS[string](t, ctx, "localStorage.getItem('test:seq:browser:ws')"); s != "5" {
		t.Fatalf("stored seq %q, want 5", s)
	}
}

// TestBrowserSSE: hub.js over Server-Sent Events when asked for it: the
// backlog, then live messages, acked through POST /v1/ack.
func TestBrowserSSE(t *testing.T) {
	p := startHubd(t, t.TempDir())
	needRoute(t, p, "GET", "/v1/sse")
	secret, token := browserMailbox(t, p)
	ctx := newBrowser(t)

	publishN(t, p, token, 1, 3)
	startTestClient(t, ctx, p.url, secret, "browser:sse", "sse")
	checkGot(t, ctx, 3)
	if tr := evalJS[string](t, ctx, "window.__transport"); tr != "sse" {
		t.Fatalf("transport %q, want sse\n%s", tr, pageLog(ctx))
	}
	publishN(t, p, token, 4, 6)
	checkGot(t, ctx, 6)
	waitCursor(t, p, secret, "browser:sse", 6)
}

// blockedWebSocket stands in for a WebSocket that a proxy or firewall
// blocks: while window.__blockWS is true (from the start) every socket fails
// without opening, as the network would make it; once the page sets it
// false, sockets are real again.
const blockedWebSocket = `(() => {
  const Real = window.WebSocket;
  window.__wsAttempts = 0;
  window.__blockWS = true;
  function Blocked() {
    this.readyState = 0;
    setTimeout(() => {
      this.readyState = 3;
      if (this.onerror) this.onerror(new Event('error'));
      if (this.onclose) this.onclose({code: 1006, reason: '', wasClean: false});
    }, 0);
  }
  Blocked.prototype.send = function () { throw new Error('not open'); };
  Blocked.prototype.close = function () {};
  window.WebSocket = function (url, protocols) {
    window.__wsAttempts++;
    return window.__blockWS ? new Blocked() : new Real(url, protocols);
  };
  window.WebSocket.OPEN = Real.OPEN;
  window.WebSocket.CLOSED = Real.CLOSED;
})();`

// blockWebSockets makes every page the browser opens from now on start
// with blockedWebSocket.
func blockWebSockets(t *testing.T, ctx context.Context) {
	t.Helper()
	browse(t, ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: blockedWebSocket})
		return err
	}))
}

// TestBrowserFallbackToPoll: with WebSockets blocked, hub.js tries twice,
// falls back to long-polling, and gets the backlog and the live messages.
func TestBrowserFallbackToPoll(t *testing.T) {
	p := startHubd(t, t.TempDir())
	needRoute(t, p, "POST", "/v1/poll")
	secret, token := browserMailbox(t, p)
	ctx := newBrowser(t)
	blockWebSockets(t, ctx)

	publishN(t, p, token, 1, 3) // the backlog, in the answer to the hello
	startTestClient(t, ctx, p.url, secret, "browser:poll")
	checkGot(t, ctx, 3)
	if tr := evalJS[string](t, ctx, "window.__transport"); tr != "poll" {
		t.Fatalf("transport %q, want poll\n%s", tr, pageLog(ctx))
	}
	if n := evalJS[int](t, ctx, "window.__wsAttempts"); n != 2 {
		t.Fatalf("%d WebSocket attempts before the fallback, want 2\n%s", n, pageLog(ctx))
	}
	publishN(t, p, token, 4, 6) // live, to the held request
	checkGot(t, ctx, 6)
	waitCursor(t, p, secret, "browser:poll", 6)
}

// TestBrowserResumeAfterRestart: the hub goes down under a connected page,
// once with SIGKILL and once with a clean stop, and comes back on the same
// data and port. The page resumes by itself and has handled every seq
// exactly once. The first time, the handler of seq 3 is still running when
// the page reconnects, so the hello acks only 2, the new session sends 3
// again, and hub.js must drop it.
func TestBrowserResumeAfterRestart(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	p := startHubd(t, data, "--listen", addr) // the later --listen wins
	secret, token := browserMailbox(t, p)
	ctx := newBrowser(t)
	startTestClient(t, ctx, p.url, secret, "browser:restart")
	waitJS(t, ctx, "window.__state === 'open'")

	evalJS[int](t, ctx, "window.__holdSeq = 3")
	publishN(t, p, token, 1, 3)
	checkGot(t, ctx, 2)
	waitJS(t, ctx, "typeof window.__release === 'function'") // seq 3 is being handled
	p.kill()
	waitJS(t, ctx, "window.__state === 'reconnecting'")
	p = startHubd(t, data, "--listen", addr)
	publishN(t, p, token, 4, 6)
	waitJS(t, ctx, "window.__welcomes.length === 2")
	if from := evalJS[int](t, ctx, "window.__welcomes[1].from"); from != 2 {
		t.Fatalf("second session from %d, want 2 (the hello's ack)\n%s", from, pageLog(ctx))
	}
	// The new session's 3..6 are queued behind the running handler (a look
	// inside hub.js: there is no event for a message queued).
	waitJS(t, ctx, "window.__hub._queue.length === 4")
	evalJS[bool](t, ctx, "window.__release(), true")
	checkGot(t, ctx, 6)
	if n := evalJS[int](t, ctx, "window.__hub.duplicates"); n != 1 {
		t.Fatalf("hub.js dropped %d duplicates, want 1 (seq 3)\n%s", n, pageLog(ctx))
	}

	p.stop() // clean: the page hears going_away
	waitJS(t, ctx, "window.__state === 'reconnecting'")
	p = startHubd(t, data, "--listen", addr)
	publishN(t, p, token, 7, 9)
	checkGot(t, ctx, 9)
	waitCursor(t, p, secret, "browser:restart", 9)
	// Nothing more came in meanwhile: the list is still exactly 1..9.
	if got := evalJS[[]string](t, ctx, "window.__got"); !slices.Equal(got, wantGot(9)) {
		t.Fatalf("page handled %q, want %q", got, wantGot(9))
	}
}

// TestBrowserDemoPage clicks through the demo page: register, create a
// mailbox, send, and see the message received and its status delivered.
// It leaves a screenshot in $TEST_ARTIFACTS (or a temporary directory).
func TestBrowserDemoPage(t *testing.T) {
	p := startHubd(t, t.TempDir())
	ctx := newBrowser(t)
	browse(t, ctx, chromedp.Navigate(p.url+"/"))
	browse(t, ctx,
		chromedp.WaitVisible("#register"),
		chromedp.Click("#register"),
	)
	waitJS(t, ctx, `document.querySelector('#user-id').textContent.length === 16`)
	waitJS(t, ctx, `document.querySelector('#state').dataset.state === 'open'`)
	browse(t, ctx,
		chromedp.WaitEnabled("#create-mailbox"),
		chromedp.Click("#create-mailbox"),
	)
	waitJS(t, ctx, `document.querySelector('#token').textContent.length === 43`)
	browse(t, ctx,
		chromedp.WaitEnabled("#send"),
		chromedp.SetValue("#message", "Hello from the browser test"),
		chromedp.Click("#send"),
	)
	waitJS(t, ctx, `document.querySelector('#last-id').textContent.length === 16`)
	waitJS(t, ctx, `!!document.querySelector('#received li[data-seq="1"]')`)
	waitJS(t, ctx, `!!document.querySelector('#sent li[data-state="delivered"]')`)
	id := evalJS[string](t, ctx, `document.querySelector('#last-id').textContent`)
	if sent := evalJS[string](t, ctx, `document.querySelector('#sent li').dataset.id`); sent != id {
		t.Fatalf("sent list shows %q, the publish answered %q", sent, id)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('#received li .data').textContent`); got != "Hello from the browser test" {
		t.Fatalf("received %q", got)
	}

	dir := os.Getenv("TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "hubd-browser-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctxShot, cancel := context.WithTimeout(ctx, browserWait)
	defer cancel()
	png, err := chromedp.Run(ctxShot, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestBrowserBackToWebSocketAfterFallback: a page that fell back to
// long-polling tries the WebSocket again at its next reconnect once
// retryFirstAfter has passed (0 here), and uses it when it gets through,
// without losing or repeating a message on the way.
func TestBrowserBackToWebSocketAfterFallback(t *testing.T) {
	data := t.TempDir()
	addr := freeAddr(t)
	p := startHubd(t, data, "--listen", addr)
	secret, token := browserMailbox(t, p)
	ctx := newBrowser(t)
	blockWebSockets(t, ctx)

	publishN(t, p, token, 1, 2)
	startTestClientWith(t, ctx, p.url, secret, "browser:back", map[string]any{"retryFirstAfter": 0})
	checkGot(t, ctx, 2)
	if tr := evalJS[string](t, ctx, "window.__transport"); tr != "poll" {
		t.Fatalf("transport %q, want poll\n%s", tr, pageLog(ctx))
	}
	// The network lets WebSockets through again; the hub restarts, which
	// ends the long-poll session (going_away) and makes the page reconnect.
	evalJS[bool](t, ctx, "window.__blockWS = false, true")
	p.stop()
	waitJS(t, ctx, "window.__state === 'reconnecting'")
	p = startHubd(t, data, "--listen", addr)
	waitJS(t, ctx, "window.__state === 'open' && window.__transport === 'websocket'")
	publishN(t, p, token, 3, 4)
	checkGot(t, ctx, 4)
	waitCursor(t, p, secret, "browser:back", 4)
}

// TestBrowserStopsWhenRevoked: a page whose device is deleted (WebSocket,
// close code 4404) or whose user is deleted (long-polling, 410
// user_revoked) closes for good: state closed with the reason, and no
// further connection attempt (no new ticket asked for).
func TestBrowserStopsWhenRevoked(t *testing.T) {
	p := startHubd(t, t.TempDir())
	for _, tc := range []struct {
		transport, reason string
		revoke            func(secret string)
	}{
		{"websocket", "device_deleted", func(secret string) {
			if s := call(t, "DELETE", p.url+"/v1/devices/browser:revoked", secret, nil, "", nil); s != http.StatusNoContent {
				t.Fatalf("delete device: %d", s)
			}
		}},
		{"poll", "user_revoked", func(secret string) {
			if s := call(t, "DELETE", p.url+"/v1/users/me", secret, nil, "", nil); s != http.StatusNoContent {
				t.Fatalf("delete user: %d", s)
			}
		}},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			secret, token := browserMailbox(t, p)
			ctx := newBrowser(t)
			publishN(t, p, token, 1, 1)
			startTestClient(t, ctx, p.url, secret, "browser:revoked", tc.transport)
			checkGot(t, ctx, 1)
			tc.revoke(secret)
			waitJS(t, ctx, "window.__state === 'closed'")
			if r := evalJS[string](t, ctx, "window.__closedReason"); r != tc.reason {
				t.Fatalf("closed with reason %q, want %q\n%s", r, tc.reason, pageLog(ctx))
			}
			// Closed for good: not running, no retry timer armed, and the one
			// ticket of the first connection is all it ever asked for.
			if running := evalJS[bool](t, ctx, "window.__hub._running"); running {
				t.Fatalf("hub.js still running after %s\n%s", tc.reason, pageLog(ctx))
			}
			if n := evalJS[int](t, ctx, "window.__tickets"); n != 1 {
				t.Fatalf("%d tickets asked for, want 1\n%s", n, pageLog(ctx))
			}
		})
	}
}

// freeAddr is a loopback address free a moment ago, for a hubd that must
// come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
