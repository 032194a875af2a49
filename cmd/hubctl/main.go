// Command hubctl operates a hub cluster through any node's admin API
// (Authorization: Bearer <admin token>): status, members, join, remove,
// transfer-leadership, snapshot, backup, restore, users and mailboxes. It
// also runs a three-node cluster on this machine for development
// (dev-cluster).
//
// The node is --addr (HUB_ADDR, default http://127.0.0.1:8080); the token is
// --admin-token (HUB_ADMIN_TOKEN).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/notifyhub/hub/internal/version"
)

const usage = `usage: hubctl [--addr URL] [--admin-token TOKEN] <command> [arguments]
       hubctl --version                    print the version and exit

commands:
  status                                   members, leader, term, indexes and devices of every node
  members                                  the raft configuration
  join --id ID --raft-addr HOST:PORT [--api-addr URL]
                                           add a node as a voter (it must run, unbootstrapped)
  remove ID                                remove a member
  transfer-leadership [ID]                 hand leadership to ID, or to the best other voter
  snapshot                                 take a raft snapshot on the node now and compact its log
  backup [-o FILE]                         write a consistent backup of the node's state (default: stdout)
  restore FILE                             replace the whole cluster's state with a backup
  users [--after ID] [--limit N]           list users
  mailboxes [--user ID] [--after ID] [--limit N]
                                           list mailboxes (of one user, or all)
  dev-cluster [--dir DIR] [--hubd PATH] [--port N]
                                           run three hubd nodes on this machine until Ctrl-C; a node
                                           that dies is reported with the command that restarts it

environment: HUB_ADDR, HUB_ADMIN_TOKEN; HUB_CLUSTER_SECRET (dev-cluster; default: kept in DIR/secret)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hubctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	addr := fs.String("addr", envOr("HUB_ADDR", "http://127.0.0.1:8080"), "base URL of any node")
	token := fs.String("admin-token", os.Getenv("HUB_ADMIN_TOKEN"), "admin token")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Get().String("hubctl"))
		return 0
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	c := &client{base: strings.TrimSuffix(*addr, "/"), token: *token, http: &http.Client{Timeout: 10 * time.Minute}}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	var err error
	switch cmd {
	case "status":
		err = c.status(stdout)
	case "members":
		err = c.members(stdout)
	case "join":
		err = c.join(rest, stdout)
	case "remove":
		err = c.remove(rest, stdout)
	case "transfer-leadership":
		err = c.transfer(rest, stdout)
	case "snapshot":
		err = c.snapshot(stdout)
	case "backup":
		err = c.backup(rest, stdout, stderr)
	case "restore":
		err = c.restore(rest, stdout)
	case "users":
		err = c.users(rest, stdout)
	case "mailboxes":
		err = c.mailboxes(rest, stdout)
	case "dev-cluster":
		ctx, stop := signalContext()
		err = devCluster(ctx, rest, stdout, stderr)
		stop()
	default:
		fmt.Fprintf(stderr, "hubctl: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if errors.Is(err, errUsage) {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubctl:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

func envOr(k, def string) string {
	if v, ok := os.LookupEnv(k); ok && v != "" {
		return v
	}
	return def
}

// client calls one node's admin API.
type client struct {
	base, token string
	http        *http.Client
}

// apiError is a refusal the node answered.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// do makes one call; a 2xx answer's JSON goes into out (if not nil), or
// its body into w (if not nil).
func (c *client) do(method, path string, body io.Reader, ctype string, out any, w io.Writer) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return fmt.Errorf("cannot reach the node at %s: is hubd running there? (%v)", c.base, op.Err)
		}
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			return fmt.Errorf("the node at %s did not answer in time", c.base)
		}
		return fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			return &apiError{Status: resp.StatusCode, Code: "http", Message: strings.TrimSpace(string(b))}
		}
		if e.Error.Code == "unauthorized" || e.Error.Code == "admin_disabled" {
			e.Error.Message += "; pass --admin-token or set HUB_ADMIN_TOKEN"
		}
		return &apiError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if w != nil {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

func (c *client) getJSON(path string, out any) error { return c.do("GET", path, nil, "", out, nil) }

func (c *client) postJSON(path string, in, out any) error {
	var body io.Reader
	ctype := ""
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	return c.do("POST", path, body, ctype, out, nil)
}

type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
	Status   *struct {
		State        string `json:"state"`
		Term         uint64 `json:"term"`
		CommitIndex  uint64 `json:"commit_index"`
		AppliedIndex uint64 `json:"applied_index"`
		Sessions     int64  `json:"sessions"`
		Users        int    `json:"users"`
	} `json:"status"`
	Error string `json:"error"`
}

func (c *client) status(w io.Writer) error {
	var st struct {
		Node     string   `json:"node"`
		LeaderID string   `json:"leader_id"`
		Term     uint64   `json:"term"`
		Members  []member `json:"members"`
	}
	if err := c.getJSON("/admin/v1/status", &st); err != nil {
		return err
	}
	leader := st.LeaderID
	if leader == "" {
		leader = "none (no quorum?)"
	}
	fmt.Fprintf(w, "leader %s, term %d (answered by %s)\n\n", leader, st.Term, st.Node)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tTERM\tCOMMIT\tAPPLIED\tDEVICES\tAPI")
	var why []string
	for _, m := range st.Members {
		id := m.ID
		if m.Leader {
			id += " *"
		}
		if m.Status == nil {
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t%s\n", id, "DOWN: "+shortReason(m.Error), m.APIAddr)
			why = append(why, fmt.Sprintf("%s: %s", m.ID, m.Error))
			continue
		}
		s := m.Status
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", id, s.State, s.Term, s.CommitIndex, s.AppliedIndex, s.Sessions, m.APIAddr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(why) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(why, "\n"))
	}
	return nil
}

// shortReason is the end of an error's text ("connection refused"), at
// most 32 characters, to keep the status table narrow; the whole text goes
// below the table.
func shortReason(msg string) string {
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if r := []rune(msg); len(r) > 32 {
		msg = string(r[:31]) + "…"
	}
	if msg == "" {
		msg = "no answer"
	}
	return msg
}

func (c *client) members(w io.Writer) error {
	var out struct {
		Members []member `json:"members"`
	}
	if err := c.getJSON("/admin/v1/members", &out); err != nil {
		return err
	}
	printMembers(w, out.Members)
	return nil
}

func printMembers(w io.Writer, ms []member) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tRAFT\tAPI")
	for _, m := range ms {
		role := "voter"
		if !m.Voter {
			role = "non-voter"
		}
		if m.Leader {
			role += ", leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, role, m.RaftAddr, m.APIAddr)
	}
	tw.Flush()
}

func (c *client) join(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("join", flag.ContinueOnError)
	id := fs.String("id", "", "node id")
	raft := fs.String("raft-addr", "", "its raft address, host:port")
	api := fs.String("api-addr", "", "its HTTP base URL")
	if err := fs.Parse(args); err != nil || *id == "" || *raft == "" {
		return errUsage
	}
	var out struct {
		Members []member `json:"members"`
	}
	if err := c.postJSON("/admin/v1/members", map[string]string{"id": *id, "raft_addr": *raft, "api_addr": *api}, &out); err != nil {
		return err
	}
	printMembers(w, out.Members)
	return nil
}

func (c *client) remove(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	if err := c.do("DELETE", "/admin/v1/members/"+url.PathEscape(args[0]), nil, "", nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(w, "removed %s; stop it and clear its data directory before it joins again\n", args[0])
	return nil
}

func (c *client) transfer(args []string, w io.Writer) error {
	var in any
	if len(args) == 1 {
		in = map[string]string{"id": args[0]}
	} else if len(args) > 1 {
		return errUsage
	}
	var out struct {
		LeaderID string `json:"leader_id"`
	}
	if err := c.postJSON("/admin/v1/transfer-leadership", in, &out); err != nil {
		return err
	}
	fmt.Fprintf(w, "leader is now %s\n", out.LeaderID)
	return nil
}

func (c *client) snapshot(w io.Writer) error {
	var out struct {
		Node         string `json:"node"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := c.postJSON("/admin/v1/snapshot", nil, &out); err != nil {
		return err
	}
	fmt.Fprintf(w, "snapshot of %s at index %d\n", out.Node, out.AppliedIndex)
	return nil
}

func (c *client) backup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	out := fs.String("o", "", "file to write (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	w := stdout
	if *out != "" {
		// A backup holds every mailbox's receipt secret: owner only.
		f, err := os.OpenFile(*out+".partial", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		w = f
	}
	if err := c.do("GET", "/admin/v1/backup", nil, "", nil, w); err != nil {
		return err
	}
	if *out != "" {
		f := w.(*os.File)
		if err := f.Sync(); err != nil {
			return err
		}
		if err := os.Rename(f.Name(), *out); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "backup written to %s\n", *out)
	}
	return nil
}

func (c *client) restore(args []string, w io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	var out struct {
		AppliedIndex uint64 `json:"applied_index"`
	}
	if err := c.do("POST", "/admin/v1/restore", f, "application/octet-stream", &out, nil); err != nil {
		return err
	}
	fmt.Fprintf(w, "restored; the cluster goes on from index %d\n", out.AppliedIndex)
	return nil
}

func (c *client) users(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("users", flag.ContinueOnError)
	after := fs.String("after", "", "start after this user id")
	limit := fs.Int("limit", 100, "at most this many")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var out struct {
		Users []struct {
			UserID    string `json:"user_id"`
			CreatedAt string `json:"created_at"`
			LastSeq   uint64 `json:"last_seq"`
		} `json:"users"`
		Next string `json:"next"`
	}
	q := url.Values{"after": {*after}, "limit": {fmt.Sprint(*limit)}}
	if err := c.getJSON("/admin/v1/users?"+q.Encode(), &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tCREATED\tLAST SEQ")
	for _, u := range out.Users {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", u.UserID, u.CreatedAt, u.LastSeq)
	}
	tw.Flush()
	if out.Next != "" {
		fmt.Fprintf(w, "more: hubctl users --after %s\n", out.Next)
	}
	return nil
}

func (c *client) mailboxes(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("mailboxes", flag.ContinueOnError)
	user := fs.String("user", "", "only this user's mailboxes")
	after := fs.String("after", "", "start after this mailbox id")
	limit := fs.Int("limit", 100, "at most this many")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	var out struct {
		Mailboxes []struct {
			UserID    string `json:"user_id"`
			MailboxID string `json:"mailbox_id"`
			Label     string `json:"label"`
			Revoked   bool   `json:"revoked"`
			CreatedAt string `json:"created_at"`
		} `json:"mailboxes"`
		Next string `json:"next"`
	}
	q := url.Values{"user": {*user}, "after": {*after}, "limit": {fmt.Sprint(*limit)}}
	if err := c.getJSON("/admin/v1/mailboxes?"+q.Encode(), &out); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tUSER\tLABEL\tREVOKED\tCREATED")
	for _, m := range out.Mailboxes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", m.MailboxID, m.UserID, m.Label, m.Revoked, m.CreatedAt)
	}
	tw.Flush()
	if out.Next != "" {
		if *user != "" {
			fmt.Fprintf(w, "more: hubctl mailboxes --user %s --after %s\n", *user, out.Next)
		} else {
			fmt.Fprintf(w, "more: hubctl mailboxes --after %s\n", out.Next)
		}
	}
	return nil
}

// signalContext is a context that ends on SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
