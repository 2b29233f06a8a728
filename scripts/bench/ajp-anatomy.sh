#!/usr/bin/env bash
# scripts/bench/ajp-anatomy.sh - where catherd's CPU per request goes over AJP,
# beside catherd over HTTP to the same Tomcat nodes: what `make bench --ajp`
# reports as one ratio, taken apart.
#
# Usage (root): scripts/bench/ajp-anatomy.sh
# It uses the Tomcat rig that is up (scripts/tomcat-rig.sh), or brings up one
# of 2 nodes for the run and takes it down after.
#
# Two catherds (one per transport, to every node of the rig) take the same wrk
# load in interleaved rounds. Each round and transport measures, per request:
#   - catherd's CPU, reads, writes (write + writev), epoll_pwait and context
#     switches (perf stat on its PID);
#   - TCP segments from the nodes to catherd and back (the rig's host-side
#     veths, cth-vI: every member connection crosses one);
#   - the CPU catherd spends sending the ACK that read(2) itself sends
#     (perf record: transmit paths under tcp_recvmsg). Linux's receiver sends
#     one when a read empties the socket after two or more small pushed
#     segments came since the last ACK; that ACK, and on the rig the node's
#     receiving of it (veth delivers in the sender's context), run in catherd.
# Medians of the rounds are printed. Traffic goes to 127.0.0.1 and the rig's
# addresses only; the catherds are started and killed here, by PID.
#
# Environment (defaults in brackets):
#   CATHERD          catherd binary [./bin/catherd]
#   ANAT_SECONDS     seconds of measured load per round and transport [8]
#   ANAT_ROUNDS      interleaved rounds [3]
#   ANAT_CONNS       wrk connections [32]
#   ANAT_DELAY_MS    each wrk connection waits this long between requests, so
#                    both transports run at about one rate; 0: back to back [5]
#   ANAT_PATH        request path [/index.html]
set -euo pipefail
cd "$(dirname "$0")/../.."

CATHERD=${CATHERD:-./bin/catherd}
SECS=${ANAT_SECONDS:-8}
ROUNDS=${ANAT_ROUNDS:-3}
CONNS=${ANAT_CONNS:-32}
DELAY=${ANAT_DELAY_MS:-5}
REQPATH=${ANAT_PATH:-/index.html}
SECRET=catherd-secret # the rig's AJP secret

die() { echo "ajp-anatomy: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (perf on other processes, the rig)"
[ -x "$CATHERD" ] || die "$CATHERD missing: make build"
for t in wrk perf curl ip python3; do command -v $t >/dev/null || die "$t missing"; done
[ "$SECS" -ge 4 ] || die "ANAT_SECONDS must be at least 4"

WORK=$(mktemp -d /tmp/ajp-anatomy.XXXXXX)
declare -A PID PORT=([http]=18101 [ajp]=18102)
OWN_RIG=""
cleanup() {
	local p
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PID[@]}"; do wait "$p" 2>/dev/null || true; done
	[ -z "$OWN_RIG" ] || scripts/tomcat-rig.sh down --dir "$OWN_RIG" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The rig's nodes: "nodeI IP HTTP AJP PID" per line.
rig_nodes() { scripts/tomcat-rig.sh status "$@" 2>/dev/null | awk 'NF == 5 && $1 ~ /^node[0-9]+$/'; }
mapfile -t NODES < <(rig_nodes)
if [ ${#NODES[@]} -eq 0 ]; then
	OWN_RIG=$WORK/rig
	scripts/tomcat-rig.sh up --nodes 2 --dir "$OWN_RIG" >"$WORK/rig.log" 2>&1 || { cat "$WORK/rig.log" >&2; die "the rig did not come up"; }
	mapfile -t NODES < <(rig_nodes --dir "$OWN_RIG")
fi
[ ${#NODES[@]} -gt 0 ] || die "no rig nodes"

VETHS=() http_args=() ajp_args=()
for n in "${NODES[@]}"; do
	read -r name ip hport aport _ <<<"$n"
	http_args+=(--backend "$name=http://$ip:$hport")
	ajp_args+=(--backend "$name=ajp://$ip:$aport,secret=$SECRET")
	VETHS+=("cth-v${name#node}")
done
for fe in http ajp; do
	args=(run --listen "127.0.0.1:${PORT[$fe]}" --metrics "" --admin "" --handoff-socket "$WORK/$fe.sock")
	if [ "$fe" = http ]; then args+=("${http_args[@]}"); else args+=("${ajp_args[@]}"); fi
	"$CATHERD" "${args[@]}" >"$WORK/$fe.log" 2>&1 &
	PID[$fe]=$!
done
for fe in http ajp; do
	for _ in $(seq 100); do
		curl -sf -o /dev/null -m 2 "http://127.0.0.1:${PORT[$fe]}$REQPATH" && continue 2
		kill -0 "${PID[$fe]}" 2>/dev/null || { cat "$WORK/$fe.log" >&2; die "catherd ($fe) exited"; }
		sleep 0.1
	done
	die "catherd ($fe) did not answer $REQPATH within 10 s"
done

WRK=(wrk -t1 -c"$CONNS")
if [ "$DELAY" != 0 ]; then
	printf 'function delay() return %d end\n' "$DELAY" >"$WORK/delay.lua"
	WRK+=(-s "$WORK/delay.lua")
fi

# segments: "to-members from-members" packets summed over the rig's veths
# (host side: tx goes to the node, rx comes from it).
segments() {
	local v
	for v in "${VETHS[@]}"; do ip -s -j link show "$v"; done | python3 -c '
import json, sys
tx = rx = 0
for line in sys.stdin:
    for link in json.loads(line):
        tx += link["stats64"]["tx"]["packets"]; rx += link["stats64"]["rx"]["packets"]
print(tx, rx)'
}

# load FE SECONDS OUT: wrk against FE in the background, its PID in WRK_PID;
# loaded FE OUT waits for it and fails unless every request got a 2xx.
load() {
	"${WRK[@]}" -d"$2s" "http://127.0.0.1:${PORT[$1]}$REQPATH" >"$3" 2>&1 &
	WRK_PID=$!
}
loaded() {
	wait "$WRK_PID" && ! grep -qE 'Non-2xx|Socket errors' "$2" || die "wrk against $1: $(cat "$2")"
}
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }

EVENTS=task-clock,context-switches,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_epoll_pwait
window=$((SECS - 2)) # perf looks at the middle of each load: 1 s in, 1 s before its end

echo "ajp-anatomy: nodes ${NODES[*]%% *}; wrk -c$CONNS, ${SECS}s per measure, delay ${DELAY} ms, $ROUNDS rounds, $REQPATH"
for r in $(seq "$ROUNDS"); do
	for fe in http ajp; do
		pid=${PID[$fe]}
		"${WRK[@]}" -d2s "http://127.0.0.1:${PORT[$fe]}$REQPATH" >/dev/null 2>&1 # warm-up

		# 1. CPU, system calls, switches and segments.
		read -r tx0 rx0 < <(segments)
		load "$fe" "$SECS" "$WORK/wrk-stat.txt"
		sleep 1
		perf stat -x, -e "$EVENTS" -p "$pid" -- sleep "$window" 2>"$WORK/stat.txt" >/dev/null
		loaded "$fe" "$WORK/wrk-stat.txt"
		read -r tx1 rx1 < <(segments)
		total=$(awk '/requests in/ {print $1}' "$WORK/wrk-stat.txt")
		stat=$(awk -F, -v req="$(rps "$WORK/wrk-stat.txt")" -v win="$window" '
			{ per[$3] = $1 / (req * win) }
			END {
				printf "%.2f %.2f %.2f %.2f %.2f", per["task-clock"] * 1000, per["syscalls:sys_enter_read"],
					per["syscalls:sys_enter_write"] + per["syscalls:sys_enter_writev"],
					per["syscalls:sys_enter_epoll_pwait"], per["context-switches"]
			}' "$WORK/stat.txt")

		# 2. The ACK that read(2) sends, from a profile of another window.
		load "$fe" "$SECS" "$WORK/wrk-rec.txt"
		sleep 1
		perf record -F 2000 -g -o "$WORK/perf.data" -p "$pid" -- sleep "$window" >/dev/null 2>&1
		loaded "$fe" "$WORK/wrk-rec.txt"
		ack=$(perf script -i "$WORK/perf.data" -F ip,sym 2>/dev/null | awk -v req="$(rps "$WORK/wrk-rec.txt")" -v win="$window" '
			/^$/ { if (stack ~ / tcp_recvmsg/ && stack ~ / __tcp_transmit_skb/) ack++; stack = ""; next }
			{ stack = stack " " $2 }
			END { printf "%.2f", ack * 500 / (req * win) }') # a sample is 500 us of CPU at 2000 Hz

		printf '%s %s %s %.2f %.2f %s\n' "$fe" "$(rps "$WORK/wrk-stat.txt")" "$stat" \
			"$(echo "($tx1 - $tx0) / $total" | bc -l)" "$(echo "($rx1 - $rx0) / $total" | bc -l)" "$ack" | tee -a "$WORK/rows"
	done
done | awk '{ printf "  round %d %s\n", int((NR + 1) / 2), $0 }'

echo
echo "medians, per request:"
python3 - "$WORK/rows" <<'EOF'
import statistics, sys
cols = ["req/s", "CPU us", "reads", "writes", "epoll_pwait", "switches", "segs to members", "segs from members", "ACK on read us"]
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(v) for v in f[1:]])
med = {fe: [statistics.median(c) for c in zip(*v)] for fe, v in rows.items()}
print("| transport | " + " | ".join(cols) + " |")
print("|---|" + "---:|" * len(cols))
for fe in ("http", "ajp"):
    print(f"| {fe} | " + " | ".join(f"{v:.2f}" if i else f"{v:.0f}" for i, v in enumerate(med[fe])) + " |")
h, a = med["http"], med["ajp"]
print(f"\nAJP/HTTP CPU per request: {a[1] / h[1]:.2f}x; without the ACK read(2) sends: {(a[1] - a[8]) / (h[1] - h[8]):.2f}x")
EOF
