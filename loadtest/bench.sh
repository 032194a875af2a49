#!/usr/bin/env bash
# loadtest/bench.sh: the numbers in BENCHMARKS.md, reproduced.
#
#   loadtest/bench.sh                 # about 2.5 minutes; prints a Markdown table
#   DUR=5 loadtest/bench.sh           # shorter runs (seconds per wrk run)
#   KEEP=1 loadtest/bench.sh          # keep the work directory (binaries, logs, data)
#   REV=HEAD loadtest/bench.sh        # build hubd from a commit (git archive), not the working tree
#
# It builds hubd, noopd (a no-op server with hubd's http.Server settings) and
# fixedrate (an open-loop fixed-rate client), starts hubd and noopd on
# loopback with a fresh data directory, makes a user and a mailbox with curl,
# and runs, in one run so that the ceiling and the server share the machine's
# state:
#   - wrk single publishes at c=1, 16, 256 against noopd, then against hubd;
#   - wrk batch publishes (100 messages a request) at c=4 and 16 against hubd;
#   - fixedrate at 5,000 publishes/s against hubd, and against noopd (the
#     client's own floor).
# Needs root (or wrk already installed), go, curl. Everything is bounded in
# time; whatever it started is killed on exit.
set -euo pipefail

DUR=${DUR:-10}            # seconds per wrk run
THREADS=${THREADS:-2}     # wrk threads (c=1 uses 1); 2 gave the best no-op ceiling on 2 cores
RATE=${RATE:-5000}        # fixed-rate run, requests/s
BATCH_CONNS=${BATCH_CONNS:-"4 16"}
LEVELS=${LEVELS:-"1 16 256"}

cd "$(dirname "$0")/.."
ROOT=$PWD
. loadtest/loose-limits.sh # rate limits raised for loopback load (see there)
LT=$ROOT/loadtest

if ! command -v wrk >/dev/null; then
	echo "bench: installing wrk" >&2
	timeout 120 apt-get update -qq >/dev/null
	DEBIAN_FRONTEND=noninteractive timeout 120 apt-get install -y -qq wrk >/dev/null
fi

WORK=$(mktemp -d /tmp/hubbench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "bench: kept $WORK" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "bench: building into $WORK" >&2
if [[ -n ${REV:-} ]]; then
	mkdir "$WORK/src"
	git archive "$REV" | tar -x -C "$WORK/src"
	(cd "$WORK/src" && go build -o "$WORK/hubd" ./cmd/hubd)
	HUBD_REV="$(git rev-parse --short "$REV")"
else
	go build -o "$WORK/hubd" ./cmd/hubd
	HUBD_REV="$(git describe --always --dirty 2>/dev/null || echo '?') (working tree)"
fi
go build -o "$WORK/noopd" ./loadtest/noopd
go build -o "$WORK/fixedrate" ./loadtest/fixedrate

# start NAME CMD...: runs CMD with stdout in $WORK/NAME.out and waits (10 s at
# most) for its "listening on http://..." line; with WAIT_READY=1 also for
# "hubd: ready". Sets URL.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
	PIDS+=($!)
	local i
	for i in $(seq 100); do
		URL=$(grep -o 'listening on http://[0-9.:]*' "$WORK/$name.out" 2>/dev/null | sed 's/listening on //' || true)
		if [[ -n $URL && ( -z ${WAIT_READY:-} || -n $(grep -x 'hubd: ready' "$WORK/$name.out" || true) ) ]]; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench: $name did not start" >&2
	cat "$WORK/$name.out" "$WORK/$name.err" >&2
	exit 1
}

mkdir -p "$WORK/data"
WAIT_READY=1 start hubd "$WORK/hubd" --data "$WORK/data" --listen 127.0.0.1:0 --raft-addr 127.0.0.1:0
HUB=$URL
start noopd "$WORK/noopd" --listen 127.0.0.1:0
NOOP=$URL
echo "bench: hubd $HUB, noopd $NOOP" >&2

json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
SECRET=$(curl -sf --max-time 10 -X POST "$HUB/v1/users" | json_field secret)
TOKEN=$(curl -sf --max-time 10 -X POST "$HUB/v1/mailboxes" -H "Authorization: Bearer $SECRET" \
	-H 'Content-Type: application/json' -d '{"label":"bench"}' | json_field token)
[[ -n $TOKEN ]] || { echo "bench: no mailbox token" >&2; exit 1; }
export TOKEN

LOG=$WORK/results.txt
: >"$LOG"
# field KEY LINE: the value of KEY=... in a RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# wrkrun NAME URL SCRIPT CONNS [extra env]: one wrk run; the RESULT line goes to
# $LOG prefixed by NAME, and into RES.
wrkrun() {
	local name=$1 url=$2 script=$3 c=$4
	local t=$THREADS
	((c < t)) && t=$c
	echo "bench: $name (wrk -t$t -c$c -d${DUR}s)" >&2
	RES=$(timeout $((DUR + 30)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s -s "$LT/wrk/$script" "$url" | grep '^RESULT' || true)
	[[ -n $RES ]] || { echo "bench: $name: wrk gave no result" >&2; exit 1; }
	echo "$name $RES" >>"$LOG"
}

declare -A NOOP_RPS NOOP_P50 NOOP_P99 HUB_RPS HUB_P50 HUB_P99 HUB_ERR
for c in $LEVELS; do
	wrkrun "noop-publish-c$c" "$NOOP" publish.lua "$c"
	NOOP_RPS[$c]=$(field rps "$RES"); NOOP_P50[$c]=$(field p50_us "$RES"); NOOP_P99[$c]=$(field p99_us "$RES")
done
for c in $LEVELS; do
	wrkrun "hubd-publish-c$c" "$HUB" publish.lua "$c"
	HUB_RPS[$c]=$(field rps "$RES"); HUB_P50[$c]=$(field p50_us "$RES"); HUB_P99[$c]=$(field p99_us "$RES")
	HUB_ERR[$c]=$(($(field err_status "$RES") + $(field err_timeout "$RES") + $(field err_read "$RES") + $(field err_connect "$RES")))
done

# Check once (2 s, CHECK=1 counts every item's status) that batch items are
# really accepted, then measure without the check.
echo "bench: batch check (2 s)" >&2
CHK=$(CHECK=1 timeout 30 wrk -t1 -c2 -d2s -s "$LT/wrk/batch.lua" "$HUB" | grep '^RESULT' || true)
echo "hubd-batch-check $CHK" >>"$LOG"
BATCH_OK=$(field items_ok "$CHK"); BATCH_BAD=$(field items_bad "$CHK")
declare -A B_RPS B_P50 B_P99
for c in $BATCH_CONNS; do
	wrkrun "hubd-batch100-c$c" "$HUB" batch.lua "$c"
	B_RPS[$c]=$(field rps "$RES"); B_P50[$c]=$(field p50_us "$RES"); B_P99[$c]=$(field p99_us "$RES")
done

echo "bench: fixed rate $RATE/s against hubd, then noopd (${DUR}s + 2s warm-up each)" >&2
FR_HUB=$(timeout $((DUR + 40)) "$WORK/fixedrate" --url "$HUB/v1/push/$TOKEN" --rate "$RATE" --duration "${DUR}s" --warmup 2s)
echo "hubd-fixedrate $FR_HUB" >>"$LOG"
FR_NOOP=$(timeout $((DUR + 40)) "$WORK/fixedrate" --url "$NOOP/v1/push/$TOKEN" --rate "$RATE" --duration "${DUR}s" --warmup 2s)
echo "noop-fixedrate $FR_NOOP" >>"$LOG"

ms() { awk -v u="$1" 'BEGIN { printf "%.2f", u / 1000 }'; }
int() { awk -v x="$1" 'BEGIN { printf "%d", x }'; }

echo
echo "hubd $HUBD_REV on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(date -u +%Y-%m-%dT%H:%MZ), wrk ${DUR}s per run, -t$THREADS (-t1 at c=1)"
echo
echo "| single publish | no-op req/s | hubd publishes/s | hubd / no-op | hubd p50 ms | hubd p99 ms | no-op p50 ms | no-op p99 ms | hubd errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for c in $LEVELS; do
	ratio=$(awk -v a="${HUB_RPS[$c]}" -v b="${NOOP_RPS[$c]}" 'BEGIN { printf "%.0f%%", 100 * a / b }')
	echo "| c=$c | $(int "${NOOP_RPS[$c]}") | $(int "${HUB_RPS[$c]}") | $ratio | $(ms "${HUB_P50[$c]}") | $(ms "${HUB_P99[$c]}") | $(ms "${NOOP_P50[$c]}") | $(ms "${NOOP_P99[$c]}") | ${HUB_ERR[$c]} |"
done
echo
echo "| batch, 100 messages a request | requests/s | durable messages/s | p50 ms | p99 ms |"
echo "| --- | ---: | ---: | ---: | ---: |"
for c in $BATCH_CONNS; do
	echo "| c=$c | $(int "${B_RPS[$c]}") | $(awk -v r="${B_RPS[$c]}" 'BEGIN { printf "%d", r * 100 }') | $(ms "${B_P50[$c]}") | $(ms "${B_P99[$c]}") |"
done
echo
echo "Batch check: $BATCH_OK items answered 201, $BATCH_BAD otherwise."
echo
echo "| fixed rate, $RATE/s, 64 conns | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | client send lag p50/p99 ms | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for pair in "hubd:$FR_HUB" "no-op:$FR_NOOP"; do
	n=${pair%%:*}; r=${pair#*:}
	echo "| $n | $(int "$(field rps "$r")") | $(ms "$(field p50_us "$r")") | $(ms "$(field p90_us "$r")") | $(ms "$(field p99_us "$r")") | $(ms "$(field p999_us "$r")") | $(ms "$(field max_us "$r")") | $(ms "$(field send_lag_p50_us "$r")")/$(ms "$(field send_lag_p99_us "$r")") | $(($(field errors "$r") + $(field non2xx "$r"))) |"
done
echo
echo "Raw results:"
echo
sed 's/^/    /' "$LOG"
