/* The flow hash that picks a Maglev slot. userspace/xdp has a Go twin for
 * tests that predict the backend of a key; keep the two identical. */
#pragma once

#include "structs.h"

/* mix is MurmurHash3's 32-bit finalizer: every input bit flips about half
 * of the output bits. */
static __always_inline __u32 mix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* flow_hash hashes the client side of a flow: its address and, for
 * services keyed by port, its port (zero otherwise), seeded with the
 * service side: VIP, port and protocol, so that services do not share
 * one client-to-slot mapping. The seed is the service's own identity,
 * never something a host assigns it (such as its index, which follows
 * the order of the --l4 flags and their history): every host declaring
 * the service hashes a client to the same slot, so hosts behind one ECMP
 * route send it to the same backend. Words are taken as they lie in
 * memory (network order, loaded little-endian). */
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = mix(0x9e3779b9 ^ k->dport ^ ((__u32)k->proto << 16));
	h = mix(h ^ k->dst.v6[0]);
	h = mix(h ^ k->dst.v6[1]);
	h = mix(h ^ k->dst.v6[2]);
	h = mix(h ^ k->dst.v6[3]);
	h = mix(h ^ k->src.v6[0]);
	h = mix(h ^ k->src.v6[1]);
	h = mix(h ^ k->src.v6[2]);
	h = mix(h ^ k->src.v6[3]);
	return mix(h ^ k->sport);
}
