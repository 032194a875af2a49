package cluster

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync"

	"github.com/notifyhub/hub/mailbox"
)

// Node metadata: what the cluster knows about each member besides its raft
// id and address, today the base URL of its HTTP API (where forwarded writes
// and status calls go).
//
// It is replicated through the raft log as cluster entries: log entries whose
// first byte is metaEntry instead of a mailbox command version. The FSM
// applies them to an in-memory map and never hands them to the store; the
// map goes into every snapshot (the envelope below), and a restart rebuilds
// it from the newest snapshot and the log after it, as it rebuilds the store.
// A node announces its own API address whenever the replicated one differs
// (first start, a new port after a restart); the leader records a joining
// node's address when it adds it, and forgets it when it removes it.

// metaEntry is the first byte of a cluster entry. Mailbox commands start
// with their version (1 today), so the two never collide.
const metaEntry = 0xC1

// metaOp is the body of a cluster entry.
type metaOp struct {
	Op  string `json:"op"` // "set" or "del"
	ID  string `json:"id"`
	API string `json:"api,omitempty"`
}

func encodeMeta(op metaOp) []byte {
	b, _ := json.Marshal(op) // a struct of strings always marshals
	return append([]byte{metaEntry}, b...)
}

// metaMap is the replicated metadata: node id to API base URL. Only the FSM
// goroutine writes it; anyone reads.
type metaMap struct {
	mu  sync.RWMutex
	api map[string]string
}

func (m *metaMap) get(id string) string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.api[id]
}

func (m *metaMap) copy() map[string]string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return maps.Clone(m.api)
}

func (m *metaMap) replace(api map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.api = api
}

// apply applies a cluster entry's body. An entry this version cannot read
// is an error, which stops the node as an unknown command does (fsm.go):
// the node must not diverge quietly. Nothing changes then.
func (m *metaMap) apply(body []byte) error {
	var op metaOp
	if err := json.Unmarshal(body, &op); err != nil {
		return err
	}
	if op.Op != "set" && op.Op != "del" {
		return fmt.Errorf("unknown op %q", op.Op)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.api == nil {
		m.api = make(map[string]string)
	}
	switch op.Op {
	case "set":
		m.api[op.ID] = op.API
	case "del":
		delete(m.api, op.ID)
	}
	return nil
}

// The snapshot envelope: envelopeMagic, the metadata as a uvarint length and
// JSON, then the store's own snapshot (mailbox.Snapshot's format). A stream
// that starts with the store's magic instead is a bare store snapshot (an
// older node's snapshot, or a backup): restoring it keeps the metadata.
var envelopeMagic = []byte("HUBCLUS1")

func writeEnvelope(w io.Writer, api map[string]string) error {
	b, err := json.Marshal(api)
	if err != nil {
		return err
	}
	head := append([]byte(nil), envelopeMagic...)
	head = binary.AppendUvarint(head, uint64(len(b)))
	if _, err := w.Write(head); err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// readEnvelope reads the envelope's head from r. It returns the metadata
// (nil for a bare store snapshot) and the reader of the store snapshot.
func readEnvelope(r io.Reader) (map[string]string, io.Reader, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(len(envelopeMagic))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", mailbox.ErrBadSnapshot, err)
	}
	if string(magic) != string(envelopeMagic) {
		return nil, br, nil
	}
	br.Discard(len(envelopeMagic))
	n, err := binary.ReadUvarint(br)
	if err != nil || n > 16<<20 {
		return nil, nil, fmt.Errorf("%w: cluster metadata length", mailbox.ErrBadSnapshot)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(br, b); err != nil {
		return nil, nil, fmt.Errorf("%w: cluster metadata: %v", mailbox.ErrBadSnapshot, err)
	}
	api := map[string]string{}
	if err := json.Unmarshal(b, &api); err != nil {
		return nil, nil, fmt.Errorf("%w: cluster metadata: %v", mailbox.ErrBadSnapshot, err)
	}
	return api, br, nil
}
