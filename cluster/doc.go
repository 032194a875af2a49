// Package cluster replicates the hub's state machine with raft: it adapts a
// [mailbox.Store] to hashicorp/raft, proposes commands on the leader, and
// batches publishes into shared log entries (group commit).
//
// A [Node] owns its raft instance, the authenticated node-to-node transport
// (nodenet.go) with raft's NetworkTransport and the internal HTTP server on
// it, the raft log and stable store (raft-boltdb in Dir/raft.db) and the
// snapshot store (Dir/snapshots, two retained). It does not own the
// mailbox.Store: the caller opens it before Open and closes it after Close.
//
// Every change of state goes through the raft log, on a single node too: one
// path, one set of tests. The leader stamps Command.At when it builds a log
// entry; applying never reads a clock, so every node that applies the log ends
// with the same state. The FSM (fsm.go) is the only raft.FSM of the hub. The
// leader decodes every entry it builds before it appends it (encodeChecked),
// so it never appends one the FSM cannot decode; a node that still meets an
// entry it cannot decode or apply (a storage error) stops the process with a
// message naming the entry and what to do (EntryError), as Consul panics: a
// node must stop rather than diverge quietly.
//
// # A cluster of nodes
//
// The first node bootstraps a one-voter configuration (Config.Bootstrap);
// every other node starts empty and is added by the leader (Join, reached
// from any node: a follower forwards it). Remove and TransferLeadership
// work the same way; Close hands leadership to another voter before it
// stops (handOver), so a clean restart costs no election timeout. Each
// node's HTTP API address is replicated as cluster entries in the raft log
// (meta.go), which is how a follower finds the leader's API.
//
// Writes that reach a follower are forwarded to the leader over the
// cluster's internal HTTP (forward.go, internal.go), at the leader's raft
// address, as the very bytes the leader will log; the follower answers
// once it has applied the leader's index, so its caller reads its own write
// from it. Every node applies the whole log into its own store and tells its
// own Applied (hub); no node relays messages to another for delivery.
//
// # Node-to-node traffic
//
// Every node-to-node byte goes through one listener, the raft address
// (nodeNet, nodenet.go): TLS 1.3, then the dialer's hello (a version, the
// stream it wants: raft or internal HTTP, and its proof of the cluster
// secret) and the listener's answer (its own proof). A proof is
// HMAC-SHA256(secret, role || TLS exporter): bound to the session, so a
// relay that terminates TLS on both sides holds two sessions and cannot
// pass a proof from one into the other; the roles keep the two proofs
// apart. The listener proves second, so a stranger learns nothing. Raft
// reads the raft streams (nodeNet is its raft.StreamLayer); the internal
// HTTP server serves the HTTP streams, and the internal HTTP client dials
// peers' raft addresses through the same handshake. With TLS files
// (Config.TLSCAFile...), both sides also present certificates the cluster
// CA signed (mutual TLS); without them each node makes a self-signed
// certificate at Open, which only keys the session.
//
// One listener rather than a second authenticated port: one address to
// open in a firewall, the nodes already know each other's raft addresses
// (raft's configuration, not the replicated API addresses, which a forged
// entry could once point elsewhere), the cluster secret never travels, and
// a flood of the public HTTP port cannot starve node-to-node traffic. The
// cost is a byte naming the stream on each connection.
//
// A node without credentials refuses every node-to-node connection, and
// Open refuses one whose raft configuration has other servers. Handshakes
// have a deadline (handshakeTimeout) and are capped in number, in all and
// per remote host; refused connections are counted (Stats.RefusedConns)
// and logged once per remote host with a count.
//
// Backup and Restore (backup.go) copy the store's consistent snapshot out,
// and put one back into the whole cluster through raft.
//
// # Goroutine safety
//
// All methods of Node are safe for concurrent use. The Applied callback runs
// on raft's FSM goroutine, one entry at a time, and must not block. Each
// goroutine the Node starts is counted and stopped by Close (see goFunc).
//
// # Group commit
//
// Publish and Propose hand a request to a single committer goroutine through
// a buffered channel. The committer takes one request (blocking), then drains
// what else is queued without blocking, up to Config.MaxBatch items and about
// 1 MiB of payload, and proposes all of it as one KindPublish entry: one
// fsync of the raft log and one badger transaction for many publishers.
// Other commands are proposed one per entry, in queue order. At most
// maxInflight entries are in flight (proposed, not yet applied); while the
// window is full, requests queue up, so batches grow with load instead of the
// log growing by one entry per publish. A waiter goroutine waits for the
// entries in order and hands each request its own slice of the result.
//
// A caller whose context ends gets its context's error (with ErrNoQuorum when
// a deadline passed) but its items may already be in an entry, and then they
// commit anyway. That is why publishers send an Idempotency-Key: a retry
// returns the first message instead of a second one.
//
// # Durability
//
// The raft log in raft-boltdb is fsynced on every append and is the durable
// record; badger runs without SyncWrites and is a view of the log (see the
// mailbox package doc). A publish is answered only after its entry is
// committed and applied. After a crash, raft restores the newest snapshot
// (the store ignores one older than what it already holds) and replays the
// log after it; the store skips entries at or below its applied index. If
// badger lost recent writes, or its directory entirely, snapshot plus log
// rebuild it. Ready reports when that replay is done.
//
// # Shutdown
//
// Close stops taking requests, lets the entries already proposed finish
// (bounded by raft: they commit, or the leader steps down and fails them),
// then shuts raft down, waits for its own goroutines, and closes the
// transport and the raft log. Draining before raft.Shutdown matters: raft
// never answers an ApplyFuture whose entry was committed but not yet applied
// when it shuts down.
package cluster
