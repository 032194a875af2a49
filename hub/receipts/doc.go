// Package receipts sends the hub's receipts to the apps that publish: it is
// the receipt outbox's dispatcher, and it wakes long-polls of receipts.
//
// The state machine (package mailbox) records a receipt for every message's
// fate in the same raft command that decides it, in the mailbox's receipt
// log and, for a mailbox with a receipt URL, in the outbox. A Dispatcher
// runs on every node but sends only while its node is the ready leader
// (Leadership): each term of leadership is a run, which reads the outbox's
// heads, hears new entries from Applied, and ends (its POSTs cancelled,
// waited for) as soon as leadership is lost. An entry leaves the outbox by a
// SettleReceipts command, when its endpoint answered 2xx or when it was
// given up; between the POST and that command a new leader may send it
// again, so receipts are delivered at least once and carry a stable id
// (mailbox.Receipt.ID) for the app to drop duplicates.
//
// # Endpoints
//
// Receipts are grouped by receipt URL (an endpoint). One endpoint has up to
// PerEndpoint workers; a mailbox is sent by one worker at a time, oldest
// first, in batches of up to BatchSize, and a failed batch is retried, with
// exponential backoff and jitter, before anything after it: receipts reach
// an endpoint in order per mailbox. A batch holds one mailbox's receipts
// because each mailbox has its own signing secret. All endpoints share
// MaxInFlight POSTs, which is more than PerEndpoint, and every POST has a
// Timeout and reads at most MaxResponse bytes of the answer: a slow,
// failing or chatty endpoint never holds up another's receipts. An endpoint
// whose last POST failed has one POST in flight at most (a probe) until one
// succeeds, and probes use at most half of MaxInFlight, so that many
// hanging endpoints cannot hold every slot either. A receipt
// still failing RetryFor after its fate is given up: it leaves the outbox
// and its message's status says webhook "failed".
//
// # Addresses
//
// URLPolicy decides which URLs the hub calls: https only and public
// addresses only, unless told otherwise. It is checked when a mailbox is
// made (after resolving the host) and again on every dial, on the address
// being dialled, so DNS rebinding does not get past it. No proxy from the
// environment is used, and redirects are not followed.
//
// # Goroutines
//
// Start's leadership loop is stopped by Close. A run's goroutines (the
// outbox scan, the settler, the endpoints' workers) are counted by the run
// and waited for when it halts. Applied runs on raft's FSM goroutine and
// never blocks.
package receipts
