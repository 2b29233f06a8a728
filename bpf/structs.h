/* Map keys and values. The control plane (userspace/xdp) uses the Go types
 * bpf2go generates from these, so the layouts have one definition. */
#pragma once

#include <linux/types.h>

#include "consts.h"

/* An IPv4 address sits in the first four bytes with the rest zero. bytes
 * comes first so that the generated Go type is a plain [16]uint8. */
union addr {
	__u8 bytes[16];
	__be32 v4;
	__be32 v6[4];
};

/* services key: the VIP, port and protocol a client connects to. */
struct vip_key {
	union addr addr;
	__be16 port;
	__u8 proto;
	__u8 family;
};

struct service {
	__u32 index;     /* into service_stats */
	__u32 flags;     /* SERVICE_* */
	__u32 ring_base; /* first slot of this service's Maglev table in maglev */
	__u32 ring_size; /* slots in that table (a prime) */
};

/* vip_addrs key: a VIP address on its own, to recognise fragments and
 * malformed packets meant for a VIP when their ports cannot be read. */
struct vip_addr {
	union addr addr;
	__u32 family;
};

struct backend {
	__u32 flags;   /* BACKEND_* */
	__u32 ifindex; /* egress device toward the backend */
	__u8 dmac[6];  /* next hop's MAC (the backend's, on a shared L2) */
	__u8 smac[6];  /* the egress device's MAC */
	/* For the control plane only: who this slot belongs to, so a restarted
	 * catherd finds the same index for the same backend and the flows in
	 * the connection table keep pointing at the right one. */
	union addr addr;
	__u32 service;
	__u32 family;
};

/* A connection table key. sport is zero for services keyed by client IP
 * alone, which makes every connection of a client one "flow". */
struct flow_key {
	union addr src;
	union addr dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct flow {
	__u32 backend; /* index into backends */
	__u32 pad;
};

/* A service's own counters are touched off the hot path only; its packets
 * and bytes are the sums of its backends' (plus no_backend drops). */
struct service_counters {
	__u64 conn_misses; /* Maglev lookups: new flows and flows whose backend left */
	__u64 no_backend;  /* dropped: no usable backend */
};

struct backend_counters {
	__u64 packets;   /* forwarded to this backend */
	__u64 bytes;     /* whole frames */
	__u64 conn_hits; /* of which found in the connection table */
};

/* membership[0]: which datagrams are Tomcat membership beacons and
 * what they must look like. */
struct membership_config {
	union addr group; /* the multicast group */
	__u32 family;     /* 0: the filter is off */
	__be16 port;
	__u16 domain_len;
	__u32 rate;  /* beacons per second and source */
	__u32 burst; /* beacons a source may send at once */
	__u32 flags; /* MEMBERSHIP_* */
	__u8 domain[MAX_DOMAIN];
};

/* membership_allow key: a prefix of a source address. IPv4 addresses are
 * stored IPv4-mapped (::ffff:a.b.c.d), so one trie holds both families. */
struct lpm_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* membership_rate value: a source's token bucket. */
struct bucket {
	__u64 tokens; /* in nanobeacons: 1e9 is one beacon */
	__u64 last;   /* bpf_ktime_get_ns of the last refill */
};
