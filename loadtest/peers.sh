#!/usr/bin/env bash
# loadtest/peers.sh: the hub against Centrifugo v6, side by side, on this machine.
#
#   nice -n 19 loadtest/peers.sh            # the full comparison: ROUNDS=2, about 40 minutes (docs/hubload.md)
#   DUR=5 ROUNDS=1 USERS=500 FIXED="200 500" RATES="500 1000" BISECT=1 IDLE_STEPS=500,1000 SETTLE=2 loadtest/peers.sh
#                                           # a quick check that everything runs (about 3 minutes)
#   REV=HEAD loadtest/peers.sh              # build hubd from a commit (git archive), not the working tree
#   ONLY="fixed idle" loadtest/peers.sh     # some of the tests: fixed, saturation, idle
#
# It builds hubd (from the working tree, or REV), Centrifugo v6.9.1 with
# $PEERS/build-centrifugo.sh (skipped when $CF_DIR already holds that binary),
# the hub's driver (loadtest/peerdrive) and the peer's driver (built from
# $PEERS/centrifugo/driver at run time: the peer's side is not part of this
# repository). Then, ROUNDS times, it runs each test on the hub and then on
# Centrifugo, run by run, each run against a freshly started server (a fresh
# data directory for hubd, Centrifugo's memory engine, ulimit -n 20000 for
# both sides):
#   - fixed:      FIXED rates (1,000 and 5,000 msgs/s) to USERS users with one
#                 WebSocket device each, DUR s measured after WARMUP s;
#   - saturation: the RATES ladder, upwards, until a rate fails (p99
#                 publish→deliver >= P99_MS, a message lost or refused, or the
#                 driver unable to offer the rate), then BISECT steps between the
#                 last rate that held and the first that did not;
#   - idle:       IDLE_STEPS connections (driver -mode idle), RSS per device at
#                 the last step.
# Every load run also times the connect of its USERS devices (ticket, hello,
# welcome; Centrifugo: connect and subscribe with a JWT). It prints one
# Markdown table with both systems' figures (min–max over the rounds) and the
# ratios (taken within each round), and keeps every driver's output, the
# servers' logs, figures.tsv and results.json in the report directory
# (OUT=dir to choose it; it is printed).
#
# Loopback only; every run is bounded by a timeout; whatever it started is
# killed on exit. Needs go, curl, and the peer's material in PEERS
# (default ../shared/peers, relative to the repository). On a shared machine
# run it under nice on both sides' behalf, and read the ratios, not the
# absolute figures.
set -euo pipefail

ROUNDS=${ROUNDS:-2}
DUR=${DUR:-20}                 # measured window of a load run, seconds
WARMUP=${WARMUP:-3}            # publishing before the window, seconds
USERS=${USERS:-5000}           # users, one device each
FIXED=${FIXED:-"1000 5000"}    # fixed rates, msgs/s
RATES=${RATES:-"2000 3000 4000 6000 8000 12000 16000 20000 24000"}  # saturation ladder, msgs/s
BISECT=${BISECT:-2}            # bisection steps after the ladder
P99_MS=${P99_MS:-100}          # a rate holds when p99 publish→deliver is below this
IDLE_STEPS=${IDLE_STEPS:-5000,10000,15000}
SETTLE=${SETTLE:-5}            # idle: seconds after each step before reading RSS
ONLY=${ONLY:-"fixed saturation idle"}

cd "$(dirname "$0")/.."
ROOT=$PWD
PEERS=$(cd "${PEERS:-$ROOT/../shared/peers}" && pwd)
CF_DIR=${CF_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hub-peers/centrifugo-v6.9.1}
CF_VERSION=6.9.1
WORK=$(mktemp -d /tmp/hubpeers.XXXXXX)
OUT=${OUT:-$WORK/report}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export GOWORK=off
# Every device dials from 127.0.0.1: more than the hub's per-address cap of
# 1,000 connections (docs/operations.md), which is lifted as hubload.sh does;
# through the environment, so that an older hubd (REV=) starts as well.
export HUB_MAX_CONNS_PER_ADDR=20000

PIDS=()
SRV_PID=
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	stop_server
	if [[ -z ${KEEP:-} ]]; then
		rm -rf "$WORK/data" "$WORK/src" "$WORK/bin" "$WORK/centrifugo.json"
		rmdir "$WORK" 2>/dev/null || true # unless it holds the report
	else
		echo "peers: kept $WORK" >&2
	fi
	echo "peers: report in $OUT" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "peers: $*" >&2; }

for f in "$PEERS/build-centrifugo.sh" "$PEERS/centrifugo/centrifugo.json" "$PEERS/centrifugo/driver/main.go"; do
	[[ -f $f ]] || { say "no $f: set PEERS to the directory of the peer's material"; exit 1; }
done
ulimit -n 20000 || { say "cannot raise the open-file limit to 20000 (ulimit -n)"; exit 1; }

# ---- build ----

BIN=$WORK/bin
mkdir -p "$BIN"
say "building into $BIN"
if [[ -n ${REV:-} ]]; then
	mkdir "$WORK/src"
	git archive "$REV" | tar -x -C "$WORK/src"
	(cd "$WORK/src" && go build -o "$BIN/hubd" ./cmd/hubd)
	HUBD_REV="$(git rev-parse --short "$REV")"
else
	go build -o "$BIN/hubd" ./cmd/hubd
	HUBD_REV="$(git describe --always --dirty 2>/dev/null || echo '?') (working tree)"
fi
go build -o "$BIN/hub-load" ./loadtest/peerdrive
(cd "$PEERS/centrifugo/driver" && go build -o "$BIN/cf-load" .)
if [[ -x $CF_DIR/centrifugo ]] && "$CF_DIR/centrifugo" version 2>/dev/null | grep -q "$CF_VERSION"; then
	say "Centrifugo from $CF_DIR (cached)"
else
	say "building Centrifugo $CF_VERSION into $CF_DIR (about 5 minutes)"
	timeout 1800 bash "$PEERS/build-centrifugo.sh" "$CF_DIR" >"$OUT/build-centrifugo.log" 2>&1 ||
		{ say "Centrifugo build failed (CENTRIFUGE_REPLACE=1 builds against the snapshot of its library):"; tail -20 "$OUT/build-centrifugo.log" >&2; exit 1; }
fi
CF_BIN=$CF_DIR/centrifugo
CF_VER=$("$CF_BIN" version 2>/dev/null | head -1)

# ---- servers ----

# stop_server: ends the current server, SIGKILL after 15 s.
stop_server() {
	[[ -n $SRV_PID ]] || return 0
	kill "$SRV_PID" 2>/dev/null || true
	local i
	for i in $(seq 150); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -9 "$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=
}

# start_hub TAG: a hubd on a fresh data directory; waits (20 s at most) for
# "hubd: ready". Sets SRV_PID and HUB_URL.
start_hub() {
	stop_server
	rm -rf "$WORK/data"
	mkdir -p "$WORK/data"
	"$BIN/hubd" --data "$WORK/data" --listen 127.0.0.1:0 --raft-addr 127.0.0.1:0 --log-level warn \
		>"$OUT/$1.server.out" 2>"$OUT/$1.server.err" &
	SRV_PID=$!
	local i
	for i in $(seq 200); do
		if grep -qx 'hubd: ready' "$OUT/$1.server.out" 2>/dev/null; then
			HUB_URL=$(grep -o 'listening on http://[0-9.:]*' "$OUT/$1.server.out" | sed 's/listening on //')
			return 0
		fi
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.1
	done
	say "hubd did not start"; cat "$OUT/$1.server.out" "$OUT/$1.server.err" >&2; exit 1
}

# free_port: a loopback TCP port nobody answers on now.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 10000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
	done
}

# start_cf TAG: a Centrifugo with the peer's configuration on a free port;
# waits (20 s at most) until its server API answers. Sets SRV_PID and CF_PORT.
start_cf() {
	stop_server
	local try i
	for try in 1 2 3; do
		CF_PORT=$(free_port)
		sed "s/\"port\": *8000/\"port\": $CF_PORT/" "$PEERS/centrifugo/centrifugo.json" >"$WORK/centrifugo.json"
		grep -q "\"port\": $CF_PORT" "$WORK/centrifugo.json" || { say "cannot set the port in centrifugo.json"; exit 1; }
		(cd "$WORK" && exec "$CF_BIN" -c "$WORK/centrifugo.json") >"$OUT/$1.server.out" 2>"$OUT/$1.server.err" &
		SRV_PID=$!
		for i in $(seq 200); do
			if [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST -H 'X-API-Key: bench-api-key' \
				-d '{}' "http://127.0.0.1:$CF_PORT/api/info" 2>/dev/null) == 200 ]]; then
				return 0
			fi
			kill -0 "$SRV_PID" 2>/dev/null || break
			sleep 0.1
		done
		stop_server # a port taken between the check and the bind: try another
	done
	say "Centrifugo did not start"; cat "$OUT/$1.server.out" "$OUT/$1.server.err" >&2; exit 1
}

# ---- runs ----

# driver TAG TIMEOUT ARGS...: a driver run with its output in $OUT/TAG.txt,
# in the background so that a signal reaches the trap at once.
driver() {
	local tag=$1 t=$2
	shift 2
	timeout --kill-after=10 "$t" "$@" >"$OUT/$tag.txt" 2>"$OUT/$tag.err" &
	PIDS+=($!)
	local rc=0
	wait "$!" || rc=$?
	PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")
	if ((rc != 0)); then say "$tag: driver failed ($rc):"; tail -5 "$OUT/$tag.err" >&2; fi
	return $rc
}

# field KEY FILE: the value of KEY=... in FILE's driver output (a driver
# that ended without printing it ends the comparison).
field() {
	local v
	v=$(grep -o "\b$1=[^ ]*" "$2" | head -1 | cut -d= -f2 || true)
	[[ -n $v ]] || { say "no $1= in $2"; exit 1; }
	echo "$v"
}
# record ROUND SYS KEY VALUE: one figure, for the table.
record() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$OUT/figures.tsv"; }
: >"$OUT/figures.tsv"
: >"$OUT/runs.jsonl"

# load ROUND SYS RATE TEST: one load run on a fresh server; sets PASS (1 when
# the rate held) and the parsed figures P99, DELIVERED, CPU_US.
load() {
	local r=$1 sys=$2 rate=$3 test=$4
	local tag="r$r-$sys-$test-$rate"
	local t=$((WARMUP + DUR + 600))
	local common=(-mode load -users "$USERS" -rate "$rate" -duration "${DUR}s" -warmup "${WARMUP}s" -label "$tag")
	say "round $r: $sys at $rate msgs/s ($test)"
	if [[ $sys == hub ]]; then
		start_hub "$tag"
		driver "$tag" "$t" "$BIN/hub-load" "${common[@]}" -base "$HUB_URL" -pid "$SRV_PID" -timeout "${t}s" || { stop_server; exit 1; }
	else
		start_cf "$tag"
		driver "$tag" "$t" "$BIN/cf-load" "${common[@]}" -ws "ws://127.0.0.1:$CF_PORT/connection/websocket" \
			-api "http://127.0.0.1:$CF_PORT/api" -pid "$SRV_PID" || { stop_server; exit 1; }
	fi
	stop_server
	local f=$OUT/$tag.txt
	local p50 offered lost pe re cpu connect
	p50=$(field p50 "$f"); P99=$(field p99 "$f"); offered=$(field offered_msgs_s "$f")
	DELIVERED=$(field delivered_msgs_s "$f"); cpu=$(field server_cpu_pct "$f"); connect=$(field connect_s "$f")
	lost=$(field lost "$f"); pe=$(field publish_errors "$f"); re=$(field request_errors "$f")
	CPU_US=$(awk -v c="$cpu" -v d="$DELIVERED" 'BEGIN { printf "%.1f", (d > 0 ? c / 100 * 1e6 / d : 0) }')
	local why=
	awk -v p="$P99" -v m="$P99_MS" 'BEGIN { exit !(p >= m) }' && why="p99 ${P99} ms"
	((lost + pe + re > 0)) && why="${why:+$why, }$((lost + pe + re)) lost or refused"
	awk -v o="$offered" -v r="$rate" 'BEGIN { exit !(o < 0.95 * r) }' && why="${why:+$why, }offered only $offered/s"
	PASS=1
	[[ -z $why ]] || PASS=0
	say "  p50 $p50 ms, p99 $P99 ms, delivered $DELIVERED/s, server CPU $cpu% ($CPU_US µs/msg), connect $connect s${why:+: does not hold ($why)}"
	record "$r" "$sys" connect_s "$connect"
	record "$r" "$sys" lost "$((lost + pe + re))"
	printf '{"round":%s,"system":"%s","test":"%s","rate":%s,"offered_msgs_s":%s,"delivered_msgs_s":%s,"p50_ms":%s,"p99_ms":%s,"server_cpu_pct":%s,"cpu_us_per_msg":%s,"connect_s":%s,"lost_or_refused":%s,"holds":%s,"why":"%s","raw":"%s.txt"}\n' \
		"$r" "$sys" "$test" "$rate" "$offered" "$DELIVERED" "$p50" "$P99" "$cpu" "$CPU_US" "$connect" "$((lost + pe + re))" \
		"$([[ $PASS == 1 ]] && echo true || echo false)" "$why" "$tag" >>"$OUT/runs.jsonl"
	if [[ $test == fixed ]]; then
		record "$r" "$sys" "f$rate.p50" "$p50"
		record "$r" "$sys" "f$rate.p99" "$P99"
		record "$r" "$sys" "f$rate.delivered" "$DELIVERED"
		record "$r" "$sys" "f$rate.cpu" "$cpu"
		record "$r" "$sys" "f$rate.cpu_us" "$CPU_US"
	fi
}

# saturation ROUND: the ladder for both systems, alternating, then the
# bisection; records the highest rate that held and its figures.
saturation() {
	local r=$1 sys rate
	declare -A lo=([hub]=0 [cf]=0) hi=([hub]=0 [cf]=0) best_d=([hub]=0 [cf]=0) best_c=([hub]=0 [cf]=0)
	for rate in $RATES; do
		for sys in hub cf; do
			((hi[$sys] == 0)) || continue
			load "$r" "$sys" "$rate" saturation
			if ((PASS)); then lo[$sys]=$rate; best_d[$sys]=$DELIVERED; best_c[$sys]=$CPU_US; else hi[$sys]=$rate; fi
		done
	done
	local step mid
	for ((step = 0; step < BISECT; step++)); do
		for sys in hub cf; do
			((hi[$sys] > 0)) || continue
			mid=$(((lo[$sys] + hi[$sys]) / 2 / 250 * 250))
			((mid > lo[$sys] && mid < hi[$sys])) || continue
			load "$r" "$sys" "$mid" saturation
			if ((PASS)); then lo[$sys]=$mid; best_d[$sys]=$DELIVERED; best_c[$sys]=$CPU_US; else hi[$sys]=$mid; fi
		done
	done
	for sys in hub cf; do
		record "$r" "$sys" sat.rate "${lo[$sys]}"
		# A ladder that never failed gives a lower bound only.
		((hi[$sys] > 0)) || record "$r" "$sys" sat.open 1
		record "$r" "$sys" sat.delivered "${best_d[$sys]}"
		record "$r" "$sys" sat.cpu_us "${best_c[$sys]}"
	done
}

# idle ROUND SYS: RSS per idle device at the last of IDLE_STEPS.
idle() {
	local r=$1 sys=$2
	local tag="r$r-$sys-idle" last=${IDLE_STEPS##*,}
	say "round $r: $sys idle, $IDLE_STEPS devices"
	if [[ $sys == hub ]]; then
		start_hub "$tag"
		driver "$tag" 1200 "$BIN/hub-load" -mode idle -steps "$IDLE_STEPS" -settle "${SETTLE}s" -base "$HUB_URL" -pid "$SRV_PID" -timeout 1200s ||
			{ stop_server; exit 1; }
	else
		start_cf "$tag"
		driver "$tag" 1200 "$BIN/cf-load" -mode idle -steps "$IDLE_STEPS" -settle "${SETTLE}s" \
			-ws "ws://127.0.0.1:$CF_PORT/connection/websocket" -api "http://127.0.0.1:$CF_PORT/api" -pid "$SRV_PID" ||
			{ stop_server; exit 1; }
	fi
	stop_server
	# | connections | VmRSS | delta | KiB/conn (vs 0) | [hub: vs provisioned |] connect s | driver |
	local row
	row=$(awk -F'|' -v n="$last" '{ c = $2; gsub(/ /, "", c) } c == n' "$OUT/$tag.txt")
	[[ -n $row ]] || { say "$tag: no row for $last connections"; exit 1; }
	record "$r" "$sys" idle.kib "$(awk -F'|' '{ gsub(/ /, "", $5); print $5 }' <<<"$row")"
	if [[ $sys == hub ]]; then
		record "$r" "$sys" idle.kib_prov "$(awk -F'|' '{ gsub(/ /, "", $6); print $6 }' <<<"$row")"
		record "$r" "$sys" idle.connect_s "$(awk -F'|' '{ gsub(/ /, "", $7); print $7 }' <<<"$row")"
	else
		record "$r" "$sys" idle.connect_s "$(awk -F'|' '{ gsub(/ /, "", $6); print $6 }' <<<"$row")"
	fi
	say "  $(tr -s ' ' <<<"$row")"
}

wants() { [[ " $ONLY " == *" $1 "* ]]; }

START=$(date +%s)
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
say "hubd $HUBD_REV, $CF_VER; $ROUNDS round(s); load average $LOAD0"
for ((r = 1; r <= ROUNDS; r++)); do
	if wants fixed; then
		for rate in $FIXED; do
			load "$r" hub "$rate" fixed
			load "$r" cf "$rate" fixed
		done
	fi
	if wants saturation; then saturation "$r"; fi
	if wants idle; then
		idle "$r" hub
		idle "$r" cf
	fi
done
ELAPSED=$(($(date +%s) - START))

# ---- the table ----

# figures.tsv has ROUND SYS KEY VALUE lines; a key recorded several times in
# a round (connect_s: once per load run) counts as its median; lost sums.
# Each system's cell is the min–max over the rounds, each ratio is hub / cf
# within a round, then min–max over the rounds.
{
	echo "hubd $HUBD_REV against $CF_VER, $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "$ROUNDS round(s) alternating run by run, $USERS users with one WebSocket device each, windows of ${DUR} s after ${WARMUP} s,"
	echo "a fresh server per run; load average $LOAD0 at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end; $((ELAPSED / 60)) min $((ELAPSED % 60)) s."
	echo
	awk -F'\t' -v fixed="$FIXED" -v p99ms="$P99_MS" -v last="${IDLE_STEPS##*,}" -v users="$USERS" '
	function median(list,   a, n, i, j, t) {
		n = split(list, a, " ")
		for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function num(v) { return v == int(v) ? sprintf("%d", v) : v >= 100 ? sprintf("%d", v + 0.5) : v >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
	function span(lo, hi) { return num(lo) == num(hi) ? num(lo) : num(lo) "–" num(hi) }
	# cell(SYS, KEY): the min–max over the rounds, or "-".
	function cell(sys, key,   r, v, lo, hi, any, ge) {
		for (r = 1; r <= rounds; r++) {
			if (!((r, sys, key) in val)) continue
			v = val[r, sys, key] + 0
			if (!any || v < lo) lo = v
			if (!any || v > hi) hi = v
			any = 1
			if (key == "sat.rate" && (r, sys, "sat.open") in val) ge = "≥"
		}
		return any ? ge span(lo, hi) : "-"
	}
	# ratio(KEY): hub / cf within each round, min–max over the rounds.
	function ratio(key,   r, v, lo, hi, any) {
		for (r = 1; r <= rounds; r++) {
			if (!((r, "hub", key) in val) || !((r, "cf", key) in val) || val[r, "cf", key] + 0 == 0) continue
			v = val[r, "hub", key] / val[r, "cf", key]
			if (!any || v < lo) lo = v
			if (!any || v > hi) hi = v
			any = 1
		}
		if (!any) return "-"
		lo = sprintf(lo < 10 ? "%.2f" : "%.1f", lo); hi = sprintf(hi < 10 ? "%.2f" : "%.1f", hi)
		return (lo == hi ? lo : lo "–" hi) "×"
	}
	# row(NAME, KEY): one line of the table, none for a test that did not run.
	function row(name, key,   h, c) {
		h = cell("hub", key); c = cell("cf", key)
		if (h != "-" || c != "-") printf "| %s | %s | %s | %s |\n", name, h, c, ratio(key)
	}
	{
		k = $1 SUBSEP $2 SUBSEP $3
		if ($3 == "lost") sum[k] += $4
		else list[k] = (k in list ? list[k] " " : "") $4
		if ($1 > rounds) rounds = $1
	}
	END {
		for (k in list) val[k] = median(list[k])
		for (k in sum) val[k] = sum[k]
		print "| measured in one run, alternating | hub | Centrifugo v6 | hub / Centrifugo |"
		print "| --- | ---: | ---: | ---: |"
		n = split(fixed, rates, " ")
		for (i = 1; i <= n; i++) {
			f = "f" rates[i]
			row(rates[i] " msgs/s: publish→deliver p50 (ms)", f ".p50")
			row(rates[i] " msgs/s: publish→deliver p99 (ms)", f ".p99")
			row(rates[i] " msgs/s: delivered/s", f ".delivered")
			row(rates[i] " msgs/s: server CPU (% of one core)", f ".cpu")
			row(rates[i] " msgs/s: server CPU per delivered message (µs)", f ".cpu_us")
		}
		row("highest rate with p99 < " p99ms " ms (msgs/s; ≥: no rate of RATES failed)", "sat.rate")
		row("delivered/s at that rate", "sat.delivered")
		row("server CPU per delivered message at that rate (µs)", "sat.cpu_us")
		row(users " devices connect (s, median of the load runs)", "connect_s")
		row("idle RSS per connected device at " last " (KiB, from a fresh server)", "idle.kib")
		row(last " idle devices connect (s)", "idle.connect_s")
		if (cell("hub", "idle.kib_prov") != "-")
			printf "| idle RSS per device at %s, users and mailboxes left out (KiB) | %s | - | - |\n", last, cell("hub", "idle.kib_prov")
		printf "| messages lost or refused, every run | %s | %s | - |\n", cell("hub", "lost"), cell("cf", "lost")
	}' "$OUT/figures.tsv"
	echo
	echo "The hub commits each message (201 after fsync), delivers it, and commits its ack and receipt; Centrifugo's memory engine"
	echo "answers once the publication is in memory and its clients send nothing back. CPU per delivered message is"
	echo "server_cpu_pct / 100 × 10^6 / delivered_msgs_s. Raw outputs: $OUT"
} | tee "$OUT/table.md"

# results.json: the parameters and every run's parsed figures.
{
	printf '{"hubd":"%s","centrifugo":"%s","rounds":%s,"users":%s,"duration_s":%s,"warmup_s":%s,"p99_ms":%s,"elapsed_s":%s,"runs":[\n' \
		"$HUBD_REV" "$CF_VER" "$ROUNDS" "$USERS" "$DUR" "$WARMUP" "$P99_MS" "$ELAPSED"
	sed '$!s/$/,/' "$OUT/runs.jsonl"
	echo ']}'
} >"$OUT/results.json"
