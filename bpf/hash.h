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
 * services keyed by port, its port (zero otherwise). The seed (the service
 * index) keeps services from sharing one client-to-slot mapping. Words are
 * taken as they lie in memory (network order, loaded little-endian). */
static __always_inline __u32 flow_hash(const struct flow_key *k, __u32 seed)
{
	__u32 h = mix(seed ^ 0x9e3779b9);
	h = mix(h ^ k->src.v6[0]);
	h = mix(h ^ k->src.v6[1]);
	h = mix(h ^ k->src.v6[2]);
	h = mix(h ^ k->src.v6[3]);
	return mix(h ^ k->sport);
}
