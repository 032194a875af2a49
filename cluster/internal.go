package cluster

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"

	"github.com/notifyhub/hub/mailbox"
)

// routes registers the calls nodes make to each other, under
// /internal/v1/: forwarded commands, joins, removals, announcements,
// leadership transfers, restores and read barriers. They are served on the
// node's raft address only, over streams nodeNet authenticated: whoever
// reaches a handler proved the cluster's credentials. A call that another
// node forwarded (it bears hdrForwardedBy) is acted on by the leader only;
// anyone else answers 421, and the sender finds the new leader and tries
// again. A join straight from a new node (hubd --join) may reach any member,
// which forwards it.
func (n *Node) routes() {
	m := n.mux
	m.HandleFunc("POST /internal/v1/propose", n.handlePropose)
	m.HandleFunc("POST /internal/v1/join", n.handleJoin)
	m.HandleFunc("POST /internal/v1/remove", n.handleRemove)
	m.HandleFunc("POST /internal/v1/announce", n.handleAnnounce)
	m.HandleFunc("POST /internal/v1/transfer", n.handleTransfer)
	m.HandleFunc("POST /internal/v1/restore", n.handleRestore)
	m.HandleFunc("POST /internal/v1/sync", n.handleSync)
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeInternalError(w, http.StatusNotFound, &wireError{Code: "not_found", Message: "no such internal call"})
	})
}

// HandleInternal adds a call to the node's internal HTTP (served to the
// other nodes only, see routes), such as the transport's
// GET /internal/v1/status. pattern is an http.ServeMux pattern under
// /internal/.
func (n *Node) HandleInternal(pattern string, h http.Handler) { n.mux.Handle(pattern, h) }

func writeInternalJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeInternalError(w, http.StatusInternalServerError, &wireError{Message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func writeInternalError(w http.ResponseWriter, status int, we *wireError) {
	b, _ := json.Marshal(struct {
		Error *wireError `json:"error"`
	}{we})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

// fail answers err: 421 when this node is not the leader and did nothing.
func (n *Node) fail(w http.ResponseWriter, err error) {
	status := http.StatusServiceUnavailable
	switch {
	case errors.Is(err, errNotHere), errors.Is(err, errLeaderHere):
		status = http.StatusMisdirectedRequest
		err = ErrNotLeader
	case errors.Is(err, ErrBadSecret):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrMemberExists), errors.Is(err, ErrLastVoter):
		status = http.StatusConflict
	case errors.Is(err, ErrMemberUnknown):
		status = http.StatusNotFound
	case errors.Is(err, ErrBadMember), errors.Is(err, mailbox.ErrBadCommand), errors.Is(err, mailbox.ErrBadSnapshot):
		status = http.StatusBadRequest
	}
	writeInternalError(w, status, toWire(err))
}

// forwarded reports whether r came from another node, which must not be
// forwarded again.
func forwarded(r *http.Request) bool { return r.Header.Get(hdrForwardedBy) != "" }

func (n *Node) handlePropose(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
	if err != nil {
		n.fail(w, mailbox.ErrBadCommand)
		return
	}
	cmd, err := mailbox.DecodeCommand(b)
	if err != nil {
		n.fail(w, err)
		return
	}
	var res mailbox.Result
	var index uint64
	if cmd.Kind == mailbox.KindPublish {
		res.Published, index, err = n.publishLocal(r.Context(), cmd.Publish.Items)
	} else {
		res, index, err = n.proposeLocal(r.Context(), cmd)
	}
	if err != nil {
		n.fail(w, err)
		return
	}
	wr := resultToWire(&res)
	writeInternalJSON(w, answer{Index: index, Result: &wr})
}

// decodeInternal reads a small JSON body.
func decodeInternal(r *http.Request, v any) error {
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(v); err != nil {
		return ErrBadMember
	}
	return nil
}

// local runs a leader-only operation: here if this node leads; forwarded
// when the call came straight from a client of this node; refused with 421
// when another node forwarded it.
func (n *Node) local(w http.ResponseWriter, r *http.Request, here func() error, there func() error) {
	err := here()
	if errors.Is(err, errNotHere) && !forwarded(r) {
		err = there()
	}
	if err != nil {
		n.fail(w, err)
		return
	}
	writeInternalJSON(w, struct{}{})
}

func (n *Node) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := decodeInternal(r, &req); err != nil {
		n.fail(w, err)
		return
	}
	if err := req.validate(); err != nil {
		n.fail(w, err)
		return
	}
	n.local(w, r, func() error { return n.joinLocal(req) }, func() error { return n.Join(r.Context(), req) })
}

func (n *Node) handleRemove(w http.ResponseWriter, r *http.Request) {
	var req removeRequest
	if err := decodeInternal(r, &req); err != nil {
		n.fail(w, err)
		return
	}
	n.local(w, r, func() error { return n.removeLocal(req.ID) }, func() error { return n.Remove(r.Context(), req.ID) })
}

func (n *Node) handleTransfer(w http.ResponseWriter, r *http.Request) {
	var req removeRequest
	if err := decodeInternal(r, &req); err != nil {
		n.fail(w, err)
		return
	}
	n.local(w, r, func() error { return n.transferLocal(req.ID) }, func() error { return n.TransferLeadership(r.Context(), req.ID) })
}

func (n *Node) handleAnnounce(w http.ResponseWriter, r *http.Request) {
	var op metaOp
	if err := decodeInternal(r, &op); err != nil {
		n.fail(w, err)
		return
	}
	n.local(w, r, func() error { return n.announceLocal(op) }, func() error { return n.forwardJSON(r.Context(), "/internal/v1/announce", op, nil) })
}

func (n *Node) handleRestore(w http.ResponseWriter, r *http.Request) {
	f, err := n.spool(r.Body)
	if err != nil {
		n.fail(w, err)
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n.local(w, r, func() error { return n.restoreLocal(f) }, func() error { return n.restoreForward(r.Context(), f) })
}

func (n *Node) handleSync(w http.ResponseWriter, r *http.Request) {
	index, err := n.syncLocal()
	if errors.Is(err, errNotHere) && !forwarded(r) {
		index, err = n.Sync(r.Context())
	}
	if err != nil {
		n.fail(w, err)
		return
	}
	writeInternalJSON(w, answer{Index: index})
}
