package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hubdBin is the hubd binary built once for every test of this package.
var hubdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hubd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hubdBin = filepath.Join(dir, "hubd")
	build := exec.Command("go", "build", "-race", "-ldflags", stampFlags, "-o", hubdBin, ".") // stampFlags: version_test.go
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hubd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running hubd child process.
type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	url      string
	internal string        // the internal listener's URL, when hubd printed one
	exited   chan struct{} // closed when the process has exited and its output is read
	stderr   logBuffer
}

var (
	listenLine   = regexp.MustCompile(`listening on (https?://\S+)`)
	internalLine = regexp.MustCompile(`internal \(metrics, admin\) on (http://\S+)`)
)

// looseLimits raise hubd's rate limits far above what a test sends: the
// defaults are sized for production, and these tests register many users
// and publish fast from the one address 127.0.0.1. A test of the limits
// passes its own flags after them (the last flag wins).
var looseLimits = []string{
	"--register-rate", "1e9", "--register-burst", "1000000000",
	"--auth-failure-rate", "1e9", "--auth-failure-burst", "1000000000",
	"--ticket-rate", "1e9", "--ticket-burst", "1000000000",
	"--mailbox-rate", "1e9", "--mailbox-burst", "1000000000",
	"--publish-token-rate", "1e9", "--publish-token-burst", "1000000000",
	"--publish-address-rate", "1e9", "--publish-address-burst", "1000000000",
}

// startHubd runs hubd on dataDir and returns once it says it is ready: it has
// replayed its log and elected itself.
func startHubd(t *testing.T, dataDir string, args ...string) *proc {
	t.Helper()
	p, lines := launchHubd(t, dataDir, args...)
	p.waitReady(lines)
	return p
}

// launchHubd runs hubd on dataDir and returns at once, with the lines of its
// stdout, which the caller must hand to waitReady (or drain). Its rate
// limits are looseLimits.
func launchHubd(t *testing.T, dataDir string, args ...string) (*proc, <-chan string) {
	t.Helper()
	args = append(append([]string{"--data", dataDir, "--listen", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0"}, looseLimits...), args...)
	p := &proc{t: t, cmd: exec.Command(hubdBin, args...), exited: make(chan struct{})}
	p.cmd.Stderr = &p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(p.exited)
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		for range lines { // drain, so the reader can finish
		}
		<-p.exited
	})
	return p, lines
}

// waitReady reads p's stdout lines until hubd says it is ready, then keeps
// draining them.
func (p *proc) waitReady(lines <-chan string) {
	p.t.Helper()
	p.readUntilReady(lines)
	go func() { // keep draining stdout until exit
		for range lines {
		}
	}()
}

// readUntilReady reads p's stdout lines until hubd says it is ready, taking
// the public (and any internal) listener's URL from the lines before it. The
// lines after ready are left to the caller.
func (p *proc) readUntilReady(lines <-chan string) {
	t := p.t
	t.Helper()
	timeout := time.After(60 * time.Second) // failsafe only
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("hubd exited before it was ready; stderr:\n%s", p.stderr.String())
			}
			if m := listenLine.FindStringSubmatch(line); m != nil {
				p.url = m[1]
			}
			if m := internalLine.FindStringSubmatch(line); m != nil {
				p.internal = m[1]
			}
			if line == "hubd: ready" {
				if p.url == "" {
					t.Fatal("hubd was ready before it said where it listens")
				}
				return
			}
		case <-timeout:
			t.Fatalf("hubd not ready after 60s; stderr:\n%s", p.stderr.String())
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGINT and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(60 * time.Second): // failsafe only
		p.t.Fatal("hubd did not stop after SIGINT")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("hubd exited with %d after SIGINT; stderr:\n%s", code, p.stderr.String())
	}
}

// logBuffer collects a child's stderr; exec writes it from its own goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *logBuffer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *logBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// call makes one HTTP request and decodes a JSON answer into out (if non-nil).
// It returns the status; a transport error fails the test.
func call(t *testing.T, method, url, bearer string, header map[string]string, body string, out any) int {
	t.Helper()
	status, err := tryCall(method, url, bearer, header, body, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return status
}

func tryCall(method, url, bearer string, header map[string]string, body string, out any) (int, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" && strings.HasPrefix(body, "{") {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %q: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}

type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}
