/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "span.h"

/* ---- ids: splitmix64 seeded once from getrandom() ---- */

static _Thread_local uint64_t id_state;

static uint64_t id_next(void)
{
	uint64_t z;

	if (id_state == 0) {
		if (getrandom(&id_state, sizeof(id_state), 0) !=
		    sizeof(id_state))
			id_state = (uint64_t)time(NULL) ^ (uint64_t)&id_state;
		id_state |= 1;
	}
	z = (id_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void ws_id_random(uint8_t *id, size_t n)
{
	size_t i;

	do {
		for (i = 0; i < n; i += 8) {
			uint64_t v = id_next();
			size_t k = n - i < 8 ? n - i : 8;

			memcpy(id + i, &v, k);
		}
	} while (ws_id_is_zero(id, n));
}

bool ws_id_is_zero(const uint8_t *id, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (id[i])
			return false;
	return true;
}

void ws_id_hex(const uint8_t *id, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[id[i] >> 4];
		out[2 * i + 1] = hex[id[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ws_id_parse(const char *hex, size_t hexlen, uint8_t *id, size_t n)
{
	size_t i;

	if (hexlen != 2 * n)
		return -EINVAL;
	for (i = 0; i < n; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -EINVAL;
		id[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len, i;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* overlong, surrogate, out of range */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

/*
 * Copy s[0..len) into out as valid UTF-8 of at most max bytes (invalid
 * sequences become U+FFFD, cut on a character boundary) and NUL-terminate.
 * out needs min(len * 3, max) + 1 bytes. Returns the bytes written.
 */
static size_t utf8_sanitize_into(const char *s, size_t len, size_t max,
				 char *out, bool *cut)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	if (cut)
		*cut = false;
	while (i < len) {
		size_t k, need, run = i;

		/* ASCII runs (nearly everything) are copied in one go */
		while (run < len && u[run] < 0x80 && o + (run - i) < max)
			run++;
		if (run > i) {
			memcpy(out + o, u + i, run - i);
			o += run - i;
			i = run;
			continue;
		}
		k = u[i] < 0x80 ? 1 : utf8_seq(u + i, len - i);
		need = k ? k : 3;
		if (o + need > max) {
			if (cut)
				*cut = true;
			break;
		}
		if (k) {
			memcpy(out + o, u + i, k);
			o += k;
			i += k;
		} else {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	out[o] = '\0';
	return o;
}

static size_t sanitized_cap(size_t len, size_t max)
{
	/* worst case: every byte becomes 3 bytes of U+FFFD */
	return (len < max ? len : max) * 3 + 1;
}

char *ws_utf8_sanitize(const char *s, size_t len, size_t max, bool *cut)
{
	char *out = malloc(sanitized_cap(len, max));

	if (out)
		utf8_sanitize_into(s, len, max, out, cut);
	return out;
}

/* ---- string pools ---- */

struct ws_strpool_blk {
	struct ws_strpool_blk *next;
	char data[];
};

/* Chained blocks are at least this big; past POOL_MAX_TOTAL bytes of them
 * (a span whose attributes are replaced over and over), strings are
 * malloc'd one by one again, so that replacing one frees the old. */
#define POOL_BLOCK 2048u
#define POOL_MAX_TOTAL (64u * 1024u)

static void pool_init(struct ws_strpool *p, char *buf, uint32_t cap)
{
	memset(p, 0, sizeof(*p));
	p->buf = buf;
	p->cap = cap;
}

static char *pool_alloc(struct ws_strpool *p, size_t n)
{
	struct ws_strpool_blk *b;
	char *r;

	if (p->cap - p->used < n) {
		size_t sz = n > POOL_BLOCK ? n : POOL_BLOCK;

		if (p->total + sz > POOL_MAX_TOTAL)
			return NULL;
		b = malloc(sizeof(*b) + sz);
		if (!b)
			return NULL;
		b->next = p->blocks;
		p->blocks = b;
		p->total += (uint32_t)sz;
		p->buf = b->data;
		p->used = 0;
		p->cap = (uint32_t)sz;
	}
	r = p->buf + p->used;
	p->used += (uint32_t)n;
	return r;
}

static void pool_free(struct ws_strpool *p)
{
	struct ws_strpool_blk *b, *next;

	for (b = p->blocks; b; b = next) {
		next = b->next;
		free(b);
	}
	p->blocks = NULL;
}

/* Copy n bytes to out (room for n + 1) and NUL-terminate if they are all
 * ASCII, eight at a time (a call to memcpy per short string cost more
 * than the copy). Returns false, out unfinished, if one is not. */
static bool copy_ascii(char *out, const char *s, size_t n)
{
	uint64_t acc = 0, w;
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		memcpy(out + i, &w, 8);
		acc |= w;
	}
	for (; i < n; i++) {
		out[i] = s[i];
		acc |= (uint8_t)s[i];
	}
	out[n] = '\0';
	return !(acc & 0x8080808080808080ull);
}

/* A sanitized copy of s, from pool if it has room (*pooled), else malloc;
 * *olen: its length. */
static char *str_copy(struct ws_strpool *pool, const char *s, size_t len,
		      bool *cut, bool *pooled, size_t *olen)
{
	size_t n = len < WS_SPAN_MAX_STR ? len : WS_SPAN_MAX_STR, cap;
	char *out;

	*pooled = false;
	/* ASCII needs no change: exactly n bytes (cut if longer) */
	out = pool ? pool_alloc(pool, n + 1) : NULL;
	if (out) {
		if (copy_ascii(out, s, n)) {
			if (cut)
				*cut = len > n;
			*pooled = true;
			*olen = n;
			return out;
		}
		pool->used -= (uint32_t)(n + 1); /* the newest allocation */
	}
	cap = sanitized_cap(len, WS_SPAN_MAX_STR);
	out = pool ? pool_alloc(pool, cap) : NULL;
	*pooled = out != NULL;
	if (!out)
		out = malloc(cap); /* no pool, or it is at its bound */
	if (!out)
		return NULL;
	*olen = utf8_sanitize_into(s, len, WS_SPAN_MAX_STR, out, cut);
	/* give back what the worst case did not need: out is the newest
	 * allocation of the current block */
	if (*pooled)
		pool->used -= (uint32_t)(cap - 1 - *olen);
	return out;
}

/* ---- attributes ---- */

static size_t attr_slen(const struct ws_attr *at);

void ws_attrs_init(struct ws_attrs *a, struct ws_attr *store, uint16_t cap)
{
	memset(a, 0, sizeof(*a));
	a->v = store;
	a->cap = cap;
}

/* A hash of a key from its length and its first and last 8 bytes: every
 * set looks its key up, and a byte-at-a-time hash cost more than the rest
 * of the set. Equal hashes are confirmed with strcmp. *len: strlen(key),
 * 0 if it does not fit 16 bits. */
static uint16_t key_hash(const char *key, uint16_t *len)
{
	size_t n = strlen(key);
	uint64_t a = 0, b = 0, h;

	memcpy(&a, key, n < 8 ? n : 8);
	if (n > 8)
		memcpy(&b, key + n - 8, 8);
	h = (a * 0x9e3779b97f4a7c15ull) ^ (b * 0xc2b2ae3d27d4eb4full) ^ n;
	h ^= h >> 29;
	h ^= h >> 32;
	*len = n < UINT16_MAX ? (uint16_t)n : 0;
	return (uint16_t)(h ^ (h >> 16));
}

/* ws_attrs.keys: one of 128 bits per key hash, so that a key not there
 * yet (the usual case) is known without walking the attributes (with 64,
 * a span's ~25 keys set a third of them). */
static uint64_t key_bit(uint16_t h)
{
	return 1ull << ((h >> 9) & 63);
}

static bool key_maybe(const uint64_t *keys, uint16_t h)
{
	return keys[h >> 15] & key_bit(h);
}

static void key_add(uint64_t *keys, uint16_t h)
{
	keys[h >> 15] |= key_bit(h);
}

static void attr_release(struct ws_attr *at)
{
	if (at->type == WS_ATTR_STR && !(at->flags & WS_ATTR_F_POOLED))
		free(at->s);
	at->type = 0;
	at->flags = 0;
}

static struct ws_attr *attr_find(const struct ws_attrs *a, const char *key,
				 uint16_t h)
{
	uint16_t i;

	if (!key_maybe(a->keys, h))
		return NULL;
	for (i = 0; i < a->n; i++)
		if (a->v[i].khash == h &&
		    (a->v[i].key == key || !strcmp(a->v[i].key, key)))
			return &a->v[i];
	return NULL;
}

/* at, an attribute of a, is about to be replaced: a's block attributes
 * are no longer all the block's. */
static void blk_touch(struct ws_attrs *a, const struct ws_attr *at)
{
	int k;

	for (k = 0; k < WS_ATTRS_MAX_BLOCKS; k++)
		if (a->blk_whole[k] && at >= a->v + a->blk_first[k] &&
		    at < a->v + a->blk_first[k] + a->blk[k]->a.n)
			a->blk_whole[k] = false;
}

/* The slot for key: the existing one (released) or a new one. */
static struct ws_attr *attr_slot(struct ws_attrs *a, const char *key)
{
	uint16_t klen, h = key_hash(key, &klen);
	struct ws_attr *at = attr_find(a, key, h);

	a->gen++;
	if (at) {
		blk_touch(a, at);
		attr_release(at);
		return at;
	}
	if (a->n >= a->cap) {
		a->dropped++;
		return NULL;
	}
	at = &a->v[a->n++];
	at->key = key;
	at->khash = h;
	at->klen = klen;
	key_add(a->keys, h);
	at->type = 0;
	at->flags = 0;
	return at;
}

int ws_attrs_str(struct ws_attrs *a, const char *key, const char *s, size_t len)
{
	uint16_t klen, h = key_hash(key, &klen);
	struct ws_attr *at = attr_find(a, key, h);
	bool cut, pooled;
	size_t vlen;
	char *v;

	if (!at && a->n >= a->cap) {
		a->dropped++;
		return -ENOSPC;
	}
	v = str_copy(a->pool, s ? s : "", s ? len : 0, &cut, &pooled, &vlen);
	if (!v)
		return -ENOMEM;
	a->gen++;
	if (at) {
		blk_touch(a, at);
		attr_release(at);
	} else {
		at = &a->v[a->n++];
		at->key = key;
		at->khash = h;
		at->klen = klen;
		key_add(a->keys, h);
	}
	if (cut)
		a->cut++;
	at->type = WS_ATTR_STR;
	at->flags = (pooled ? WS_ATTR_F_POOLED : 0) | (cut ? WS_ATTR_F_CUT : 0);
	at->slen = (uint16_t)vlen; /* at most WS_SPAN_MAX_STR */
	at->s = v;
	return 0;
}

int ws_attrs_cstr(struct ws_attrs *a, const char *key, const char *s)
{
	return ws_attrs_str(a, key, s, s ? strlen(s) : 0);
}

int ws_attrs_int(struct ws_attrs *a, const char *key, int64_t v)
{
	struct ws_attr *at = attr_slot(a, key);

	if (!at)
		return -ENOSPC;
	at->type = WS_ATTR_INT;
	at->i = v;
	return 0;
}

int ws_attrs_bool(struct ws_attrs *a, const char *key, bool v)
{
	struct ws_attr *at = attr_slot(a, key);

	if (!at)
		return -ENOSPC;
	at->type = WS_ATTR_BOOL;
	at->b = v;
	return 0;
}

int ws_attrs_double(struct ws_attrs *a, const char *key, double v)
{
	struct ws_attr *at = attr_slot(a, key);

	if (!at)
		return -ENOSPC;
	at->type = WS_ATTR_DOUBLE;
	at->d = v;
	return 0;
}

const struct ws_attr *ws_attrs_get(const struct ws_attrs *a, const char *key)
{
	uint16_t klen;

	return attr_find(a, key, key_hash(key, &klen));
}

int ws_attrs_copy(struct ws_attrs *dst, const struct ws_attrs *src)
{
	uint16_t i;
	int err = 0;

	dst->gen++;
	for (i = 0; i < src->n; i++) {
		const struct ws_attr *sa = &src->v[i];
		struct ws_attr *at;
		size_t len;
		char *v;

		if (!sa->type)
			continue;
		if (key_maybe(dst->keys, sa->khash) &&
		    attr_find(dst, sa->key, sa->khash)) {
			/* already there: replace it the usual way */
			if (sa->type == WS_ATTR_STR) {
				int e = ws_attrs_str(dst, sa->key, sa->s,
						     strlen(sa->s));

				if (e)
					err = e;
				else if (sa->flags & WS_ATTR_F_CUT)
					dst->cut++;
			} else if (sa->type == WS_ATTR_INT)
				ws_attrs_int(dst, sa->key, sa->i);
			else if (sa->type == WS_ATTR_BOOL)
				ws_attrs_bool(dst, sa->key, sa->b);
			else
				ws_attrs_double(dst, sa->key, sa->d);
			continue;
		}
		if (dst->n >= dst->cap) {
			dst->dropped++;
			err = -ENOSPC;
			continue;
		}
		at = &dst->v[dst->n];
		*at = *sa;
		at->flags = 0;
		if (sa->type == WS_ATTR_STR) {
			/* valid UTF-8 of at most WS_SPAN_MAX_STR already */
			len = sa->slen ? sa->slen : strlen(sa->s);
			v = dst->pool ? pool_alloc(dst->pool, len + 1) : NULL;
			if (v)
				at->flags |= WS_ATTR_F_POOLED;
			else if (!(v = malloc(len + 1))) {
				err = -ENOMEM;
				continue;
			}
			memcpy(v, sa->s, len + 1);
			at->s = v;
			at->slen = (uint16_t)len;
			if (sa->flags & WS_ATTR_F_CUT) {
				at->flags |= WS_ATTR_F_CUT;
				dst->cut++;
			}
		}
		dst->n++;
		key_add(dst->keys, sa->khash);
	}
	return err;
}

void ws_attrs_clear(struct ws_attrs *a)
{
	uint16_t i = 0, end;
	int k = 0;

	/* free what is owned; the slots need no reset (a->n governs, a set
	 * writes its slot whole); a whole block's strings are the block's
	 * (blocks are in a->v in the order of k) */
	for (;;) {
		while (k < WS_ATTRS_MAX_BLOCKS &&
		       !(a->blk_whole[k] && a->blk_first[k] >= i))
			k++;
		end = k < WS_ATTRS_MAX_BLOCKS ? a->blk_first[k] : a->n;
		for (; i < end; i++)
			if (a->v[i].type == WS_ATTR_STR &&
			    !(a->v[i].flags & WS_ATTR_F_POOLED))
				free(a->v[i].s);
		if (k == WS_ATTRS_MAX_BLOCKS)
			break;
		i = (uint16_t)(end + a->blk[k]->a.n);
		k++;
	}
	a->n = 0;
	a->keys[0] = a->keys[1] = 0;
	a->gen++;
	for (i = 0; i < WS_ATTRS_MAX_BLOCKS; i++) {
		ws_attr_block_put(a->blk[i]);
		a->blk[i] = NULL;
		a->blk_whole[i] = false;
	}
}

/* ---- attribute blocks ---- */

struct ws_attr_block *ws_attr_block_new(const struct ws_attrs *src)
{
	size_t size = sizeof(struct ws_attr_block), n = 0, i;
	struct ws_attr_block *b;
	char *p;

	for (i = 0; i < src->n; i++) {
		if (!src->v[i].type)
			continue;
		n++;
		size += sizeof(struct ws_attr);
		if (src->v[i].type == WS_ATTR_STR)
			size += attr_slen(&src->v[i]) + 1;
	}
	b = calloc(1, size);
	if (!b)
		return NULL;
	b->refs = 1;
	ws_attrs_init(&b->a, b->attrs, (uint16_t)n);
	p = (char *)&b->attrs[n];
	for (i = 0; i < src->n; i++) {
		const struct ws_attr *sa = &src->v[i];
		struct ws_attr *at;

		if (!sa->type)
			continue;
		at = &b->attrs[b->a.n++];
		*at = *sa;
		/* in the block: nothing of it is freed on its own; flags as
		 * ws_attrs_copy sets them (0 but for strings) */
		at->flags =
			at->type == WS_ATTR_STR
				? WS_ATTR_F_POOLED | (sa->flags & WS_ATTR_F_CUT)
				: 0;
		key_add(b->a.keys, at->khash);
		if (at->flags & WS_ATTR_F_CUT)
			b->n_cut++;
		if (at->type != WS_ATTR_STR)
			continue;
		at->slen = (uint16_t)attr_slen(sa);
		memcpy(p, sa->s, (size_t)at->slen + 1);
		at->s = p;
		p += at->slen + 1;
	}
	return b;
}

struct ws_attr_block *ws_attr_block_get(struct ws_attr_block *b)
{
	b->refs++;
	return b;
}

void ws_attr_block_put(struct ws_attr_block *b)
{
	if (!b || --b->refs > 0)
		return;
	free(b->pb);
	free(b);
}

int ws_attrs_add_block(struct ws_attrs *dst, struct ws_attr_block *b)
{
	uint16_t i, n = b->a.n;
	int k;

	/* a key of b there already is replaced the usual way, and
	 * everything else with it */
	for (k = 0; k < WS_ATTRS_MAX_BLOCKS && dst->blk[k]; k++)
		;
	if (k == WS_ATTRS_MAX_BLOCKS || dst->cap - dst->n < n)
		return ws_attrs_copy(dst, &b->a);
	if ((dst->keys[0] & b->a.keys[0]) || (dst->keys[1] & b->a.keys[1]))
		for (i = 0; i < n; i++)
			if (attr_find(dst, b->a.v[i].key, b->a.v[i].khash))
				return ws_attrs_copy(dst, &b->a);
	/* the attributes as ws_attrs_copy would set them (flags made so by
	 * ws_attr_block_new), strings in b */
	memcpy(&dst->v[dst->n], b->a.v, n * sizeof(*b->a.v));
	dst->blk[k] = ws_attr_block_get(b);
	dst->blk_first[k] = dst->n;
	dst->blk_whole[k] = true;
	dst->n += n;
	dst->gen++;
	dst->keys[0] |= b->a.keys[0];
	dst->keys[1] |= b->a.keys[1];
	dst->cut += b->n_cut;
	return 0;
}

/* ---- spans ---- */

/* Freed spans kept for reuse, per thread (spans may be freed on another
 * thread than the one that made them): no calloc of ~3 KiB and no page
 * faults per span. */
#define SPAN_CACHE_MAX 256
static _Thread_local struct ws_span *span_cache;
static _Thread_local unsigned span_cache_n;

struct ws_span *ws_span_new(const char *name, uint8_t kind, uint64_t start_ns,
			    const uint8_t *trace_id)
{
	struct ws_span *s = span_cache;
	bool pooled;
	size_t n;

	if (s) {
		span_cache = s->cache_next;
		span_cache_n--;
	} else {
		s = malloc(sizeof(*s));
		if (!s)
			return NULL;
	}
	/* the fields before the storage arrays; what the arrays hold is
	 * set up below (the attribute sets' headers) or as it is added */
	memset(s, 0, offsetof(struct ws_span, attr_store));
	pool_init(&s->pool, s->pool_buf, sizeof(s->pool_buf));
	s->name = str_copy(&s->pool, name, strlen(name), NULL, &pooled, &n);
	if (!s->name) {
		free(s);
		return NULL;
	}
	s->name_pooled = pooled;
	if (trace_id && !ws_id_is_zero(trace_id, 16))
		memcpy(s->trace_id, trace_id, 16);
	else
		ws_id_random(s->trace_id, 16);
	ws_id_random(s->span_id, 8);
	s->kind = kind;
	s->start_ns = start_ns;
	s->end_ns = start_ns;
	ws_attrs_init(&s->a, s->attr_store, WS_SPAN_MAX_ATTRS);
	s->a.pool = &s->pool;
	return s;
}

void ws_span_free(struct ws_span *s)
{
	int i;

	if (!s)
		return;
	ws_attrs_clear(&s->a);
	for (i = 0; i < s->n_links; i++)
		ws_attrs_clear(&s->links[i].a);
	for (i = 0; i < s->n_events; i++)
		ws_attrs_clear(&s->events[i].a);
	if (!s->name_pooled)
		free(s->name);
	free(s->trace_state);
	free(s->status_message);
	ws_resource_put(s->resource);
	pool_free(&s->pool);
	if (span_cache_n >= SPAN_CACHE_MAX) {
		free(s);
		return;
	}
	s->cache_next = span_cache;
	span_cache = s;
	span_cache_n++;
}

int ws_span_set_name(struct ws_span *s, const char *name)
{
	bool pooled;
	size_t len;
	char *n = str_copy(&s->pool, name, strlen(name), NULL, &pooled, &len);

	if (!n)
		return -ENOMEM;
	if (!s->name_pooled)
		free(s->name);
	s->name = n;
	s->name_pooled = pooled;
	return 0;
}

void ws_span_set_parent(struct ws_span *s, const uint8_t trace_id[16],
			const uint8_t span_id[8])
{
	memcpy(s->trace_id, trace_id, 16);
	memcpy(s->parent_span_id, span_id, 8);
	s->has_parent = true;
}

int ws_span_add_link(struct ws_span *s, const uint8_t trace_id[16],
		     const uint8_t span_id[8], uint32_t flags)
{
	struct ws_span_link *l;

	if (s->n_links >= WS_SPAN_MAX_LINKS) {
		s->dropped_links++;
		return -ENOSPC;
	}
	l = &s->links[s->n_links++];
	ws_attrs_init(&l->a, l->attrs, 2);
	l->a.pool = &s->pool;
	memcpy(l->trace_id, trace_id, 16);
	memcpy(l->span_id, span_id, 8);
	l->flags = flags;
	return 0;
}

struct ws_span_event *ws_span_add_event(struct ws_span *s, const char *name,
					uint64_t time_ns)
{
	struct ws_span_event *e;

	if (s->n_events >= WS_SPAN_MAX_EVENTS) {
		s->dropped_events++;
		return NULL;
	}
	e = &s->events[s->n_events++];
	ws_attrs_init(&e->a, e->attrs, WS_SPAN_MAX_EVENT_ATTRS);
	e->a.pool = &s->pool;
	e->name = name;
	e->time_ns = time_ns;
	return e;
}

void ws_span_set_status(struct ws_span *s, uint8_t code, const char *message)
{
	s->status = code;
	free(s->status_message);
	s->status_message = message ? ws_utf8_sanitize(message, strlen(message),
						       WS_SPAN_MAX_STR, NULL)
				    : NULL;
}

void ws_span_set_resource(struct ws_span *s, struct ws_resource *r)
{
	ws_resource_put(s->resource);
	s->resource = r ? ws_resource_get(r) : NULL;
}

/* ---- resources ---- */

struct ws_resource *ws_resource_new(uint64_t key)
{
	struct ws_resource *r = calloc(
		1, sizeof(*r) + WS_RESOURCE_MAX_ATTRS * sizeof(struct ws_attr));

	if (!r)
		return NULL;
	r->refs = 1;
	r->key = key;
	ws_attrs_init(&r->a, r->attrs, WS_RESOURCE_MAX_ATTRS);
	return r;
}

static size_t attr_slen(const struct ws_attr *at)
{
	return at->slen ? at->slen : strlen(at->s);
}

struct ws_resource *ws_resource_compact(const struct ws_resource *src)
{
	size_t i, size = sizeof(*src) + src->a.n * sizeof(struct ws_attr);
	struct ws_resource *r;
	char *p;

	for (i = 0; i < src->a.n; i++)
		if (src->a.v[i].type == WS_ATTR_STR)
			size += attr_slen(&src->a.v[i]) + 1;
	r = malloc(size);
	if (!r)
		return NULL;
	r->refs = 1;
	r->key = src->key;
	r->a = src->a;
	r->a.v = r->attrs;
	r->a.cap = src->a.n;
	r->a.pool = NULL;
	memset(r->a.blk, 0, sizeof(r->a.blk));
	memset(r->a.blk_whole, 0, sizeof(r->a.blk_whole));
	p = (char *)&r->attrs[src->a.n];
	for (i = 0; i < src->a.n; i++) {
		struct ws_attr *at = &r->attrs[i];

		*at = src->a.v[i];
		if (at->type != WS_ATTR_STR)
			continue;
		/* in the block: ws_attrs_clear must not free it */
		at->flags |= WS_ATTR_F_POOLED;
		memcpy(p, src->a.v[i].s, attr_slen(at) + 1);
		at->s = p;
		p += attr_slen(at) + 1;
	}
	return r;
}

size_t ws_resource_bytes(const struct ws_resource *r)
{
	size_t i, n = malloc_usable_size((void *)r);

	for (i = 0; i < r->a.n; i++)
		if (r->a.v[i].type == WS_ATTR_STR &&
		    !(r->a.v[i].flags & WS_ATTR_F_POOLED))
			n += malloc_usable_size(r->a.v[i].s);
	return n;
}

struct ws_resource *ws_resource_get(struct ws_resource *r)
{
	r->refs++;
	return r;
}

void ws_resource_put(struct ws_resource *r)
{
	if (!r || --r->refs > 0)
		return;
	ws_attrs_clear(&r->a);
	free(r);
}
