#!/usr/bin/env bash
# scripts/demo.sh - what `make demo` runs: catherd in front of a real 3-node Tomcat 10 cluster.
#
# Usage: scripts/demo.sh            (as root; `make demo` builds bin/catherd first)
#
# Brings up 3 clustered Tomcat nodes (DeltaManager, synchronous replication) in network
# namespaces with scripts/tomcat-rig.sh, starts catherd on 127.0.0.1:8080 (metrics on
# 127.0.0.1:9106, admin API on 127.0.0.1:9107) and walks through:
#   (a) new sessions are balanced over the nodes,
#   (b) one client's requests stick to the node in its session route, count 1..5,
#   (c) kill -9 that node: the same client's next request gets count=6 on another node,
#       and catherd session says where the session goes now and why,
#   (d) catherd's Prometheus metrics, and the killed node shown down,
#   (e) L4 steering in XDP (scripts/l4demo, when L4DEMO names its binary).
# Prints PASS/FAIL per expectation and exits non-zero if any failed. Everything started
# here (catherd, Tomcats, namespaces, temp files) is removed on every exit path.
#
# Environment: CATHERD  catherd binary [./bin/catherd]
#              L4DEMO   scripts/l4demo binary (part (e) is skipped without it)
#              DEMO_KEEP=1  keep the temp dir (catherd log, Tomcat logs) for inspection
set -euo pipefail

cd "$(dirname "$0")/.."

CATHERD=${CATHERD:-./bin/catherd}
RIG=./scripts/tomcat-rig.sh
LISTEN=127.0.0.1:8080
METRICS=127.0.0.1:9106
ADMIN=127.0.0.1:9107
LB=http://$LISTEN

die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (the Tomcat rig uses network namespaces)"
[ -x "$CATHERD" ] || die "catherd binary '$CATHERD' not found (run 'make demo', or set CATHERD)"
command -v curl >/dev/null || die "curl not found"

# Refuse to start if something already listens where catherd should.
for addr in "$LISTEN" "$METRICS" "$ADMIN"; do
	if curl -s --max-time 1 -o /dev/null "http://$addr/" 2>/dev/null; then
		die "$addr is already in use; stop whatever listens there first"
	fi
done

WORK=$(mktemp -d /tmp/catherd-demo.XXXXXX)
RIG_DIR=$WORK/rig
JAR=$WORK/cookies.txt
CATHERD_PID=""
FAILS=0
CHECKS=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$CATHERD_PID" ] && kill -0 "$CATHERD_PID" 2>/dev/null; then
		kill -TERM "$CATHERD_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$CATHERD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$CATHERD_PID" 2>/dev/null || true
		wait "$CATHERD_PID" 2>/dev/null || true
	fi
	if [ "$rc" -ne 0 ] && [ -f "$WORK/catherd.log" ]; then
		echo "--- last lines of the catherd log ---" >&2
		tail -n 20 "$WORK/catherd.log" >&2 || true
	fi
	if [ "${DEMO_KEEP:-0}" = 1 ]; then
		CTH_RIG_KEEP=1 "$RIG" down --dir "$RIG_DIR" >/dev/null 2>&1 || true
		echo "demo: DEMO_KEEP=1, kept $WORK" >&2
	else
		"$RIG" down --dir "$RIG_DIR" >/dev/null 2>&1 || echo "demo: rig down failed" >&2
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# colours only on a terminal
if [ -t 1 ]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[31m' N=$'\033[0m'; else B="" G="" R="" N=""; fi
say() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
run() { printf '  $ %s\n' "$*"; }

# check DESCRIPTION COMMAND...: one expectation, printed as PASS/FAIL.
check() {
	local what=$1
	shift
	CHECKS=$((CHECKS + 1))
	if "$@"; then
		printf '  %sPASS%s %s\n' "$G" "$N" "$what"
	else
		printf '  %sFAIL%s %s\n' "$R" "$N" "$what"
		FAILS=$((FAILS + 1))
	fi
}

# fields of a counter.jsp line "node=N session=ID count=C"
field() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

lb_get() { curl -sS --max-time 10 "$@"; }

# ---------------------------------------------------------------------------
say "Starting 3 Tomcat 10 nodes (DeltaManager cluster) in network namespaces"
run "$RIG up --nodes 3 --cluster --dir $RIG_DIR"
t0=$(date +%s)
"$RIG" up --nodes 3 --cluster --dir "$RIG_DIR" | sed 's/^/  /'
echo "  (cluster up and replicating after $(($(date +%s) - t0)) s)"

say "Starting catherd in front of them"
# A hand-off socket of its own: a catherd already running on this host keeps the default.
args=(run --listen "$LISTEN"
	--backend node1=http://10.77.0.11:8080
	--backend node2=http://10.77.0.12:8080
	--backend node3=http://10.77.0.13:8080
	--metrics "$METRICS" --admin "$ADMIN" --retry 5s
	--handoff-socket "$WORK/handoff.sock")
run "$CATHERD ${args[*]}"
"$CATHERD" "${args[@]}" >"$WORK/catherd.log" 2>&1 &
CATHERD_PID=$!
ready=0
for _ in $(seq 1 100); do
	kill -0 "$CATHERD_PID" 2>/dev/null || { cat "$WORK/catherd.log" >&2; die "catherd exited at start-up"; }
	if [ "$(curl -s --max-time 1 -o /dev/null -w '%{http_code}' "$LB/health.jsp" 2>/dev/null)" = 200 ]; then
		ready=1
		break
	fi
	sleep 0.1
done
[ "$ready" = 1 ] || die "catherd did not answer on $LISTEN within 10 s"
echo "  catherd PID $CATHERD_PID listening on $LISTEN, metrics on $METRICS, admin API on $ADMIN"

# ---------------------------------------------------------------------------
say "(a) New sessions are balanced: 6 fresh clients, no cookie"
declare -A seen=()
for c in 1 2 3 4 5 6; do
	body=$(lb_get "$LB/counter.jsp" || true)
	echo "  client $c: $body"
	n=$(field node "$body")
	[ -n "$n" ] && seen[$n]=$((${seen[$n]:-0} + 1))
done
dist=""
for n in "${!seen[@]}"; do dist+="$n:${seen[$n]} "; done
echo "  new sessions per node: $dist"
check "new sessions spread over all 3 nodes" test "${#seen[@]}" -eq 3

# ---------------------------------------------------------------------------
say "(b) Stickiness: one client (cookie jar), 5 requests"
run "curl -b $JAR -c $JAR $LB/counter.jsp   # x5"
sticky_ok=1
home=""
sid=""
for i in 1 2 3 4 5; do
	body=$(lb_get -b "$JAR" -c "$JAR" "$LB/counter.jsp" || true)
	echo "  $body"
	n=$(field node "$body") s=$(field session "$body") cnt=$(field count "$body")
	[ -z "$sid" ] && sid=$s home=${s#*.}
	if [ "$n" != "$home" ] || [ "$s" != "$sid" ] || [ "$cnt" != "$i" ]; then sticky_ok=0; fi
done
echo "  session $sid -> route '$home'"
check "all 5 requests on $home (the route in the cookie), count 1..5" test "$sticky_ok" = 1

# ---------------------------------------------------------------------------
say "(c) Failover: kill -9 $home, then the same client again"
run "$RIG kill $home --dir $RIG_DIR"
"$RIG" kill "$home" --dir "$RIG_DIR" 2>&1 | sed 's/^/  /'
killed_at=$EPOCHREALTIME
body=$(lb_get -b "$JAR" -c "$JAR" "$LB/counter.jsp" || true)
echo "  $body"
n=$(field node "$body") cnt=$(field count "$body")
check "request after the kill served by another node" test -n "$n" -a "$n" != "$home"
check "session survived: count=6 (DeltaManager replicated it synchronously)" test "$cnt" = 6
body2=$(lb_get -b "$JAR" -c "$JAR" "$LB/counter.jsp" || true)
echo "  $body2"
check "next request stays on $n with count=7" test "$(field node "$body2")" = "$n" -a "$(field count "$body2")" = 7
run "$CATHERD session $sid --admin $ADMIN"
explained=$("$CATHERD" session "$sid" --admin "$ADMIN" 2>&1 || true)
sed 's/^/  /' <<<"$explained"
check "catherd session says it goes to $n, where it moved" grep -Eq "^goes to +$n \(moved\)" <<<"$explained"

# ---------------------------------------------------------------------------
say "(d) catherd's metrics"
run "curl -s $METRICS/metrics | grep ^catherd_"
metrics=$(curl -s --max-time 5 "http://$METRICS/metrics" | grep '^catherd_' || true)
grep -v '_bucket{' <<<"$metrics" | sed 's/^/  /'
echo "  (histogram _bucket lines omitted)"
for m in catherd_requests_total catherd_sticky_total catherd_member_state \
	catherd_request_duration_seconds catherd_active_requests catherd_backend_bytes_total; do
	check "metric $m exported" grep -q "^$m" <<<"$metrics"
done
failovers=$(sed -n 's/^catherd_sticky_total{outcome="failover"} \([0-9.e+]*\)$/\1/p' <<<"$metrics")
check "catherd_sticky_total{outcome=\"failover\"} >= 1 (got '${failovers:-none}')" \
	awk -v v="${failovers:-0}" 'BEGIN { exit !(v >= 1) }'
# The node is shown down soon after it died: the first request that met it
# (a reset on a pooled connection, or a refused connect) makes catherd probe
# it at once and then every --health-fast-interval (1 s), and --health-fall
# (2) failed probes mark it down; without any request the regular probes
# (--health-interval, 5 s) would find it too.
state_of() {
	curl -s --max-time 5 "http://$METRICS/metrics" |
		awk -v m="member=\"$1\"" '/^catherd_member_state\{/ && index($0, m) && $NF == 1 { match($0, /state="[a-z]+"/); print substr($0, RSTART + 7, RLENGTH - 8) }'
}
since_kill() { awk -v a="$killed_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
state=$(state_of "$home")
while [ "$state" != down ] && awk -v s="$(since_kill)" 'BEGIN { exit !(s < 15) }'; do
	sleep 0.1
	state=$(state_of "$home")
done
echo "  catherd_member_state of $home: ${state:-none}, $(since_kill) s after the kill"
check "catherd shows $home down within 15 s of the kill (catherd_member_state{state=\"down\"} is 1)" test "$state" = down

# ---------------------------------------------------------------------------
say "(e) L4 services in XDP (scripts/l4demo: its own namespaces, removed when it ends)"
if [ -n "${L4DEMO:-}" ]; then
	check "L4 tour: affinity, failover of one backend, kill -9 and restart keep flows" "$L4DEMO" -catherd "$CATHERD"
else
	echo "  skipped (set L4DEMO to the l4demo binary; make demo does)"
fi

# ---------------------------------------------------------------------------
say "Summary"
if [ "$FAILS" -eq 0 ]; then
	printf '  %sPASS%s: %d/%d expectations met\n' "$G" "$N" "$CHECKS" "$CHECKS"
else
	printf '  %sFAIL%s: %d of %d expectations failed\n' "$R" "$N" "$FAILS" "$CHECKS"
	exit 1
fi
