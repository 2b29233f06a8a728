#!/usr/bin/env bash
# scripts/bench/run.sh - side-by-side L7 benchmark: catherd vs nginx, HAProxy, Apache.
#
# Usage:   scripts/bench/run.sh [--tomcat]          (what `make bench` runs)
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
# from scripts/tomcat-rig.sh (`up --nodes 2` here, `down` on exit).
#
# Environment (defaults in brackets):
#   CATHERD               catherd binary [./bin/catherd]; missing = error unless
#   BENCH_ALLOW_MISSING=1 then catherd is skipped with a message
#   BENCH_DURATION        seconds per measured wrk run [10]
#   BENCH_WARMUP          seconds of warm-up before each measured run [2]
#   BENCH_ROUNDS          interleaved rounds [3]
#   BENCH_CONNS           wrk connections [32]     BENCH_THREADS  wrk threads [1]
#   BENCH_OUT             markdown results file [bench-results.md]
#   BENCH_PATH            request path [/index.html]
#   BENCH_BACKENDS        "b1=http://H:P,b2=http://H:P"; default static nginx on 18081/18082,
#                         with --tomcat: b1=http://10.77.0.11:8080,b2=http://10.77.0.12:8080
#   BENCH_FRONTENDS       subset/order, e.g. "direct nginx haproxy apache floor catherd" [all]
#                         floor = scripts/bench/floor, a naive fasthttp proxy: the cost of
#                         the HTTP library alone, to tell it apart from catherd's own work
#   BENCH_CATHERD_ARGS    extra flags appended to `catherd run`
#   BENCH_KEEP=1          keep the temp dir (configs, logs, raw wrk output)
#
# Examples:
#   BENCH_DURATION=5 BENCH_ROUNDS=1 scripts/bench/run.sh        # quick look
#   CATHERD=bin/catherd BENCH_OUT=/tmp/bench.md scripts/bench/run.sh
#   scripts/bench/run.sh --tomcat                               # Tomcat phase (root)
#
# Traffic goes only to 127.0.0.1 (and, with --tomcat, to the rig's own netns addresses).
# Every server is started here from its own config in a temp dir, in the foreground, in
# its own process group; all are killed by that group on every exit path. Ports used:
# 18081-18082 (backends), 18090-18094 (nginx, haproxy, apache, catherd, floor); they must be free.
set -euo pipefail

CALLER_PWD=$(pwd)
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

TOMCAT=${BENCH_TOMCAT:-0}
for a in "$@"; do
	case "$a" in
	--tomcat) TOMCAT=1 ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "run.sh: unknown argument '$a' (expected --tomcat or --help)" >&2; exit 2 ;;
	esac
done

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
REQPATH=${BENCH_PATH:-/index.html}
FRONTENDS=${BENCH_FRONTENDS:-direct nginx haproxy apache floor catherd}
RIG=$ROOT/scripts/tomcat-rig.sh
APACHE_MODS=/usr/lib/apache2/modules

# Front-end ports (all on 127.0.0.1).
declare -A PORT=([nginx]=18090 [haproxy]=18091 [apache]=18092 [catherd]=18093 [floor]=18094)
declare -A LABEL=([direct]="direct (1 backend)" [nginx]="nginx $(nginx -v 2>&1 | sed 's|.*/||')"
	[haproxy]="HAProxy $(haproxy -v | awk 'NR==1{print $3}')"
	[apache]="Apache $(apache2 -v | awk -F'[/ ]' 'NR==1{print $4}') event"
	[catherd]="catherd" [floor]="fasthttp floor (naive proxy)")

die() { echo "run.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

for t in wrk curl nginx haproxy apache2 awk; do
	command -v "$t" >/dev/null || die "required tool '$t' not found"
done

# Pre-flight: decide about catherd before starting anything.
if [[ " $FRONTENDS " == *" catherd "* ]] && [ ! -x "$CATHERD" ]; then
	if [ "${BENCH_ALLOW_MISSING:-0}" = 1 ]; then
		echo "run.sh: NOTE: catherd binary '$CATHERD' not found; skipping catherd (BENCH_ALLOW_MISSING=1)" >&2
		FRONTENDS=${FRONTENDS/catherd/}
		CATHERD_SKIPPED=1
	else
		die "catherd binary '$CATHERD' not found (build it: go build -o bin/catherd ./cmd/catherd; or BENCH_ALLOW_MISSING=1 to skip)"
	fi
fi

# Pre-flight: our ports must be free, or we would measure somebody else's server.
ports_re='1809[0-4]'
[ "$TOMCAT" = 1 ] || [ -n "${BENCH_BACKENDS:-}" ] || ports_re='1808[12]|1809[0-4]'
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
if [ "$TOMCAT" = 1 ]; then
	BACKENDS=${BENCH_BACKENDS:-b1=http://10.77.0.11:8080,b2=http://10.77.0.12:8080}
else
	BACKENDS=${BENCH_BACKENDS:-b1=http://127.0.0.1:18081,b2=http://127.0.0.1:18082}
fi
BNAMES=() BHOSTPORTS=()
IFS=',' read -r -a _bl <<<"$BACKENDS"
for b in "${_bl[@]}"; do
	[[ $b =~ ^([A-Za-z0-9_-]+)=http://([^/:]+):([0-9]+)/?$ ]] ||
		die "BENCH_BACKENDS: bad entry '$b' (expected NAME=http://HOST:PORT)"
	BNAMES+=("${BASH_REMATCH[1]}")
	BHOSTPORTS+=("${BASH_REMATCH[2]}:${BASH_REMATCH[3]}")
done
[ ${#BNAMES[@]} -ge 1 ] || die "BENCH_BACKENDS is empty"

# ---------------------------------------------------------------- helpers
# start NAME LOGFILE CMD...: run a server (in its foreground) as a background job in a new
# session/process group (setsid execs in place: PID = PGID), record its PID.
start() {
	local name=$1 logf=$2
	shift 2
	setsid "$@" >"$logf" 2>&1 </dev/null &
	PIDS+=($!)
	eval "PID_$name=$!"
}

# wait_http NAME URL TIMEOUT_S LOGFILE...: bounded wait until URL answers 200.
wait_http() {
	local name=$1 url=$2 timeout=$3 pidvar="PID_$1"
	shift 3
	local deadline=$((SECONDS + timeout)) code
	while :; do
		code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" || true)
		[ "$code" = 200 ] && return 0
		if [ -n "${!pidvar:-}" ] && ! kill -0 "${!pidvar}" 2>/dev/null; then
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
# box_ticks: "busy total" over all CPUs from /proc/stat.
box_ticks() { awk '/^cpu / {b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }

cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
EOF

# ---------------------------------------------------------------- static backends
if [ "$TOMCAT" = 1 ]; then
	if [ -z "${BENCH_BACKENDS:-}" ]; then
		[ -x "$RIG" ] || die "--tomcat: $RIG not found/executable (or set BENCH_BACKENDS to running Tomcats)"
		# The rig's bridge/netns names are fixed: never start (or later tear down) a rig
		# that somebody else is using.
		if ip link show cth-br0 >/dev/null 2>&1; then
			die "--tomcat: a Tomcat rig is already up (bridge cth-br0 exists); stop it or point BENCH_BACKENDS at it"
		fi
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
    server {
        listen $hp reuseport backlog=4096;
        root $WORK/www;
    }
}
EOF
		start "backend$i" "$d/stderr.log" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
		BACKEND_PIDS="$BACKEND_PIDS $(eval echo "\$PID_backend$i")"
	done
fi

i=0
for hp in "${BHOSTPORTS[@]}"; do
	i=$((i + 1))
	if [ "$TOMCAT" = 1 ]; then to=180; else to=10; fi
	wait_http "backend$i" "http://$hp$REQPATH" $to "$WORK/backend$i/error.log" "$WORK/backend$i/stderr.log"
done
BODY_BYTES=$(curl -s "http://${BHOSTPORTS[0]}$REQPATH" | wc -c)
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

if want apache; then
	d=$WORK/apache
	mkdir -p "$d/run"
	{
		cat <<EOF
ServerRoot $d
ServerName 127.0.0.1
Listen 127.0.0.1:${PORT[apache]}
PidFile $d/run/httpd.pid
DefaultRuntimeDir $d/run
ErrorLog $d/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $APACHE_MODS/mod_mpm_event.so
LoadModule authz_core_module $APACHE_MODS/mod_authz_core.so
LoadModule slotmem_shm_module $APACHE_MODS/mod_slotmem_shm.so
LoadModule proxy_module $APACHE_MODS/mod_proxy.so
LoadModule proxy_http_module $APACHE_MODS/mod_proxy_http.so
LoadModule proxy_balancer_module $APACHE_MODS/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module $APACHE_MODS/mod_lbmethod_byrequests.so
# Event MPM, fixed size (no child spawning/reaping mid-run): 2 children x 32 threads.
StartServers 2
ServerLimit 2
ThreadLimit 32
ThreadsPerChild 32
MaxRequestWorkers 64
MinSpareThreads 1
MaxSpareThreads 64
MaxConnectionsPerChild 0
KeepAlive On
MaxKeepAliveRequests 0
KeepAliveTimeout 120
<Proxy balancer://bk>
EOF
		for j in "${!BNAMES[@]}"; do echo "    BalancerMember http://${BHOSTPORTS[$j]} route=${BNAMES[$j]}"; done
		cat <<EOF
    ProxySet lbmethod=byrequests
</Proxy>
ProxyPass / balancer://bk/
ProxyPassReverse / balancer://bk/
EOF
	} >"$d/httpd.conf"
	apache2 -t -f "$d/httpd.conf" -d "$d" >"$d/configtest.log" 2>&1 || { cat "$d/configtest.log" >&2; die "apache config test failed"; }
	start apache "$d/stderr.log" apache2 -f "$d/httpd.conf" -d "$d" -DFOREGROUND
	ACTIVE+=(apache)
fi

if want floor; then
	d=$WORK/floor
	mkdir -p "$d"
	(cd "$ROOT" && go build -o "$d/floor" ./scripts/bench/floor) || die "building scripts/bench/floor failed"
	fargs=(--listen "127.0.0.1:${PORT[floor]}")
	for j in "${!BNAMES[@]}"; do fargs+=(--backend "${BNAMES[$j]}=http://${BHOSTPORTS[$j]}"); done
	start floor "$d/stderr.log" "$d/floor" "${fargs[@]}"
	ACTIVE+=(floor)
fi

if want catherd; then
	{
		d=$WORK/catherd
		mkdir -p "$d"
		cargs=(run --listen "127.0.0.1:${PORT[catherd]}")
		for j in "${!BNAMES[@]}"; do cargs+=(--backend "${BNAMES[$j]}=http://${BHOSTPORTS[$j]}"); done
		# shellcheck disable=SC2206
		cargs+=(${BENCH_CATHERD_ARGS:-})
		echo "$CATHERD ${cargs[*]}" >"$d/cmdline"
		start catherd "$d/stderr.log" "$CATHERD" "${cargs[@]}"
		ACTIVE+=(catherd)
		LABEL[catherd]="catherd $(git describe --always --dirty 2>/dev/null || true)"
	}
fi

for fe in "${ACTIVE[@]}"; do
	wait_http "$fe" "http://127.0.0.1:${PORT[$fe]}$REQPATH" 15 "$WORK/$fe/error.log" "$WORK/$fe/stderr.log"
	got=$(curl -s "http://127.0.0.1:${PORT[$fe]}$REQPATH" | wc -c)
	[ "$got" = "$BODY_BYTES" ] || die "$fe returned $got body bytes, backend returns $BODY_BYTES"
done

ORDER=()
want direct && ORDER+=(direct)
ORDER+=("${ACTIVE[@]}")
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
		pid=$(eval echo "\$PID_$fe")
	fi
	if [ "$WARMUP" -gt 0 ]; then
		run_wrk "$WORK/warmup.txt" -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "$url" || true
	fi
	local be0 be1 w0 w1 box0 box1
	[ -n "$pid" ] && before=$(cpu_ticks "$pid")
	be0=$(backend_ticks)
	w0=$(self_child_ticks)
	box0=$(box_ticks)
	run_wrk "$WORK/wrk-$fe-r$r.txt" -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/report.lua" "$url" ||
		{ cat "$WORK/wrk-$fe-r$r.txt" >&2; die "wrk failed against $fe ($url)"; }
	out=$(cat "$WORK/wrk-$fe-r$r.txt")
	box1=$(box_ticks)
	w1=$(self_child_ticks)
	be1=$(backend_ticks)
	[ -n "$pid" ] && after=$(cpu_ticks "$pid")
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
	echo "$fe $r $rps $p50_us $p99_us $cpu $errors $becpu $wcpu $other $idle" >>"$WORK/results"
	printf '   round %d %-8s %7s req/s  p50 %5s us  p99 %6s us  cpu %6s us/req  (backends %5s, wrk %4s us/req; box idle %2s%%, other %2s%%) errors %s\n' \
		"$r" "$fe" "$rps" "$p50_us" "$p99_us" "$cpu" "$becpu" "$wcpu" "$idle" "$other" "$errors" >&2
}

: >"$WORK/results"
log "load: wrk -t$THREADS -c$CONNS -d${DURATION}s (+${WARMUP}s warm-up), $ROUNDS interleaved round(s)"
for r in $(seq "$ROUNDS"); do
	for fe in "${ORDER[@]}"; do measure "$fe" "$r"; done
done

# ---------------------------------------------------------------- report
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) {print "NA"; exit}
	if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
declare -A M_RPS M_P50 M_P99 M_CPU
for fe in "${ORDER[@]}"; do
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

if [ "$TOMCAT" = 1 ]; then phase="Tomcat 10 backends"; else phase="static nginx backends, ${BODY_BYTES}-byte $REQPATH"; fi
{
	echo "### catherd side-by-side benchmark ($phase)"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r); backends: $BACKENDS"
	echo "Load: \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency\` (+${WARMUP}s warm-up), $ROUNDS interleaved round(s), median shown."
	echo "Command: \`BENCH_DURATION=$DURATION BENCH_ROUNDS=$ROUNDS scripts/bench/run.sh$([ "$TOMCAT" = 1 ] && echo ' --tomcat')\`"
	echo "CPU us/req = front end's utime+stime (all processes/threads) during the run / requests."
	echo "Box CPU used by processes outside the benchmark during the runs: median ${OTHER_MED}%, max ${OTHER_MAX}%$(
		awk -v m="$OTHER_MAX" 'BEGIN{ if (m > 10) print " - NOISY, rerun on a quiet box" }')."
	echo
	echo "| front end | req/s | p50 | p99 | CPU us/req |"
	echo "|---|---:|---:|---:|---:|"
	for fe in "${ORDER[@]}"; do
		echo "| ${LABEL[$fe]} | ${M_RPS[$fe]} | $(fmt_ms "${M_P50[$fe]}") | $(fmt_ms "${M_P99[$fe]}") | ${M_CPU[$fe]} |"
	done
	if [ -n "${M_RPS[catherd]:-}" ]; then
		echo
		echo "| catherd vs | throughput (catherd/peer) | CPU per request (catherd/peer) |"
		echo "|---|---:|---:|"
		for fe in "${ORDER[@]}"; do
			[ "$fe" = catherd ] || [ "$fe" = direct ] && continue
			echo "| ${LABEL[$fe]} | $(fmt_ratio "${M_RPS[catherd]}" "${M_RPS[$fe]}") | $(fmt_ratio "${M_CPU[catherd]}" "${M_CPU[$fe]}") |"
		done
	else
		echo
		if [ "${CATHERD_SKIPPED:-0}" = 1 ]; then
			echo "(catherd not measured: binary '$CATHERD' missing, skipped with BENCH_ALLOW_MISSING=1)"
		else
			echo "(catherd not in BENCH_FRONTENDS)"
		fi
	fi
} >"$WORK/report.md"

echo
# Plain-text table on stdout, markdown in $BENCH_OUT.
awk -F'|' '/^\|---/ {next} /^\|/ { printf "  "; for (i = 2; i < NF; i++) printf "%-26s", $i; print ""; next } { print }' "$WORK/report.md" |
	sed 's/ *$//'
cp "$WORK/report.md" "$OUT"
echo
log "wrote $OUT"
