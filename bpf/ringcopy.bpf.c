// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * What moving B bytes costs one BPF program on this machine, with nothing
 * else in the program. tests/bench/ring_copy.c calls getppid() in a tight
 * loop under these programs and reads the kernel's bpf_stats. The mode (set
 * before load) picks what the program does:
 *   0 ring       a per-CPU buffer -> the BPF ring buffer (bpf_ringbuf_output)
 *   1 user+ring  user memory -> per-CPU buffer -> ring buffer: the capture's
 *                data path
 *   2 dyn        user memory straight into a reserved ring record (dynptr
 *                kfunc, 6.16+): the one-copy alternative
 *   3 user       user memory -> per-CPU buffer only
 *   4 hot        per-CPU buffer -> per-CPU buffer (bpf_probe_read_kernel)
 *   5 none       nothing: the floor of a tracepoint program
 * Part 1 of tests/bench/run.sh sets the captured 4 KiB write against these.
 * Never loaded by the agent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define RC_MAXB 16384

const volatile __u32 mode = 5;
const volatile __u32 tgid = 0;
const volatile __u32 len = 4096;
const volatile __u64 ubuf = 0;
const volatile __u64 wakeup_bytes = 1 << 20;

struct rc_buf {
	__u8 b[2 * RC_MAXB];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct rc_buf);
} scratch SEC(".maps");

extern int
bpf_probe_read_user_dynptr(struct bpf_dynptr *dptr, __u32 off, __u32 size,
			   const void *unsafe_ptr__ign) __ksym __weak;

/* The capture's wakeup rule (wirespan.bpf.c, rb_flags). */
static __always_inline __u64 rc_flags(void)
{
	return bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

static __always_inline bool rc_ours(void)
{
	return (__u32)(bpf_get_current_pid_tgid() >> 32) == tgid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int ringcopy(void *ctx)
{
	__u32 k0 = 0, k1 = 1;
	struct rc_buf *s, *d;
	__u64 n = len;

	(void)ctx;
	if (!rc_ours())
		return 0;
	s = bpf_map_lookup_elem(&scratch, &k0);
	d = bpf_map_lookup_elem(&scratch, &k1);
	if (!s || !d)
		return 0;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(RC_MAXB - 1));
	switch (mode) {
	case 0:
		bpf_ringbuf_output(&rb, s->b, n, rc_flags());
		break;
	case 1:
		bpf_probe_read_user(s->b, n, (void *)ubuf);
		bpf_ringbuf_output(&rb, s->b, n, rc_flags());
		break;
	case 3:
		bpf_probe_read_user(s->b, n, (void *)ubuf);
		break;
	case 4:
		bpf_probe_read_kernel(d->b, n, s->b);
		break;
	default:
		break;
	}
	return 0;
}

/* Mode 2, a program of its own: kernels without the kfunc refuse any
 * program that names it, so the loader loads this one only when asked. */
SEC("tracepoint/syscalls/sys_enter_getppid")
int ringcopy_dyn(void *ctx)
{
	struct bpf_dynptr dp;
	__u64 n = len;

	(void)ctx;
	if (!rc_ours())
		return 0;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(RC_MAXB - 1));
	if (bpf_ringbuf_reserve_dynptr(&rb, n, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, 0);
		return 0;
	}
	bpf_probe_read_user_dynptr(&dp, 0, n, (void *)ubuf);
	bpf_ringbuf_submit_dynptr(&dp, rc_flags());
	return 0;
}
