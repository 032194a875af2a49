// Package loadtest drives a hub the way its users do, at a rate, and checks
// that nothing was lost on the way: it registers users, gives each a mailbox
// and devices (WebSocket, long-polling or SSE), publishes numbered messages
// whose payloads carry the time they were meant to be sent, and has every
// device record what it received. The verdict counts messages a device never
// got (lost), got under two seqs (duplicated), or got below a seq it had
// already passed (out of order); latencies go into HdrHistograms, per run
// and per second, for the tables and charts of the report.
//
// The scenarios (Connections, Throughput, Burst, ReconnectStorm,
// OfflineDrain, Failover) are bounded in count and time and stop by
// themselves. cmd/hubload is their command line.
package loadtest
