package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long dev-cluster waits for the nodes to stop after
// SIGINT before it kills them.
const stopGrace = 30 * time.Second

// devNode is one hubd child of dev-cluster.
type devNode struct {
	id   string
	args []string // hubd's arguments on a restart (no --join: it has state)
	cmd  *exec.Cmd
	done chan struct{} // closed once the process exited and its output is read
	err  error         // its exit, once done
}

// devCluster runs three hubd nodes on loopback until SIGINT or SIGTERM
// (ctx): node1 bootstraps, node2 and node3 join it. Their output goes to
// stdout with a prefix. A node that dies is reported with the command that
// restarts it, and the others keep running: killing the leader is how one
// watches a failover. Ctrl-C stops every node that runs (each hands
// leadership over); the exit is an error if a node died meanwhile.
//
// The cluster secret goes to the nodes in their environment
// (HUB_CLUSTER_SECRET), never on a command line, where ps shows it.
func devCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-cluster", flag.ContinueOnError)
	dir := fs.String("dir", "dev-cluster", "data directory of the three nodes (node1/, node2/, node3/)")
	hubd := fs.String("hubd", "", "the hubd binary (default: next to hubctl, then $PATH)")
	port := fs.Int("port", 8081, "HTTP port of node1; node2 and node3 take the next two, raft the same plus 1000")
	token := fs.String("admin-token", "dev", "admin token of every node")
	if err := fs.Parse(args); err != nil || fs.NArg() > 0 {
		return errUsage
	}
	bin, err := findHubd(*hubd)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	secretFile := filepath.Join(*dir, "secret")
	secret := os.Getenv("HUB_CLUSTER_SECRET")
	secretHint := "HUB_CLUSTER_SECRET=..." // how a restart command names it
	if secret == "" {
		if secret, err = loadSecret(secretFile); err != nil {
			return err
		}
		secretHint = fmt.Sprintf(`HUB_CLUSTER_SECRET="$(cat %s)"`, shellQuote(secretFile))
	}
	env := append(os.Environ(), "HUB_CLUSTER_SECRET="+secret)
	env = append(env, devLimits()...)

	var mu sync.Mutex // serialises lines on stdout and stderr
	say := func(w io.Writer, format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, format, a...)
	}
	var nodes []*devNode
	exited := make(chan *devNode, 3)
	seed := fmt.Sprintf("http://127.0.0.1:%d", *port)
	raftSeed := fmt.Sprintf("127.0.0.1:%d", *port+1000) // --join takes a member's raft address
	for i := 1; i <= 3; i++ {
		n := &devNode{id: fmt.Sprintf("node%d", i), done: make(chan struct{})}
		n.args = []string{
			"--node-id", n.id,
			"--data", filepath.Join(*dir, n.id),
			"--listen", fmt.Sprintf("127.0.0.1:%d", *port+i-1),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", *port+i-1+1000),
			"--admin-token", *token,
		}
		args := n.args
		if i > 1 {
			args = append(args[:len(args):len(args)], "--join", raftSeed)
		}
		if err := n.start(bin, args, env, exited, func(line string) { say(stdout, "%s | %s\n", n.id, line) }); err != nil {
			say(stderr, "hubctl: start %s: %v; stopping the others\n", n.id, err)
			stopAll(nodes)
			return fmt.Errorf("start %s: %w", n.id, err)
		}
		say(stdout, "hubctl: %s started (pid %d)\n", n.id, n.cmd.Process.Pid)
		nodes = append(nodes, n)
	}
	say(stdout, "hubctl: three nodes on %s, :%d, :%d (admin token %q)\n"+
		"        hubctl --addr %s --admin-token %s status; admin page %s/admin; Ctrl-C stops them\n",
		seed, *port+1, *port+2, *token, seed, *token, seed)

	var died []string
	for running := len(nodes); running > 0; {
		select {
		case <-ctx.Done():
			stopAll(nodes)
			if len(died) > 0 {
				return fmt.Errorf("%s died while the cluster ran", strings.Join(died, ", "))
			}
			return nil
		case n := <-exited:
			running--
			died = append(died, n.id)
			say(stderr, "hubctl: %s exited (%v); the others keep running. To start it again (hubctl will not stop it):\n"+
				"        %s %s %s\n", n.id, n.err, secretHint, shellQuote(bin), shellJoin(n.args))
		}
	}
	return fmt.Errorf("every node died (%s)", strings.Join(died, ", "))
}

// start runs the node's hubd; each line it writes goes to line, and its
// exit to exited.
func (n *devNode) start(bin string, args, env []string, exited chan<- *devNode, line func(string)) error {
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = env
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	n.cmd.Stderr = n.cmd.Stdout
	if err := n.cmd.Start(); err != nil {
		return err
	}
	go func() { // ends when the process has exited and its output is read
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line(sc.Text())
		}
		n.err = n.cmd.Wait()
		close(n.done)
		exited <- n // buffered for every node: never blocks
	}()
	return nil
}

// stopAll asks every node that still runs to stop (SIGINT: it hands
// leadership over and closes cleanly), kills those still running after
// stopGrace, and waits for all of them.
func stopAll(nodes []*devNode) {
	for _, n := range nodes {
		select {
		case <-n.done:
		default:
			n.cmd.Process.Signal(syscall.SIGINT)
		}
	}
	deadline := time.NewTimer(stopGrace)
	defer deadline.Stop()
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-deadline.C:
			for _, m := range nodes {
				m.cmd.Process.Kill()
			}
			<-n.done
		}
	}
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func findHubd(given string) (string, error) {
	if given != "" {
		return given, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "hubd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("hubd"); err == nil {
		return p, nil
	}
	return "", errors.New("no hubd binary next to hubctl or in $PATH: go build -o bin/ ./cmd/... and run bin/hubctl, or pass --hubd")
}

func loadSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
		return string(b), nil
	}
	b := make([]byte, 16)
	rand.Read(b)
	s := hex.EncodeToString(b)
	return s, os.WriteFile(path, []byte(s), 0o600)
}

// devLimits raise the nodes' rate limits far above what a load generator
// on this machine sends: every client of a dev cluster is on loopback (one
// address), and hubd's defaults are sized for production, where such a
// client is an abuser (loadtest/cluster.sh drives tens of thousands of
// publishes a second through it). A HUB_* variable already set wins, so a
// limit can still be tried out here.
func devLimits() []string {
	var env []string
	for _, l := range []string{"REGISTER", "AUTH_FAILURE", "TICKET", "MAILBOX", "PUBLISH_TOKEN", "PUBLISH_ADDRESS"} {
		for suffix, v := range map[string]string{"_RATE": "1e9", "_BURST": "1000000000"} {
			name := "HUB_" + l + suffix
			if _, set := os.LookupEnv(name); !set {
				env = append(env, name+"="+v)
			}
		}
	}
	return env
}
