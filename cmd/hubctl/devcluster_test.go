package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bins holds hubd and hubctl, built once for the tests of this package
// (hubctl finds hubd next to itself, as in a release).
var bins string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hubctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins = dir
	build := exec.Command("go", "build", "-race", "-ldflags", stampFlags, "-o", dir+"/", "../hubd", ".") // stampFlags: version_test.go
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build hubd and hubctl:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lines collects a child's output and lets a test wait for a line.
type lines struct {
	mu     sync.Mutex
	all    []string
	change chan struct{}
}

func newLines() *lines { return &lines{change: make(chan struct{})} }

func (l *lines) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.all = append(l.all, sc.Text())
		close(l.change)
		l.change = make(chan struct{})
		l.mu.Unlock()
	}
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.all, "\n")
}

// wait waits for n lines matching re and returns their submatches.
func (l *lines) wait(t *testing.T, re *regexp.Regexp, n int) [][]string {
	t.Helper()
	deadline := time.After(90 * time.Second) // failsafe only
	for {
		l.mu.Lock()
		var found [][]string
		for _, s := range l.all {
			if m := re.FindStringSubmatch(s); m != nil {
				found = append(found, m)
			}
		}
		ch := l.change
		l.mu.Unlock()
		if len(found) >= n {
			return found
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %d lines matching %s in:\n%s", n, re, l)
		}
	}
}

// freePorts returns a port p such that p, p+1, p+2 and the same plus 1000
// (dev-cluster's HTTP and raft ports) are free now.
func freePorts(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(20000)
		var ls []net.Listener
		ok := true
		for _, q := range []int{p, p + 1, p + 2, p + 1000, p + 1001, p + 1002} {
			l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(q))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free ports")
	return 0
}

func httpCall(method, url, bearer string, header map[string]string, body string, out any) (int, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if strings.HasPrefix(body, "{") {
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
	if err == nil && out != nil && resp.StatusCode/100 == 2 {
		err = json.Unmarshal(b, out)
	}
	return resp.StatusCode, err
}

// until calls f until it returns nil, for at most a minute (a failsafe).
func until(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond) // polling other processes: nothing to await
	}
}

func hubctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(bins, "hubctl"), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestDevClusterSurvivesAKilledNode runs hubctl dev-cluster, SIGKILLs the
// leader, and checks that the other two keep running and take a write, that
// hubctl status says why the dead node is down, that the command hubctl
// printed starts the node again, and that Ctrl-C then stops every node and
// exits with an error (a node died). The cluster secret is in no command
// line.
func TestDevClusterSurvivesAKilledNode(t *testing.T) {
	dir := t.TempDir()
	port := freePorts(t)
	urls := []string{}
	for i := range 3 {
		urls = append(urls, fmt.Sprintf("http://127.0.0.1:%d", port+i))
	}
	cmd := exec.Command(filepath.Join(bins, "hubctl"), "dev-cluster", "--dir", dir, "--port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "HUB_CLUSTER_SECRET=") // empty: made and kept in dir/secret
	stdout, stderr := newLines(), newLines()
	outPipe, _ := cmd.StdoutPipe()
	errPipe, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Go(func() { stdout.read(outPipe) })
	readers.Go(func() { stderr.read(errPipe) })
	exited := make(chan error, 1)
	go func() { readers.Wait(); exited <- cmd.Wait() }()
	var pids []int
	t.Cleanup(func() {
		cmd.Process.Kill()
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})

	started := stdout.wait(t, regexp.MustCompile(`^hubctl: (node\d) started \(pid (\d+)\)$`), 3)
	pidOf := map[string]int{}
	for _, m := range started {
		pid, _ := strconv.Atoi(m[2])
		pidOf[m[1]] = pid
		pids = append(pids, pid)
	}
	stdout.wait(t, regexp.MustCompile(`^node\d \| hubd: ready$`), 3)
	secret, err := os.ReadFile(filepath.Join(dir, "secret"))
	if err != nil || len(secret) == 0 {
		t.Fatalf("secret: %q, %v", secret, err)
	}
	for id, pid := range pidOf {
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cl, secret) {
			t.Errorf("%s has the cluster secret on its command line", id)
		}
	}

	var leader string
	until(t, "three members up", func() error {
		var st struct {
			LeaderID string `json:"leader_id"`
			Members  []struct {
				Status *struct{} `json:"status"`
			} `json:"members"`
		}
		s, err := httpCall("GET", urls[0]+"/admin/v1/status", "dev", nil, "", &st)
		up := 0
		for _, m := range st.Members {
			if m.Status != nil {
				up++
			}
		}
		if err != nil || s != http.StatusOK || up != 3 || st.LeaderID == "" {
			return fmt.Errorf("%d %v %+v", s, err, st)
		}
		leader = st.LeaderID
		return nil
	})
	syscall.Kill(pidOf[leader], syscall.SIGKILL)
	died := stderr.wait(t, regexp.MustCompile(`^hubctl: (node\d) exited`), 1)
	if died[0][1] != leader {
		t.Fatalf("%s reported dead, killed %s", died[0][1], leader)
	}
	restart := stderr.wait(t, regexp.MustCompile(`^\s+(HUB_CLUSTER_SECRET=.*--node-id `+leader+`.*)$`), 1)[0][1]

	// The other two elect a leader and take a write.
	n, _ := strconv.Atoi(strings.TrimPrefix(leader, "node"))
	other := urls[n%3]
	var user struct {
		UserID string `json:"user_id"`
		Secret string `json:"secret"`
	}
	until(t, "register through "+other, func() error {
		s, err := httpCall("POST", other+"/v1/users", "", nil, "", &user)
		if err != nil || s != http.StatusCreated {
			return fmt.Errorf("%d %v", s, err)
		}
		return nil
	})
	var mb struct {
		Token string `json:"token"`
	}
	if s, err := httpCall("POST", other+"/v1/mailboxes", user.Secret, nil, `{"label":"dev"}`, &mb); err != nil || s != http.StatusCreated {
		t.Fatalf("mailbox: %d %v", s, err)
	}
	if s, err := httpCall("POST", other+"/v1/push/"+mb.Token, "", map[string]string{"Content-Type": "text/plain"}, "after the kill", nil); err != nil || s != http.StatusCreated {
		t.Fatalf("publish after the kill: %d %v", s, err)
	}

	// hubctl status says why the dead node is down, in the table's layout.
	out, err := hubctl(t, "--addr", other, "--admin-token", "dev", "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	row := regexp.MustCompile(`(?m)^` + leader + `\s+DOWN: connection refused\s+-\s+-\s+-\s+-\s+` + regexp.QuoteMeta(urls[n-1]) + `$`)
	if !row.MatchString(out) || strings.Contains(out, "nothing done") {
		t.Errorf("status does not say %s is down with connection refused:\n%s", leader, out)
	}

	// A backup holds receipt secrets: owner only.
	backup := filepath.Join(t.TempDir(), "hub.backup")
	if out, err := hubctl(t, "--addr", other, "--admin-token", "dev", "backup", "-o", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if fi, err := os.Stat(backup); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v, %v; want mode 0600", fi.Mode(), err)
	}

	// The printed command starts the dead node again; it rejoins.
	again := exec.Command("sh", "-c", "exec 2>&1; "+restart)
	again.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	againOut := newLines()
	againPipe, _ := again.StdoutPipe()
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-again.Process.Pid, syscall.SIGKILL)
		again.Wait()
	})
	go againOut.read(againPipe)
	againOut.wait(t, regexp.MustCompile(`^hubd: ready$`), 1)

	// Ctrl-C stops every node hubctl runs; the exit says a node died.
	cmd.Process.Signal(os.Interrupt)
	select {
	case err = <-exited:
	case <-time.After(90 * time.Second): // failsafe only
		t.Fatal("hubctl did not stop after SIGINT")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), leader+" died") {
		t.Errorf("hubctl exit: %v; stderr:\n%s", err, stderr)
	}
	for id, pid := range pidOf {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still runs after hubctl stopped: %v", id, pid, err)
		}
	}
}
