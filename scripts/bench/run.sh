#!/usr/bin/env bash
# scripts/bench/run.sh - side-by-side L7 benchmark: catherd vs nginx, HAProxy, Apache.
#
# Usage:   scripts/bench/run.sh [--tomcat | --ajp]  (plain: what `make bench` runs)
#
# One run, the SAME backends, the SAME wrk load (wrk -t1 -c32) against every front end,
# rounds interleaved (round 1: direct nginx haproxy apache catherd, round 2: ...), MEDIAN
# per front end reported. Per front end: req/s, p50, p99 and the front end's own CPU time
# per request (utime+stime of all its processes/threads from /proc, before vs after).
# Prints a table plus catherd/peer ratios and writes it as markdown to $BENCH_OUT.
# Per-round lines (stderr) also show backends' and wrk's CPU per request and how much of
# the box other processes used ("other %"): the header of the results flags noisy runs.
#
# Static phase (default): two nginx backends on 127.0.0.1:18081/18082 (1 worker each)
# serving a ~150-byte /index.html. --tomcat (or BENCH_TOMCAT=1): real Tomcat backends
# from scripts/tomcat-rig.sh (`up --nodes 2` here, `down` on exit). If a rig is already up
# (bridge cth-br0 exists, e.g. a test using it briefly) we wait for it up to 3 minutes.
#
# AJP phase: --ajp (or BENCH_AJP=1) implies --tomcat and compares AJP front ends to the same
# 2 Tomcat nodes (AJP :8009, secret catherd-secret; HTTP :8080 for the HTTP rows):
#   catherd-ajp   catherd --backend nodeI=ajp://10.77.0.1I:8009,secret=...
#   catherd-http  the same catherd over HTTP (:8080): what AJP buys catherd
#   apache-ajp    Apache event + mod_proxy_balancer + mod_proxy_ajp (BalancerMember secret=)
#   apache-jk     Apache event + mod_jk: lb worker over two ajp13 workers (worker.X.secret)
#   direct        wrk straight at node1's HTTP connector (reference)
# Both Apaches use the same fixed event-MPM sizing as the HTTP Apache row. The ratio table
# is catherd-ajp vs each peer; the issue's targets (catherd-ajp >= 2x apache-ajp req/s,
# catherd-ajp CPU/req < apache-jk's) are checked in the report.
#
# Environment (defaults in brackets):
#   CATHERD               catherd binary [./bin/catherd]; missing = error unless
#   BENCH_ALLOW_MISSING=1 then catherd is skipped with a message
#   BENCH_DURATION        seconds per measured wrk run [10]
#   BENCH_WARMUP          seconds of warm-up before each measured run [2]
#   BENCH_ROUNDS          interleaved rounds [3]
#   BENCH_CONNS           wrk connections [32]     BENCH_THREADS  wrk threads [1]
#   BENCH_OUT             markdown results file [bench-results.md]
#   BENCH_PATH            request path [/index.html; /upload with BENCH_UPLOAD_MIB]
#   BENCH_UPLOAD_MIB      POST a body of this many MiB per request (static backends
#                         answer /upload with 204 once they have read it) [none: GET]
#   BENCH_MIB_PER_REQ     MiB a request moves, to report CPU per MiB as well [none]
#   BENCH_DELAY_MS        each wrk connection waits this long between requests (wrk's
#                         delay()), so that front ends are compared at about one request
#                         rate (connections / (delay + latency)) rather than each at its own
#                         saturation, where a faster one handles more events per wake-up
#                         [none: back to back]
#                         (static backends serve /big.bin, 8 MiB)
#   BENCH_BACKENDS        "b1=http://H:P,b2=http://H:P"; default static nginx on 18081/18082,
#                         with --tomcat: b1=http://10.77.0.11:8080,b2=http://10.77.0.12:8080,
#                         with --ajp: node1=..., node2=... (names = routes = Tomcat jvmRoutes)
#   BENCH_FRONTENDS       subset/order, e.g. "direct nginx haproxy apache catherd" [all;
#                         catherd-log, catherd writing an access log, only for small
#                         static pages];
#                         with --ajp [direct apache-ajp apache-jk catherd-http catherd-ajp]
#   BENCH_AJP_PORT        AJP port on every backend host [8009]  (--ajp)
#   BENCH_AJP_SECRET      AJP secret [catherd-secret]             (--ajp)
#   BENCH_CATHERD_ARGS    extra flags appended to `catherd run`
#   BENCH_KEEP=1          keep the temp dir (configs, logs, raw wrk output)
#
# Examples:
#   BENCH_DURATION=5 BENCH_ROUNDS=1 scripts/bench/run.sh        # quick look
#   CATHERD=bin/catherd BENCH_OUT=/tmp/bench.md scripts/bench/run.sh
#   scripts/bench/run.sh --tomcat                               # Tomcat phase (root)
#   BENCH_DURATION=8 BENCH_ROUNDS=3 scripts/bench/run.sh --ajp  # AJP phase (root)
#
# Traffic goes only to 127.0.0.1 (and, with --tomcat, to the rig's own netns addresses).
# Every server is started here from its own config in a temp dir, in the foreground, in
# its own process group; all are killed by that group on every exit path. Ports used:
# 18081-18082 (backends), 18090-18094 (nginx, haproxy, apache, catherd, catherd-log), 18095-18098
# (apache-ajp, apache-jk, catherd-ajp, catherd-http); they must be free. Every catherd runs
# with --metrics "" (the endpoint is only a listener, not on the request path) so that two
# catherds, or one from a concurrent test, never fight over 127.0.0.1:9180.
set -euo pipefail

CALLER_PWD=$(pwd)
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

TOMCAT=${BENCH_TOMCAT:-0}
AJP=${BENCH_AJP:-0}
for a in "$@"; do
	case "$a" in
	--tomcat) TOMCAT=1 ;;
	--ajp) AJP=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$a' (expected --tomcat, --ajp or --help)" >&2; exit 2 ;;
	esac
done
[ "$AJP" = 1 ] && TOMCAT=1 # AJP needs Tomcat's AJP connectors: the rig

if [ -n "${CATHERD:-}" ]; then
	case "$CATHERD" in */*) [[ $CATHERD == /* ]] || CATHERD=$CALLER_PWD/$CATHERD ;; *) CATHERD=$(command -v "$CATHERD" || echo "$CATHERD") ;; esac
else
	CATHERD=$ROOT/bin/catherd
fi
DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-2}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-32}
THREADS=${BENCH_THREADS:-1}
OUT=${BENCH_OUT:-bench-results.md}
case "$OUT" in /*) ;; *) OUT=$CALLER_PWD/$OUT ;; esac # relative to where we were called
UPLOAD_MIB=${BENCH_UPLOAD_MIB:-}
MIB_PER_REQ=${BENCH_MIB_PER_REQ:-}
DELAY_MS=${BENCH_DELAY_MS:-}
if [ -n "$UPLOAD_MIB" ]; then REQPATH=${BENCH_PATH:-/upload}; else REQPATH=${BENCH_PATH:-/index.html}; fi
if [ "$AJP" = 1 ]; then
	FRONTENDS=${BENCH_FRONTENDS:-direct apache-ajp apache-jk catherd-http catherd-ajp}
	SUBJECT=catherd-ajp # the front end the ratio table compares with its peers
else
	# catherd-log, with small static pages only: what the access log costs.
	FRONTENDS=${BENCH_FRONTENDS:-direct nginx haproxy apache catherd$([ "$TOMCAT" = 1 ] || [ -n "${BENCH_PATH:-}${BENCH_UPLOAD_MIB:-}" ] || echo " catherd-log")}
	SUBJECT=catherd
fi
AJP_PORT=${BENCH_AJP_PORT:-8009}
AJP_SECRET=${BENCH_AJP_SECRET:-catherd-secret}
RIG=$ROOT/scripts/tomcat-rig.sh
RIG_BUSY_WAIT=180 # seconds to wait for somebody else's rig (a test) to go down
APACHE_MODS=/usr/lib/apache2/modules
CATHERD_FES="catherd catherd-log catherd-ajp catherd-http" # front ends that need the catherd binary

# Front-end ports (all on 127.0.0.1).
declare -A PORT=([nginx]=18090 [haproxy]=18091 [apache]=18092 [catherd]=18093 [catherd-log]=18094
	[apache-ajp]=18095 [apache-jk]=18096 [catherd-ajp]=18097 [catherd-http]=18098)
APACHE_V=$(apache2 -v | awk -F'[/ ]' 'NR==1{print $4}')
declare -A LABEL=([direct]="direct (1 backend)" [nginx]="nginx $(nginx -v 2>&1 | sed 's|.*/||')"
	[haproxy]="HAProxy $(haproxy -v | awk 'NR==1{print $3}')"
	[apache]="Apache $APACHE_V event"
	[apache-ajp]="Apache $APACHE_V event mod_proxy_ajp"
	[apache-jk]="Apache $APACHE_V event mod_jk $(dpkg-query -W -f='${Version}' libapache2-mod-jk 2>/dev/null | sed 's/^[0-9]*://; s/-.*//')"
	[catherd]="catherd" [catherd-log]="catherd, access log on" [catherd-ajp]="catherd AJP" [catherd-http]="catherd HTTP")

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

[[ -z $DELAY_MS || $DELAY_MS =~ ^[0-9]+$ ]] || die "BENCH_DELAY_MS: expected whole milliseconds, got '$DELAY_MS'"
for t in wrk curl nginx haproxy apache2 awk cmp; do
	command -v "$t" >/dev/null || die "required tool '$t' not found"
done
for fe in $FRONTENDS; do
	[ "$fe" = direct ] || [ -n "${PORT[$fe]:-}" ] || die "BENCH_FRONTENDS: unknown front end '$fe' (known: direct ${!PORT[*]})"
done
# The AJP Apache front ends need their modules; say so now rather than in a config test.
want_any() { local f; for f; do [[ " $FRONTENDS " == *" $f "* ]] && return 0; done; return 1; }
! want_any apache-ajp || [ -f "$APACHE_MODS/mod_proxy_ajp.so" ] || die "apache-ajp: $APACHE_MODS/mod_proxy_ajp.so missing"
! want_any apache-jk || [ -f "$APACHE_MODS/mod_jk.so" ] || die "apache-jk: $APACHE_MODS/mod_jk.so missing (apt-get install libapache2-mod-jk)"

# Pre-flight: decide about catherd before starting anything.
# shellcheck disable=SC2086
if want_any $CATHERD_FES && [ ! -x "$CATHERD" ]; then
	if [ "${BENCH_ALLOW_MISSING:-0}" = 1 ]; then
		echo "run.sh: NOTE: catherd binary '$CATHERD' not found; skipping catherd (BENCH_ALLOW_MISSING=1)" >&2
		kept=""
		for fe in $FRONTENDS; do [[ " $CATHERD_FES " == *" $fe "* ]] || kept="$kept $fe"; done
		FRONTENDS=$kept
		CATHERD_SKIPPED=1
	else
		die "catherd binary '$CATHERD' not found (build it: go build -o bin/catherd ./cmd/catherd; or BENCH_ALLOW_MISSING=1 to skip)"
	fi
fi

# Pre-flight: our ports must be free, or we would measure somebody else's server.
ports_re='1809[0-8]'
[ "$TOMCAT" = 1 ] || [ -n "${BENCH_BACKENDS:-}" ] || ports_re='1808[12]|1809[0-8]'
busy=$(ss -Htln 2>/dev/null | awk '{print $4}' | grep -E ":($ports_re)\$" || true)
[ -z "$busy" ] || die "ports already in use (stale benchmark servers?): $(echo $busy)"

WORK=$(mktemp -d /tmp/catherd-bench.XXXXXX)
chmod 755 "$WORK" # nginx/apache workers drop to nobody/www-data and must read it
PIDS=()           # every server we started; each leads its own process group (setsid)
WRK_PID=""        # the wrk currently running, if any
RIG_UP=0

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local p
	[ -n "$WRK_PID" ] && kill -TERM "$WRK_PID" 2>/dev/null
	# Signal each server's whole process group (master + workers, even orphaned ones).
	for p in "${PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	for ((i_ = 0; i_ < 50; i_++)); do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 -- "-$p" 2>/dev/null && alive=1; done
		[ $alive = 0 ] && break
		sleep 0.1
	done
	for p in "${PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
	if [ $RIG_UP = 1 ]; then "$RIG" down >&2 || echo "run.sh: tomcat-rig down failed" >&2; fi
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "run.sh: kept $WORK" >&2; else rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- backends
if [ "$AJP" = 1 ]; then
	# Names double as routes, so they must be the rig's jvmRoutes (catherd's route defaults
	# to the name; the Apaches get route= explicitly).
	BACKENDS=${BENCH_BACKENDS:-node1=http://10.77.0.11:8080,node2=http://10.77.0.12:8080}
elif [ "$TOMCAT" = 1 ]; then
	BACKENDS=${BENCH_BACKENDS:-b1=http://10.77.0.11:8080,b2=http://10.77.0.12:8080}
else
	BACKENDS=${BENCH_BACKENDS:-b1=http://127.0.0.1:18081,b2=http://127.0.0.1:18082}
fi
BNAMES=() BHOSTPORTS=() BAJP=()
IFS=',' read -r -a _bl <<<"$BACKENDS"
for b in "${_bl[@]}"; do
	[[ $b =~ ^([A-Za-z0-9_-]+)=http://([^/:]+):([0-9]+)/?$ ]] ||
		die "BENCH_BACKENDS: bad entry '$b' (expected NAME=http://HOST:PORT)"
	BNAMES+=("${BASH_REMATCH[1]}")
	BHOSTPORTS+=("${BASH_REMATCH[2]}:${BASH_REMATCH[3]}")
	BAJP+=("${BASH_REMATCH[2]}:$AJP_PORT") # same host, its AJP connector
done
[ ${#BNAMES[@]} -ge 1 ] || die "BENCH_BACKENDS is empty"

# ---------------------------------------------------------------- helpers
# start NAME LOGFILE CMD...: run a server (in its foreground) as a background job in a new
# session/process group (setsid execs in place: PID = PGID), record its PID in PID[NAME]
# (a map, not PID_NAME variables: front-end names like catherd-ajp have dashes).
declare -A PID
start() {
	local name=$1 logf=$2
	shift 2
	setsid "$@" >"$logf" 2>&1 </dev/null &
	PIDS+=($!)
	PID[$name]=$!
}

# wait_http NAME URL TIMEOUT_S LOGFILE...: bounded wait until URL answers 200.
wait_http() {
	local name=$1 url=$2 timeout=$3 pid=${PID[$1]:-}
	shift 3
	local deadline=$((SECONDS + timeout)) code
	while :; do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
		[ "$code" = 200 ] && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			echo "run.sh: $name exited during start-up; its log:" >&2
			tail -n 40 "$@" >&2 2>/dev/null || true
			exit 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			echo "run.sh: $name did not answer 200 on $url within ${timeout}s (last: $code); its log:" >&2
			tail -n 40 "$@" >&2 2>/dev/null || true
			exit 1
		fi
		sleep 0.2
	done
}

# tree_pids ROOT: ROOT and all its descendants.
tree_pids() {
	ps -e -o pid=,ppid= | awk -v root="$1" '
		{ kids[$2] = kids[$2] " " $1 }
		END { q[1] = root; n = 1; i = 1
		      while (i <= n) { p = q[i++]; print p
		        m = split(kids[p], k, " "); for (j = 1; j <= m; j++) q[++n] = k[j] } }'
}

# cpu_ticks ROOT: utime+stime+cutime+cstime summed over ROOT's process tree. Process-level
# /proc/PID/stat covers all threads; cutime/cstime keep the time of reaped children
# (e.g. an Apache child that exits mid-run), so before/after deltas stay complete.
cpu_ticks() {
	local files=() p
	for p in $(tree_pids "$1"); do files+=("/proc/$p/stat"); done
	cat "${files[@]}" 2>/dev/null | awk '
		{ sub(/^.*\) /, ""); split($0, f, " "); s += f[12] + f[13] + f[14] + f[15] }
		END { print s + 0 }'
}
# ctx_switches ROOT: voluntary and involuntary context switches of every thread of ROOT's
# process tree. Threads that exit take theirs along: nginx's, HAProxy's and catherd's
# live for the whole run. On a virtual machine a switch is dear (the hypervisor's IRQ
# enable shows up in every profile), so switches per request explain CPU per request.
ctx_switches() {
	local files=() p
	for p in $(tree_pids "$1"); do files+=(/proc/"$p"/task/*/status); done
	cat "${files[@]}" 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'
}
HZ=$(getconf CLK_TCK)
BACKEND_PIDS="" # backend server PIDs we can account (our nginx, or the rig's JVMs)

# backend_ticks: CPU ticks of all backend process trees.
backend_ticks() {
	local s=0 p
	for p in $BACKEND_PIDS; do s=$((s + $(cpu_ticks "$p"))); done
	echo $s
}
# self_child_ticks: cutime+cstime of this shell = everything it ran and reaped (wrk).
self_child_ticks() { awk '{sub(/^.*\) /, ""); split($0, f, " "); print f[14] + f[15]}' /proc/$$/stat; }
# active_opens: TCP connections opened from this network namespace (/proc/net/snmp). Over a
# measured run wrk opens its $CONNS; the rest are the front end's new backend connections
# (the rig's Tomcats sit in their own namespaces): a front end that does not keep its
# backend connections alive shows up here (and pays connect + TIME_WAIT for it).
active_opens() { awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") c = i; h = 1 } else print $c }' /proc/net/snmp; }
# box_ticks: "busy total" over all CPUs from /proc/stat.
box_ticks() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }

{
	[ -z "$DELAY_MS" ] || echo "function delay() return $DELAY_MS end"
	if [ -n "$UPLOAD_MIB" ]; then
		echo "wrk.method = \"POST\""
		echo "wrk.body = string.rep(\"u\", $UPLOAD_MIB * 1048576)"
	fi
	cat <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
EOF
} >"$WORK/report.lua"
# fetch URL OUT: one request as wrk sends it (GET, or the upload), body to OUT.
fetch() {
	if [ -n "$UPLOAD_MIB" ]; then
		head -c $((UPLOAD_MIB << 20)) /dev/zero | tr '\0' u | curl -sf -m 30 -o "$2" -X POST --data-binary @- "$1"
	else
		curl -sf -m 30 -o "$2" "$1"
	fi
}

# ---------------------------------------------------------------- static backends
if [ "$TOMCAT" = 1 ]; then
	if [ -z "${BENCH_BACKENDS:-}" ]; then
		[ -x "$RIG" ] || die "--tomcat: $RIG not found/executable (or set BENCH_BACKENDS to running Tomcats)"
		# The rig's bridge/netns names are fixed: never start (or later tear down) a rig
		# that somebody else is using. Tests bring a rig up only briefly, so wait (bounded).
		rig_deadline=$((SECONDS + RIG_BUSY_WAIT))
		while ip link show cth-br0 >/dev/null 2>&1; do
			[ $SECONDS -lt $rig_deadline ] ||
				die "--tomcat: a Tomcat rig is still up after ${RIG_BUSY_WAIT}s (bridge cth-br0 exists); stop it or point BENCH_BACKENDS at it"
			[ -n "${rig_waiting:-}" ] || { log "a Tomcat rig is up (cth-br0): waiting up to ${RIG_BUSY_WAIT}s for it to go down"; rig_waiting=1; }
			sleep 5
		done
		export CTH_RIG_DIR=$WORK/rig
		log "starting Tomcat rig: $RIG up --nodes ${#BNAMES[@]} (dir $CTH_RIG_DIR)"
		RIG_UP=1
		"$RIG" up --nodes "${#BNAMES[@]}" >"$WORK/rig-up.txt" || die "tomcat-rig up failed"
		cat "$WORK/rig-up.txt" >&2
		# `up` prints "nodeI IP HTTP AJP PID": keep the JVM PIDs for backend CPU accounting.
		BACKEND_PIDS=$(awk '$1 ~ /^node[0-9]+$/ && $NF ~ /^[0-9]+$/ {print $NF}' "$WORK/rig-up.txt")
	fi
elif [ -z "${BENCH_BACKENDS:-}" ]; then
	mkdir -p "$WORK/www"
	# 150-byte static page.
	printf '<!doctype html><html><head><title>catherd bench</title></head><body><p>static backend page for the catherd side-by-side benchmark.</p></body></html>\n' >"$WORK/www/index.html"
	# 8 MiB for the large-body runs (BENCH_MIB_PER_REQ=8).
	head -c $((8 << 20)) /dev/urandom >"$WORK/www/big.bin"
	i=0
	for hp in "${BHOSTPORTS[@]}"; do
		i=$((i + 1))
		d=$WORK/backend$i
		mkdir -p "$d"
		# One worker per backend: the box has 2 cores shared by wrk, the front end (2
		# workers/threads) and both backends. A static 150-byte hit costs a few us, so one
		# worker each is far from saturated, and more workers only add scheduler noise.
		cat >"$d/nginx.conf" <<EOF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    open_file_cache max=16 inactive=60s;
    open_file_cache_valid 60s;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    default_type text/html;
    client_max_body_size 0;
    server {
        listen $hp reuseport backlog=4096;
        root $WORK/www;
        # Uploads: the whole body is read (into memory), then 204. A bare `return 204`
        # answers before the body has arrived and leaves the proxy in front to decide
        # what to do with the rest, which is not the case being measured. The proxy
        # module reads the body first; the answer comes from this same server, over a
        # unix socket so that the hop is not counted as a front end's backend connection.
        listen unix:$d/sink.sock;
        location = /upload {
            client_body_buffer_size 16m;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_pass http://unix:$d/sink.sock:/uploaded;
        }
        location = /uploaded { return 204; }
    }
}
EOF
		start "backend$i" "$d/stderr.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
		BACKEND_PIDS="$BACKEND_PIDS ${PID[backend$i]}"
	done
fi

i=0
for hp in "${BHOSTPORTS[@]}"; do
	i=$((i + 1))
	if [ "$TOMCAT" = 1 ]; then to=180; else to=10; fi
	if [ -n "$UPLOAD_MIB" ]; then reqpath=/index.html; else reqpath=$REQPATH; fi
	wait_http "backend$i" "http://$hp$reqpath" $to "$WORK/backend$i/error.log" "$WORK/backend$i/stderr.log"
done
# Keep each backend's body: every front end must return one of them byte for byte (a
# wrong AJP secret, say, gives a 403 page, and a proxy error page can be 200 too).
for j in "${!BHOSTPORTS[@]}"; do
	fetch "http://${BHOSTPORTS[$j]}$REQPATH" "$WORK/body-$j" || die "fetching http://${BHOSTPORTS[$j]}$REQPATH failed"
done
BODY_BYTES=$(wc -c <"$WORK/body-0")
log "backends up: $BACKENDS ($REQPATH = $BODY_BYTES bytes)"

# ---------------------------------------------------------------- front ends
want() { [[ " $FRONTENDS " == *" $1 "* ]]; }
ACTIVE=()

if want nginx; then
	d=$WORK/nginx
	mkdir -p "$d"
	{
		cat <<EOF
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_timeout 120s;
    keepalive_requests 1000000;
    client_max_body_size 0;
    upstream bk {
EOF
		for hp in "${BHOSTPORTS[@]}"; do echo "        server $hp;"; done
		cat <<EOF
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 120s;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} reuseport backlog=4096;
        location / {
            proxy_pass http://bk;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	} >"$d/nginx.conf"
	start nginx "$d/stderr.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
	ACTIVE+=(nginx)
fi

if want haproxy; then
	d=$WORK/haproxy
	mkdir -p "$d"
	{
		cat <<EOF
global
    nbthread 2
    maxconn 4096
    pidfile $d/haproxy.pid
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 120s
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend bk
backend bk
    balance roundrobin
    http-reuse always
EOF
		for j in "${!BNAMES[@]}"; do echo "    server ${BNAMES[$j]} ${BHOSTPORTS[$j]}"; done
	} >"$d/haproxy.cfg"
	haproxy -c -q -f "$d/haproxy.cfg" >&2 || die "haproxy config check failed ($d/haproxy.cfg)"
	start haproxy "$d/stderr.log" haproxy -db -f "$d/haproxy.cfg"
	ACTIVE+=(haproxy)
fi

# apache_conf DIR PORT: the part of httpd.conf every Apache front end shares (state in DIR,
# listen on PORT, the event MPM of scripts/apache/event-mpm.conf); the caller appends its
# modules and proxy setup.
apache_conf() {
	cat <<EOF
ServerRoot $1
ServerName 127.0.0.1
Listen 127.0.0.1:$2
PidFile $1/run/httpd.pid
DefaultRuntimeDir $1/run
ErrorLog $1/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $APACHE_MODS/mod_mpm_event.so
LoadModule authz_core_module $APACHE_MODS/mod_authz_core.so
Include $ROOT/scripts/apache/event-mpm.conf
KeepAliveTimeout 120
EOF
}

# apache_balancer SCHEME MODULE MEMBER_OPTS HOSTPORT...: mod_proxy_balancer (byrequests) over
# SCHEME://HOSTPORT members, route = backend name, proxied by $APACHE_MODS/MODULE.
apache_balancer() {
	local scheme=$1 module=$2 opts=$3 j
	local mod_name=${module#mod_}
	mod_name=${mod_name%.so} # mod_proxy_ajp.so declares proxy_ajp_module
	shift 3
	local hps=("$@")
	cat <<EOF
LoadModule slotmem_shm_module $APACHE_MODS/mod_slotmem_shm.so
LoadModule proxy_module $APACHE_MODS/mod_proxy.so
LoadModule ${mod_name}_module $APACHE_MODS/$module
LoadModule proxy_balancer_module $APACHE_MODS/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module $APACHE_MODS/mod_lbmethod_byrequests.so
<Proxy balancer://bk>
EOF
	for j in "${!hps[@]}"; do echo "    BalancerMember $scheme://${hps[$j]} route=${BNAMES[$j]}$opts"; done
	cat <<EOF
    ProxySet lbmethod=byrequests
</Proxy>
ProxyPass / balancer://bk/
ProxyPassReverse / balancer://bk/
EOF
}

# start_apache FE: config test, then Apache in the foreground from $WORK/FE/httpd.conf.
start_apache() {
	local d=$WORK/$1
	apache2 -t -f "$d/httpd.conf" -d "$d" >"$d/configtest.log" 2>&1 || { cat "$d/configtest.log" >&2; die "$1: apache config test failed ($d/httpd.conf)"; }
	start "$1" "$d/stderr.log" apache2 -f "$d/httpd.conf" -d "$d" -DFOREGROUND
	ACTIVE+=("$1")
}

if want apache; then
	d=$WORK/apache
	mkdir -p "$d/run"
	{
		apache_conf "$d" "${PORT[apache]}"
		apache_balancer http mod_proxy_http.so "" "${BHOSTPORTS[@]}"
	} >"$d/httpd.conf"
	start_apache apache
fi

if want apache-ajp; then
	# mod_proxy_ajp (2.4.42+ has secret= on ajp workers); backend connections are reused
	# by default (no disablereuse), as for mod_proxy_http.
	d=$WORK/apache-ajp
	mkdir -p "$d/run"
	{
		apache_conf "$d" "${PORT[apache-ajp]}"
		apache_balancer ajp mod_proxy_ajp.so " secret=$AJP_SECRET" "${BAJP[@]}"
	} >"$d/httpd.conf"
	start_apache apache-ajp
fi

if want apache-jk; then
	# mod_jk: one ajp13 worker per node under an lb worker (method Request = by requests,
	# like the others); it pools backend connections (connection_pool_size defaults to
	# ThreadsPerChild). mod_jk 1.2.48 spells the AJP secret worker.NAME.secret (the old
	# request_secret is gone). Its log/shm files stay in our temp dir.
	d=$WORK/apache-jk
	mkdir -p "$d/run"
	{
		echo "worker.list=lb"
		for j in "${!BNAMES[@]}"; do
			n=${BNAMES[$j]}
			cat <<EOF
worker.$n.type=ajp13
worker.$n.host=${BAJP[$j]%:*}
worker.$n.port=${BAJP[$j]##*:}
worker.$n.secret=$AJP_SECRET
worker.$n.route=$n
EOF
		done
		echo "worker.lb.type=lb"
		echo "worker.lb.method=Request"
		echo "worker.lb.balance_workers=$(IFS=,; echo "${BNAMES[*]}")"
	} >"$d/workers.properties"
	{
		apache_conf "$d" "${PORT[apache-jk]}"
		cat <<EOF
LoadModule jk_module $APACHE_MODS/mod_jk.so
JkWorkersFile $d/workers.properties
JkLogFile $d/mod_jk.log
JkLogLevel info
JkShmFile $d/run/jk.shm
JkMount /* lb
EOF
	} >"$d/httpd.conf"
	start_apache apache-jk
fi

# start_catherd FE BACKEND...: catherd on PORT[FE] with one --backend per BACKEND.
start_catherd() {
	local fe=$1 d=$WORK/$1
	shift
	mkdir -p "$d"
	# Its own hand-off socket and no admin API: two catherds run side by side (--ajp).
	local cargs=(run --listen "127.0.0.1:${PORT[$fe]}" --metrics "" --admin "" --handoff-socket "$d/handoff.sock") b
	for b; do cargs+=(--backend "$b"); done
	[ "$fe" != catherd-log ] || cargs+=(--access-log "$d/access.log")
	# shellcheck disable=SC2206
	cargs+=(${BENCH_CATHERD_ARGS:-})
	printf '%q ' "$CATHERD" "${cargs[@]}" >"$d/cmdline"
	start "$fe" "$d/stderr.log" "$CATHERD" "${cargs[@]}"
	ACTIVE+=("$fe")
	LABEL[$fe]="${LABEL[$fe]} $(git describe --always --dirty 2>/dev/null || true)"
}

http_members=() ajp_members=()
for j in "${!BNAMES[@]}"; do
	http_members+=("${BNAMES[$j]}=http://${BHOSTPORTS[$j]}")
	ajp_members+=("${BNAMES[$j]}=ajp://${BAJP[$j]},secret=$AJP_SECRET")
done
want catherd && start_catherd catherd "${http_members[@]}"
want catherd-log && start_catherd catherd-log "${http_members[@]}"
want catherd-http && start_catherd catherd-http "${http_members[@]}"
want catherd-ajp && start_catherd catherd-ajp "${ajp_members[@]}"

# same_body FILE: FILE is byte for byte one of the backends' bodies.
same_body() {
	local j
	for j in "${!BHOSTPORTS[@]}"; do cmp -s "$1" "$WORK/body-$j" && return 0; done
	return 1
}
for fe in "${ACTIVE[@]}"; do
	if [ -n "$UPLOAD_MIB" ]; then reqpath=/index.html; else reqpath=$REQPATH; fi
	wait_http "$fe" "http://127.0.0.1:${PORT[$fe]}$reqpath" 15 "$WORK/$fe"/*.log
	# Several requests, so that every balancer member (and both Apache children) is hit.
	for ((k = 0; k < 4; k++)); do
		fetch "http://127.0.0.1:${PORT[$fe]}$REQPATH" "$WORK/$fe/body" || die "$fe: $REQPATH failed"
		same_body "$WORK/$fe/body" || die "$fe returned a different body for $REQPATH ($(wc -c <"$WORK/$fe/body") bytes, backend $BODY_BYTES); see $WORK/$fe/body (BENCH_KEEP=1)"
	done
done
if [ -f "$WORK/apache-jk/mod_jk.log" ]; then
	# mod_jk logs unknown/deprecated worker properties (e.g. a misspelt secret) and still
	# starts: make that loud instead of measuring a half-configured worker.
	! grep -Ei 'error|unknown|deprecated|secret' "$WORK/apache-jk/mod_jk.log" >&2 ||
		die "apache-jk: mod_jk complained at start-up (above; $WORK/apache-jk/mod_jk.log)"
fi

# Rounds follow BENCH_FRONTENDS' order.
ORDER=()
for fe in $FRONTENDS; do
	[ "$fe" = direct ] || [[ " ${ACTIVE[*]} " == *" $fe "* ]] && ORDER+=("$fe")
done
log "front ends up: ${ACTIVE[*]:-none}; order per round: ${ORDER[*]}"

# ---------------------------------------------------------------- load
# run_wrk OUTFILE ARGS...: wrk in the background + wait, so INT/TERM interrupt at once
# (a foreground child would delay the trap until wrk ends). Returns wrk's status.
run_wrk() {
	local outf=$1 rc=0
	shift
	wrk "$@" >"$outf" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID" || rc=$?
	WRK_PID=""
	return $rc
}

# measure FE ROUND: warm-up, then one measured run; appends a line to $WORK/results.
measure() {
	local fe=$1 r=$2 url pid="" before=0 after=0 out
	if [ "$fe" = direct ]; then
		url="http://${BHOSTPORTS[0]}$REQPATH"
	else
		url="http://127.0.0.1:${PORT[$fe]}$REQPATH"
		pid=${PID[$fe]}
	fi
	if [ "$WARMUP" -gt 0 ]; then
		run_wrk "$WORK/warmup.txt" -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" || true
	fi
	local be0 be1 w0 w1 box0 box1 op0 op1 cs0=0 cs1=0
	[ -n "$pid" ] && cs0=$(ctx_switches "$pid")
	[ -n "$pid" ] && before=$(cpu_ticks "$pid")
	be0=$(backend_ticks)
	w0=$(self_child_ticks)
	box0=$(box_ticks)
	op0=$(active_opens)
	run_wrk "$WORK/wrk-$fe-r$r.txt" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/report.lua" "$url" ||
		{ cat "$WORK/wrk-$fe-r$r.txt" >&2; die "wrk failed against $fe ($url)"; }
	out=$(cat "$WORK/wrk-$fe-r$r.txt")
	op1=$(active_opens)
	box1=$(box_ticks)
	w1=$(self_child_ticks)
	be1=$(backend_ticks)
	[ -n "$pid" ] && after=$(cpu_ticks "$pid")
	[ -n "$pid" ] && cs1=$(ctx_switches "$pid")
	local line
	line=$(grep '^BENCH ' <<<"$out") || { echo "$out" >&2; die "no wrk summary for $fe"; }
	# shellcheck disable=SC2086
	local $(sed 's/^BENCH //' <<<"$line")
	[ "$requests" -gt 0 ] || die "$fe: wrk completed 0 requests"
	if [ "$errors" -gt $((requests / 1000)) ]; then
		echo "$out" >&2
		die "$fe: $errors errors in $requests requests (>0.1%)"
	fi
	local rps cpu
	rps=$(awk -v n="$requests" -v us="$duration_us" 'BEGIN{printf "%.0f", n / (us / 1e6)}')
	if [ -n "$pid" ]; then
		cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$requests" 'BEGIN{printf "%.2f", t / hz * 1e6 / n}')
	else
		cpu=NA
	fi
	# Diagnostics: backends' and wrk's CPU per request, and the share of the box used by
	# processes that are not part of this benchmark ("other": noise from neighbours).
	local becpu wcpu other idle
	becpu=$(awk -v t=$((be1 - be0)) -v hz="$HZ" -v n="$requests" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')
	wcpu=$(awk -v t=$((w1 - w0)) -v hz="$HZ" -v n="$requests" 'BEGIN{printf "%.1f", t / hz * 1e6 / n}')
	read -r other idle < <(awk -v a="$box0" -v b="$box1" -v fe=$((after - before)) -v be=$((be1 - be0)) \
		-v w=$((w1 - w0)) 'BEGIN{split(a, x, " "); split(b, y, " "); busy = y[1] - x[1]; tot = y[2] - x[2]
		if (tot <= 0) tot = 1; o = (busy - fe - be - w) / tot * 100; if (o < 0) o = 0
		printf "%.0f %.0f\n", o, (tot - busy) / tot * 100}')
	local conns # new backend connections per 1000 requests
	conns=$(awk -v d=$((op1 - op0 - CONNS)) -v n="$requests" 'BEGIN{if (d < 0) d = 0; printf "%.1f", d * 1000 / n}')
	local cs=NA # the front end's context switches per request
	# (Apache's children may exit during a round and take theirs along.)
	[ -n "$pid" ] && cs=$(awk -v d=$((cs1 - cs0)) -v n="$requests" 'BEGIN{printf "%.2f", d / n}')
	echo "$fe $r $rps $p50_us $p99_us $cpu $errors $becpu $wcpu $other $idle $conns $cs" >>"$WORK/results"
	printf '   round %d %-12s %7s req/s  p50 %5s us  p99 %6s us  cpu %6s us/req  switches %5s/req  (backends %5s, wrk %4s us/req; box idle %2s%%, other %2s%%; new backend conns/1k req %s) errors %s\n' \
		"$r" "$fe" "$rps" "$p50_us" "$p99_us" "$cpu" "$cs" "$becpu" "$wcpu" "$idle" "$other" "$conns" "$errors" >&2
}

: >"$WORK/results"
log "load: wrk -t$THREADS -c$CONNS -d${DURATION}s (+${WARMUP}s warm-up), $ROUNDS interleaved round(s)"
for r in $(seq "$ROUNDS"); do
	for fe in "${ORDER[@]}"; do measure "$fe" "$r"; done
done

# ---------------------------------------------------------------- report
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "NA"; exit}
	if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A M_RPS M_P50 M_P99 M_CPU M_CONN
for fe in "${ORDER[@]}"; do
	M_CONN[$fe]=$(awk -v f="$fe" '$1 == f {print $12}' "$WORK/results" | median)
	M_RPS[$fe]=$(awk -v f="$fe" '$1 == f {print $3}' "$WORK/results" | median)
	M_P50[$fe]=$(awk -v f="$fe" '$1 == f {print $4}' "$WORK/results" | median)
	M_P99[$fe]=$(awk -v f="$fe" '$1 == f {print $5}' "$WORK/results" | median)
	if [ "$fe" = direct ]; then M_CPU[$fe]=NA; else
		M_CPU[$fe]=$(awk -v f="$fe" '$1 == f {print $6}' "$WORK/results" | median)
	fi
done

OTHER_MED=$(awk '{print $10}' "$WORK/results" | median | xargs printf "%.0f")
OTHER_MAX=$(awk 'BEGIN{m = 0} $10 > m {m = $10} END{print m}' "$WORK/results")

fmt_ms() { awk -v u="$1" 'BEGIN{ if (u == "NA") print "NA"; else printf "%.2f ms", u / 1000 }'; }
fmt_ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "NA" || b == "NA" || b == 0) print "n/a"; else printf "%.2fx", a / b }'; }

if [ "$AJP" = 1 ]; then phase="AJP front ends, Tomcat 10 backends, $REQPATH"
elif [ "$TOMCAT" = 1 ]; then phase="Tomcat 10 backends"; else phase="static nginx backends, ${BODY_BYTES}-byte $REQPATH"; fi
{
	echo "### catherd side-by-side benchmark ($phase)"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r); backends: $BACKENDS"
	echo "Load: \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency\` (+${WARMUP}s warm-up)$([ -z "$DELAY_MS" ] || echo ", each connection waiting ${DELAY_MS} ms between requests"), $ROUNDS interleaved round(s), median shown."
	echo "Command: \`BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS$([ "$CONNS" = 32 ] || echo " BENCH_CONNS=$CONNS")$([ -z "${BENCH_PATH:-}" ] || echo " BENCH_PATH=$BENCH_PATH")$([ -z "$UPLOAD_MIB" ] || echo " BENCH_UPLOAD_MIB=$UPLOAD_MIB")$([ -z "$MIB_PER_REQ" ] || echo " BENCH_MIB_PER_REQ=$MIB_PER_REQ")$([ -z "$DELAY_MS" ] || echo " BENCH_DELAY_MS=$DELAY_MS")$([ -z "${BENCH_BACKENDS:-}" ] || echo " BENCH_BACKENDS=$BENCH_BACKENDS")$([ -z "${BENCH_FRONTENDS:-}" ] || echo " BENCH_FRONTENDS=\"$BENCH_FRONTENDS\"") scripts/bench/run.sh$(if [ "$AJP" = 1 ]; then echo ' --ajp'; elif [ "$TOMCAT" = 1 ]; then echo ' --tomcat'; fi)\`"
	echo "CPU us/req = front end's utime+stime (all processes/threads) during the run / requests."
	echo "New conns/1k req = TCP connections the front end opened to backends per 1000 requests (0 = all kept alive)."
	echo "Box CPU used by processes outside the benchmark during the runs: median ${OTHER_MED}%, max ${OTHER_MAX}%$(
		awk -v m="$OTHER_MAX" 'BEGIN{ if (m > 10) print " - NOISY, rerun on a quiet box" }')."
	if [ -n "$MIB_PER_REQ" ]; then
		echo "CPU us/MiB = CPU us/req / $MIB_PER_REQ (each request moves $MIB_PER_REQ MiB $([ -n "$UPLOAD_MIB" ] && echo up || echo down))."
		echo
		echo "| front end | req/s | p50 | p99 | CPU us/req | CPU us/MiB | new conns/1k req |"
		echo "|---|---:|---:|---:|---:|---:|---:|"
	else
		echo
		echo "| front end | req/s | p50 | p99 | CPU us/req | new conns/1k req |"
		echo "|---|---:|---:|---:|---:|---:|"
	fi
	for fe in "${ORDER[@]}"; do
		per_mib=""
		[ -n "$MIB_PER_REQ" ] && per_mib=" $(awk -v c="${M_CPU[$fe]}" -v m="$MIB_PER_REQ" 'BEGIN{ if (c == "NA") print "NA"; else printf "%.1f", c / m }') |"
		echo "| ${LABEL[$fe]} | ${M_RPS[$fe]} | $(fmt_ms "${M_P50[$fe]}") | $(fmt_ms "${M_P99[$fe]}") | ${M_CPU[$fe]} |$per_mib ${M_CONN[$fe]} |"
	done
	if [ -n "${M_RPS[$SUBJECT]:-}" ]; then
		echo
		echo "| $SUBJECT vs | throughput ($SUBJECT/peer) | CPU per request ($SUBJECT/peer) |"
		echo "|---|---:|---:|"
		for fe in "${ORDER[@]}"; do
			[ "$fe" = "$SUBJECT" ] || [ "$fe" = direct ] || [ "$fe" = catherd-log ] && continue
			echo "| ${LABEL[$fe]} | $(fmt_ratio "${M_RPS[$SUBJECT]}" "${M_RPS[$fe]}") | $(fmt_ratio "${M_CPU[$SUBJECT]}" "${M_CPU[$fe]}") |"
		done
		if [ -n "${M_CPU[catherd-log]:-}" ]; then
			echo
			echo "Access log cost: catherd with it / without it: CPU per request $(fmt_ratio "${M_CPU[catherd-log]}" "${M_CPU[catherd]}"), throughput $(fmt_ratio "${M_RPS[catherd-log]}" "${M_RPS[catherd]}")."
		fi
		if [ "$AJP" = 1 ]; then
			# The issue's targets, spelled out so a run answers them without arithmetic.
			echo
			if [ -n "${M_RPS[apache-ajp]:-}" ]; then
				echo "Target: catherd-ajp req/s >= 2x Apache mod_proxy_ajp: $(fmt_ratio "${M_RPS[catherd-ajp]}" "${M_RPS[apache-ajp]}") -" \
					"$(awk -v a="${M_RPS[catherd-ajp]}" -v b="${M_RPS[apache-ajp]}" 'BEGIN{print (b > 0 && a >= 2 * b) ? "MET" : "NOT MET"}')."
			fi
			if [ -n "${M_CPU[apache-jk]:-}" ]; then
				echo "Target: catherd-ajp CPU/req < mod_jk's: $(fmt_ratio "${M_CPU[catherd-ajp]}" "${M_CPU[apache-jk]}") -" \
					"$(awk -v a="${M_CPU[catherd-ajp]}" -v b="${M_CPU[apache-jk]}" 'BEGIN{print (a < b) ? "MET" : "NOT MET"}')."
			fi
		fi
	else
		echo
		if [ "${CATHERD_SKIPPED:-0}" = 1 ]; then
			echo "(catherd not measured: binary '$CATHERD' missing, skipped with BENCH_ALLOW_MISSING=1)"
		else
			echo "($SUBJECT not in BENCH_FRONTENDS)"
		fi
	fi
} >"$WORK/report.md"

echo
# Plain-text table on stdout, markdown in $BENCH_OUT.
awk -F'|' '/^\|---/ {next} /^\|/ { printf "  "; for (i = 2; i < NF; i++) printf (i == 2 ? "%-40s" : "%-24s"), $i; print ""; next } { print }' "$WORK/report.md" |
	sed 's/ *$//'
cp "$WORK/report.md" "$OUT"
echo
log "wrote $OUT"
