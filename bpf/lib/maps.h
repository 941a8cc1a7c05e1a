/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Every map of the capture program, each with the one line that says why. */
#ifndef WIRESPAN_MAPS_H
#define WIRESPAN_MAPS_H

#include "wirespan/abi.h"
#include "wirespan/bpf_shared.h"

/* Records to userspace. Size is set by the loader (--ringbuf-size). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 * 1024 * 1024); /* the loader sets the size */
} rb SEC(".maps");

/* Tracked sockets by (tgid, fd): TCP connections, plus ignored non-TCP sockets
 * so that they are not re-examined on every syscall. Deleted at close; entries of
 * dead processes are swept by userspace. Full -> WS_C_CONN_MAP_FULL. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_CONNS);
	__type(key, struct ws_fd_key);
	__type(value, struct ws_conn_state);
} conns SEC(".maps");

/* Arguments of a data syscall between its enter and exit, by pid_tgid.
 * Full -> WS_C_ARGS_MAP_FULL. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_INFLIGHT);
	__type(key, __u64);
	__type(value, struct ws_args);
} args SEC(".maps");

/* The same, in task-local storage, where the kernel allows it
 * (use_task_storage); the loader does not create it otherwise. */
struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ws_args);
} args_task SEC(".maps");

/* Per-CPU scratch for a data record (too big for the 512-byte stack). An
 * ARRAY indexed by CPU because per-CPU values are limited to 32 KiB; the
 * loader sets max_entries to the number of possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ws_scratch);
} scratch SEC(".maps");

/* Per-CPU loss and activity counters (enum ws_counter), one value so that a
 * data record costs one lookup however many counters it touches. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ws_counters);
} counters SEC(".maps");

/* Local ports that have a listener: a pre-existing socket on one is a server.
 * Filled by the loader from /proc/net/tcp{,6} and by listen(); never emptied
 * (a port that stops listening stays). Full -> WS_C_LISTEN_MAP_FULL. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_LISTEN);
	__type(key, __u16);
	__type(value, __u8);
} listen_ports SEC(".maps");

/* Filters, read-only after load; consulted only when the matching
 * filter_*_on rodata flag is set. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_FILTER);
	__type(key, __u16);
	__type(value, __u8);
} filter_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_FILTER);
	__type(key, __u32);
	__type(value, __u8);
} filter_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, WS_MAX_FILTER);
	__type(key, __u64);
	__type(value, __u8);
} filter_cgroups SEC(".maps");

#endif /* WIRESPAN_MAPS_H */
