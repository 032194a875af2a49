#!/usr/bin/env bash
# loadtest/cluster.sh: three-node figures for BENCHMARKS.md.
#
#   loadtest/cluster.sh              # throughput on a 3-node cluster, then failover time
#   DUR=5 ROUNDS=3 loadtest/cluster.sh
#   WRK_ONLY=1 loadtest/cluster.sh   # the wrk publish runs only (before/after comparisons)
#
# It builds hubd, hubctl and loadtest/failover, runs `hubctl dev-cluster`
# (three hubd on 127.0.0.1:18081-18083, all on this machine with the load
# generator), makes a user and a mailbox, and runs wrk:
#   - single publishes at c=256 against the leader, and spread over all three
#     nodes (followers forward to the leader);
#   - batch publishes (100 messages a request) at c=16 against the leader;
#   - hubload throughput at RATE publishes/s (default 5,000) to 2,500 users
#     with two WebSocket devices each, spread over the three nodes: the
#     publish-to-deliver latencies on three nodes;
#   - hubload failover: the same load with Idempotency-Keys, the leader
#     SIGKILLed a third into the run: time without accepted writes, and the
#     loss and duplicate counts.
# Then it stops the cluster and runs loadtest/failover (its own three nodes):
# time from leader SIGKILL to the first accepted write, ROUNDS times, and
# leader changes without a kill under load.
set -euo pipefail
DUR=${DUR:-10}
ROUNDS=${ROUNDS:-5}
cd "$(dirname "$0")/.."
ROOT=$PWD
. loadtest/loose-limits.sh # rate limits raised for loopback load (see there)
command -v wrk >/dev/null || { echo "cluster.sh: needs wrk (see loadtest/bench.sh)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/hubcluster.XXXXXX)
PID=
cleanup() { [[ -n $PID ]] && kill -INT "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK/data"; echo "cluster.sh: reports in $OUT" >&2; }
trap cleanup EXIT
RATE=${RATE:-5000}
OUT=${OUT:-$WORK/reports}
mkdir -p "$OUT"
go build -o "$WORK/" ./cmd/hubd ./cmd/hubctl ./cmd/hubload ./loadtest/failover
ulimit -n 20000
# hubload dials every device from 127.0.0.1: 5,000 WebSockets over three
# nodes is more than the per-address defaults allow (docs/security.md). The
# nodes hubctl dev-cluster and failover start inherit these.
export HUB_MAX_CONNS_PER_ADDR=20000 HUB_WAITS_PER_ADDR=20000 HUB_WAITS_PER_USER=1000

"$WORK/hubctl" dev-cluster --dir "$WORK/data" --port 18081 --admin-token bench >"$WORK/cluster.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	"$WORK/hubctl" --addr http://127.0.0.1:18081 --admin-token bench status 2>/dev/null | grep -q 'Follower.*Follower\|Leader' && break
	sleep 0.2
done
sleep 2
"$WORK/hubctl" --addr http://127.0.0.1:18081 --admin-token bench status
LEADER=$(curl -sf -H 'Authorization: Bearer bench' http://127.0.0.1:18081/admin/v1/status | sed -n 's/.*"leader_api":"\([^"]*\)".*/\1/p' | head -1)
SECRET=$(curl -sf -X POST "$LEADER/v1/users" | sed -n 's/.*"secret":"\([^"]*\)".*/\1/p')
TOKEN=$(curl -sf -X POST "$LEADER/v1/mailboxes" -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' -d '{"label":"bench"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
export TOKEN
echo "leader $LEADER"
run() { echo "== $1"; shift; timeout $((DUR + 30)) wrk --timeout 10s -d"${DUR}s" "$@" | grep -E 'Requests/sec|RESULT|Latency|Non-2xx' || true; }
run "single publishes, c=256, to the leader" -t2 -c256 -s loadtest/wrk/publish.lua "$LEADER"
WRKS=()
for p in 18081 18082 18083; do
	run "single publishes, c=86, to :$p (in parallel)" -t1 -c86 -s loadtest/wrk/publish.lua "http://127.0.0.1:$p" &
	WRKS+=($!)
done
wait "${WRKS[@]}" # not a bare wait: that would wait for the cluster too
run "batch publishes (100 a request), c=16, to the leader" -t2 -c16 -s loadtest/wrk/batch.lua "$LEADER"
if [[ -n ${WRK_ONLY:-} ]]; then exit 0; fi # cleanup stops the cluster
NODES=http://127.0.0.1:18081,http://127.0.0.1:18082,http://127.0.0.1:18083
echo "== hubload throughput, $RATE/s over three nodes"
"$WORK/hubload" throughput --nodes "$NODES" --admin-token bench --users 2500 --devices 2 --rate "$RATE" \
	--duration "${DUR}s" --quiet --report "$OUT/cluster-throughput" || true
LEADER_PID=$(pgrep -f -- "--listen ${LEADER#http://}" | head -1)
echo "== hubload failover, leader pid $LEADER_PID"
"$WORK/hubload" failover --nodes "$NODES" --admin-token bench --users 1000 --devices 2 --rate 1000 \
	--duration 15s --kill-pid "$LEADER_PID" --quiet --report "$OUT/cluster-failover" || true
kill -INT "$PID"; wait "$PID" || true; PID=

echo "== failover"
"$WORK/failover" --hubd "$WORK/hubd" --rounds "$ROUNDS"
