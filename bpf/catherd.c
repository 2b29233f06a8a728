//go:build ignore

/* catherd's XDP entry program. Every frame on the edge NIC comes through
 * here: traffic for a declared L4 service (VIP, port, protocol) is steered
 * to a backend by L2 direct server return; everything else goes on to the
 * kernel untouched. Behaviour is driven by the maps in maps.h, which the
 * control plane in userspace/xdp fills. */

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

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
		 * consistently; anyone else's is the kernel's business. */
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
	return steer(ctx, &p);
}

char _license[] SEC("license") = "GPL";
