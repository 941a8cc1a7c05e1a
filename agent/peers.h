/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Who is at the other end of a connection, as span attributes
 * (docs/ARCHITECTURE.md, "Peers"):
 *   - a pod of this node (its IP in the pod watcher's store):
 *       peer.service                      the peer pod's service name
 *                                         (rules, labels, workload)
 *       wirespan.peer.k8s.pod.name, wirespan.peer.k8s.namespace.name,
 *       wirespan.peer.k8s.pod.uid
 *   - else a process of this host (loopback, or one of our addresses): the
 *     process holding the other socket, found from the endpoints the agent
 *     already saw open, else from /proc/net/tcp{,6} (socket inode) and
 *     /proc/<pid>/fd (who holds it), else when the other end's connection
 *     opens later (the attributes are then filled into the bag the
 *     connection holds: spans made after that carry them):
 *       peer.service                      the peer process's service.name
 *       wirespan.peer.process.pid, wirespan.peer.process.executable.name,
 *       and the k8s keys above if that process is in a pod.
 * peer.service is OTel's (deprecated in newer semconv for
 * service.peer.name, which we do not emit yet); the rest are wirespan's.
 *
 * Bounded: WS_PEERS_MAX_ENDPOINTS learned endpoints and
 * WS_PEERS_MAX_PENDING waiting lookups (LRU, evictions counted) and at most
 * WS_PEERS_SCANS_PER_SEC /proc scans and WS_PEERS_SCAN_BUDGET_NS of scanning
 * per second (the rest counted as scan_limited): with many sockets one scan
 * costs tens of ms (/proc/net/tcp walks every hash bucket of the table at
 * each read), and 50 of them a second stalled the agent under connection
 * churn (docs/RELIABILITY.md). Endpoints leave with the last connection
 * that has them (ws_peers_forget) or their process (ws_peers_sweep).
 */
#ifndef WIRESPAN_PEERS_H
#define WIRESPAN_PEERS_H

#include <stdint.h>

#include "identity.h"
#include "k8s_pods.h"
#include "span.h"
#include "wirespan/abi.h"

#define WS_PEERS_MAX_ENDPOINTS 16384
#define WS_PEERS_SCANS_PER_SEC 50
#define WS_PEERS_MAX_PENDING 4096
#define WS_PEERS_SCAN_BUDGET_NS (20ull * 1000000ull)

struct ws_peers_cfg {
	const char *proc_root;		  /* "/proc" */
	struct ws_identity *ids;	  /* resources of local peers */
	struct ws_k8s_store *k8s;	  /* may be NULL */
	const struct ws_service_cfg *svc; /* may be NULL */
};

struct ws_peers_stats {
	uint64_t lookups;
	uint64_t pod;	  /* peer found in the pod store */
	uint64_t learned; /* local peer from an endpoint we saw open */
	uint64_t scanned; /* local peer found by a /proc scan */
	uint64_t pending; /* local, not found yet: waiting for its open */
	uint64_t late;	  /* ...found when the other end opened */
	uint64_t pending_evicted; /* waiting lookups dropped: table full */
	uint64_t remote;	  /* neither local nor a known pod */
	uint64_t scan_limited;	  /* scans skipped: rate bound */
	uint64_t evicted;	  /* learned endpoints evicted: table full */
	uint64_t forgotten;	  /* endpoints whose last connection closed */
	uint64_t swept;		  /* dropped by ws_peers_sweep */
	uint64_t endpoints;	  /* learned endpoints now */
	uint64_t pending_now;	  /* waiting lookups now */
};

struct ws_peers;

struct ws_peers *ws_peers_new(const struct ws_peers_cfg *cfg);
void ws_peers_free(struct ws_peers *p);

/* A connection of process tgid (resource res, may be NULL) opened:
 * remember its local endpoint; fill the lookups that waited for it. */
void ws_peers_note(struct ws_peers *p, const struct ws_tuple *t, uint32_t tgid,
		   const struct ws_resource *res);
/* A connection noted with ws_peers_note closed: its local endpoint goes with
 * the last connection that has it, and a lookup for its remote endpoint that
 * nobody holds any more is dropped. */
void ws_peers_forget(struct ws_peers *p, const struct ws_tuple *t);
/* Drop endpoints of processes gone from /proc and waiting lookups nobody
 * holds (what ws_peers_forget missed: closes never seen). O(table). */
size_t ws_peers_sweep(struct ws_peers *p);

/*
 * The peer attributes of a connection (tuple as the capture gives it, seen
 * from process tgid), as a resource used as an attribute bag (a reference
 * the caller puts), or NULL if nothing is known. now_ns: a monotonic clock
 * for the scan rate bound.
 */
struct ws_resource *ws_peers_lookup(struct ws_peers *p,
				    const struct ws_tuple *t, uint32_t tgid,
				    uint64_t now_ns);
void ws_peers_stats(const struct ws_peers *p, struct ws_peers_stats *out);

/* Exposed for tests: the inode of the TCP socket with local endpoint
 * (laddr, lport) and remote (raddr, rport) in <proc_root>/net/tcp{,6}; 0 if
 * none. Addresses are 16 bytes, IPv4 as IPv4-mapped. */
uint64_t ws_peers_socket_inode(const char *proc_root, const uint8_t *laddr,
			       uint16_t lport, const uint8_t *raddr,
			       uint16_t rport);
/* The pid holding socket inode, from <proc_root>/<pid>/fd; 0 if none. */
uint32_t ws_peers_inode_pid(const char *proc_root, uint64_t inode);

#endif
