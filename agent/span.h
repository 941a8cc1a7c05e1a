/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The internal span model that every protocol module produces and every
 * exporter consumes. Close to OTLP's Span so that encoding is a walk, but
 * bounded: attributes, links and events have fixed capacities, and what does
 * not fit is counted in the dropped_* fields (OTLP carries those counts).
 *
 * A span owns its strings (copied in, freed by ws_span_free), but for those
 * of attribute blocks (ws_attrs_add_block), which it references. Attribute
 * keys are not copied: they must be string literals or otherwise outlive
 * the span. A span holds a reference on its resource.
 *
 * Cost (the agent makes a few spans per message): a span's attribute, link
 * and event strings live in the span's own string pool (a block inside the
 * span, then chained blocks), so a span costs one allocation, not one per
 * string; freed spans are kept in a small per-thread cache for reuse. Treat
 * every string of a span as read-only and change it only through this API.
 */
#ifndef WIRESPAN_SPAN_H
#define WIRESPAN_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WS_SPAN_MAX_ATTRS 40
#define WS_SPAN_MAX_LINKS 4
#define WS_SPAN_MAX_EVENTS 4
#define WS_SPAN_MAX_EVENT_ATTRS 4
#define WS_RESOURCE_MAX_ATTRS 32
/* Longest string attribute value kept; longer ones are cut and counted. */
#define WS_SPAN_MAX_STR 1024
/* Bytes of string pool inside each span (NATS spans need about 400). */
#define WS_SPAN_POOL_INLINE 640

/* OTLP SpanKind */
enum ws_span_kind {
	WS_SPAN_KIND_UNSPECIFIED = 0,
	WS_SPAN_KIND_INTERNAL = 1,
	WS_SPAN_KIND_SERVER = 2,
	WS_SPAN_KIND_CLIENT = 3,
	WS_SPAN_KIND_PRODUCER = 4,
	WS_SPAN_KIND_CONSUMER = 5,
};

/* Which protocol a span came from: the export subject's <domain> token. */
enum ws_span_domain {
	WS_DOMAIN_NONE = 0,
	WS_DOMAIN_NATS = 1,
	WS_DOMAIN_HTTP = 2,
};

/* OTLP StatusCode */
enum ws_status_code {
	WS_STATUS_UNSET = 0,
	WS_STATUS_OK = 1,
	WS_STATUS_ERROR = 2,
};

enum ws_attr_type {
	WS_ATTR_STR = 1,
	WS_ATTR_INT,
	WS_ATTR_BOOL,
	WS_ATTR_DOUBLE,
};

struct ws_attr {
	const char *key; /* not owned */
	uint8_t type;	 /* enum ws_attr_type */
	uint8_t flags;	 /* private to span.c: WS_ATTR_F_* */
	uint16_t khash;	 /* hash of key: most key compares are one integer */
	uint16_t klen;	 /* strlen(key); 0: not known */
	uint16_t slen;	 /* WS_ATTR_STR: strlen(s); 0: not known */
	union {
		char *s; /* owned, NUL-terminated, valid UTF-8 */
		int64_t i;
		bool b;
		double d;
	};
};

/* Attribute blocks one attribute set can use in place (more are copied) */
#define WS_ATTRS_MAX_BLOCKS 2

/* Bump allocator for a span's strings: freed all at once with the span. */
struct ws_strpool {
	char *buf;		       /* current block */
	uint32_t used, cap;	       /* of buf */
	uint32_t total;		       /* bytes in chained blocks */
	struct ws_strpool_blk *blocks; /* chained blocks (malloc'd) */
};

/* ws_attr.flags */
#define WS_ATTR_F_POOLED 1 /* s lives in the owner's string pool */
#define WS_ATTR_F_CUT 2	   /* s was cut to WS_SPAN_MAX_STR */

struct ws_attrs {
	struct ws_attr *v;
	uint16_t n, cap;
	uint32_t dropped; /* attributes that did not fit */
	uint32_t cut;	  /* string values cut to WS_SPAN_MAX_STR */
	/* where string values go; NULL: one malloc each */
	struct ws_strpool *pool;
	uint64_t keys[2]; /* private to span.c: bits of the keys' hashes */
	uint32_t gen;	  /* changed by every set, copy and clear */
	/* private to span.c and the encoders (ws_attrs_add_block): blocks
	 * whose strings some attributes use in place (referenced until
	 * ws_attrs_clear), in the order they were added; while
	 * blk_whole[k], v[blk_first[k] ..] holds all of blk[k]'s attributes
	 * in its order, none replaced since */
	struct ws_attr_block *blk[WS_ATTRS_MAX_BLOCKS];
	uint16_t blk_first[WS_ATTRS_MAX_BLOCKS];
	bool blk_whole[WS_ATTRS_MAX_BLOCKS];
};

/*
 * An immutable, reference-counted set of attributes that many spans carry
 * (a connection's address and identity), in one allocation with its
 * strings. ws_attrs_add_block sets its attributes in a span without copying
 * their strings, and an encoder may keep the block's encoding in it, made
 * once for every span that carries it (the OTLP protobuf writer does).
 * Not thread-safe, like ws_resource: get, put and encode on one thread.
 */
struct ws_attr_block {
	unsigned refs;
	uint16_t n_cut;	   /* attributes flagged WS_ATTR_F_CUT */
	bool pb_failed;	   /* private to otlp_pb.c: no memory for pb */
	uint8_t *pb;	   /* private to otlp_pb.c: encoded attributes (freed
			  * with the block) */
	size_t pb_len;	   /* of pb */
	struct ws_attrs a; /* read-only: a.v = attrs */
	struct ws_attr attrs[];
};

struct ws_span_link {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint32_t flags; /* W3C trace flags in the low byte */
	struct ws_attr attrs[2];
	struct ws_attrs a;
};

struct ws_span_event {
	uint64_t time_ns;
	const char *name; /* not owned */
	struct ws_attr attrs[WS_SPAN_MAX_EVENT_ATTRS];
	struct ws_attrs a;
};

struct ws_resource {
	unsigned refs;
	uint64_t key; /* identifies the emitter (e.g. tgid + start time) */
	struct ws_attrs a;
	/* WS_RESOURCE_MAX_ATTRS from ws_resource_new, a.n from
	 * ws_resource_compact */
	struct ws_attr attrs[];
};

struct ws_span {
	uint8_t trace_id[16];
	uint8_t span_id[8];
	uint8_t parent_span_id[8];
	bool has_parent;
	uint32_t
		flags; /* OTLP Span.flags: W3C flags, 0x100/0x200 remote bits */
	char *trace_state;	   /* owned, may be NULL */
	char *name;		   /* owned */
	uint8_t kind;		   /* enum ws_span_kind */
	uint8_t domain;		   /* enum ws_span_domain */
	uint64_t start_ns, end_ns; /* unix epoch ns */
	struct ws_attrs a;
	uint16_t n_links;
	uint32_t dropped_links;
	uint16_t n_events;
	uint32_t dropped_events;
	uint8_t status;		      /* enum ws_status_code */
	char *status_message;	      /* owned, may be NULL */
	struct ws_resource *resource; /* referenced */
	/* private to span.c */
	bool name_pooled;
	struct ws_strpool pool;
	struct ws_span *cache_next;
	/* storage, last: a new span zeroes what comes before it only (links
	 * and events are set up as they are added, attributes as they are
	 * set; nothing past n_links, n_events, a.n is read) */
	struct ws_attr attr_store[WS_SPAN_MAX_ATTRS];
	struct ws_span_link links[WS_SPAN_MAX_LINKS];
	struct ws_span_event events[WS_SPAN_MAX_EVENTS];
	char pool_buf[WS_SPAN_POOL_INLINE];
};

/* ---- ids ---- */

/* Fill n bytes with random id bytes (never all zero). */
void ws_id_random(uint8_t *id, size_t n);
bool ws_id_is_zero(const uint8_t *id, size_t n);
/* Lowercase hex of n bytes into out (2n + 1 bytes). */
void ws_id_hex(const uint8_t *id, size_t n, char *out);
/* Parse 2n hex digits. Returns 0 or -EINVAL. */
int ws_id_parse(const char *hex, size_t hexlen, uint8_t *id, size_t n);

/* ---- attributes ---- */

void ws_attrs_init(struct ws_attrs *a, struct ws_attr *store, uint16_t cap);
/* Set (replace if key exists). Strings are copied, cut to WS_SPAN_MAX_STR
 * and made valid UTF-8 (bad bytes become U+FFFD). Return 0 or -ENOSPC
 * (counted in dropped) / -ENOMEM. */
int ws_attrs_str(struct ws_attrs *a, const char *key, const char *s,
		 size_t len);
int ws_attrs_cstr(struct ws_attrs *a, const char *key, const char *s);
int ws_attrs_int(struct ws_attrs *a, const char *key, int64_t v);
int ws_attrs_bool(struct ws_attrs *a, const char *key, bool v);
int ws_attrs_double(struct ws_attrs *a, const char *key, double v);
const struct ws_attr *ws_attrs_get(const struct ws_attrs *a, const char *key);
/* Set every attribute of src in dst, in src's order, as the ws_attrs_*
 * setters would (strings copied, cuts and drops counted in dst), but
 * without hashing keys or checking strings again: for attributes that many
 * spans share (a connection's). Returns 0, -ENOSPC or -ENOMEM (the last
 * error; the other attributes are set). */
int ws_attrs_copy(struct ws_attrs *dst, const struct ws_attrs *src);
void ws_attrs_clear(struct ws_attrs *a);

/* A block of src's attributes (set ones, src's order, strings copied into
 * the block), one reference held; NULL if out of memory. */
struct ws_attr_block *ws_attr_block_new(const struct ws_attrs *src);
struct ws_attr_block *ws_attr_block_get(struct ws_attr_block *b);
void ws_attr_block_put(struct ws_attr_block *b);
/* ws_attrs_copy(dst, &b->a), with the same result (attributes, order,
 * cut and dropped counts), but when dst has fewer than WS_ATTRS_MAX_BLOCKS
 * blocks, none of b's keys and room for all of them, b's strings are used
 * in place and dst takes a reference on b, released by ws_attrs_clear.
 * Returns as ws_attrs_copy. */
int ws_attrs_add_block(struct ws_attrs *dst, struct ws_attr_block *b);

/* ---- spans ---- */

/* A new span with random span id (and trace id if trace_id is NULL). */
struct ws_span *ws_span_new(const char *name, uint8_t kind, uint64_t start_ns,
			    const uint8_t *trace_id);
void ws_span_free(struct ws_span *s);
int ws_span_set_name(struct ws_span *s, const char *name);
void ws_span_set_parent(struct ws_span *s, const uint8_t trace_id[16],
			const uint8_t span_id[8]);
/* Returns 0 or -ENOSPC (counted in dropped_links). */
int ws_span_add_link(struct ws_span *s, const uint8_t trace_id[16],
		     const uint8_t span_id[8], uint32_t flags);
struct ws_span_event *ws_span_add_event(struct ws_span *s, const char *name,
					uint64_t time_ns);
void ws_span_set_status(struct ws_span *s, uint8_t code, const char *message);
void ws_span_set_resource(struct ws_span *s, struct ws_resource *r);

/* ---- resources ---- */

struct ws_resource *ws_resource_new(uint64_t key);
/*
 * A copy of r in one allocation sized to fit (its attributes and their
 * strings; for resources kept long, e.g. one per cached process). Its
 * attributes can be replaced but no new key added (-ENOSPC). NULL if out of
 * memory.
 */
struct ws_resource *ws_resource_compact(const struct ws_resource *r);
/* Heap bytes r holds (malloc_usable_size of its blocks). */
size_t ws_resource_bytes(const struct ws_resource *r);
struct ws_resource *ws_resource_get(struct ws_resource *r);
void ws_resource_put(struct ws_resource *r);

/* Make s valid UTF-8 in place-ish: returns a malloc'd copy of at most max
 * bytes, invalid sequences replaced by U+FFFD; *cut set if it was cut. */
char *ws_utf8_sanitize(const char *s, size_t len, size_t max, bool *cut);

#endif
