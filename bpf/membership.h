/* The membership filter: Tomcat's McastService beacons carry no
 * authentication, so before any socket sees one, a beacon must come from an
 * allowed source, be well formed (its markers and lengths agree with the
 * datagram), belong to the configured cluster domain, and keep within its
 * source's rate. Layout (big-endian): "TRIBES-B" 01 00, body length (4),
 * alive (8), port (4), securePort (4), udpPort (4), host length (1), host,
 * command length (4) + command, domain length (4) + domain, uniqueId (16),
 * payload length (4) + payload, "TRIBES-E" 01 00. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps.h"
#include "parse.h"
#include "verdict.h"

#define BEACON_MARKER_LEN 10
#define BEACON_MAX 1472 /* one Ethernet-sized UDP datagram */
#define NS_PER_BEACON 1000000000ull

static __always_inline int same_addr(const union addr *a, const union addr *b)
{
	return a->v6[0] == b->v6[0] && a->v6[1] == b->v6[1] && a->v6[2] == b->v6[2] && a->v6[3] == b->v6[3];
}

/* membership_of returns the filter's configuration when p is a datagram
 * to the membership group and port, else 0. */
static __always_inline const struct membership_config *membership_of(const struct packet *p)
{
	__u32 zero = 0;
	const struct membership_config *c = bpf_map_lookup_elem(&membership, &zero);
	if (!c || c->family == 0 || c->family != p->key.family || !same_addr(&c->group, &p->key.dst))
		return 0;
	return c;
}

/* is_group says whether dst is the membership group, whatever the port:
 * fragments to it are dropped, since their pieces cannot be checked. */
static __always_inline int is_group(const struct flow_key *k)
{
	__u32 zero = 0;
	const struct membership_config *c = bpf_map_lookup_elem(&membership, &zero);
	return c && c->family != 0 && c->family == k->family && same_addr(&c->group, &k->dst);
}

/* be32_at reads a big-endian 32-bit length at off in the beacon, or
 * returns -1 when it lies outside the frame. off is masked to keep the
 * verifier's view of the pointer bounded. */
static __always_inline __s64 be32_at(void *beacon, __u32 off, void *data_end)
{
	__u8 *b = beacon + (off & 0x7ff);
	if ((void *)(b + 4) > data_end)
		return -1;
	return (__u32)b[0] << 24 | (__u32)b[1] << 16 | (__u32)b[2] << 8 | b[3];
}

static __always_inline int marker_at(void *beacon, __u32 off, void *data_end, char kind)
{
	__u8 *b = beacon + (off & 0x7ff);
	if ((void *)(b + BEACON_MARKER_LEN) > data_end)
		return 0;
	return b[0] == 'T' && b[1] == 'R' && b[2] == 'I' && b[3] == 'B' && b[4] == 'E' && b[5] == 'S' &&
	       b[6] == '-' && b[7] == kind && b[8] == 1 && b[9] == 0;
}

/* beacon_reason checks the beacon of n bytes at beacon and returns the
 * reason for its verdict. */
static __always_inline __u32 beacon_reason(void *beacon, __u32 n, void *data_end,
					   const struct membership_config *c)
{
	if (n < 2 * BEACON_MARKER_LEN + 4 || n > BEACON_MAX)
		return REASON_DROP_BEACON_MALFORMED;
	if (!marker_at(beacon, 0, data_end, 'B'))
		return REASON_DROP_BEACON_MALFORMED;
	__s64 body = be32_at(beacon, BEACON_MARKER_LEN, data_end);
	if (body < 0 || body != (__s64)n - 2 * BEACON_MARKER_LEN - 4)
		return REASON_DROP_BEACON_MALFORMED;

	/* alive, port, securePort, udpPort: 20 bytes; then the host length. */
	__u32 off = BEACON_MARKER_LEN + 4 + 20;
	__u8 *hl = beacon + off;
	if ((void *)(hl + 1) > data_end || (*hl != 4 && *hl != 16))
		return REASON_DROP_BEACON_MALFORMED;
	off += 1 + *hl;

	__s64 cmd = be32_at(beacon, off, data_end);
	if (cmd < 0 || cmd > n)
		return REASON_DROP_BEACON_MALFORMED;
	off += 4 + cmd;
	if (off > n)
		return REASON_DROP_BEACON_MALFORMED;

	__s64 dlen = be32_at(beacon, off, data_end);
	if (dlen < 0 || dlen > n)
		return REASON_DROP_BEACON_MALFORMED;
	off += 4;
	__u32 domain_off = off;
	off += dlen;
	off += 16; /* uniqueId */
	if (off > n)
		return REASON_DROP_BEACON_MALFORMED;
	__s64 plen = be32_at(beacon, off, data_end);
	if (plen < 0 || plen > n)
		return REASON_DROP_BEACON_MALFORMED;
	off += 4 + plen;
	if (off != n - BEACON_MARKER_LEN || !marker_at(beacon, off, data_end, 'E'))
		return REASON_DROP_BEACON_MALFORMED;

	if (c->flags & MEMBERSHIP_ANY_DOMAIN)
		return REASON_PASS_BEACON;
	if (dlen != c->domain_len)
		return REASON_DROP_BEACON_DOMAIN;
	for (__u32 i = 0; i < MAX_DOMAIN; i++) {
		if (i >= dlen)
			break;
		__u8 *d = beacon + ((domain_off + i) & 0x7ff);
		if ((void *)(d + 1) > data_end)
			return REASON_DROP_BEACON_MALFORMED;
		if (*d != c->domain[i])
			return REASON_DROP_BEACON_DOMAIN;
	}
	return REASON_PASS_BEACON;
}

/* source_allowed looks the source up in membership_allow. */
static __always_inline int source_allowed(const struct flow_key *k)
{
	struct lpm_key lk = { .prefixlen = 128 };
	if (k->family == FAMILY_IPV4) {
		lk.addr[10] = 0xff;
		lk.addr[11] = 0xff;
		__builtin_memcpy(&lk.addr[12], &k->src.v4, 4);
	} else {
		__builtin_memcpy(lk.addr, k->src.bytes, 16);
	}
	return bpf_map_lookup_elem(&membership_allow, &lk) != 0;
}

/* within_rate takes one beacon from the source's token bucket. Updates
 * from two CPUs at once may both succeed: the rate is a bound against
 * floods, not an exact count. */
static __always_inline int within_rate(const struct flow_key *k, const struct membership_config *c)
{
	if (c->burst == 0)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 cap = (__u64)c->burst * NS_PER_BEACON;
	struct bucket *b = bpf_map_lookup_elem(&membership_rate, &k->src);
	if (!b) {
		struct bucket fresh = { .tokens = cap - NS_PER_BEACON, .last = now };
		bpf_map_update_elem(&membership_rate, &k->src, &fresh, BPF_ANY);
		return 1;
	}
	__u64 elapsed = now - b->last;
	if (elapsed > 10 * NS_PER_BEACON)
		elapsed = 10 * NS_PER_BEACON; /* a full bucket by then; keeps the product small */
	__u64 tokens = b->tokens + elapsed * c->rate;
	if (tokens > cap)
		tokens = cap;
	b->last = now;
	if (tokens < NS_PER_BEACON) {
		b->tokens = tokens;
		return 0;
	}
	b->tokens = tokens - NS_PER_BEACON;
	return 1;
}

/* filter_beacon gives a datagram to the membership group its verdict. */
static __always_inline int filter_beacon(struct xdp_md *ctx, const struct packet *p,
					 const struct membership_config *c)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 reason;

	if (!source_allowed(&p->key)) {
		reason = REASON_DROP_BEACON_SOURCE;
	} else {
		void *beacon = data + (p->l4_off & 0xff) + 8; /* past the UDP header */
		reason = beacon_reason(beacon, p->udp_len - 8, data_end, c);
		if (reason == REASON_PASS_BEACON && !within_rate(&p->key, c))
			reason = REASON_DROP_BEACON_RATE;
	}
	count_verdict(reason);
	return reason == REASON_PASS_BEACON ? XDP_PASS : XDP_DROP;
}
