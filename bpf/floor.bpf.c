// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor of a syscall-tracepoint design: empty programs on exactly the
 * tracepoints wirespan.bpf.c attaches, with the same program names. The
 * benchmark (tests/bench/run.sh part 1, tests/bench/bpf_floor.c) runs its
 * syscall loads under these and reports wirespan's cost as a multiple of
 * theirs. Never loaded by the agent.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EMPTY(sec, name)       \
	SEC("tracepoint/" sec) \
	int name(void *ctx)    \
	{                      \
		(void)ctx;     \
		return 0;      \
	}
#define PAIR(sys)                                         \
	EMPTY("syscalls/sys_enter_" #sys, tp_enter_##sys) \
	EMPTY("syscalls/sys_exit_" #sys, tp_exit_##sys)

PAIR(write)
PAIR(writev)
PAIR(sendto)
PAIR(sendmsg)
PAIR(read)
PAIR(readv)
PAIR(recvfrom)
PAIR(recvmsg)
PAIR(connect)
EMPTY("syscalls/sys_exit_accept", tp_exit_accept)
EMPTY("syscalls/sys_exit_accept4", tp_exit_accept4)
EMPTY("syscalls/sys_enter_close", tp_enter_close)
EMPTY("syscalls/sys_enter_listen", tp_enter_listen)
EMPTY("sched/sched_process_exit", tp_sched_process_exit)
