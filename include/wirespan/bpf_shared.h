/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map key/value layouts shared by the BPF program and the loader (which reads
 * and sweeps the conns map). Not part of the ring-buffer ABI, but versioned
 * with it: change WS_ABI_VERSION when these change.
 */
#ifndef WIRESPAN_BPF_SHARED_H
#define WIRESPAN_BPF_SHARED_H

#include "wirespan/abi.h"

/* Data syscalls in flight at once (enter seen, exit not yet). */
#define WS_MAX_INFLIGHT 16384
/* Listening ports remembered for role inference. */
#define WS_MAX_LISTEN 4096

struct ws_fd_key {
	__u32 tgid;
	__s32 fd;
};

/* ws_conn_state.flags */
#define WS_SF_IGNORED (1u << 0)	    /* not TCP, or filtered out: never stream */
#define WS_SF_PREEXISTING (1u << 1) /* found mid-stream on first I/O */

struct ws_conn_state {
	struct ws_conn_id id;
	__u64 offset[2]; /* bytes moved so far, by enum ws_dir */
	__u16 lport;
	__u16 rport;
	__u8 proto; /* enum ws_proto */
	__u8 role;  /* enum ws_role */
	__u8 tries; /* inference attempts so far */
	__u8 flags; /* WS_SF_* */
};

/* The value of the per-CPU `counters` map. */
struct ws_counters {
	__u64 v[WS_C_MAX];
};

/* What sys_enter saves for sys_exit. */
struct ws_args {
	__u64 buf;   /* buffer, iovec array or msghdr (user pointer) */
	__u64 cnt;   /* iovec count for readv/writev */
	__u64 start; /* ktime at enter (writes only: their bytes left then) */
	__s32 fd;
	__u8 sys;  /* enum ws_syscall */
	__u8 live; /* task storage: saved and not yet taken */
	__u8 _pad[2];
	/* task storage only: the socket this thread last found not worth
	 * following (not TCP, filtered, or neither NATS nor HTTP), by its
	 * struct file and inode number; its next syscalls skip the lookup */
	__u64 skip_file;
	__u64 skip_ino;
};

/* Per-CPU scratch: a data record under construction and the inference
 * window. A copy starts below WS_MAX_CAPTURE and is at most WS_MAX_CAPTURE
 * long; data is three times that because the verifier only sees the masks
 * (< MAX, < 2 * MAX) that prove it. */
struct ws_scratch {
	__u64 rem;     /* bytes of the syscall not walked yet */
	__u32 cap;     /* bytes this record may carry */
	__u32 iov_i;   /* the buffer being copied */
	__u64 iov_off; /* bytes of it already copied */
	struct ws_data ev;
	__u8 data[3 * WS_MAX_CAPTURE];
	__u8 infer[2 * WS_INFER_PREFIX];
};

#endif /* WIRESPAN_BPF_SHARED_H */
