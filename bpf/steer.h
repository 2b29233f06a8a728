/* L4 steering: connection table, Maglev, and L2 direct server return. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "hash.h"
#include "maps.h"
#include "parse.h"
#include "verdict.h"

/* usable_backend returns the backend at index if it may take flows. */
static __always_inline struct backend *usable_backend(__u32 index)
{
	struct backend *b = bpf_map_lookup_elem(&backends, &index);
	if (b && (b->flags & BACKEND_USABLE))
		return b;
	return 0;
}

/* known_flow returns the usable backend the connection table has for key. */
static __always_inline struct backend *known_flow(struct flow_key *key, __u32 *index)
{
	struct flow *f = bpf_map_lookup_elem(&conntrack, key);
	if (!f)
		return 0;
	*index = f->backend;
	return usable_backend(f->backend);
}

/* maglev_pick takes the backend of the flow's Maglev slot and records the
 * flow, so it stays put when the table changes. */
static __always_inline struct backend *maglev_pick(struct flow_key *key, const struct service *svc, __u32 *index)
{
	struct service_counters *st = bpf_map_lookup_elem(&service_stats, &svc->index);
	if (st)
		st->conn_misses++;
	if (svc->ring_size == 0)
		return 0;
	__u32 slot = svc->ring_base + flow_hash(key) % svc->ring_size;
	__u32 *bi = bpf_map_lookup_elem(&maglev, &slot);
	if (!bi || *bi == NO_BACKEND)
		return 0;
	struct backend *b = usable_backend(*bi);
	if (!b)
		return 0;
	struct flow nf = { .backend = *bi };
	bpf_map_update_elem(&conntrack, key, &nf, BPF_ANY);
	*index = *bi;
	return b;
}

/* forward sends the packet to backend b by rewriting the Ethernet addresses
 * (the IP packet is untouched: the backend holds the VIP on its loopback
 * and answers the client directly). */
static __always_inline int forward(struct xdp_md *ctx, const struct backend *b, __u32 index, int hit)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP; /* unreachable: parse checked it; the verifier wants it */
	__builtin_memcpy(eth->h_dest, b->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, b->smac, ETH_ALEN);

	int action = XDP_TX;
	if (b->ifindex != ctx->ingress_ifindex) {
		action = bpf_redirect_map(&egress, b->ifindex, 0);
		if (action != XDP_REDIRECT) {
			count_verdict(REASON_DROP_NO_EGRESS);
			return XDP_DROP;
		}
	}
	struct backend_counters *bs = bpf_map_lookup_elem(&backend_stats, &index);
	if (bs) {
		bs->packets++;
		bs->bytes += data_end - data;
		bs->conn_hits += hit;
	}
	return action;
}

/* steer handles a well-formed TCP or UDP packet. Packets to a port no
 * service uses pass after one array lookup. Of the rest, the common case
 * goes first and costs one hash lookup: a known flow of a service keyed by
 * client address (the connection table key with the source port zeroed
 * exists only for such services, and only while their flow does). Then
 * the service lookup decides: not a service -> pass; keyed by port -> the
 * connection table again with the port; else Maglev. */
static __always_inline int steer(struct xdp_md *ctx, struct packet *p)
{
	__u32 port = bpf_ntohs(p->key.dport);
	__u32 *protos = bpf_map_lookup_elem(&service_ports, &port);
	if (!protos || !(*protos & (p->key.proto == IPPROTO_TCP ? PORT_TCP : PORT_UDP))) {
		count_verdict(REASON_PASS_NOT_SERVICE);
		return XDP_PASS;
	}

	__be16 sport = p->key.sport;
	__u32 index = 0;
	p->key.sport = 0;
	struct backend *b = known_flow(&p->key, &index);
	if (b)
		return forward(ctx, b, index, 1);

	struct vip_key vk = { .addr = p->key.dst, .port = p->key.dport, .proto = p->key.proto, .family = p->key.family };
	struct service *svc = bpf_map_lookup_elem(&services, &vk);
	if (!svc) {
		count_verdict(REASON_PASS_NOT_SERVICE);
		return XDP_PASS;
	}
	if (svc->flags & SERVICE_HASH_PORT) {
		p->key.sport = sport;
		b = known_flow(&p->key, &index);
		if (b)
			return forward(ctx, b, index, 1);
	}
	b = maglev_pick(&p->key, svc, &index);
	if (!b) {
		struct service_counters *st = bpf_map_lookup_elem(&service_stats, &svc->index);
		if (st)
			st->no_backend++;
		count_verdict(REASON_DROP_NO_BACKEND);
		return XDP_DROP;
	}
	return forward(ctx, b, index, 0);
}
