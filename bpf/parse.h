/* Packet parsing: Ethernet, IPv4/IPv6, and the TCP/UDP ports. Parsing reads
 * only; nothing here writes to the packet. */
#pragma once

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>

#include "consts.h"
#include "structs.h"

/* IPv4 fragment bits of frag_off (host order), as the kernel names them. */
#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

enum parse_result {
	PARSE_L4,        /* a well-formed TCP or UDP packet: p->key is filled */
	PARSE_NOT_IP,    /* not an IP frame */
	PARSE_OTHER,     /* IP, but neither TCP nor UDP (ICMP, ...) */
	PARSE_TRUNCATED, /* ends before the IP header does */
	PARSE_IRREGULAR, /* a fragment or bad lengths: p->key.dst and p->reason are set */
};

struct packet {
	struct flow_key key;
	__u32 reason;  /* for PARSE_IRREGULAR: the drop reason if it is for a VIP */
	__u32 l4_off;  /* for PARSE_L4: where the TCP/UDP header starts in the frame */
	__u32 udp_len; /* for UDP: the header's length field (header + payload) */
};

/* parse_ports reads the ports of the TCP or UDP header at l4, which must lie
 * within the l4_len bytes the IP header says follow it. */
static __always_inline enum parse_result parse_ports(void *l4, __u32 l4_len, void *data_end,
						      struct packet *p)
{
	p->reason = REASON_DROP_MALFORMED;
	if (p->key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end || l4_len < sizeof(*tcp))
			return PARSE_IRREGULAR;
		if (tcp->doff < 5 || tcp->doff * 4 > l4_len)
			return PARSE_IRREGULAR;
		p->key.sport = tcp->source;
		p->key.dport = tcp->dest;
		return PARSE_L4;
	}
	struct udphdr *udp = l4;
	if ((void *)(udp + 1) > data_end || l4_len < sizeof(*udp))
		return PARSE_IRREGULAR;
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > l4_len)
		return PARSE_IRREGULAR;
	p->key.sport = udp->source;
	p->key.dport = udp->dest;
	p->udp_len = ulen;
	return PARSE_L4;
}

static __always_inline enum parse_result parse_ipv4(void *l3, void *data_end, struct packet *p)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > data_end)
		return PARSE_TRUNCATED;
	p->key.family = FAMILY_IPV4;
	p->key.src.v4 = ip->saddr;
	p->key.dst.v4 = ip->daddr;
	p->key.proto = ip->protocol;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return PARSE_OTHER;

	/* IP options are fine: DSR forwards the packet as it came, so only the
	 * header length matters, to find the ports. */
	__u32 hlen = ip->ihl * 4;
	__u32 total = bpf_ntohs(ip->tot_len);
	p->reason = REASON_DROP_MALFORMED;
	if (ip->version != 4 || hlen < sizeof(*ip) || total < hlen || total > data_end - l3)
		return PARSE_IRREGULAR;
	/* Only the first fragment carries the ports; rather than steer some
	 * pieces of a datagram and not others, drop them all (as Katran does). */
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		p->reason = REASON_DROP_FRAGMENT;
		return PARSE_IRREGULAR;
	}
	p->l4_off = sizeof(struct ethhdr) + hlen;
	return parse_ports(l3 + hlen, total - hlen, data_end, p);
}

static __always_inline int ipv6_extension(__u8 next)
{
	switch (next) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_ESP:
	case IPPROTO_MH:
		return 1;
	}
	return 0;
}

static __always_inline enum parse_result parse_ipv6(void *l3, void *data_end, struct packet *p)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > data_end)
		return PARSE_TRUNCATED;
	p->key.family = FAMILY_IPV6;
	__builtin_memcpy(p->key.src.v6, &ip6->saddr, sizeof(p->key.src.v6));
	__builtin_memcpy(p->key.dst.v6, &ip6->daddr, sizeof(p->key.dst.v6));
	p->key.proto = ip6->nexthdr;
	if (ipv6_extension(ip6->nexthdr)) {
		p->reason = ip6->nexthdr == IPPROTO_FRAGMENT ? REASON_DROP_FRAGMENT : REASON_DROP_UNSUPPORTED;
		return PARSE_IRREGULAR;
	}
	if (ip6->nexthdr != IPPROTO_TCP && ip6->nexthdr != IPPROTO_UDP)
		return PARSE_OTHER;
	__u32 payload = bpf_ntohs(ip6->payload_len);
	if (payload > data_end - (void *)(ip6 + 1)) {
		p->reason = REASON_DROP_MALFORMED;
		return PARSE_IRREGULAR;
	}
	p->l4_off = sizeof(struct ethhdr) + sizeof(*ip6);
	return parse_ports(ip6 + 1, payload, data_end, p);
}

/* parse fills p from the frame in [data, data_end). */
static __always_inline enum parse_result parse(void *data, void *data_end, struct packet *p)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return PARSE_NOT_IP;
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(eth + 1, data_end, p);
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(eth + 1, data_end, p);
	return PARSE_NOT_IP;
}
