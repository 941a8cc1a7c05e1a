// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * wirespan capture: syscall tracepoints that follow every TCP connection of
 * the host, classify it as NATS or HTTP/1.x from its first bytes, and stream
 * the bytes of classified connections to userspace with byte offsets.
 *
 * Enter handlers decide whether a syscall is interesting (a tracked, not
 * ignored socket) and save its arguments; exit handlers learn how many bytes
 * actually moved (the return value) and copy them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "wirespan/abi.h"
#include "wirespan/bpf_shared.h"
#include "lib/maps.h"
#include "lib/infer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Read-only configuration, set by the loader before load. */
const volatile __u32 self_tgid = 0; /* the agent: never traced */
const volatile __u32 max_capture = WS_DEFAULT_CAPTURE;
const volatile __u32 max_records = WS_DEFAULT_RECORDS; /* per syscall */
const volatile __u64 wakeup_bytes = 256 * 1024; /* wake the reader past this */
const volatile bool filter_pids_on = false;
const volatile bool filter_ports_on = false;
const volatile bool filter_cgroups_on = false;
/* Arguments live in task-local storage where the kernel allows it (5.11+
 * for the map, later for tracepoint programs): the exit of a syscall we did
 * not save anything for then costs no hash lookup. */
const volatile bool use_task_storage = false;

#define EINPROGRESS 115
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define SOCK_STREAM 1
#define IPPROTO_TCP 6

static __always_inline struct ws_counters *counters_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

static __always_inline void count(__u32 idx, __u64 n)
{
	struct ws_counters *c = counters_get();

	/* per-CPU: no atomics needed */
	if (c && idx < WS_C_MAX)
		c->v[idx] += n;
}

static __always_inline __u64 rb_flags(void)
{
	return bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
		       : BPF_RB_NO_WAKEUP;
}

/*
 * &socket_file_ops, learned from the first socket this program finds by its
 * inode mode: every socket's file has these file operations (and only
 * sockets' files), so from then on one read of f_op tells a socket from any
 * other file, instead of two (f_inode, then i_mode).
 */
static __u64 sock_fops;

/*
 * bpf_rdonly_cast (a kfunc, Linux 6.2+) turns a kernel address into a
 * pointer the program may load through directly: one instruction instead of
 * a bpf_probe_read_kernel call per step of the fd walk that every data
 * syscall's enter makes. Kernels 5.13-6.1 reject a program that so much as
 * names a kfunc they lack, even in dead code, so the enter programs come
 * twice: tp_enter_* use it, tpr_enter_* read with helpers, and the loader
 * loads one set (agent/loader.c, have_rdonly_cast).
 */
extern void *bpf_rdonly_cast(const void *obj__ign,
			     __u32 btf_id__k) __ksym __weak;

/* The struct file behind fd in the current task, or NULL. cast: read the
 * fd slot with bpf_rdonly_cast (else a helper). */
static __always_inline struct file *fd_file(int fd, bool cast,
					    struct task_struct *cur)
{
	struct file **fds;
	struct file *f = NULL;

	if (fd < 0)
		return NULL;
	if (use_task_storage) {
		/* Kernels that give tracepoints task storage also give a
		 * BTF-typed current task: plain loads instead of helper
		 * calls for the first steps of the walk. */
		struct task_struct *t = cur ? cur : bpf_get_current_task_btf();
		struct fdtable *fdt = t->files->fdt;

		if (!fdt || (unsigned int)fd >= fdt->max_fds)
			return NULL;
		fds = fdt->fd;
	} else {
		struct task_struct *task =
			(struct task_struct *)bpf_get_current_task();
		struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);

		if (!fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
			return NULL;
		fds = BPF_CORE_READ(fdt, fd);
	}
	if (cast) {
		/* The slot holds one pointer: read it as the first member
		 * of any kernel type that starts with one. */
		struct list_head *slot = bpf_rdonly_cast(
			&fds[fd], bpf_core_type_id_kernel(struct list_head));

		return (struct file *)slot->next;
	}
	if (bpf_core_read(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

/* Is f (not NULL) a socket's file? cast: as for fd_file. */
static __always_inline bool file_is_sock(struct file *f, bool cast)
{
	__u64 fops, known = sock_fops;
	umode_t mode;

	if (cast)
		fops = (__u64)((struct file *)bpf_rdonly_cast(
				       f, bpf_core_type_id_kernel(struct file)))
			       ->f_op;
	else
		fops = (__u64)BPF_CORE_READ(f, f_op);
	if (known)
		return fops == known;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return false;
	/* An O_PATH file of a socket inode has no socket (and other
	 * f_op): learn only from a file that has one. */
	if (fops && BPF_CORE_READ(f, private_data))
		sock_fops = fops;
	return true;
}

/* The inode number of f (not NULL). cast: as for fd_file. */
static __always_inline __u64 file_ino(struct file *f, bool cast)
{
	if (cast)
		return ((struct file *)bpf_rdonly_cast(
				f, bpf_core_type_id_kernel(struct file)))
			->f_inode->i_ino;
	return BPF_CORE_READ(f, f_inode, i_ino);
}

/* The struct sock of a socket's file. */
static __always_inline struct sock *file_sk(struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);

	return sock ? BPF_CORE_READ(sock, sk) : NULL;
}

/* The struct sock behind fd in the current task, or NULL if fd is not a socket. */
static __always_inline struct sock *fd_to_sock(int fd)
{
	struct file *f = fd_file(fd, false, NULL);

	return f && file_is_sock(f, false) ? file_sk(f) : NULL;
}

/* Is sk a TCP socket over IPv4 or IPv6? */
static __always_inline bool sock_is_tcp(struct sock *sk)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	__u16 type, protocol;

	if (family != WS_AF_INET && family != WS_AF_INET6)
		return false;
	/* sk_type/sk_protocol were bitfields before 5.6: read them CO-RE-safely. */
	type = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_type);
	protocol = BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol);
	return type == SOCK_STREAM && protocol == IPPROTO_TCP;
}

static __always_inline void sock_tuple(struct sock *sk, struct ws_tuple *t)
{
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	t->family = family;
	t->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == WS_AF_INET) {
		/* IPv4-mapped IPv6: ::ffff:a.b.c.d */
		__u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);

		__builtin_memset(t->laddr, 0, 16);
		__builtin_memset(t->raddr, 0, 16);
		t->laddr[10] = t->laddr[11] = 0xff;
		t->raddr[10] = t->raddr[11] = 0xff;
		__builtin_memcpy(&t->laddr[12], &l, 4);
		__builtin_memcpy(&t->raddr[12], &r, 4);
	} else {
		BPF_CORE_READ_INTO(&t->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&t->raddr, sk, __sk_common.skc_v6_daddr);
	}
}

static __always_inline bool pid_filtered(__u32 tgid)
{
	__u64 cg;

	if (tgid == self_tgid)
		return true;
	if (filter_pids_on && !bpf_map_lookup_elem(&filter_pids, &tgid))
		return true;
	if (filter_cgroups_on) {
		cg = bpf_get_current_cgroup_id();
		if (!bpf_map_lookup_elem(&filter_cgroups, &cg))
			return true;
	}
	return false;
}

static __always_inline bool port_filtered(__u16 lport, __u16 rport)
{
	if (!filter_ports_on)
		return false;
	return !bpf_map_lookup_elem(&filter_ports, &lport) &&
	       !bpf_map_lookup_elem(&filter_ports, &rport);
}

#include "gort.bpf.h"

/* Only classified connections were announced, so only they are closed. */
static __always_inline bool announced(const struct ws_conn_state *cs)
{
	return cs->proto == WS_PROTO_NATS || cs->proto == WS_PROTO_HTTP;
}

static __always_inline void emit_close(struct ws_conn_state *cs)
{
	struct ws_conn_close *ev;

	if (!announced(cs))
		return;
	count(WS_C_CONN_CLOSED, 1);
	ev = bpf_ringbuf_reserve(&rb, sizeof(*ev), 0);
	if (!ev) {
		count(WS_C_CLOSE_LOST, 1);
		return;
	}
	ev->hdr.abi_version = WS_ABI_VERSION;
	ev->hdr.type = WS_EV_CONN_CLOSE;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->id = cs->id;
	ev->bytes[0] = cs->offset[0];
	ev->bytes[1] = cs->offset[1];
	ev->tid = (__u32)bpf_get_current_pid_tgid();
	ev->proto = cs->proto;
	__builtin_memset(ev->_pad, 0, sizeof(ev->_pad));
	bpf_ringbuf_submit(ev, rb_flags());
}

/*
 * Announce a connection that was just classified. Opens are not sent at
 * connect/accept time: a connection that never turns out to be NATS or HTTP
 * costs no ring-buffer bytes at all.
 */
static __always_inline void emit_open(const struct ws_conn_state *cs)
{
	struct ws_conn_open *ev;
	struct sock *sk;

	ev = bpf_ringbuf_reserve(&rb, sizeof(*ev), 0);
	if (!ev) {
		count(WS_C_OPEN_LOST, 1);
		return;
	}
	__builtin_memset(&ev->tuple, 0, sizeof(ev->tuple));
	sk = fd_to_sock(cs->id.fd);
	if (sk)
		sock_tuple(sk, &ev->tuple);
	ev->hdr.abi_version = WS_ABI_VERSION;
	ev->hdr.type = WS_EV_CONN_OPEN;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->id = cs->id;
	ev->cgroup_id = bpf_get_current_cgroup_id();
	ev->tid = (__u32)bpf_get_current_pid_tgid();
	ev->role = cs->role;
	ev->flags = (cs->flags & WS_SF_PREEXISTING) ? WS_CF_PREEXISTING : 0;
	ev->_pad[0] = ev->_pad[1] = 0;
	bpf_get_current_comm(ev->comm, sizeof(ev->comm));
	/* Wake the reader now: it reads the process's identity from /proc
	 * on this record, and a short-lived client may be gone after the
	 * next batch. Opens are rare next to data, so this costs little. */
	bpf_ringbuf_submit(ev, BPF_RB_FORCE_WAKEUP);
}

/*
 * Start tracking fd (which refers to sk). An older entry for the same fd (its
 * close was not seen: dup2, close_range) is closed first. Returns the new
 * state or NULL.
 */
static __always_inline struct ws_conn_state *
conn_open(__u32 tgid, int fd, struct sock *sk, __u8 role, __u8 sflags)
{
	struct ws_fd_key key = {.tgid = tgid, .fd = fd};
	struct ws_conn_state st = {}, *old;
	struct ws_tuple t = {};

	old = bpf_map_lookup_elem(&conns, &key);
	if (old)
		emit_close(old);

	st.id.tgid = tgid;
	st.id.fd = fd;
	st.id.gen = bpf_ktime_get_ns();
	st.role = role;
	st.flags = sflags;
	if (!sk || !sock_is_tcp(sk)) {
		st.flags |= WS_SF_IGNORED;
	} else {
		sock_tuple(sk, &t);
		st.lport = t.lport;
		st.rport = t.rport;
		if (role == WS_ROLE_UNKNOWN)
			st.role = bpf_map_lookup_elem(&listen_ports, &t.lport)
					  ? WS_ROLE_SERVER
					  : WS_ROLE_CLIENT;
		if (port_filtered(t.lport, t.rport)) {
			st.flags |= WS_SF_IGNORED;
			count(WS_C_FILTERED, 1);
		}
	}
	if (bpf_map_update_elem(&conns, &key, &st, BPF_ANY)) {
		count(WS_C_CONN_MAP_FULL, 1);
		return NULL;
	}
	if (!(st.flags & WS_SF_IGNORED)) {
		count(WS_C_CONN_OPENED, 1);
		if (sflags & WS_SF_PREEXISTING)
			count(WS_C_PREEXISTING, 1);
	}
	return bpf_map_lookup_elem(&conns, &key);
}

/* This thread's task storage, created if create; cur: the current task if
 * already at hand. */
static __always_inline struct ws_args *task_args(struct task_struct *cur,
						 bool create)
{
	return bpf_task_storage_get(
		&args_task, cur ? cur : bpf_get_current_task_btf(), 0,
		create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* Keep a syscall's arguments from its enter to its exit; st: this thread's
 * task storage if already looked up. */
static __always_inline void args_save(__u64 pid_tgid, const struct ws_args *a,
				      struct ws_args *st)
{
	if (use_task_storage) {
		if (!st)
			st = task_args(NULL, true);
		if (!st) {
			count(WS_C_ARGS_MAP_FULL, 1);
			return;
		}
		st->buf = a->buf;
		st->cnt = a->cnt;
		st->start = a->start;
		st->fd = a->fd;
		st->sys = a->sys;
		st->live = 1;
		return;
	}
	if (bpf_map_update_elem(&args, &pid_tgid, a, BPF_ANY))
		count(WS_C_ARGS_MAP_FULL, 1);
}

/* The arguments saved at this syscall's enter, if any (and forget them), and
 * the thread's pid_tgid. With task storage, a syscall with nothing saved
 * (most of them) costs two helper calls here, the ids coming from the task
 * only when there is something to do. */
static __always_inline bool args_take(__u64 *pid_tgid, struct ws_args *out)
{
	struct task_struct *cur;
	struct ws_args *st;

	if (use_task_storage) {
		cur = bpf_get_current_task_btf();
		st = bpf_task_storage_get(&args_task, cur, 0, 0);
		if (!st || !st->live)
			return false;
		*out = *st;
		st->live = 0;
		*pid_tgid = (__u64)cur->tgid << 32 | (__u32)cur->pid;
		return true;
	}
	*pid_tgid = bpf_get_current_pid_tgid();
	st = bpf_map_lookup_elem(&args, pid_tgid);
	if (!st)
		return false;
	*out = *st;
	bpf_map_delete_elem(&args, pid_tgid);
	return true;
}

/* ---- data syscalls: enter ---------------------------------------------- */

static __always_inline int data_enter(int fd, __u64 buf, __u64 cnt, __u8 sys,
				      bool cast)
{
	struct task_struct *cur = NULL;
	struct ws_args a = {}, *st = NULL;
	struct ws_conn_state *cs;
	struct ws_fd_key key;
	__u64 pid_tgid, ino = 0;
	struct file *f;
	__u32 tgid;

	/* With a BTF-typed current task, ids and storage come from it by
	 * plain loads: one helper call instead of three. */
	if (use_task_storage) {
		cur = bpf_get_current_task_btf();
		pid_tgid = (__u64)cur->tgid << 32 | (__u32)cur->pid;
	} else {
		pid_tgid = bpf_get_current_pid_tgid();
	}
	tgid = pid_tgid >> 32;
	key.tgid = tgid;
	key.fd = fd;
	if (pid_filtered(tgid))
		return 0;
	/* Is fd a socket at all? Once socket_file_ops is known that is two
	 * reads, cheaper than the hash lookup that files and pipes (most
	 * syscalls of a host) would otherwise pay for a miss. */
	f = fd_file(fd, cast, cur);
	if (!f || !file_is_sock(f, cast))
		return 0;
	if (use_task_storage) {
		/* the socket this thread found not worth following last
		 * time: no map lookup (the inode number tells a new socket
		 * from a struct file reused at the same address) */
		ino = file_ino(f, cast);
		st = task_args(cur, false);
		if (st && st->skip_file == (__u64)f && st->skip_ino == ino)
			return 0;
	}
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs) {
		/* A socket opened before we started (or by a path we do not
		 * hook): adopt it now. */
		cs = conn_open(tgid, fd, file_sk(f), WS_ROLE_UNKNOWN,
			       WS_SF_PREEXISTING);
		if (!cs)
			return 0;
	}
	/* Not TCP, filtered out, or given up on: nothing to do, cheaply. */
	if ((cs->flags & WS_SF_IGNORED) || cs->proto == WS_PROTO_OTHER) {
		if (use_task_storage) {
			if (!st)
				st = task_args(cur, true);
			if (st) {
				st->skip_file = (__u64)f;
				st->skip_ino = ino;
			}
		}
		return 0;
	}
	a.buf = buf;
	a.cnt = cnt;
	a.fd = fd;
	a.sys = sys;
	/* an egress record is stamped when its bytes started to leave; an
	 * ingress one at the exit: reads need no clock here */
	if (sys == WS_SYS_WRITE || sys == WS_SYS_WRITEV ||
	    sys == WS_SYS_SENDTO || sys == WS_SYS_SENDMSG)
		a.start = bpf_ktime_get_ns();
	args_save(pid_tgid, &a, st);
	return 0;
}

/* ---- data syscalls: exit ----------------------------------------------- */

struct iov_src {
	__u64 base;
	__u64 len;
};

static __always_inline bool single_buffer(__u8 sys)
{
	return sys == WS_SYS_WRITE || sys == WS_SYS_READ ||
	       sys == WS_SYS_SENDTO || sys == WS_SYS_RECVFROM;
}

/* Buffer i of the syscall: the one buffer, or iovec i of an array. */
static __always_inline int iov_at(__u8 sys, __u64 buf, __u64 iovp, __u32 i,
				  struct iov_src *out)
{
	struct iovec iov;

	if (single_buffer(sys)) {
		out->base = buf;
		out->len = ~0ULL; /* bounded by the return value */
		return 0;
	}
	if (bpf_probe_read_user(&iov, sizeof(iov),
				(void *)(iovp + i * sizeof(iov))))
		return -1;
	out->base = (__u64)iov.iov_base;
	out->len = iov.iov_len;
	return 0;
}

/*
 * Copy from buffer s->iov_i, at s->iov_off, into the record under
 * construction. The copy state (bytes captured, bytes of the syscall not yet
 * walked, the cap, where in which buffer) lives in the scratch map rather
 * than in registers: the verifier then sees the same state at every
 * iteration and prunes, instead of exploring each one.
 * Returns 0 to go on with the next buffer, 1 to stop (the record is full,
 * the syscall is done, or a fault).
 */
static __always_inline int copy_one(struct ws_scratch *s, __u8 sys, __u64 buf,
				    __u64 iovp)
{
	struct iov_src src;
	__u64 n, room, sz, at, left;

	if (s->rem == 0)
		return 1;
	if (s->ev.cap_len >= s->cap)
		return 1;
	if (iov_at(sys, buf, iovp, s->iov_i, &src) || src.len < s->iov_off) {
		s->ev.flags |= WS_DF_FAULT;
		return 1;
	}
	left = src.len - s->iov_off;
	n = left < s->rem ? left : s->rem;
	room = s->cap - s->ev.cap_len;
	sz = n < room ? n : room;
	at = s->ev.cap_len;
	/* at < MAX and sz <= MAX hold already; the masks never change them
	 * but give the verifier bounds it can use. */
	asm volatile("%0 &= %1" : "+r"(at) : "i"(WS_MAX_CAPTURE - 1));
	asm volatile("%0 &= %1" : "+r"(sz) : "i"(2 * WS_MAX_CAPTURE - 1));
	if (sz && bpf_probe_read_user(&s->data[at], sz,
				      (void *)(src.base + s->iov_off))) {
		s->ev.flags |= WS_DF_FAULT;
		return 1;
	}
	s->ev.cap_len += sz;
	s->rem -= sz;
	if (sz < n) {
		/* the record is full inside this buffer: the next record
		 * goes on from here */
		s->iov_off += sz;
		return 1;
	}
	s->iov_i++;
	s->iov_off = 0;
	return 0;
}

/* Classify an unclassified connection from the syscall's first buffer.
 * Returns the protocol, or WS_PROTO_UNKNOWN (and the caller stops). */
static __always_inline __u8 classify(struct ws_conn_state *cs,
				     struct ws_scratch *s, __u8 sys, __u64 buf,
				     __u64 iovp, __u64 off, __u64 moved)
{
	bool midstream = (cs->flags & WS_SF_PREEXISTING) || off != 0;
	struct iov_src src;
	__u64 n = WS_INFER_PREFIX;
	__u8 proto;

	if (iov_at(sys, buf, iovp, 0, &src))
		return WS_PROTO_UNKNOWN;
	if (src.len < n)
		n = src.len;
	if (moved < n)
		n = moved;
	asm volatile("%0 &= %1" : "+r"(n) : "i"(2 * WS_INFER_PREFIX - 1));
	if (bpf_probe_read_user(s->infer, n, (void *)src.base))
		n = 0;
	proto = ws_infer(s->infer, n, midstream);
	if (proto == WS_PROTO_UNKNOWN) {
		count(WS_C_UNCLASSIFIED_BYTES, moved);
		/* A fresh connection whose first bytes are not ours will never
		 * be; a mid-stream one gets a few more tries. */
		if (!(cs->flags & WS_SF_PREEXISTING) ||
		    ++cs->tries >= WS_INFER_MAX_TRIES) {
			cs->proto = WS_PROTO_OTHER;
			count(WS_C_CLASSIFY_GIVEUP, 1);
		}
		return WS_PROTO_UNKNOWN;
	}
	cs->proto = proto;
	emit_open(cs);
	count(proto == WS_PROTO_NATS ? WS_C_CLASSIFIED_NATS
				     : WS_C_CLASSIFIED_HTTP,
	      1);
	return proto;
}

/*
 * Send the record in s: len bytes of the syscall from stream offset off, of
 * which cap_len were copied. rest: the syscall's bytes from off on, lost
 * with this record if the ring buffer is full. 0, or -1 when it was full.
 */
static __always_inline int emit_data(struct ws_scratch *s,
				     const struct ws_conn_state *cs, __u8 dir,
				     __u8 sys, __u8 proto, __u64 pid_tgid,
				     __u64 start, __u64 off, __u64 len,
				     __u64 rest)
{
	struct ws_counters *c;
	__u64 outlen, lost;

	s->ev.hdr.abi_version = WS_ABI_VERSION;
	s->ev.hdr.type = WS_EV_DATA;
	s->ev.hdr.size = sizeof(s->ev) + s->ev.cap_len;
	/* Egress: when the bytes started to leave (the write's enter), so a
	 * reply never seems to precede its request; ingress: when they
	 * arrived (the read's exit). */
	s->ev.hdr.ts_ns = dir == WS_DIR_EGRESS ? start : bpf_ktime_get_ns();
	s->ev.id = cs->id;
	s->ev.offset = off;
	s->ev.syscall_len = len;
	s->ev.tid = (__u32)pid_tgid;
	s->ev.go_g = go_g(pid_tgid >> 32);
	s->ev.dir = dir;
	s->ev.proto = proto;
	s->ev.syscall = sys;
	outlen = sizeof(s->ev) + s->ev.cap_len;
	/* cap_len <= WS_MAX_CAPTURE, so this mask never changes outlen; it
	 * only shows the verifier a bound inside the scratch value. */
	asm volatile("%0 &= %1" : "+r"(outlen) : "i"(2 * WS_MAX_CAPTURE - 1));
	c = counters_get();
	if (bpf_ringbuf_output(&rb, &s->ev, outlen, rb_flags())) {
		/* The rest of the syscall is lost, tail included: one
		 * reason. */
		if (c) {
			c->v[WS_C_RB_FULL_EVENTS]++;
			c->v[WS_C_RB_FULL_BYTES] += rest;
		}
		return -1;
	}
	if (!c)
		return 0;
	c->v[WS_C_EVENTS]++;
	c->v[WS_C_DATA_BYTES] += s->ev.cap_len;
	lost = len - s->ev.cap_len;
	if (lost) {
		if (s->ev.flags & WS_DF_FAULT) {
			c->v[WS_C_FAULT_EVENTS]++;
			c->v[WS_C_FAULT_BYTES] += lost;
		} else if (s->ev.flags & WS_DF_TRUNC_IOV) {
			c->v[WS_C_TRUNC_IOV_BYTES] += lost;
		} else {
			c->v[WS_C_TRUNC_CAP_BYTES] += lost;
		}
	}
	return 0;
}

static __always_inline int data_exit(long ret, __u8 dir, __u8 sys)
{
	__u64 off, iovp = 0, iovcnt = 1, moved, start, pid_tgid;
	__u32 cpu, i, r;
	struct ws_conn_state *cs;
	struct ws_scratch *s;
	struct ws_fd_key key;
	struct ws_args *ap, a;
	__u64 buf;
	__u8 proto, flags = 0;

	if (!args_take(&pid_tgid, &a))
		return 0;
	ap = &a;
	buf = ap->buf;
	start = ap->start;
	iovcnt = ap->cnt;
	key.tgid = pid_tgid >> 32;
	key.fd = ap->fd;
	if (ret <= 0)
		return 0;
	cs = bpf_map_lookup_elem(&conns, &key);
	if (!cs || (cs->flags & WS_SF_IGNORED))
		return 0;

	moved = (__u64)ret;
	off = __sync_fetch_and_add(&cs->offset[dir], moved);
	proto = cs->proto;
	if (proto == WS_PROTO_OTHER) {
		count(WS_C_UNCLASSIFIED_BYTES, moved);
		return 0;
	}

	/* Where the bytes are: one buffer, an iovec array, or a msghdr's. */
	if (sys == WS_SYS_WRITEV || sys == WS_SYS_READV) {
		iovp = buf;
	} else if (sys == WS_SYS_SENDMSG || sys == WS_SYS_RECVMSG) {
		struct user_msghdr mh;

		if (bpf_probe_read_user(&mh, sizeof(mh), (void *)buf)) {
			count(WS_C_FAULT_EVENTS, 1);
			count(WS_C_FAULT_BYTES, moved);
			return 0;
		}
		iovp = (__u64)mh.msg_iov;
		iovcnt = mh.msg_iovlen;
	} else {
		iovcnt = 1;
	}

	cpu = bpf_get_smp_processor_id();
	s = bpf_map_lookup_elem(&scratch, &cpu);
	if (!s)
		return 0;
	if (proto == WS_PROTO_UNKNOWN) {
		proto = classify(cs, s, sys, buf, iovp, off, moved);
		if (proto == WS_PROTO_UNKNOWN)
			return 0;
		flags |= WS_DF_CLASSIFY;
	}

	/* Copy what moved, buffer by buffer, into records of up to the cap
	 * each, at most max_records of them; what is left is a counted gap
	 * carried by the last record. */
	s->rem = moved;
	s->cap = max_capture < WS_MAX_CAPTURE ? max_capture : WS_MAX_CAPTURE;
	s->iov_i = 0;
	s->iov_off = 0;
	for (r = 0; r < WS_MAX_RECORDS; r++) {
		__u64 start_rem = s->rem, done = moved - s->rem, len;
		bool last = r + 1 >= max_records;

		s->ev.cap_len = 0;
		s->ev.flags = r == 0 ? flags : 0;
		for (i = 0; i < (single_buffer(sys) ? 1 : WS_MAX_IOV); i++) {
			if (s->iov_i >= iovcnt || s->iov_i >= WS_MAX_IOV ||
			    copy_one(s, sys, buf, iovp))
				break;
		}
		/* Not the last record, the syscall not walked to its end
		 * only because this record is full: another record follows
		 * and this one covers exactly what it carries. */
		if (!last && s->rem && s->ev.cap_len == s->cap &&
		    !(s->ev.flags & WS_DF_FAULT)) {
			len = s->ev.cap_len;
		} else {
			len = start_rem;
			if (s->rem && !(s->ev.flags & WS_DF_FAULT)) {
				if (s->ev.cap_len >= s->cap)
					s->ev.flags |= WS_DF_TRUNC_CAP;
				else if (s->iov_i >= WS_MAX_IOV ||
					 s->iov_i >= iovcnt)
					s->ev.flags |= s->iov_i >= WS_MAX_IOV
							       ? WS_DF_TRUNC_IOV
							       : WS_DF_FAULT;
				else
					s->ev.flags |= WS_DF_FAULT;
			}
		}
		if (emit_data(s, cs, dir, sys, proto, pid_tgid, start,
			      off + done, len, moved - done))
			break;
		if (len == start_rem)
			break;
	}
	return 0;
}

/* ---- tracepoints --------------------------------------------------------- */

#define ENTER(name, sys, bufarg, cntarg)                                \
	SEC("tracepoint/syscalls/sys_enter_" #name)                     \
	int tp_enter_##name(struct trace_event_raw_sys_enter *ctx)      \
	{                                                               \
		return data_enter((int)ctx->args[0], ctx->args[bufarg], \
				  cntarg, sys, true);                   \
	}                                                               \
	SEC("tracepoint/syscalls/sys_enter_" #name)                     \
	int tpr_enter_##name(struct trace_event_raw_sys_enter *ctx)     \
	{                                                               \
		return data_enter((int)ctx->args[0], ctx->args[bufarg], \
				  cntarg, sys, false);                  \
	}
#define EXIT(name, sys, dir)                                     \
	SEC("tracepoint/syscalls/sys_exit_" #name)               \
	int tp_exit_##name(struct trace_event_raw_sys_exit *ctx) \
	{                                                        \
		return data_exit(ctx->ret, dir, sys);            \
	}

ENTER(write, WS_SYS_WRITE, 1, 0)
EXIT(write, WS_SYS_WRITE, WS_DIR_EGRESS)
ENTER(writev, WS_SYS_WRITEV, 1, ctx->args[2])
EXIT(writev, WS_SYS_WRITEV, WS_DIR_EGRESS)
ENTER(sendto, WS_SYS_SENDTO, 1, 0)
EXIT(sendto, WS_SYS_SENDTO, WS_DIR_EGRESS)
ENTER(sendmsg, WS_SYS_SENDMSG, 1, 0)
EXIT(sendmsg, WS_SYS_SENDMSG, WS_DIR_EGRESS)
ENTER(read, WS_SYS_READ, 1, 0)
EXIT(read, WS_SYS_READ, WS_DIR_INGRESS)
ENTER(readv, WS_SYS_READV, 1, ctx->args[2])
EXIT(readv, WS_SYS_READV, WS_DIR_INGRESS)
ENTER(recvfrom, WS_SYS_RECVFROM, 1, 0)
EXIT(recvfrom, WS_SYS_RECVFROM, WS_DIR_INGRESS)
ENTER(recvmsg, WS_SYS_RECVMSG, 1, 0)
EXIT(recvmsg, WS_SYS_RECVMSG, WS_DIR_INGRESS)

/* ---- lifecycle ------------------------------------------------------------ */

/* connect and accept save the fd (connect) or nothing (accept) for exit. */
SEC("tracepoint/syscalls/sys_enter_connect")
int tp_enter_connect(struct trace_event_raw_sys_enter *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct ws_args a = {.fd = (int)ctx->args[0]};

	if (pid_filtered(pid_tgid >> 32))
		return 0;
	args_save(pid_tgid, &a, NULL);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int tp_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	struct ws_args a;
	struct sock *sk;
	__u64 pid_tgid;
	int fd;

	if (!args_take(&pid_tgid, &a))
		return 0;
	fd = a.fd;
	if (ctx->ret != 0 && ctx->ret != -EINPROGRESS)
		return 0;
	sk = fd_to_sock(fd);
	if (sk)
		conn_open(pid_tgid >> 32, fd, sk, WS_ROLE_CLIENT, 0);
	return 0;
}

static __always_inline int accept_exit(long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct sock *sk;

	if (ret < 0 || pid_filtered(pid_tgid >> 32))
		return 0;
	sk = fd_to_sock((int)ret);
	if (sk)
		conn_open(pid_tgid >> 32, (int)ret, sk, WS_ROLE_SERVER, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int tp_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int tp_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return accept_exit(ctx->ret);
}

SEC("tracepoint/syscalls/sys_enter_close")
int tp_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	struct ws_fd_key key = {
		.tgid = bpf_get_current_pid_tgid() >> 32,
		.fd = (int)ctx->args[0],
	};
	struct ws_conn_state *cs = bpf_map_lookup_elem(&conns, &key);

	if (!cs)
		return 0;
	emit_close(cs);
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

/* Remember listening ports so pre-existing sockets get the right role. */
SEC("tracepoint/syscalls/sys_enter_listen")
int tp_enter_listen(struct trace_event_raw_sys_enter *ctx)
{
	struct sock *sk = fd_to_sock((int)ctx->args[0]);
	__u16 port;
	__u8 one = 1;

	if (!sk)
		return 0;
	port = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (port && bpf_map_update_elem(&listen_ports, &port, &one, BPF_ANY))
		count(WS_C_LISTEN_MAP_FULL, 1);
	return 0;
}

/* The last thread of a process is gone: its sockets closed without close(). */
SEC("tracepoint/sched/sched_process_exit")
int tp_sched_process_exit(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct ws_proc_exit *ev;
	int live = BPF_CORE_READ(task, signal, live.counter);

	if (live != 0 || pid_filtered(BPF_CORE_READ(task, tgid)))
		return 0;
	ev = bpf_ringbuf_reserve(&rb, sizeof(*ev), 0);
	if (!ev) {
		count(WS_C_PROC_EXIT_LOST, 1);
		return 0;
	}
	ev->hdr.abi_version = WS_ABI_VERSION;
	ev->hdr.type = WS_EV_PROC_EXIT;
	ev->hdr.size = sizeof(*ev);
	ev->hdr.ts_ns = bpf_ktime_get_ns();
	ev->tgid = BPF_CORE_READ(task, tgid);
	ev->_pad = 0;
	bpf_ringbuf_submit(ev, rb_flags());
	return 0;
}
