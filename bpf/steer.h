/* L4 steering: connection table, Maglev, and L2 direct server return. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "hash.h"
#include "maps.h"
#include "parse.h"

static __always_inline void count_verdict(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &reason);
	if (n)
		*n += 1;
}

/* usable_backend returns the backend at index if it may take flows. */
static __always_inline struct backend *usable_backend(__u32 index)
{
	struct backend *b = bpf_map_lookup_elem(&backends, &index);
	if (b && (b->flags & BACKEND_USABLE))
		return b;
	return 0;
}

/* pick_backend finds the flow's backend: the connection table's, while that
 * backend is usable, else the Maglev table's, which is then recorded so the
 * flow stays put when the table changes. *hit says which. */
static __always_inline struct backend *pick_backend(struct flow_key *key, const struct service *svc,
						     __u32 *index, int *hit)
{
	struct flow *f = bpf_map_lookup_elem(&conntrack, key);
	if (f) {
		struct backend *b = usable_backend(f->backend);
		if (b) {
			*hit = 1;
			*index = f->backend;
			return b;
		}
	}
	*hit = 0;
	struct service_counters *st = bpf_map_lookup_elem(&service_stats, &svc->index);
	if (st)
		st->conn_misses++;
	if (svc->ring_size == 0)
		return 0;
	__u32 slot = svc->ring_base + flow_hash(key, svc->index) % svc->ring_size;
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

/* steer sends a packet for svc to its backend by rewriting the Ethernet
 * addresses (the IP packet is untouched: the backend holds the VIP on its
 * loopback and answers the client directly). */
static __always_inline int steer(struct xdp_md *ctx, struct packet *p, const struct service *svc)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!(svc->flags & SERVICE_HASH_PORT))
		p->key.sport = 0;

	__u32 index = 0;
	int hit = 0;
	struct backend *b = pick_backend(&p->key, svc, &index, &hit);
	if (!b) {
		struct service_counters *st = bpf_map_lookup_elem(&service_stats, &svc->index);
		if (st)
			st->no_backend++;
		count_verdict(REASON_DROP_NO_BACKEND);
		return XDP_DROP;
	}

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
