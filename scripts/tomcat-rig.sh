#!/usr/bin/env bash
# scripts/tomcat-rig.sh - N real Tomcat 10 nodes in network namespaces, for tests and the demo.
#
# Usage:
#   scripts/tomcat-rig.sh up    [--nodes N] [--cluster] [--dir DIR]
#   scripts/tomcat-rig.sh kill  NODE [--dir DIR]      # kill -9 nodeI's JVM (NODE = nodeI or I)
#   scripts/tomcat-rig.sh stop  NODE [--dir DIR]      # stop nodeI cleanly (SIGTERM: shutdown hook)
#   scripts/tomcat-rig.sh start NODE [--dir DIR]      # start a killed node again, wait until healthy
#   scripts/tomcat-rig.sh down  [--dir DIR]           # stop everything, remove netns/links (idempotent)
#   scripts/tomcat-rig.sh status [--dir DIR]          # one line per node, like `up` prints
#
# Topology: bridge cth-br0 (10.77.0.1/24, multicast snooping off) in the root namespace;
# node i lives in netns cth-nodeI, reached over veth cth-vI <-> eth0, address 10.77.0.(10+i).
# Each node is a separate CATALINA_BASE under DIR/nodeI (conf/, webapps/ROOT, logs/, work/)
# running Debian's tomcat10 (CATALINA_HOME=/usr/share/tomcat10), Engine jvmRoute=nodeI,
# HTTP on :8080 and AJP on :8009 (secret "catherd-secret"), both bound to the node address.
# --cluster adds a SimpleTcpCluster/DeltaManager with McastService 228.0.0.4:45564 and
# synchronous replication (see cluster_xml). The ROOT webapp has /counter.jsp (session
# counter: "node=<route> session=<id> count=<n>"), /health.jsp (no session), /index.html,
# /echo.jsp (what the servlet saw of the request) and /café.txt (a UTF-8 path).
#
# `up` prints one line per node:  nodeI 10.77.0.(10+i) 8080 8009 PID
#
# DIR defaults to $CTH_RIG_DIR or /tmp/catherd-rig; its state file DIR/rig.env lets the
# other subcommands find nodes. The bridge, namespace names and addresses are host-wide, so
# only one rig can be up at a time: `up` claims the host (/run/lock/catherd-rig.owner) and
# waits up to $CTH_RIG_WAIT seconds (default 180) for another live rig to go down, and
# `down` never touches a network owned by another live rig. `down` deletes DIR only if `up` created it
# (set CTH_RIG_KEEP=1 to keep it, e.g. to read the logs). Extra JVM flags: $CTH_RIG_JAVA_OPTS.
# $CTH_RIG_DOMAIN sets the cluster's domain attribute (carried by every heartbeat).
# $CTH_RIG_MAX_THREADS sets each connector's maxThreads (Tomcat's default: 200).
#
# Traffic: only to the node addresses in our own namespaces (and multicast inside the bridge).
# Needs root, iproute2, curl, tomcat10 (which pulls in libeclipse-jdt-core-java for JSPs).
set -euo pipefail

readonly CATALINA_HOME=/usr/share/tomcat10
readonly TOMCAT_CONF=/etc/tomcat10 # Debian keeps the stock web.xml here
readonly BRIDGE=cth-br0
readonly BRIDGE_ADDR=10.77.0.1
readonly NET_PREFIX=10.77.0
readonly HTTP_PORT=8080
readonly AJP_PORT=8009
readonly AJP_SECRET=catherd-secret
readonly MCAST_ADDR=228.0.0.4
readonly MCAST_PORT=45564
readonly REPL_PORT=4000
readonly UP_TIMEOUT=${CTH_RIG_UP_TIMEOUT:-90} # seconds, whole `up` / `start` wait
readonly MAX_NODES=9                         # keeps names/addresses simple (node1..node9)
readonly LOCK_DIR=/run/lock
readonly OWNER_FILE=$LOCK_DIR/catherd-rig.owner # "DIR PID-of-up" of the rig that owns the host
readonly LOCK_FILE=$LOCK_DIR/catherd-rig.lock   # flock'ed while reading/writing OWNER_FILE

DIR=${CTH_RIG_DIR:-/tmp/catherd-rig}
NODES=3
CLUSTER=0

die() { echo "tomcat-rig: $*" >&2; exit 1; }
log() { echo "tomcat-rig: $*" >&2; }

node_ip() { echo "$NET_PREFIX.$((10 + $1))"; }
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# parse_opts ARGS...: sets NODES, CLUSTER, DIR and POSITIONAL (remaining words).
POSITIONAL=()
parse_opts() {
	while [ $# -gt 0 ]; do
		case "$1" in
		--nodes) [ $# -ge 2 ] || die "--nodes needs a number"; NODES=$2; shift 2 ;;
		--nodes=*) NODES=${1#--nodes=}; shift ;;
		--cluster) CLUSTER=1; shift ;;
		--dir) [ $# -ge 2 ] || die "--dir needs a directory"; DIR=$2; shift 2 ;;
		--dir=*) DIR=${1#--dir=}; shift ;;
		-h | --help) usage; exit 0 ;;
		-*) die "unknown option '$1' (see --help)" ;;
		*) POSITIONAL+=("$1"); shift ;;
		esac
	done
	[[ $NODES =~ ^[1-9]$ ]] || die "--nodes must be 1..$MAX_NODES, got '$NODES'"
	case "$DIR" in /*) ;; *) DIR=$(pwd)/$DIR ;; esac
	DIR=${DIR%/}
	[ -n "$DIR" ] && [ "$DIR" != / ] || die "refusing --dir '/'"
}

# node_index NODE: accepts "node2" or "2", prints 2.
node_index() {
	local n=${1#node}
	[[ $n =~ ^[1-9]$ ]] || die "bad node '$1' (expected nodeI or I, I in 1..$MAX_NODES)"
	echo "$n"
}

# ---------------------------------------------------------------------------
# state file
# ---------------------------------------------------------------------------

state_file() { echo "$DIR/rig.env"; }

write_state() {
	cat >"$(state_file)" <<-EOF
		# written by tomcat-rig.sh up; read by kill/start/down/status
		RIG_NODES=$NODES
		RIG_CLUSTER=$CLUSTER
		RIG_OWN_DIR=$OWN_DIR
	EOF
}

load_state() {
	local f
	f=$(state_file)
	[ -f "$f" ] || die "no rig state in $DIR (run 'up' first, or pass the same --dir)"
	# shellcheck disable=SC1090
	. "$f"
	NODES=$RIG_NODES CLUSTER=$RIG_CLUSTER OWN_DIR=$RIG_OWN_DIR
}

# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

# is_live_java PID: the process exists, is a java and is not a zombie. (Killed JVMs are
# reparented to init, which may reap them only much later.)
is_live_java() {
	local stat
	[[ $1 =~ ^[0-9]+$ ]] || return 1
	stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	# /proc/PID/stat: "PID (comm) STATE ..."
	[[ $stat == "$1 (java) "* ]] && [[ $stat != "$1 (java) Z"* ]]
}

# node_pid I: PID from DIR/nodeI.pid if that process is still a live java, else empty.
node_pid() {
	local f=$DIR/node$1.pid pid
	[ -f "$f" ] || return 0
	pid=$(cat "$f")
	if is_live_java "$pid"; then echo "$pid"; fi
}

# wait_gone PID SECONDS: bounded wait for a killed process to disappear.
wait_gone() {
	local pid=$1 i
	for ((i = 0; i < $2 * 10; i++)); do
		[ -d /proc/"$pid" ] || return 0
		# a zombie child of ours counts as gone
		[ "$(awk '{print $3}' /proc/"$pid"/stat 2>/dev/null)" = Z ] && return 0
		sleep 0.1
	done
	return 1
}

kill_pid() {
	local pid=$1
	kill -9 "$pid" 2>/dev/null || true
	wait_gone "$pid" 10 || log "warning: PID $pid still present after kill -9"
}

# ---------------------------------------------------------------------------
# host ownership: one rig at a time (names and addresses are host-wide)
# ---------------------------------------------------------------------------

# live_owner: prints the DIR of the rig owning the host if it is alive (its `up` is still
# running, or one of its nodes is), nothing otherwise (no owner, or a stale one).
live_owner() {
	local odir opid f pid
	[ -f "$OWNER_FILE" ] || return 0
	read -r odir opid <"$OWNER_FILE" || true
	[ -n "${odir:-}" ] || return 0
	if [[ ${opid:-} =~ ^[0-9]+$ ]] && [ -d /proc/"$opid" ]; then
		echo "$odir"
		return 0
	fi
	for f in "$odir"/node*.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		if is_live_java "$pid"; then
			echo "$odir"
			return 0
		fi
	done
}

# claim_host: make DIR the owner unless another live rig owns the host. Returns 1 (and sets
# OTHER_OWNER) if it does.
claim_host() {
	local other
	exec 9>"$LOCK_FILE"
	flock -w 10 9 || die "could not lock $LOCK_FILE"
	other=$(live_owner)
	if [ -n "$other" ] && [ "$other" != "$DIR" ]; then
		OTHER_OWNER=$other
		exec 9>&-
		return 1
	fi
	echo "$DIR $$" >"$OWNER_FILE"
	exec 9>&-
}

# owns_host: DIR owns the host, or nobody live does (so cleaning the network is safe).
owns_host() {
	local other
	other=$(live_owner)
	[ -z "$other" ] || [ "$other" = "$DIR" ]
}

release_host() {
	local odir _
	[ -f "$OWNER_FILE" ] || return 0
	read -r odir _ <"$OWNER_FILE" || true
	if [ "${odir:-}" = "$DIR" ] || [ -z "$(live_owner)" ]; then rm -f "$OWNER_FILE"; fi
}

wait_for_host() {
	local wait=${CTH_RIG_WAIT:-180} t0 said=0
	t0=$(date +%s)
	OTHER_OWNER=""
	until claim_host; do
		if [ "$said" = 0 ]; then
			log "another rig is up (dir $OTHER_OWNER); waiting up to ${wait}s for it to go down"
			said=1
		fi
		if [ $(($(date +%s) - t0)) -ge "$wait" ]; then
			die "another rig is still up (dir $OTHER_OWNER); stop it with: $0 down --dir $OTHER_OWNER"
		fi
		sleep 1
	done
	# Once `up` has exited, its running nodes keep the claim alive (see live_owner).
}

# ---------------------------------------------------------------------------
# network
# ---------------------------------------------------------------------------

# net_cleanup: remove every netns/link with our cth- names. Any process still inside one of
# our namespaces was started by this rig (a leftover whose PID file is gone): kill it by PID.
net_cleanup() {
	local ns pid link
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cth-node[0-9]+$' || true); do
		for pid in $(ip netns pids "$ns" 2>/dev/null || true); do
			log "killing leftover PID $pid ($(cat /proc/"$pid"/comm 2>/dev/null)) in netns $ns"
			kill_pid "$pid"
		done
		ip netns del "$ns" 2>/dev/null || true
	done
	# Deleting a netns takes its eth0 peer along; remove root-side veths and the bridge.
	for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
		grep -E '^cth-v[0-9]+$' || true); do
		ip link del "$link" 2>/dev/null || true
	done
	if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE" || true; fi
}

net_up() {
	local i ns ip
	ip link add "$BRIDGE" type bridge
	# Snooping off: the bridge floods multicast to all ports, so McastService heartbeats
	# reach every node without an IGMP querier on the segment.
	ip link set "$BRIDGE" type bridge mcast_snooping 0
	ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
	ip link set "$BRIDGE" up
	for ((i = 1; i <= NODES; i++)); do
		ns=cth-node$i ip=$(node_ip "$i")
		ip netns add "$ns"
		ip link add "cth-v$i" type veth peer name eth0 netns "$ns"
		ip link set "cth-v$i" master "$BRIDGE"
		ip link set "cth-v$i" up
		ip -n "$ns" link set lo up
		ip -n "$ns" addr add "$ip/24" dev eth0
		ip -n "$ns" link set eth0 up
		# No default route in the netns; multicast needs an explicit route to leave eth0.
		ip -n "$ns" route add 224.0.0.0/4 dev eth0
	done
}

# ---------------------------------------------------------------------------
# CATALINA_BASE generation
# ---------------------------------------------------------------------------

cluster_xml() {
	local ip=$1
	local domain_attr=""
	[ -n "${CTH_RIG_DOMAIN:-}" ] && domain_attr=" domain=\"$CTH_RIG_DOMAIN\""
	# channelSendOptions=6 = SEND_OPTIONS_USE_ACK (2) + SEND_OPTIONS_SYNCHRONIZED_ACK (4),
	# without ASYNCHRONOUS (8). In Tribes, 2 makes the sending thread wait for an ACK and 4
	# makes the receiver ACK only after it has applied the message (ChannelData.sendAckSync
	# requires both bits; 4 alone sends no ACK at all). The request thread therefore blocks
	# in ReplicationValve until every member has applied the session delta, and only then
	# does Tomcat finish the response: a kill -9 right after a response loses nothing.
	# No MessageDispatchInterceptor (it only matters for async sends) and no
	# JvmRouteBinderValve: catherd, not Tomcat, decides where a moved session lives.
	cat <<-EOF
		<Cluster className="org.apache.catalina.ha.tcp.SimpleTcpCluster" channelSendOptions="6">
		  <Manager className="org.apache.catalina.ha.session.DeltaManager"
		           expireSessionsOnShutdown="false" notifyListenersOnReplication="true"
		           stateTransferTimeout="30"/>
		  <Channel className="org.apache.catalina.tribes.group.GroupChannel">
		    <Membership className="org.apache.catalina.tribes.membership.McastService"
		                address="$MCAST_ADDR" port="$MCAST_PORT" bind="$ip"$domain_attr
		                frequency="500" dropTime="3000"/>
		    <Receiver className="org.apache.catalina.tribes.transport.nio.NioReceiver"
		              address="$ip" port="$REPL_PORT" autoBind="0" selectorTimeout="100" maxThreads="6"/>
		    <Sender className="org.apache.catalina.tribes.transport.ReplicationTransmitter">
		      <Transport className="org.apache.catalina.tribes.transport.nio.PooledParallelSender"
		                 timeout="3000"/>
		    </Sender>
		    <!-- verifies a suspect member over TCP; a killed JVM is dropped at the first failed send -->
		    <Interceptor className="org.apache.catalina.tribes.group.interceptors.TcpFailureDetector"/>
		  </Channel>
		  <!-- static files never change the session: skip the replication round-trip -->
		  <Valve className="org.apache.catalina.ha.tcp.ReplicationValve" filter=".*\\.(html|css|js|png|gif|jpg|txt)"/>
		  <ClusterListener className="org.apache.catalina.ha.session.ClusterSessionListener"/>
		</Cluster>
	EOF
}

server_xml() {
	local i=$1 ip cluster="" threads=${CTH_RIG_MAX_THREADS:-200}
	ip=$(node_ip "$i")
	[ "$CLUSTER" = 1 ] && cluster=$(cluster_xml "$ip")
	cat <<-EOF
		<?xml version="1.0" encoding="UTF-8"?>
		<!-- generated by scripts/tomcat-rig.sh for node$i; shutdown port disabled (kill by PID) -->
		<Server port="-1" shutdown="SHUTDOWN">
		  <Service name="Catalina">
		    <Connector address="$ip" port="$HTTP_PORT" protocol="HTTP/1.1"
		               connectionTimeout="20000" maxKeepAliveRequests="-1" maxThreads="$threads"/>
		    <Connector address="$ip" port="$AJP_PORT" protocol="AJP/1.3"
		               secret="$AJP_SECRET" secretRequired="true" maxThreads="$threads"/>
		    <Engine name="Catalina" defaultHost="localhost" jvmRoute="node$i">
		$cluster
		      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false"
		            deployOnStartup="true" startStopThreads="1"/>
		    </Engine>
		  </Service>
		</Server>
	EOF
}

# catalina.properties: the stock loaders, and jarsToSkip=* so no JAR is scanned for TLDs,
# fragments or annotations (the webapp has no JARs; Tomcat's own never need scanning).
catalina_properties() {
	cat <<-'EOF'
		package.access=sun.,org.apache.catalina.,org.apache.coyote.,org.apache.jasper.,org.apache.tomcat.
		package.definition=sun.,java.,org.apache.catalina.,org.apache.coyote.,org.apache.jasper.,org.apache.naming.,org.apache.tomcat.
		common.loader="${catalina.base}/lib","${catalina.base}/lib/*.jar","${catalina.home}/lib","${catalina.home}/lib/*.jar"
		server.loader=
		shared.loader=
		tomcat.util.scan.StandardJarScanFilter.jarsToSkip=*.jar
		tomcat.util.scan.StandardJarScanFilter.jarsToScan=
		tomcat.util.buf.StringCache.byte.enabled=true
	EOF
}

context_xml() {
	cat <<-'EOF'
		<?xml version="1.0" encoding="UTF-8"?>
		<!-- no reloading, no class-path/manifest scanning: startup speed -->
		<Context reloadable="false">
		  <JarScanner scanClassPath="false" scanManifest="false" scanAllDirectories="false"/>
		</Context>
	EOF
}

logging_properties() {
	# Console only; `up` sends stdout/stderr to logs/catalina.out. INFO keeps the cluster's
	# "member added/disappeared" lines that `up` waits for.
	cat <<-'EOF'
		handlers = java.util.logging.ConsoleHandler
		.handlers = java.util.logging.ConsoleHandler
		.level = INFO
		java.util.logging.ConsoleHandler.level = FINE
		java.util.logging.ConsoleHandler.formatter = org.apache.juli.OneLineFormatter
	EOF
}

webapp() {
	local root=$1
	mkdir -p "$root/WEB-INF"
	# <distributable/> is what makes the context use the cluster's DeltaManager.
	cat >"$root/WEB-INF/web.xml" <<-'EOF'
		<?xml version="1.0" encoding="UTF-8"?>
		<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee"
		         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
		         xsi:schemaLocation="https://jakarta.ee/xml/ns/jakartaee https://jakarta.ee/xml/ns/jakartaee/web-app_6_0.xsd"
		         version="6.0" metadata-complete="true">
		  <distributable/>
		  <welcome-file-list><welcome-file>index.html</welcome-file></welcome-file-list>
		</web-app>
	EOF
	# The route printed is the Engine's jvmRoute (passed as -DjvmRoute too), i.e. the node
	# that actually served the request - not the suffix of the session id.
	cat >"$root/counter.jsp" <<-'EOF'
		<%@ page contentType="text/plain; charset=UTF-8" trimDirectiveWhitespaces="true" %><%
		    Integer count = (Integer) session.getAttribute("count");
		    count = (count == null) ? 1 : count + 1;
		    session.setAttribute("count", count);
		    out.print("node=" + System.getProperty("jvmRoute") + " session=" + session.getId() + " count=" + count + "\n");
		%>
	EOF
	cat >"$root/health.jsp" <<-'EOF'
		<%@ page session="false" contentType="text/plain; charset=UTF-8" trimDirectiveWhitespaces="true" %><%
		    out.print("ok node=" + System.getProperty("jvmRoute") + "\n");
		%>
	EOF
	cat >"$root/index.html" <<-'EOF'
		<!DOCTYPE html>
		<html><head><title>catherd rig</title></head><body><p>catherd tomcat rig</p></body></html>
	EOF
	# echo.jsp reports what the servlet saw, for protocol tests (AJP above all):
	# method, decoded URI, query, header count, the length of X-Long, body bytes read,
	# the client address and port, whether the request counts as secure, and the
	# Host and X-Forwarded-Host fields.
	cat >"$root/echo.jsp" <<-'EOF'
		<%@ page session="false" contentType="text/plain; charset=UTF-8" trimDirectiveWhitespaces="true" %><%
		    long n = 0;
		    java.io.InputStream in = request.getInputStream();
		    byte[] buf = new byte[65536];
		    for (int r; (r = in.read(buf)) > 0; ) n += r;
		    int headers = 0;
		    for (java.util.Enumeration<String> e = request.getHeaderNames(); e.hasMoreElements(); e.nextElement()) headers++;
		    String lng = request.getHeader("X-Long");
		    out.print("method=" + request.getMethod() + " uri=" + request.getRequestURI() + " query=" + request.getQueryString()
		        + " headers=" + headers + " long=" + (lng == null ? 0 : lng.length()) + " body=" + n
		        + " remote=" + request.getRemoteAddr() + ":" + request.getRemotePort() + " secure=" + request.isSecure()
		        + " host=" + request.getHeader("Host") + " xfhost=" + request.getHeader("X-Forwarded-Host") + "\n");
		%>
	EOF
	# A static file with a UTF-8 name, to check paths survive each hop.
	printf 'utf-8 path ok\n' >"$root/café.txt"
}

make_base() {
	local i=$1 base=$DIR/node$1
	mkdir -p "$base"/{conf,logs,work,temp,webapps/ROOT}
	server_xml "$i" >"$base/conf/server.xml"
	catalina_properties >"$base/conf/catalina.properties"
	context_xml >"$base/conf/context.xml"
	logging_properties >"$base/conf/logging.properties"
	# The stock conf/web.xml declares the default and JSP servlets and the MIME map.
	[ -r "$TOMCAT_CONF/web.xml" ] || die "$TOMCAT_CONF/web.xml not readable (tomcat10 package incomplete?)"
	cp "$TOMCAT_CONF/web.xml" "$base/conf/web.xml"
	webapp "$base/webapps/ROOT"
}

# ---------------------------------------------------------------------------
# Tomcat lifecycle
# ---------------------------------------------------------------------------

# start_node I: launch Tomcat i in its netns in the background; writes DIR/nodeI.pid.
start_node() {
	local i=$1 base=$DIR/node$1 pid log
	log=$base/logs/catalina.out
	# keep the previous run's log for post-mortems, start the new one empty
	[ -f "$log" ] && mv -f "$log" "$log.prev"
	# catalina.sh `run` execs java, and `ip netns exec` execs its command, so $! is the JVM.
	# stdin/stdout/stderr are redirected so callers that capture our output (go test)
	# do not wait on a pipe held open by the JVM.
	env CATALINA_HOME="$CATALINA_HOME" CATALINA_BASE="$base" CATALINA_TMPDIR="$base/temp" \
		JAVA_OPTS="-Xms64m -Xmx256m -XX:+UseSerialGC -Xshare:auto -XX:TieredStopAtLevel=1 \
-Djava.security.egd=file:/dev/./urandom -Djava.net.preferIPv4Stack=true -Djava.awt.headless=true \
-DjvmRoute=node$i ${CTH_RIG_JAVA_OPTS:-}" \
		ip netns exec "cth-node$i" "$CATALINA_HOME/bin/catalina.sh" run </dev/null >"$log" 2>&1 &
	pid=$!
	echo "$pid" >"$DIR/node$i.pid"
	START_MS[$i]=$(now_ms)
	# env -> ip -> catalina.sh -> java all exec in place; wait (bounded) until the PID is the JVM
	# so that node_pid, which insists on comm=java, sees it.
	local k
	for ((k = 0; k < 100; k++)); do
		is_live_java "$pid" && return 0
		[ -d /proc/"$pid" ] || break
		sleep 0.05
	done
	tail -n 20 "$log" >&2 || true
	die "node$i: PID $pid did not become a java process (log: $log)"
}

http_get() { curl -sS --noproxy '*' --max-time 3 "$@" 2>/dev/null; }

# node_ready I: Tomcat answers /health.jsp and has compiled /counter.jsp.
# The warm-up counter.jsp request makes a throw-away session (it expires after 30 min).
node_ready() {
	local ip
	ip=$(node_ip "$1")
	http_get "http://$ip:$HTTP_PORT/health.jsp" | grep -q "^ok node=node$1\$" || return 1
	http_get -o /dev/null -w '%{http_code}' "http://$ip:$HTTP_PORT/counter.jsp" | grep -q '^200$'
}

# members_seen I: number of distinct cluster members node I currently believes alive,
# counted from its log (added minus disappeared).
members_seen() {
	local log=$DIR/node$1/logs/catalina.out
	awk '/SimpleTcpCluster.memberAdded/ {n++} /SimpleTcpCluster.memberDisappeared/ {n--} END {print n+0}' "$log" 2>/dev/null || echo 0
}

# wait_ready DEADLINE_MS I...: bounded wait until each listed node is ready (and, with
# --cluster, sees every other running node as a member). Fails with the log tail.
wait_ready() {
	local deadline=$1 i pid want
	shift
	local pending=("$@")
	while [ ${#pending[@]} -gt 0 ]; do
		local still=()
		for i in "${pending[@]}"; do
			pid=$(node_pid "$i")
			if [ -z "$pid" ]; then
				tail -n 30 "$DIR/node$i/logs/catalina.out" >&2 || true
				pid=$(cat "$DIR/node$i.pid" 2>/dev/null || true)
				die "node$i: JVM (PID $pid: $(tr '\0' ' ' <"/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1-3 || echo gone)) exited during startup (log: $DIR/node$i/logs/catalina.out)"
			fi
			if node_ready "$i"; then
				if [ "$CLUSTER" = 1 ]; then
					want=$(($(running_count) - 1))
					if [ "$(members_seen "$i")" -lt "$want" ]; then still+=("$i"); continue; fi
				fi
				READY_MS[$i]=$(now_ms)
				log "node$i ready after $(((READY_MS[$i] - START_MS[$i]))) ms"
			else
				still+=("$i")
			fi
		done
		pending=("${still[@]+"${still[@]}"}")
		[ ${#pending[@]} -eq 0 ] && break
		if [ "$(now_ms)" -gt "$deadline" ]; then
			for i in "${pending[@]}"; do
				tail -n 20 "$DIR/node$i/logs/catalina.out" >&2 || true
			done
			die "timeout after ${UP_TIMEOUT}s waiting for node(s): ${pending[*]/#/node}"
		fi
		sleep 0.25
	done
}

running_count() {
	local i n=0
	for ((i = 1; i <= NODES; i++)); do [ -n "$(node_pid "$i")" ] && n=$((n + 1)); done
	echo "$n"
}

# check_replication DEADLINE_MS: a session made on the first running node must be readable
# (count incremented) on every other running node. Bounded retries.
check_replication() {
	local deadline=$1 i first="" ip body id want
	local nodes=()
	for ((i = 1; i <= NODES; i++)); do [ -n "$(node_pid "$i")" ] && nodes+=("$i"); done
	[ ${#nodes[@]} -ge 2 ] || return 0
	first=${nodes[0]}
	while :; do
		body=$(http_get "http://$(node_ip "$first"):$HTTP_PORT/counter.jsp" || true)
		id=$(sed -n 's/.* session=\([^ ]*\) count=1$/\1/p' <<<"$body")
		local ok=1 n=2
		if [ -z "$id" ]; then ok=0; fi
		for i in "${nodes[@]:1}"; do
			[ "$ok" = 1 ] || break
			ip=$(node_ip "$i")
			want="node=node$i session=$id count=$n"
			body=$(http_get -H "Cookie: JSESSIONID=$id" "http://$ip:$HTTP_PORT/counter.jsp" || true)
			if [ "$body" != "$want" ]; then ok=0; else n=$((n + 1)); fi
		done
		if [ "$ok" = 1 ]; then return 0; fi
		if [ "$(now_ms)" -gt "$deadline" ]; then
			die "cluster replication check failed: wanted '$want', got '$body'"
		fi
		sleep 0.5
	done
}

print_nodes() {
	local i pid
	for ((i = 1; i <= NODES; i++)); do
		pid=$(node_pid "$i")
		echo "node$i $(node_ip "$i") $HTTP_PORT $AJP_PORT ${pid:--}"
	done
}

# ---------------------------------------------------------------------------
# subcommands
# ---------------------------------------------------------------------------

preflight() {
	[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
	local t
	for t in ip curl java awk; do command -v "$t" >/dev/null || die "'$t' not found"; done
	[ -x "$CATALINA_HOME/bin/catalina.sh" ] || die "$CATALINA_HOME/bin/catalina.sh missing: apt-get install tomcat10"
	[ -r /usr/share/java/eclipse-jdt-core.jar ] ||
		log "warning: /usr/share/java/eclipse-jdt-core.jar missing; JSPs may not compile (apt-get install libeclipse-jdt-core-java)"
}

cmd_down() {
	local i pid
	if [ -f "$(state_file)" ]; then
		load_state
	else
		OWN_DIR=0
	fi
	# Kill by PID file first (covers nodes whose netns was already removed).
	for f in "$DIR"/node*.pid; do
		[ -f "$f" ] || continue
		i=${f##*/node}
		i=${i%.pid}
		pid=$(node_pid "$i")
		if [ -n "$pid" ]; then kill_pid "$pid"; fi
		rm -f "$f"
	done
	# The network names are host-wide: leave them alone if another live rig owns them.
	if owns_host; then
		net_cleanup
		release_host
	else
		log "not removing namespaces/bridge: they belong to the rig in $(live_owner)"
	fi
	if [ "${CTH_RIG_KEEP:-0}" = 1 ]; then
		log "CTH_RIG_KEEP=1: keeping $DIR"
	elif [ "$OWN_DIR" = 1 ]; then
		rm -rf "$DIR"
	elif [ -d "$DIR" ]; then
		rm -rf "$DIR"/node[0-9] "$(state_file)"
	fi
	return 0
}

cmd_up() {
	preflight
	local t0 i
	wait_for_host
	t0=$(now_ms)
	# Leftovers with our names (a previous run that died) go first; nobody live owns them.
	if [ -f "$(state_file)" ]; then
		(NODES=$NODES CLUSTER=$CLUSTER cmd_down)
		claim_host || die "lost the host to the rig in $OTHER_OWNER"
	fi
	net_cleanup
	OWN_DIR=0
	if [ ! -e "$DIR" ]; then
		mkdir -p "$DIR"
		OWN_DIR=1
	elif [ -n "$(ls -A "$DIR")" ]; then
		die "$DIR exists, is not empty and has no rig state; pick another --dir"
	fi
	write_state
	# From here on a failure must not leave half a rig behind.
	trap 'rc=$?; if [ $rc -ne 0 ]; then log "up failed, cleaning up"; cmd_down; fi' EXIT
	net_up
	for ((i = 1; i <= NODES; i++)); do make_base "$i"; done
	local deadline=$((t0 + UP_TIMEOUT * 1000))
	local nodes=()
	for ((i = 1; i <= NODES; i++)); do nodes+=("$i"); done
	if [ "$CLUSTER" = 1 ] && [ "$NODES" -gt 1 ]; then
		# A starting DeltaManager asks the oldest member for all sessions and blocks until
		# it answers; a member that is itself still deploying never answers (30 s timeout).
		# So node1 comes up alone first, then the rest start together and ask node1.
		start_node 1
		wait_ready "$deadline" 1
		nodes=("${nodes[@]:1}")
	fi
	for i in "${nodes[@]}"; do start_node "$i"; done
	wait_ready "$deadline" "${nodes[@]}"
	if [ "$CLUSTER" = 1 ]; then
		check_replication "$deadline"
		log "cluster of $NODES formed and replicating"
	fi
	trap - EXIT
	log "up: $NODES node(s) ready in $(($(now_ms) - t0)) ms (dir $DIR)"
	print_nodes
}

# running_node VERB: checks the NODE argument of VERB and sets NODE_I and
# NODE_PID for a running node.
running_node() {
	[ ${#POSITIONAL[@]} -eq 1 ] || die "usage: $1 NODE [--dir DIR]"
	load_state
	NODE_I=$(node_index "${POSITIONAL[0]}")
	[ "$NODE_I" -le "$NODES" ] || die "node$NODE_I does not exist (rig has $NODES nodes)"
	NODE_PID=$(node_pid "$NODE_I")
	[ -n "$NODE_PID" ] || die "node$NODE_I is not running"
}

cmd_kill() {
	running_node kill
	local i=$NODE_I pid=$NODE_PID
	kill_pid "$pid"
	log "node$i (PID $pid) killed with SIGKILL"
}

cmd_stop() {
	running_node stop
	local i=$NODE_I pid=$NODE_PID
	# SIGTERM runs Tomcat's shutdown hook: a clean stop, in which the cluster
	# membership announces the node's departure.
	kill -TERM "$pid" 2>/dev/null || true
	wait_gone "$pid" 30 || die "node$i (PID $pid) still running 30 s after SIGTERM"
	log "node$i (PID $pid) stopped cleanly (SIGTERM)"
}

cmd_start() {
	[ ${#POSITIONAL[@]} -eq 1 ] || die "usage: start NODE [--dir DIR]"
	preflight
	load_state
	local i t0
	i=$(node_index "${POSITIONAL[0]}")
	[ "$i" -le "$NODES" ] || die "node$i does not exist (rig has $NODES nodes)"
	[ -z "$(node_pid "$i")" ] || die "node$i is already running (PID $(node_pid "$i"))"
	ip netns list | grep -q "^cth-node$i\b" || die "netns cth-node$i is gone; run 'up' again"
	t0=$(now_ms)
	start_node "$i"
	wait_ready $((t0 + UP_TIMEOUT * 1000)) "$i"
	log "node$i started in $(($(now_ms) - t0)) ms"
	echo "node$i $(node_ip "$i") $HTTP_PORT $AJP_PORT $(node_pid "$i")"
}

cmd_status() {
	load_state
	print_nodes
}

main() {
	[ $# -ge 1 ] || { usage >&2; exit 2; }
	local cmd=$1
	shift
	parse_opts "$@"
	declare -gA START_MS=() READY_MS=()
	case "$cmd" in
	up) [ ${#POSITIONAL[@]} -eq 0 ] || die "up takes no arguments besides options"; cmd_up ;;
	down) [ "$(id -u)" = 0 ] || die "must run as root"; cmd_down ;;
	kill) cmd_kill ;;
	stop) cmd_stop ;;
	start) cmd_start ;;
	status) cmd_status ;;
	-h | --help | help) usage ;;
	*) die "unknown subcommand '$cmd' (up|kill|stop|start|down|status)" ;;
	esac
}

main "$@"
