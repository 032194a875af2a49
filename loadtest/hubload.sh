#!/usr/bin/env bash
# loadtest/hubload.sh: the hubload figures in BENCHMARKS.md, reproduced.
#
#   loadtest/hubload.sh                      # every single-node scenario, about 5 minutes
#   loadtest/hubload.sh throughput burst     # some of them
#   DUR=60s loadtest/hubload.sh throughput   # longer steady runs (default 30s)
#   OUT=/tmp/reports loadtest/hubload.sh     # where the JSON and HTML reports go (default: a temp dir, printed)
#   REV=HEAD loadtest/hubload.sh             # build hubd from a commit (git archive), not the working tree
#
# Each scenario gets a freshly started hubd (new data directory, loopback
# only, --open-registration) so that one run's leftovers do not move the
# next one's baseline. hubload's exit status is the verdict's; this script
# stops at the first failing verdict. Everything it starts is killed on exit.
set -euo pipefail

DUR=${DUR:-30s}
cd "$(dirname "$0")/.."
. loadtest/loose-limits.sh # rate limits raised for loopback load (see there)
WORK=$(mktemp -d /tmp/hubload.XXXXXX)
OUT=${OUT:-$WORK/reports}
mkdir -p "$OUT"
HUBD_PID=
cleanup() {
	if [[ -n $HUBD_PID ]]; then kill "$HUBD_PID" 2>/dev/null || true; wait "$HUBD_PID" 2>/dev/null || true; fi
	if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK/data" "$WORK/src"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${REV:-} ]]; then
	mkdir "$WORK/src"
	git archive "$REV" | tar -x -C "$WORK/src"
	(cd "$WORK/src" && go build -o "$WORK/hubd" ./cmd/hubd && go build -o "$WORK/hubload" ./cmd/hubload)
	echo "hubload.sh: hubd and hubload at $(git rev-parse --short "$REV")" >&2
else
	go build -o "$WORK/hubd" ./cmd/hubd
	go build -o "$WORK/hubload" ./cmd/hubload
	echo "hubload.sh: hubd and hubload from the working tree at $(git describe --always --dirty)" >&2
fi
ulimit -n 20000

# fresh_hubd: stops the last hubd and starts one on a new data directory,
# then waits (10 s at most) for "hubd: ready". Sets URL and HUBD_PID.
fresh_hubd() {
	if [[ -n $HUBD_PID ]]; then kill "$HUBD_PID"; wait "$HUBD_PID" 2>/dev/null || true; fi
	rm -rf "$WORK/data"
	"$WORK/hubd" --data "$WORK/data" --listen 127.0.0.1:0 --raft-addr 127.0.0.1:0 --log-level warn \
		--max-conns-per-addr 20000 --waits-per-addr 20000 --waits-per-user 1000 \
		>"$WORK/hubd.out" 2>"$WORK/hubd.err" &
	HUBD_PID=$!
	local i
	for i in $(seq 100); do
		if grep -qx 'hubd: ready' "$WORK/hubd.out" 2>/dev/null; then
			URL=$(grep -o 'listening on http://[0-9.:]*' "$WORK/hubd.out" | sed 's/listening on //')
			return 0
		fi
		sleep 0.1
	done
	echo "hubload.sh: hubd did not start" >&2
	cat "$WORK/hubd.out" "$WORK/hubd.err" >&2
	exit 1
}

# scenario NAME ARGS...: one hubload run against a fresh hubd.
scenario() {
	local name=$1 tag=$2
	shift 2
	fresh_hubd
	echo "== $tag: hubload $name $*" >&2
	"$WORK/hubload" "$name" --nodes "$URL" --quiet --report "$OUT/$tag" "$@"
}

run_one() {
	case $1 in
	throughput)
		scenario throughput throughput-ws-5000 --users 5000 --devices 2 --rate 5000 --duration "$DUR"
		scenario throughput throughput-mix-2000 --users 1000 --devices 3 --transport mix --rate 2000 --duration "$DUR"
		scenario throughput fanout-ws-2500x8 --users 500 --devices 8 --rate 2500 --duration "$DUR"
		;;
	connections) scenario connections connections-15000 --conns 15000 ;;
	burst) scenario burst burst-50000 --users 1000 --devices 2 --messages 50000 --rate 50000 ;;
	reconnect-storm) scenario reconnect-storm reconnect-storm-10000 --users 5000 --devices 2 --messages 50000 ;;
	offline-drain) scenario offline-drain offline-drain-1m --users 1000 --devices 2 --messages 1000000 ;;
	*) echo "hubload.sh: unknown scenario $1 (failover needs a cluster: see docs/hubload.md)" >&2; exit 2 ;;
	esac
}

if [[ $# -eq 0 ]]; then
	set -- throughput connections burst reconnect-storm offline-drain
fi
for s in "$@"; do run_one "$s"; done
echo "hubload.sh: reports in $OUT" >&2
