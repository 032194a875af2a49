package main

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// devCluster runs three hubd nodes on loopback until SIGINT or SIGTERM:
// node1 bootstraps, node2 and node3 join it. Their output goes to stdout
// with a prefix; Ctrl-C stops them cleanly (each hands leadership over).
func devCluster(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev-cluster", flag.ContinueOnError)
	dir := fs.String("dir", "dev-cluster", "data directory of the three nodes (node1/, node2/, node3/)")
	hubd := fs.String("hubd", "", "the hubd binary (default: next to hubctl, then $PATH)")
	port := fs.Int("port", 8081, "HTTP port of node1; node2 and node3 take the next two, raft the same plus 1000")
	token := fs.String("admin-token", "dev", "admin token of every node")
	secret := fs.String("cluster-secret", "", "cluster secret (default: kept in DIR/secret, made on first run)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	bin, err := findHubd(*hubd)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	if *secret == "" {
		if *secret, err = loadSecret(filepath.Join(*dir, "secret")); err != nil {
			return err
		}
	}
	ctx, stop := signalContext()
	defer stop()

	var mu sync.Mutex // serialises the children's lines on stdout
	var procs []*exec.Cmd
	var wg sync.WaitGroup
	seed := fmt.Sprintf("http://127.0.0.1:%d", *port)
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("node%d", i)
		args := []string{
			"--node-id", id,
			"--data", filepath.Join(*dir, id),
			"--listen", fmt.Sprintf("127.0.0.1:%d", *port+i-1),
			"--raft-addr", fmt.Sprintf("127.0.0.1:%d", *port+i-1+1000),
			"--cluster-secret", *secret,
			"--admin-token", *token,
		}
		if i > 1 {
			args = append(args, "--join", seed)
		}
		cmd := exec.Command(bin, args...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start %s: %w", id, err)
		}
		procs = append(procs, cmd)
		wg.Go(func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				mu.Lock()
				fmt.Fprintf(stdout, "%s | %s\n", id, sc.Text())
				mu.Unlock()
			}
		})
	}
	mu.Lock()
	fmt.Fprintf(stdout, "hubctl: three nodes on %s, :%d, :%d (admin token %q)\n"+
		"        hubctl --addr %s --admin-token %s status; admin page %s/admin; Ctrl-C stops them\n",
		seed, *port+1, *port+2, *token, seed, *token, seed)
	mu.Unlock()

	exited := make(chan error, len(procs))
	for _, p := range procs {
		go func() { exited <- p.Wait() }()
	}
	select {
	case <-ctx.Done():
	case err := <-exited:
		mu.Lock()
		fmt.Fprintf(stderr, "hubctl: a node exited (%v); stopping the others\n", err)
		mu.Unlock()
	}
	for _, p := range procs {
		p.Process.Signal(syscall.SIGINT)
	}
	deadline := time.After(30 * time.Second)
	for range procs {
		select {
		case <-exited:
		case <-deadline:
			for _, p := range procs {
				p.Process.Kill()
			}
		}
	}
	wg.Wait()
	return nil
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
