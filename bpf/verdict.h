/* Verdict counting: every packet the program sees is counted under one
 * reason (consts.h), in a per-CPU array the control plane sums. */
#pragma once

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "maps.h"

static __always_inline void count_verdict(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&verdicts, &reason);
	if (n)
		*n += 1;
}
