/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Go runtime evidence (included by wirespan.bpf.c after its maps and
 * helpers): which goroutine does what inside a Go gateway.
 *
 * Go 1.17+ on amd64 keeps the running goroutine's g in R14 in Go code
 * (ABIInternal), and Go makes its syscalls from Go code (no libc), so the
 * user R14 saved at syscall entry names the goroutine that read or wrote
 * the bytes. Function arguments are in RAX, RBX, RCX... (receiver first).
 *
 *   go_round_trip  uprobe on net/http.(*persistConn).roundTrip(pc, treq):
 *                  the handler goroutine (R14) sends treq.Request (the
 *                  first word of *RBX)
 *   go_req_write   uprobe on net/http.(*Request).write(r, ...): the
 *                  connection's writeLoop goroutine (R14) writes r (RAX)
 *
 * Entry probes only: a uretprobe rewrites the return address on the
 * goroutine stack, which Go's stack copying and tracebacks do not expect.
 * The agent attaches them per binary (agent/gort.c) and puts the process
 * in go_procs; only then do its data records carry the goroutine (go_g).
 */
#ifndef WIRESPAN_GORT_BPF_H
#define WIRESPAN_GORT_BPF_H

/* Processes whose binary has the Go probes attached (key tgid). */
#define WS_GO_MAX_PROCS 1024

/* Set by the loader when tracepoints may read a task's user registers
 * (bpf_get_current_task_btf + bpf_task_pt_regs). */
const volatile bool go_on = false;

/* Go processes whose data records carry the goroutine (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_GO_MAX_PROCS);
	__type(key, __u32);
	__type(value, __u8);
} go_procs SEC(".maps");

/* The goroutine of the current syscall in a Go process, else 0. */
static __always_inline __u64 go_g(__u32 tgid)
{
	struct pt_regs *regs;

	if (!go_on || !bpf_map_lookup_elem(&go_procs, &tgid))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return BPF_CORE_READ(regs, r14);
}

static __always_inline int go_emit(__u8 kind, __u64 g, __u64 req)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ws_go_event *ev;

	if (pid_filtered(pid_tgid >> 32))
		return 0;
	ev = bpf_ringbuf_reserve(&rb, sizeof(*ev), 0);
	if (!ev) {
		count(WS_C_GO_LOST, 1);
		return 0;
	}
	ev->hdr.abi_version = WS_ABI_VERSION;
	ev->hdr.type = WS_EV_GO;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->tgid = pid_tgid >> 32;
	ev->tid = (__u32)pid_tgid;
	ev->g = g;
	ev->req = req;
	ev->version = WS_GO_EV_VERSION;
	ev->kind = kind;
	__builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
	bpf_ringbuf_submit(ev, rb_flags());
	return 0;
}

SEC("uprobe")
int go_round_trip(struct pt_regs *ctx)
{
	__u64 req = 0;

	/* treq *transportRequest: its first field is the *Request */
	if (bpf_probe_read_user(&req, sizeof(req), (void *)ctx->bx)) {
		count(WS_C_GO_FAULT, 1);
		return 0;
	}
	return go_emit(WS_GO_ROUND_TRIP, ctx->r14, req);
}

SEC("uprobe")
int go_req_write(struct pt_regs *ctx)
{
	return go_emit(WS_GO_REQ_WRITE, ctx->r14, ctx->ax);
}

#endif /* WIRESPAN_GORT_BPF_H */
