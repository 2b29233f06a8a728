//go:build ignore

/* catherd's XDP entry program. Every frame on the edge NIC comes through
 * here: datagrams to the cluster's membership group are filtered
 * (membership.h); traffic for a declared L4 service (VIP, port, protocol)
 * is steered to a backend by L2 direct server return (steer.h); everything
 * else goes on to the kernel untouched. Behaviour is driven by the maps in maps.h, which the
 * control plane in userspace/xdp fills. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "membership.h"
#include "parse.h"
#include "steer.h"

/* is_vip says whether dst is a VIP address, whatever the port. */
static __always_inline int is_vip(const struct flow_key *k)
{
	struct vip_addr a = { .addr = k->dst, .family = k->family };
	return bpf_map_lookup_elem(&vip_addrs, &a) != 0;
}

SEC("xdp")
int catherd_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct packet p = {};

	switch (parse(data, data_end, &p)) {
	case PARSE_L4:
		break;
	case PARSE_NOT_IP:
		count_verdict(REASON_PASS_NOT_IP);
		return XDP_PASS;
	case PARSE_TRUNCATED:
		count_verdict(REASON_PASS_TRUNCATED);
		return XDP_PASS;
	case PARSE_IRREGULAR:
		/* Broken or fragmented traffic for a VIP cannot be steered
		 * consistently, nor checked when it is for the membership group;
		 * anyone else's is the kernel's business. */
		if (is_group(&p.key)) {
			count_verdict(REASON_DROP_BEACON_MALFORMED);
			return XDP_DROP;
		}
		if (is_vip(&p.key)) {
			count_verdict(p.reason);
			return XDP_DROP;
		}
		count_verdict(REASON_PASS_NOT_SERVICE);
		return XDP_PASS;
	default:
		count_verdict(REASON_PASS_NOT_SERVICE);
		return XDP_PASS;
	}
	if (p.key.proto == IPPROTO_UDP) {
		const struct membership_config *c = membership_of(&p);
		if (c && p.key.dport == c->port)
			return filter_beacon(ctx, &p, c);
	}
	return steer(ctx, &p);
}

char _license[] SEC("license") = "GPL";
