/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * wirespan kernel -> userspace event ABI.
 *
 * This header is compiled by clang for BPF and by the C compiler for the agent,
 * so it uses fixed-width __u types only. Rules:
 *   - WS_ABI_VERSION changes whenever a struct below changes layout.
 *   - Event type numbers are append-only; a number is never reused.
 *   - Every record in the ring buffer starts with struct ws_event_hdr.
 *
 * Ring-buffer record layout (all little-endian, natural alignment):
 *
 *   +---------------------------- struct ws_event_hdr (16 B) ----------------+
 *   | abi_version u16 | type u16 | size u32 (whole record) | ts_ns u64       |
 *   +-------------------------------------------------------------------------+
 *   | type-specific body: ws_conn_open / ws_conn_close / ws_data / ws_proc... |
 *   +-------------------------------------------------------------------------+
 *   | WS_EV_DATA only: cap_len payload bytes, then padding to 8               |
 *   +-------------------------------------------------------------------------+
 *
 * A data record describes one syscall that moved syscall_len bytes at stream
 * offset `offset` in direction `dir`. Its first cap_len bytes are attached;
 * the remaining syscall_len - cap_len bytes are a gap whose reason is given in
 * `flags` (WS_DF_TRUNC_*). Offsets advance by syscall_len even when the record
 * itself is lost, so userspace sees a lost record as a hole in the offsets,
 * and the close record carries the final offsets of both directions.
 */
#ifndef WIRESPAN_ABI_H
#define WIRESPAN_ABI_H

#ifdef __BPF__
/* vmlinux.h provides __u8 .. __u64 */
#else
#include <linux/types.h>
#endif

#define WS_ABI_VERSION 2 /* 2: ws_data.go_g, the ws_go_event record */

/* Largest per-syscall payload a data record can carry (config may lower it). */
#define WS_MAX_CAPTURE 32768u
/* Default per-syscall payload cap. */
#define WS_DEFAULT_CAPTURE 32768u
/* iovecs of one writev/readv/sendmsg/recvmsg that are copied; beyond is a gap. */
#define WS_MAX_IOV 16
/* Records one syscall's bytes may be split into (each up to the cap);
 * the default copies up to 8 x 32 KiB = 256 KiB per syscall. */
#define WS_MAX_RECORDS 16u
#define WS_DEFAULT_RECORDS 8u
/* Bytes of a syscall's buffer that protocol inference looks at. */
#define WS_INFER_PREFIX 128
/* Syscalls an unclassified pre-existing connection gets before we stop looking. */
#define WS_INFER_MAX_TRIES 32
/* Length of a task comm. */
#define WS_COMM_LEN 16
/* Entries in the kernel connection map. */
#define WS_MAX_CONNS 65536
/* Entries in each filter map (ports, pids, cgroups). */
#define WS_MAX_FILTER 64

/* Event types: append-only. */
enum ws_event_type {
	WS_EV_CONN_OPEN = 1,  /* struct ws_conn_open */
	WS_EV_CONN_CLOSE = 2, /* struct ws_conn_close */
	WS_EV_DATA = 3,	      /* struct ws_data + payload */
	WS_EV_PROC_EXIT = 4,  /* struct ws_proc_exit */
	WS_EV_GO = 5,	      /* struct ws_go_event */
	WS_EV_TYPE_MAX,
};

enum ws_dir {
	WS_DIR_EGRESS = 0,  /* bytes the process wrote */
	WS_DIR_INGRESS = 1, /* bytes the process read */
};

enum ws_role {
	WS_ROLE_UNKNOWN = 0,
	WS_ROLE_CLIENT = 1, /* the process connected */
	WS_ROLE_SERVER = 2, /* the process accepted */
};

/* Protocols; append-only. */
enum ws_proto {
	WS_PROTO_UNKNOWN = 0, /* not classified yet */
	WS_PROTO_NATS = 1,
	WS_PROTO_HTTP = 2,
	WS_PROTO_OTHER = 3, /* looked at and given up on: never streamed */
	/* PROTOCOL-ADD: new protocol ids go here, and in bpf/lib/infer.h */
};

/* Which syscall produced a data record (for debugging and tests). */
enum ws_syscall {
	WS_SYS_WRITE = 1,
	WS_SYS_WRITEV = 2,
	WS_SYS_SENDTO = 3,
	WS_SYS_SENDMSG = 4,
	WS_SYS_READ = 5,
	WS_SYS_READV = 6,
	WS_SYS_RECVFROM = 7,
	WS_SYS_RECVMSG = 8,
};

/* ws_data.flags */
#define WS_DF_TRUNC_CAP \
	(1u << 0) /* bytes past the per-syscall cap were not copied */
#define WS_DF_TRUNC_IOV (1u << 1) /* iovecs past WS_MAX_IOV were not copied */
#define WS_DF_FAULT (1u << 2)	  /* bpf_probe_read_user failed part way */
#define WS_DF_CLASSIFY (1u << 3)  /* this syscall classified the connection */

/* ws_conn_open.flags */
#define WS_CF_PREEXISTING \
	(1u << 0) /* found on first I/O, not at connect/accept */

/* AF_INET / AF_INET6 as the kernel numbers them. */
#define WS_AF_INET 2
#define WS_AF_INET6 10

/* A connection: one (process, fd) between open and close. gen makes it unique
 * when the fd number is reused. */
struct ws_conn_id {
	__u32 tgid;
	__s32 fd;
	__u64 gen; /* ktime (ns) at which wirespan first saw the connection */
};

struct ws_event_hdr {
	__u16 abi_version; /* WS_ABI_VERSION */
	__u16 type;	   /* enum ws_event_type */
	__u32 size;	   /* bytes of the whole record including this header */
	/* bpf_ktime_get_ns() (CLOCK_MONOTONIC); egress data: the syscall's
	 * enter (when the bytes started to leave), ingress: its exit */
	__u64 ts_ns;
};

/* TCP endpoints; IPv4 addresses are stored as IPv4-mapped IPv6. */
struct ws_tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;  /* host byte order */
	__u16 rport;  /* host byte order */
	__u16 family; /* WS_AF_INET or WS_AF_INET6 as seen on the socket */
	__u16 _pad;
};

struct ws_conn_open {
	struct ws_event_hdr hdr;
	struct ws_conn_id id;
	struct ws_tuple tuple;
	__u64 cgroup_id;
	__u32 tid;
	__u8 role;  /* enum ws_role */
	__u8 flags; /* WS_CF_* */
	__u8 _pad[2];
	char comm[WS_COMM_LEN];
};

struct ws_conn_close {
	struct ws_event_hdr hdr;
	struct ws_conn_id id;
	__u64 bytes
		[2]; /* final stream offsets: [WS_DIR_EGRESS], [WS_DIR_INGRESS] */
	__u32 tid;
	__u8 proto;
	__u8 _pad[3];
};

/* A data record; cap_len payload bytes follow it. */
struct ws_data {
	struct ws_event_hdr hdr;
	struct ws_conn_id id;
	__u64 offset; /* stream offset of the first byte in this direction */
	__u32 syscall_len; /* bytes the syscall moved (its return value) */
	__u32 cap_len;	   /* payload bytes that follow this struct */
	__u32 tid;
	__u8 dir;     /* enum ws_dir */
	__u8 proto;   /* enum ws_proto */
	__u8 flags;   /* WS_DF_* */
	__u8 syscall; /* enum ws_syscall */
	/* Go processes with the runtime probes attached (bpf/gort.bpf.h):
	 * the goroutine (its g, register R14) that made the syscall; else 0 */
	__u64 go_g;
};

struct ws_proc_exit {
	struct ws_event_hdr hdr;
	__u32 tgid;
	__u32 _pad;
};

/*
 * Go runtime evidence: uprobes on the net/http functions of a Go binary
 * (bpf/gort.bpf.h, agent/gort.c) report which goroutine handled which
 * *http.Request. g is the goroutine (R14 in Go's register ABI), req the
 * request's address, valid while the request lives.
 */
#define WS_GO_EV_VERSION 1
enum ws_go_kind {
	/* net/http.(*persistConn).roundTrip: goroutine g (the handler) hands
	 * request req to a connection */
	WS_GO_ROUND_TRIP = 1,
	/* net/http.(*Request).write: goroutine g (the connection's writeLoop)
	 * writes request req */
	WS_GO_REQ_WRITE = 2,
};

struct ws_go_event {
	struct ws_event_hdr hdr;
	__u32 tgid;
	__u32 tid;
	__u64 g;
	__u64 req;
	__u16 version; /* WS_GO_EV_VERSION */
	__u8 kind;     /* enum ws_go_kind */
	__u8 _pad[5];
};

/* Per-CPU kernel counters, indexes of the `counters` array map. Append-only. */
enum ws_counter {
	WS_C_EVENTS = 0,     /* records submitted to the ring buffer */
	WS_C_DATA_BYTES,     /* payload bytes submitted */
	WS_C_RB_FULL_EVENTS, /* records lost: ring buffer full */
	WS_C_RB_FULL_BYTES, /* syscall bytes whose record was lost to a full ring buffer */
	WS_C_TRUNC_CAP_BYTES, /* bytes past the per-syscall cap */
	WS_C_TRUNC_IOV_BYTES, /* bytes in iovecs past WS_MAX_IOV */
	WS_C_FAULT_BYTES,     /* bytes not copied because a user read faulted */
	WS_C_FAULT_EVENTS,    /* syscalls with a user read fault */
	WS_C_CONN_MAP_FULL,   /* connections not tracked: conn map full */
	WS_C_ARGS_MAP_FULL,   /* syscalls not traced: in-flight args map full */
	WS_C_CONN_OPENED,     /* TCP connections tracked (not filtered) */
	WS_C_CONN_CLOSED,     /* classified connections closed */
	WS_C_CLASSIFIED_NATS, /* connections classified as NATS */
	WS_C_CLASSIFIED_HTTP, /* connections classified as HTTP */
	WS_C_CLASSIFY_GIVEUP, /* connections given up on (not NATS or HTTP) */
	WS_C_UNCLASSIFIED_BYTES, /* bytes moved on connections not (yet) classified */
	WS_C_FILTERED,	     /* syscalls skipped by pid/port/cgroup filters */
	WS_C_PREEXISTING,    /* connections found on first I/O */
	WS_C_PROC_EXIT_LOST, /* process-exit records lost to a full ring buffer */
	WS_C_OPEN_LOST,	     /* open records lost to a full ring buffer */
	WS_C_CLOSE_LOST,     /* close records lost to a full ring buffer */
	WS_C_LISTEN_MAP_FULL, /* listening ports not remembered: map full */
	WS_C_GO_LOST,  /* Go runtime records lost to a full ring buffer */
	WS_C_GO_FAULT, /* Go runtime probes whose user read failed */
	WS_C_MAX,
};

/* Names for WS_C_*, kept next to the enum so they cannot drift. */
#define WS_COUNTER_NAMES                                                    \
	"events", "data_bytes", "rb_full_events", "rb_full_bytes",          \
		"trunc_cap_bytes", "trunc_iov_bytes", "fault_bytes",        \
		"fault_events", "conn_map_full", "args_map_full",           \
		"conn_opened", "conn_closed", "classified_nats",            \
		"classified_http", "classify_giveup", "unclassified_bytes", \
		"filtered", "preexisting", "proc_exit_lost", "open_lost",   \
		"close_lost", "listen_map_full", "go_lost", "go_fault"

#endif /* WIRESPAN_ABI_H */
