/* Constants shared by the datapath and its control plane (userspace/xdp
 * mirrors them; a test there checks the mirror). */
#pragma once

/* Address families as the kernel numbers them. */
#define FAMILY_IPV4 2
#define FAMILY_IPV6 10

/* service.flags */
#define SERVICE_HASH_PORT (1u << 0) /* key flows by client IP and port, not IP alone */

/* service_ports values */
#define PORT_TCP (1u << 0)
#define PORT_UDP (1u << 1)

/* backend.flags */
#define BACKEND_USABLE (1u << 0) /* healthy and resolved: may take flows */

/* The longest cluster domain the membership filter compares. */
#define MAX_DOMAIN 64

/* membership_config.flags */
#define MEMBERSHIP_ANY_DOMAIN (1u << 0) /* beacons of every domain pass */

/* A Maglev slot with no backend (the service has no usable backend). */
#define NO_BACKEND 0xffffffffu

/* Why a packet got its verdict. Every packet is counted under exactly one
 * reason, so the counters add up to the packets seen. Forwarded packets
 * are counted per backend only (backend_stats), which keeps one counter
 * update off the hot path; the verdicts slot of REASON_FORWARDED stays 0
 * and the control plane reports the backends' sum under that name. */
enum reason {
	REASON_FORWARDED = 0,    /* steered to a backend (XDP_TX or XDP_REDIRECT) */
	REASON_PASS_NOT_IP,      /* not IPv4/IPv6: ARP, LLDP, ... */
	REASON_PASS_NOT_SERVICE, /* IP, but not to a declared VIP:port/proto */
	REASON_PASS_TRUNCATED,   /* too short to tell where it goes: the kernel judges it */
	REASON_DROP_FRAGMENT,    /* an IP fragment addressed to a VIP */
	REASON_DROP_MALFORMED,   /* to a VIP, with header lengths that do not add up */
	REASON_DROP_UNSUPPORTED, /* to a VIP, IPv6 with extension headers */
	REASON_DROP_NO_BACKEND,  /* the service has no usable backend */
	REASON_DROP_NO_EGRESS,   /* the backend's egress device is not in the egress map */
	REASON_PASS_BEACON,      /* a membership beacon that passed every check */
	REASON_DROP_BEACON_SOURCE,    /* beacon from a source outside membership_allow */
	REASON_DROP_BEACON_MALFORMED, /* markers or lengths disagree with the datagram, or fragmented */
	REASON_DROP_BEACON_DOMAIN,    /* beacon of another cluster domain */
	REASON_DROP_BEACON_RATE,      /* the source exceeded its beacon rate */
	REASON_COUNT,
};
