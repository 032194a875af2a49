package transport

import (
	"context"
	_ "embed"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/notifyhub/hub/cluster"
	"github.com/notifyhub/hub/mailbox"
)

// The admin API (Authorization: Bearer <admin token>) under /admin/v1/ and
// the live admin page at /admin. The calls between nodes are not on this
// port: the cluster serves them on its raft address, to authenticated nodes
// only; this file adds GET /internal/v1/status to them. docs/protocol.md,
// "Admin", is the contract.

// Admin is what the admin API needs from the cluster beyond Cluster;
// *cluster.Node satisfies it. It is optional: a Server whose Cluster is not
// an Admin answers the admin calls with 503 not_clustered.
type Admin interface {
	Stats() cluster.Stats
	Members() ([]cluster.Member, error)
	Join(ctx context.Context, req cluster.JoinRequest) error
	Remove(ctx context.Context, id string) error
	TransferLeadership(ctx context.Context, id string) error
	Snapshot() error
	Restore(ctx context.Context, r io.Reader) error
	// HandleInternal adds a call to the node-to-node internal HTTP, which
	// only authenticated nodes reach.
	HandleInternal(pattern string, h http.Handler)
	// CallPeer calls another node's internal HTTP at its raft address.
	CallPeer(ctx context.Context, method, raftAddr, path string, out any) error
	// APIAddr is this node's own API base URL.
	APIAddr() string
}

// Refusals of the admin API.
var (
	errAdminDisabled = errors.New("admin calls disabled")
	errNotClustered  = errors.New("not clustered")
)

// peerTimeout bounds asking one peer for its status: a node that is down
// shows as unreachable, it does not hold the page up.
const peerTimeout = 2 * time.Second

//go:embed web/admin.html
var adminPage []byte

func (s *Server) adminRoutes(handle func(pattern string, h http.Handler)) {
	handle("GET /admin", http.HandlerFunc(s.handleAdminPage))
	handle("GET /admin/v1/status", s.admin(s.handleAdminStatus))
	handle("GET /admin/v1/members", s.admin(s.handleAdminMembers))
	handle("POST /admin/v1/members", s.admin(s.handleAdminJoin))
	handle("DELETE /admin/v1/members/{id}", s.admin(s.handleAdminRemove))
	handle("POST /admin/v1/transfer-leadership", s.admin(s.handleAdminTransfer))
	handle("POST /admin/v1/snapshot", s.admin(s.handleAdminSnapshot))
	handle("GET /admin/v1/backup", s.admin(s.handleAdminBackup))
	handle("POST /admin/v1/restore", s.admin(s.handleAdminRestore))
	handle("GET /admin/v1/users", s.admin(s.handleAdminUsers))
	handle("GET /admin/v1/mailboxes", s.admin(s.handleAdminMailboxes))

	if a, ok := s.cluster.(Admin); ok {
		a.HandleInternal("GET /internal/v1/status", http.HandlerFunc(s.handleInternalStatus))
	}
}

// admin guards an admin handler: the admin token, and a clustered node.
func (s *Server) admin(h func(w http.ResponseWriter, r *http.Request, a Admin)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AdminToken == "" {
			s.writeError(w, r, errAdminDisabled)
			return
		}
		if _, ok := s.isAdmin(r); !ok {
			s.writeError(w, r, s.authFailed(r, errUnauthorized))
			return
		}
		a, ok := s.cluster.(Admin)
		if !ok {
			s.writeError(w, r, errNotClustered)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, a)
	}
}

// GET /admin: the live page. It holds no data; it asks for the admin token
// and reads /admin/v1/status with it.
func (s *Server) handleAdminPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(adminPage)
}

// nodeStatus is one node's view of itself: raft state and its devices.
type nodeStatus struct {
	cluster.Stats
	APIAddr   string `json:"api_addr"`
	Sessions  int64  `json:"sessions"`  // device sessions connected to this node
	Users     int    `json:"users"`     // users with a session on this node
	Published uint64 `json:"published"` // messages this node applied since it started
	Delivered uint64 `json:"delivered"` // messages it queued to its sessions since it started
	Acks      uint64 `json:"acks"`      // device acks it committed since it started
	Time      int64  `json:"time_ms"`   // when this was read (unix ms), for rates
}

func (s *Server) localStatus(a Admin) nodeStatus {
	st := nodeStatus{Stats: a.Stats(), APIAddr: a.APIAddr(), Time: time.Now().UnixMilli()}
	if s.hub != nil {
		hs := s.hub.Stats()
		st.Sessions, st.Users, st.Published, st.Delivered, st.Acks = hs.Sessions, hs.Users, hs.Published, hs.Delivered, hs.Acks
	}
	return st
}

// GET /internal/v1/status: this node's status, for a peer's admin status.
// It is served on the node-to-node transport only (see HandleInternal),
// whose every stream is authenticated.
func (s *Server) handleInternalStatus(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, s.localStatus(s.cluster.(Admin)))
}

type memberStatus struct {
	cluster.Member
	Status *nodeStatus `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"` // why Status is missing: the node is down or unknown
}

type clusterStatus struct {
	Node     string         `json:"node"` // the node that answered
	LeaderID string         `json:"leader_id"`
	Term     uint64         `json:"term"`
	Members  []memberStatus `json:"members"`
}

// GET /admin/v1/status: every member with its raft state and devices, each
// asked over the internal HTTP; a member that does not answer within
// peerTimeout is listed with an error.
func (s *Server) handleAdminStatus(w http.ResponseWriter, r *http.Request, a Admin) {
	me := s.localStatus(a)
	members, err := a.Members()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := clusterStatus{Node: me.ID, LeaderID: me.LeaderID, Term: me.Term, Members: make([]memberStatus, len(members))}
	var wg sync.WaitGroup
	for i, m := range members {
		out.Members[i].Member = m
		switch {
		case m.ID == me.ID:
			out.Members[i].Status = &me
		default:
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(r.Context(), peerTimeout)
				defer cancel()
				var st nodeStatus
				if err := a.CallPeer(ctx, http.MethodGet, m.RaftAddr, "/internal/v1/status", &st); err != nil {
					out.Members[i].Error = err.Error() // says why: refused, timed out, ...
					return
				}
				out.Members[i].Status = &st
			})
		}
	}
	wg.Wait()
	s.writeJSON(w, r, http.StatusOK, out)
}

// GET /admin/v1/members
func (s *Server) handleAdminMembers(w http.ResponseWriter, r *http.Request, a Admin) {
	members, err := a.Members()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Members []cluster.Member `json:"members"`
	}{members})
}

// POST /admin/v1/members {"id","raft_addr","api_addr"}: join a node (on the
// leader, wherever the call arrives).
func (s *Server) handleAdminJoin(w http.ResponseWriter, r *http.Request, a Admin) {
	var req cluster.JoinRequest
	if err := decodeJSON(w, r, userBodyLimit, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := a.Join(r.Context(), req); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.handleAdminMembersAfter(w, r, a, http.StatusCreated)
}

func (s *Server) handleAdminMembersAfter(w http.ResponseWriter, r *http.Request, a Admin, status int) {
	members, err := a.Members()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, status, struct {
		Members []cluster.Member `json:"members"`
	}{members})
}

// DELETE /admin/v1/members/{id}
func (s *Server) handleAdminRemove(w http.ResponseWriter, r *http.Request, a Admin) {
	if err := a.Remove(r.Context(), r.PathValue("id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// POST /admin/v1/transfer-leadership {"id"?}: to that voter, or to the
// most up-to-date other one.
func (s *Server) handleAdminTransfer(w http.ResponseWriter, r *http.Request, a Admin) {
	var req struct {
		ID string `json:"id"`
	}
	if r.ContentLength != 0 {
		if err := decodeJSON(w, r, userBodyLimit, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if err := a.TransferLeadership(r.Context(), req.ID); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		LeaderID string `json:"leader_id"`
	}{a.Stats().LeaderID})
}

// POST /admin/v1/snapshot: a raft snapshot of this node now, and log
// compaction.
func (s *Server) handleAdminSnapshot(w http.ResponseWriter, r *http.Request, a Admin) {
	if err := a.Snapshot(); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		Node         string `json:"node"`
		AppliedIndex uint64 `json:"applied_index"`
	}{a.Stats().ID, a.Stats().AppliedIndex})
}

// GET /admin/v1/backup: a consistent copy of this node's state, streamed.
func (s *Server) handleAdminBackup(w http.ResponseWriter, r *http.Request, a Admin) {
	sn, err := s.store.Snapshot()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer sn.Release()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", `attachment; filename="hub-`+a.Stats().ID+`-`+strconv.FormatUint(sn.Index(), 10)+`.backup"`)
	h.Set("Hub-Backup-Index", strconv.FormatUint(sn.Index(), 10))
	if _, err := sn.WriteTo(w); err != nil {
		// The status is out: the client sees a truncated stream, which
		// its checksum refuses.
		s.log.Warn("transport: backup", "err", err)
	}
}

// POST /admin/v1/restore: replace the whole cluster's state with a backup.
func (s *Server) handleAdminRestore(w http.ResponseWriter, r *http.Request, a Admin) {
	if err := a.Restore(r.Context(), r.Body); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, struct {
		AppliedIndex uint64 `json:"applied_index"`
	}{a.Stats().AppliedIndex})
}

// page reads the after and limit query parameters of a listing.
func page(r *http.Request) (after string, limit int, err error) {
	q := r.URL.Query()
	limit = 100
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
			return "", 0, withDetail(mailbox.ErrInvalid, "limit must be 1 to 1000")
		}
	}
	return q.Get("after"), limit, nil
}

type adminUser struct {
	UserID    string      `json:"user_id"`
	CreatedAt wireTime    `json:"created_at"`
	LastSeq   mailbox.Seq `json:"last_seq"`
}

// GET /admin/v1/users?after=&limit=: users by id, from this node's store.
func (s *Server) handleAdminUsers(w http.ResponseWriter, r *http.Request, _ Admin) {
	after, limit, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	users, err := s.store.Users(after, limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Users []adminUser `json:"users"`
		Next  string      `json:"next,omitempty"` // pass as after for the next page
	}{Users: make([]adminUser, 0, len(users))}
	for _, u := range users {
		out.Users = append(out.Users, adminUser{UserID: u.ID, CreatedAt: wireTime(u.CreatedAt), LastSeq: u.LastSeq})
	}
	if len(users) == limit {
		out.Next = users[len(users)-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, out)
}

type adminMailbox struct {
	UserID string `json:"user_id"`
	mailboxJSON
}

// GET /admin/v1/mailboxes?user=&after=&limit=: one user's mailboxes, or
// every mailbox by id.
func (s *Server) handleAdminMailboxes(w http.ResponseWriter, r *http.Request, _ Admin) {
	after, limit, err := page(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var mbs []mailbox.Mailbox
	more := false
	if user := r.URL.Query().Get("user"); user != "" {
		if _, err = s.store.User(user); err == nil {
			mbs, err = s.store.UserMailboxes(user, after, limit) // by id
		}
		if errors.Is(err, mailbox.ErrUserUnknown) {
			err = withDetail(errNotFound, "no such user")
		}
		more = len(mbs) == limit
	} else {
		mbs, err = s.store.AllMailboxes(after, limit)
		more = len(mbs) == limit
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := struct {
		Mailboxes []adminMailbox `json:"mailboxes"`
		Next      string         `json:"next,omitempty"`
	}{Mailboxes: make([]adminMailbox, 0, len(mbs))}
	for _, mb := range mbs {
		out.Mailboxes = append(out.Mailboxes, adminMailbox{UserID: mb.UserID, mailboxJSON: toMailboxJSON(mb)})
	}
	if more {
		out.Next = mbs[len(mbs)-1].ID
	}
	s.writeJSON(w, r, http.StatusOK, out)
}
