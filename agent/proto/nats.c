/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NATS client protocol parser: see nats.h for the contract.
 *
 * Three states. ST_LINE collects a control line up to its LF, ST_PAYLOAD
 * counts down payload + CRLF of PUB/HPUB/MSG/HMSG, ST_DISCARD drops bytes up
 * to the next LF after a line too long to keep.
 *
 * Fast path: when no partial line is held and the whole frame is in the
 * caller's buffer with a correct CRLF after the payload, the frame is parsed
 * and emitted in place (memchr for the LF, no copy). Everything else (frames
 * split across feeds, gaps, lying sizes) goes through the held line buffer and
 * the byte-counting payload state. Both paths end in the same parse and emit
 * functions, which only see complete lines and the same payload prefix, so
 * the frames cannot depend on how the stream was split.
 *
 * Resynchronisation: after an error or a gap we no longer know where lines
 * begin. p->resync is then set, and lines whose first token is not a verb are
 * skipped without being counted as errors (one bad region counts once); the
 * first line that parses clears it. A line that starts with a verb but is
 * malformed is always counted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "wirespan/abi.h"
#include "proto/nats.h"

enum nats_state {
	ST_LINE = 0,
	ST_PAYLOAD,
	ST_DISCARD,
};

/* Most blank-separated fields after the verb (HMSG with reply: 5). */
#define MAX_ARGS 6

/*
 * A parsed control line. Fields are offsets into the line so they stay
 * valid when the line is copied from the caller's buffer into p->line.
 */
struct ctl {
	uint8_t verb;
	uint16_t subj_off, subj_len;
	uint16_t reply_off, reply_len;
	uint16_t sid_off, sid_len;
	uint16_t queue_off, queue_len;
	uint16_t text_off, text_len; /* INFO/CONNECT JSON, -ERR message */
	uint32_t hdr, total;
	uint64_t max_msgs;
};

struct ws_nats_parser {
	struct ws_nats_cb cb;
	void *ctx;
	uint8_t st;   /* enum nats_state */
	bool resync;  /* not known to be at a line start: see top of file */
	bool keeping; /* ST_PAYLOAD: still appending to keep[] (no gap yet) */
	uint64_t offset;      /* stream offset of the next byte */
	uint64_t max_payload; /* this direction's payload limit */
	uint64_t unit_off;    /* stream offset of the current line's start */
	uint64_t pend;	      /* data bytes consumed into the current frame */
	uint32_t line_len;    /* ST_LINE: bytes held in line[] */
	struct ctl ctl;	      /* ST_PAYLOAD: the line, fields into line[] */
	uint32_t flags;	      /* ST_PAYLOAD: WS_NATS_F_* so far */
	uint64_t remain;      /* ST_PAYLOAD: payload + CRLF bytes to come */
	uint32_t kept;	      /* ST_PAYLOAD: payload prefix bytes in keep[] */
	uint32_t keep_cap;
	/* Payload prefix, grown on demand up to WS_NATS_MAX_PAYLOAD_KEEP. */
	uint8_t *keep;
	struct ws_nats_stats stats;
	struct ws_nats_header hdrs[WS_NATS_MAX_HEADERS];
	char line[WS_NATS_MAX_LINE];
};

static const char *const verb_names[WS_NATS_VERB_MAX] = {
	[WS_NATS_NONE] = "?",	       [WS_NATS_INFO] = "INFO",
	[WS_NATS_CONNECT] = "CONNECT", [WS_NATS_PUB] = "PUB",
	[WS_NATS_HPUB] = "HPUB",       [WS_NATS_SUB] = "SUB",
	[WS_NATS_UNSUB] = "UNSUB",     [WS_NATS_MSG] = "MSG",
	[WS_NATS_HMSG] = "HMSG",       [WS_NATS_PING] = "PING",
	[WS_NATS_PONG] = "PONG",       [WS_NATS_OK] = "+OK",
	[WS_NATS_ERR] = "-ERR",
};

static const char *const err_names[WS_NATS_ERR_MAX] = {
	[WS_NATS_ERR_NONE] = "none",
	[WS_NATS_ERR_VERB] = "verb",
	[WS_NATS_ERR_ARGS] = "args",
	[WS_NATS_ERR_SIZE] = "size",
	[WS_NATS_ERR_HDR_SIZE] = "hdr_size",
	[WS_NATS_ERR_MAX_PAYLOAD] = "max_payload",
	[WS_NATS_ERR_LINE_TOO_LONG] = "line_too_long",
	[WS_NATS_ERR_PAYLOAD_END] = "payload_end",
};

const char *ws_nats_verb_name(enum ws_nats_verb verb)
{
	if ((unsigned)verb >= WS_NATS_VERB_MAX)
		return "?";
	return verb_names[verb];
}

const char *ws_nats_err_name(enum ws_nats_err err)
{
	if ((unsigned)err >= WS_NATS_ERR_MAX)
		return "unknown";
	return err_names[err];
}

static inline bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* ASCII-only so the result never depends on the process locale. */
static inline char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

static bool ascii_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return false;
	return true;
}

static inline bool has_payload(uint8_t verb)
{
	return verb == WS_NATS_PUB || verb == WS_NATS_HPUB ||
	       verb == WS_NATS_MSG || verb == WS_NATS_HMSG;
}

/* A decimal number that fits a uint64_t; no sign, no blanks. */
static bool parse_u64(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

/*
 * Verbs are matched on their bytes OR 0x20, which lower-cases letters and
 * maps no other byte onto a letter; the '+' and '-' of +OK and -ERR are
 * compared exactly because OR 0x20 would also let \v and \r through.
 */
#define W3(a, b, c) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16)
#define W4(a, b, c, d) (W3(a, b, c) | (uint32_t)(d) << 24)

static inline uint32_t lower_word(const char *s, size_t n)
{
	uint32_t w = 0;

	for (size_t i = 0; i < n && i < 4; i++)
		w |= (uint32_t)((unsigned char)s[i] | 0x20) << (8 * i);
	return w;
}

static enum ws_nats_verb match_verb(const char *s, size_t vl)
{
	uint32_t w;

	switch (vl) {
	case 3:
		w = lower_word(s, 3);
		if (w == W3('p', 'u', 'b'))
			return WS_NATS_PUB;
		if (w == W3('m', 's', 'g'))
			return WS_NATS_MSG;
		if (w == W3('s', 'u', 'b'))
			return WS_NATS_SUB;
		if (s[0] == '+' && w == W3('+', 'o', 'k'))
			return WS_NATS_OK;
		break;
	case 4:
		w = lower_word(s, 4);
		if (w == W4('h', 'p', 'u', 'b'))
			return WS_NATS_HPUB;
		if (w == W4('h', 'm', 's', 'g'))
			return WS_NATS_HMSG;
		if (w == W4('p', 'i', 'n', 'g'))
			return WS_NATS_PING;
		if (w == W4('p', 'o', 'n', 'g'))
			return WS_NATS_PONG;
		if (w == W4('i', 'n', 'f', 'o'))
			return WS_NATS_INFO;
		if (s[0] == '-' && w == W4('-', 'e', 'r', 'r'))
			return WS_NATS_ERR;
		break;
	case 5:
		if (lower_word(s, 4) == W4('u', 'n', 's', 'u') &&
		    ((unsigned char)s[4] | 0x20) == 'b')
			return WS_NATS_UNSUB;
		break;
	case 7:
		if (lower_word(s, 4) == W4('c', 'o', 'n', 'n') &&
		    lower_word(s + 4, 3) == W3('e', 'c', 't'))
			return WS_NATS_CONNECT;
		break;
	}
	return WS_NATS_NONE;
}

/*
 * Length of the first token of a line: the verb. INFO and CONNECT may run
 * straight into their JSON ("INFO{...}"), which nats-server accepts.
 */
static inline size_t verb_len(const char *s, size_t m)
{
	size_t vl = 0;

	while (vl < m && vl < 8 && !is_blank(s[vl]) && s[vl] != '{' &&
	       s[vl] != '\r' && s[vl] != '\n')
		vl++;
	return vl;
}

static bool starts_with_verb(const char *s, size_t m)
{
	return match_verb(s, verb_len(s, m)) != WS_NATS_NONE;
}

static enum ws_nats_err check_sizes(const struct ws_nats_parser *p,
				    const char *s, const uint16_t *hoff,
				    const uint16_t *hlen, const uint16_t *toff,
				    const uint16_t *tlen, struct ctl *c)
{
	uint64_t hdr = 0, total;

	if (!parse_u64(s + *toff, *tlen, &total))
		return WS_NATS_ERR_SIZE;
	if (hoff) {
		if (!parse_u64(s + *hoff, *hlen, &hdr))
			return WS_NATS_ERR_SIZE;
		if (hdr > total)
			return WS_NATS_ERR_HDR_SIZE;
	}
	if (total > p->max_payload)
		return WS_NATS_ERR_MAX_PAYLOAD;
	c->hdr = (uint32_t)hdr;
	c->total = (uint32_t)total;
	return WS_NATS_ERR_NONE;
}

/*
 * Parse one complete control line of n bytes, LF included (n <=
 * WS_NATS_MAX_LINE, so every offset fits a uint16_t).
 */
static enum ws_nats_err parse_line(const struct ws_nats_parser *p,
				   const char *s, size_t n, struct ctl *c)
{
	uint16_t off[MAX_ARGS], len[MAX_ARGS];
	size_t m = n - 1, vl, i;
	unsigned na = 0;
	uint8_t verb;

	/* nats-server takes the CR before the LF as optional. */
	if (m && s[m - 1] == '\r')
		m--;
	vl = verb_len(s, m);
	verb = match_verb(s, vl);
	if (verb == WS_NATS_NONE)
		return WS_NATS_ERR_VERB;
	memset(c, 0, sizeof(*c));
	c->verb = verb;

	if (verb == WS_NATS_INFO || verb == WS_NATS_CONNECT ||
	    verb == WS_NATS_ERR) {
		size_t j = m;

		for (i = vl; i < m && is_blank(s[i]); i++)
			;
		while (j > i && is_blank(s[j - 1]))
			j--;
		if (verb == WS_NATS_ERR) {
			if (j - i >= 2 && s[i] == '\'' && s[j - 1] == '\'') {
				i++;
				j--;
			}
		} else if (i == j || s[i] != '{') {
			/* e.g. HTTP's "CONNECT host:443 HTTP/1.1" */
			return WS_NATS_ERR_ARGS;
		}
		c->text_off = (uint16_t)i;
		c->text_len = (uint16_t)(j - i);
		return WS_NATS_ERR_NONE;
	}
	if (vl < m && !is_blank(s[vl]))
		return WS_NATS_ERR_ARGS; /* "PUB{": only JSON may touch a verb */

	for (i = vl;;) {
		size_t start;

		while (i < m && is_blank(s[i]))
			i++;
		if (i >= m)
			break;
		if (na == MAX_ARGS)
			return WS_NATS_ERR_ARGS;
		start = i;
		while (i < m && !is_blank(s[i]))
			i++;
		off[na] = (uint16_t)start;
		len[na] = (uint16_t)(i - start);
		na++;
	}

#define ARG(field, k)                    \
	do {                             \
		c->field##_off = off[k]; \
		c->field##_len = len[k]; \
	} while (0)

	switch (verb) {
	case WS_NATS_PUB: /* <subject> [reply-to] <#bytes> */
		if (na != 2 && na != 3)
			return WS_NATS_ERR_ARGS;
		ARG(subj, 0);
		if (na == 3)
			ARG(reply, 1);
		return check_sizes(p, s, NULL, NULL, &off[na - 1], &len[na - 1],
				   c);
	case WS_NATS_HPUB: /* <subject> [reply-to] <#hdr> <#total> */
		if (na != 3 && na != 4)
			return WS_NATS_ERR_ARGS;
		ARG(subj, 0);
		if (na == 4)
			ARG(reply, 1);
		return check_sizes(p, s, &off[na - 2], &len[na - 2],
				   &off[na - 1], &len[na - 1], c);
	case WS_NATS_MSG: /* <subject> <sid> [reply-to] <#bytes> */
		if (na != 3 && na != 4)
			return WS_NATS_ERR_ARGS;
		ARG(subj, 0);
		ARG(sid, 1);
		if (na == 4)
			ARG(reply, 2);
		return check_sizes(p, s, NULL, NULL, &off[na - 1], &len[na - 1],
				   c);
	case WS_NATS_HMSG: /* <subject> <sid> [reply-to] <#hdr> <#total> */
		if (na != 4 && na != 5)
			return WS_NATS_ERR_ARGS;
		ARG(subj, 0);
		ARG(sid, 1);
		if (na == 5)
			ARG(reply, 2);
		return check_sizes(p, s, &off[na - 2], &len[na - 2],
				   &off[na - 1], &len[na - 1], c);
	case WS_NATS_SUB: /* <subject> [queue group] <sid> */
		if (na != 2 && na != 3)
			return WS_NATS_ERR_ARGS;
		ARG(subj, 0);
		if (na == 3)
			ARG(queue, 1);
		ARG(sid, na - 1);
		return WS_NATS_ERR_NONE;
	case WS_NATS_UNSUB: /* <sid> [max_msgs] */
		if (na != 1 && na != 2)
			return WS_NATS_ERR_ARGS;
		ARG(sid, 0);
		if (na == 2 && !parse_u64(s + off[1], len[1], &c->max_msgs))
			return WS_NATS_ERR_ARGS;
		return WS_NATS_ERR_NONE;
	default: /* PING PONG +OK */
		return na ? WS_NATS_ERR_ARGS : WS_NATS_ERR_NONE;
	}
#undef ARG
}

static inline struct ws_nats_str str_at(const char *base, uint16_t off,
					uint16_t len)
{
	struct ws_nats_str s = {NULL, 0};

	if (len) {
		s.ptr = base + off;
		s.len = len;
	}
	return s;
}

static void count_error(struct ws_nats_parser *p, enum ws_nats_err err,
			uint64_t off)
{
	p->stats.errors[err]++;
	if (p->cb.error)
		p->cb.error(p->ctx, err, off);
}

/* Drop the current line or frame: its bytes were not a frame. */
static void drop_unit(struct ws_nats_parser *p)
{
	p->stats.skipped_bytes += p->pend;
	p->pend = 0;
}

/*
 * The header block of an HPUB/HMSG: avail of its hdr_len bytes are present
 * (fewer after a gap or when clipped). Returns WS_NATS_F_* flags.
 */
static uint32_t parse_headers(struct ws_nats_parser *p, const uint8_t *blk,
			      size_t avail, size_t hdr_len,
			      struct ws_nats_headers *h)
{
	const char *s = (const char *)blk;
	uint32_t flags = 0;
	size_t pos = 0, lim = min_sz(avail, hdr_len);
	bool first = true, ended = false;

	h->v = p->hdrs;
	if (hdr_len == 0)
		return 0;
	if (avail < hdr_len)
		flags |= WS_NATS_F_HDR_TRUNCATED;

	while (pos < lim) {
		const char *nl = memchr(s + pos, '\n', lim - pos);
		size_t a = pos, b, colon;

		if (!nl)
			break; /* a partial line: truncated, or no end */
		b = (size_t)(nl - s);
		pos = b + 1;
		if (b > a && s[b - 1] == '\r')
			b--;
		if (first) {
			/* "NATS/1.0" [blank status [blank description]] */
			first = false;
			if (b - a < 8 || memcmp(s + a, "NATS/1.0", 8)) {
				flags |= WS_NATS_F_BAD_HEADERS;
				break;
			}
			a += 8;
			if (a < b && !is_blank(s[a])) {
				flags |= WS_NATS_F_BAD_HEADERS;
				continue;
			}
			while (a < b && is_blank(s[a]))
				a++;
			if (b - a >= 3 && s[a] >= '0' && s[a] <= '9' &&
			    s[a + 1] >= '0' && s[a + 1] <= '9' &&
			    s[a + 2] >= '0' && s[a + 2] <= '9') {
				h->status = (uint16_t)((s[a] - '0') * 100 +
						       (s[a + 1] - '0') * 10 +
						       (s[a + 2] - '0'));
				a += 3;
				while (a < b && is_blank(s[a]))
					a++;
				while (b > a && is_blank(s[b - 1]))
					b--;
				if (b > a) {
					h->desc.ptr = s + a;
					h->desc.len = b - a;
				}
			} else if (a < b) {
				flags |= WS_NATS_F_BAD_HEADERS;
			}
			continue;
		}
		if (a == b) {
			/* The empty line must be the block's last bytes. */
			ended = true;
			if (pos != hdr_len)
				flags |= WS_NATS_F_BAD_HEADERS;
			break;
		}
		for (colon = a; colon < b && s[colon] != ':'; colon++)
			;
		if (colon == b || colon == a) {
			flags |= WS_NATS_F_BAD_HEADERS;
			continue;
		}
		if (h->n == WS_NATS_MAX_HEADERS) {
			flags |= WS_NATS_F_HEADERS_DROPPED;
			p->stats.headers_dropped++;
			continue;
		}
		{
			struct ws_nats_header *e = &p->hdrs[h->n++];
			size_t va = colon + 1, vb = b;

			while (va < vb && is_blank(s[va]))
				va++;
			while (vb > va && is_blank(s[vb - 1]))
				vb--;
			e->name.ptr = s + a;
			e->name.len = colon - a;
			e->value.ptr = vb > va ? s + va : NULL;
			e->value.len = vb - va;
		}
	}
	if (!ended && !(flags & WS_NATS_F_HDR_TRUNCATED))
		flags |= WS_NATS_F_BAD_HEADERS; /* no empty line to end it */
	return flags;
}

/* INFO: pick max_payload out of the JSON and adopt it. */
static uint32_t parse_info(struct ws_nats_parser *p, const char *json,
			   size_t len, struct ws_nats_frame *f)
{
	struct json_tokener *tok;
	struct json_object *o, *v;
	uint32_t flags = 0;

	tok = json_tokener_new();
	if (!tok) {
		p->stats.nomem++;
		return 0;
	}
	o = json_tokener_parse_ex(tok, json, (int)len);
	if (!o || !json_object_is_type(o, json_type_object)) {
		flags = WS_NATS_F_BAD_JSON;
		p->stats.bad_json++;
	} else if (json_object_object_get_ex(o, "max_payload", &v) &&
		   json_object_is_type(v, json_type_int)) {
		int64_t mp = json_object_get_int64(v);

		if (mp > 0) {
			f->info_max_payload = (uint64_t)mp;
			ws_nats_parser_set_max_payload(p, (uint64_t)mp);
		}
	}
	json_object_put(o);
	json_tokener_free(tok);
	return flags;
}

static void fill_fields(struct ws_nats_frame *f, const char *base,
			const struct ctl *c)
{
	f->verb = (enum ws_nats_verb)c->verb;
	f->subject = str_at(base, c->subj_off, c->subj_len);
	f->reply = str_at(base, c->reply_off, c->reply_len);
	f->sid = str_at(base, c->sid_off, c->sid_len);
	f->queue = str_at(base, c->queue_off, c->queue_len);
	f->max_msgs = c->max_msgs;
}

/* A frame without payload; the line is at base, p->pend bytes long. */
static void emit_line(struct ws_nats_parser *p, const char *base,
		      const struct ctl *c)
{
	struct ws_nats_frame f;

	memset(&f, 0, sizeof(f));
	fill_fields(&f, base, c);
	f.offset = p->unit_off;
	f.wire_len = p->pend;
	if (c->verb == WS_NATS_INFO || c->verb == WS_NATS_CONNECT)
		f.json = str_at(base, c->text_off, c->text_len);
	else if (c->verb == WS_NATS_ERR)
		f.err = str_at(base, c->text_off, c->text_len);
	if (c->verb == WS_NATS_INFO)
		f.flags |= parse_info(p, f.json.ptr, f.json.len, &f);
	p->stats.frames[c->verb]++;
	p->stats.frame_bytes += p->pend;
	p->pend = 0;
	p->cb.frame(p->ctx, &f);
}

/*
 * A frame with payload. pl holds the first avail payload bytes (avail <=
 * min(total, WS_NATS_MAX_PAYLOAD_KEEP)); data is the frame's data bytes and
 * wire_len its stream length, gaps included.
 */
static void emit_msg(struct ws_nats_parser *p, const char *base,
		     const struct ctl *c, const uint8_t *pl, size_t avail,
		     uint32_t flags, uint64_t data, uint64_t wire_len)
{
	struct ws_nats_frame f;

	memset(&f, 0, sizeof(f));
	fill_fields(&f, base, c);
	f.offset = p->unit_off;
	f.wire_len = wire_len;
	f.hdr_len = c->hdr;
	f.total_len = c->total;
	if (avail < c->total)
		flags |= WS_NATS_F_TRUNCATED;
	if (c->total > WS_NATS_MAX_PAYLOAD_KEEP) {
		flags |= WS_NATS_F_CLIPPED;
		p->stats.payload_clipped++;
	}
	if (flags & WS_NATS_F_GAP)
		p->stats.gap_payloads++;
	if (c->verb == WS_NATS_HPUB || c->verb == WS_NATS_HMSG) {
		f.hdr_block_len = min_sz(avail, c->hdr);
		f.hdr_block = f.hdr_block_len ? pl : NULL;
		flags |= parse_headers(p, pl, avail, c->hdr, &f.headers);
		if (flags & WS_NATS_F_BAD_HEADERS)
			p->stats.bad_headers++;
	}
	if (avail > c->hdr) {
		f.payload = pl + c->hdr;
		f.payload_len = avail - c->hdr;
	}
	f.flags = flags;
	p->stats.frames[c->verb]++;
	p->stats.frame_bytes += data;
	p->cb.frame(p->ctx, &f);
}

/* Room in keep[] for need bytes; grows geometrically to bound reallocs. */
static bool keep_reserve(struct ws_nats_parser *p, size_t need)
{
	size_t cap;
	uint8_t *k;

	if (need <= p->keep_cap)
		return true;
	cap = p->keep_cap ? p->keep_cap : 512;
	while (cap < need)
		cap *= 2;
	if (cap > WS_NATS_MAX_PAYLOAD_KEEP)
		cap = WS_NATS_MAX_PAYLOAD_KEEP;
	k = realloc(p->keep, cap);
	if (!k) {
		p->stats.nomem++;
		return false;
	}
	p->keep = k;
	p->keep_cap = (uint32_t)cap;
	return true;
}

/*
 * A complete control line of n bytes at s (p->pend == n, p->unit_off set).
 * When s is in the caller's buffer, after/after_len are the bytes that follow
 * it there, and a frame whose payload is all there is emitted in place.
 * Returns how many of those following bytes were consumed.
 */
static size_t on_line(struct ws_nats_parser *p, const char *s, size_t n,
		      const uint8_t *after, size_t after_len)
{
	enum ws_nats_err err;
	struct ctl c;
	uint64_t need;

	err = parse_line(p, s, n, &c);
	if (err != WS_NATS_ERR_NONE) {
		if (err != WS_NATS_ERR_VERB || !p->resync)
			count_error(p, err, p->unit_off);
		drop_unit(p);
		p->resync = true;
		return 0;
	}
	p->resync = false;
	if (!has_payload(c.verb)) {
		emit_line(p, s, &c);
		return 0;
	}

	need = (uint64_t)c.total + 2;
	if (after && after_len >= need && after[c.total] == '\r' &&
	    after[c.total + 1] == '\n') {
		uint64_t data = p->pend + need;

		emit_msg(p, s, &c, after,
			 min_sz(c.total, WS_NATS_MAX_PAYLOAD_KEEP), 0, data,
			 data);
		p->pend = 0;
		return (size_t)need;
	}

	/* The payload continues in later feeds: hold the line and a prefix. */
	if (s != p->line)
		memcpy(p->line, s, n);
	p->ctl = c;
	p->st = ST_PAYLOAD;
	p->remain = need;
	p->flags = 0;
	p->kept = 0;
	p->keeping = keep_reserve(p, min_sz(c.total, WS_NATS_MAX_PAYLOAD_KEEP));
	return 0;
}

/* ST_PAYLOAD is over; end is the stream offset just past the frame. */
static void finish_msg(struct ws_nats_parser *p, uint64_t end)
{
	emit_msg(p, p->line, &p->ctl, p->keep, p->kept, p->flags, p->pend,
		 end - p->unit_off);
	p->pend = 0;
	p->st = ST_LINE;
}

/*
 * A line that will not fit. Too long for a NATS line if it starts like one;
 * otherwise it is garbage like any other line without a verb.
 */
static void line_too_long(struct ws_nats_parser *p)
{
	if (starts_with_verb(p->line, p->line_len))
		count_error(p, WS_NATS_ERR_LINE_TOO_LONG, p->unit_off);
	else if (!p->resync)
		count_error(p, WS_NATS_ERR_VERB, p->unit_off);
	p->line_len = 0;
	drop_unit(p);
	p->resync = true;
	p->st = ST_DISCARD;
}

/* ST_LINE with a partial line held, or none yet and no LF in sight. */
static const uint8_t *line_append(struct ws_nats_parser *p, const uint8_t *cur,
				  const uint8_t *end, uint64_t off)
{
	size_t room = WS_NATS_MAX_LINE - p->line_len;
	size_t n = min_sz((size_t)(end - cur), room);
	const uint8_t *nl = memchr(cur, '\n', n);
	size_t take = nl ? (size_t)(nl - cur) + 1 : n;

	if (p->line_len == 0)
		p->unit_off = off;
	memcpy(p->line + p->line_len, cur, take);
	p->line_len += (uint32_t)take;
	p->pend += take;
	if (nl) {
		size_t len = p->line_len;

		p->line_len = 0;
		on_line(p, p->line, len, NULL, 0);
	} else if (p->line_len == WS_NATS_MAX_LINE) {
		line_too_long(p);
	}
	return cur + take;
}

/* ST_PAYLOAD: count down the payload, keep its prefix, check its CRLF. */
static const uint8_t *payload_feed(struct ws_nats_parser *p, const uint8_t *cur,
				   const uint8_t *end, uint64_t off)
{
	uint64_t total = p->ctl.total;
	uint64_t pos = total + 2 - p->remain;
	const uint8_t *start = cur;

	if (pos < total) {
		size_t n = (size_t)min_sz((size_t)(end - cur), total - pos);
		size_t lim = min_sz(total, WS_NATS_MAX_PAYLOAD_KEEP);

		/* While keeping, kept == pos: the prefix is contiguous. */
		if (p->keeping && pos < lim) {
			size_t k = min_sz(n, lim - pos);

			memcpy(p->keep + pos, cur, k);
			p->kept = (uint32_t)(pos + k);
		}
		cur += n;
		pos += n;
		p->remain -= n;
		p->pend += n;
	}
	while (cur < end && p->remain) {
		char want = pos == total ? '\r' : '\n';
		char b = (char)*cur++;

		p->pend++;
		if (b != want) {
			/*
			 * The size lied. Drop the frame and resync from here;
			 * if the stray byte ends a line, the next one starts a
			 * line.
			 */
			count_error(p, WS_NATS_ERR_PAYLOAD_END, p->unit_off);
			drop_unit(p);
			p->resync = true;
			p->st = b == '\n' ? ST_LINE : ST_DISCARD;
			return cur;
		}
		pos++;
		p->remain--;
	}
	if (!p->remain)
		finish_msg(p, off + (uint64_t)(cur - start));
	return cur;
}

int ws_nats_parser_feed(struct ws_nats_parser *p, const uint8_t *buf,
			size_t len)
{
	const uint8_t *cur = buf, *end = buf + len, *nl;
	uint64_t off0;

	if (!p || (!buf && len))
		return -EINVAL;
	if (!len)
		return 0;
	off0 = p->offset;
	p->stats.bytes += len;

	while (cur < end) {
		uint64_t off = off0 + (uint64_t)(cur - buf);

		switch (p->st) {
		case ST_LINE:
			if (p->line_len == 0) {
				size_t avail = (size_t)(end - cur);

				nl = memchr(cur, '\n',
					    min_sz(avail, WS_NATS_MAX_LINE));
				if (nl) {
					/* Fast path: parse in place. */
					size_t n = (size_t)(nl - cur) + 1;

					p->unit_off = off;
					p->pend = n;
					cur += n;
					cur += on_line(
						p, (const char *)(nl + 1 - n),
						n, cur, (size_t)(end - cur));
					break;
				}
			}
			cur = line_append(p, cur, end, off);
			break;
		case ST_PAYLOAD:
			cur = payload_feed(p, cur, end, off);
			break;
		default: /* ST_DISCARD */
			nl = memchr(cur, '\n', (size_t)(end - cur));
			if (!nl) {
				p->stats.skipped_bytes += (size_t)(end - cur);
				cur = end;
			} else {
				p->stats.skipped_bytes +=
					(size_t)(nl - cur) + 1;
				cur = nl + 1;
				p->st = ST_LINE;
			}
			break;
		}
	}
	p->offset = off0 + len;
	return 0;
}

int ws_nats_parser_gap(struct ws_nats_parser *p, uint64_t len)
{
	if (!p)
		return -EINVAL;
	if (!len)
		return 0;
	p->stats.gaps++;
	p->stats.gap_bytes += len;

	if (p->st == ST_PAYLOAD) {
		uint64_t skip = len < p->remain ? len : p->remain;

		/* The prefix kept so far stays; nothing after it joins it. */
		p->keeping = false;
		p->flags |= WS_NATS_F_GAP;
		p->remain -= skip;
		p->offset += skip;
		len -= skip;
		if (p->remain)
			return 0;
		finish_msg(p, p->offset);
		if (!len)
			return 0; /* the gap ended with the frame: in sync */
	}
	if (p->st == ST_LINE && p->line_len) {
		p->stats.gap_lines++;
		p->line_len = 0;
		drop_unit(p);
	}
	/* Whatever follows may start mid-line. */
	p->st = ST_LINE;
	p->resync = true;
	p->offset += len;
	return 0;
}

struct ws_nats_parser *ws_nats_parser_new(const struct ws_nats_cb *cb,
					  void *ctx)
{
	struct ws_nats_parser *p;

	if (!cb || !cb->frame) {
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		errno = ENOMEM;
		return NULL;
	}
	p->cb = *cb;
	p->ctx = ctx;
	p->max_payload = WS_NATS_DEFAULT_MAX_PAYLOAD;
	return p;
}

void ws_nats_parser_free(struct ws_nats_parser *p)
{
	if (!p)
		return;
	free(p->keep);
	free(p);
}

int ws_nats_parser_set_max_payload(struct ws_nats_parser *p,
				   uint64_t max_payload)
{
	if (!p)
		return -EINVAL;
	if (max_payload == 0)
		max_payload = WS_NATS_DEFAULT_MAX_PAYLOAD;
	if (max_payload > WS_NATS_MAX_PAYLOAD_CAP) {
		p->stats.max_payload_clamp++;
		max_payload = WS_NATS_MAX_PAYLOAD_CAP;
	}
	p->max_payload = max_payload;
	return 0;
}

uint64_t ws_nats_parser_max_payload(const struct ws_nats_parser *p)
{
	return p ? p->max_payload : 0;
}

const struct ws_nats_stats *ws_nats_parser_stats(const struct ws_nats_parser *p)
{
	return p ? &p->stats : NULL;
}

uint64_t ws_nats_parser_pending(const struct ws_nats_parser *p)
{
	return p ? p->pend : 0;
}

const struct ws_nats_header *
ws_nats_header_find(const struct ws_nats_headers *h, const char *name,
		    const struct ws_nats_header *prev)
{
	size_t nl, i;

	if (!h || !name || !h->v)
		return NULL;
	nl = strlen(name);
	i = prev ? (size_t)(prev - h->v) + 1 : 0;
	for (; i < h->n; i++) {
		const struct ws_nats_header *e = &h->v[i];

		if (e->name.len == nl && ascii_ieq(e->name.ptr, name, nl))
			return e;
	}
	return NULL;
}

/* Tokens after "$JS.ACK.": 7 in the v1 form, 9 or more in v2. */
#define JS_ACK_V1_TOKENS 7
#define JS_ACK_V2_TOKENS 9

int ws_nats_parse_js_ack(const char *subject, size_t len,
			 struct ws_nats_js_ack *ack)
{
	struct ws_nats_str t[JS_ACK_V2_TOKENS + 1];
	const struct ws_nats_str *num;
	const char *s, *e;
	unsigned nt = 0;

	if (!subject || !ack || len < 8 || memcmp(subject, "$JS.ACK.", 8))
		return -EINVAL;
	s = subject + 8;
	e = subject + len;
	/* Split into at most 9 tokens plus the rest, which is v2's token. */
	for (;;) {
		const char *dot;

		if (nt == JS_ACK_V2_TOKENS) {
			t[nt].ptr = s;
			t[nt++].len = (size_t)(e - s);
			break;
		}
		dot = memchr(s, '.', (size_t)(e - s));
		t[nt].ptr = s;
		t[nt].len = (size_t)((dot ? dot : e) - s);
		if (!t[nt++].len)
			return -EINVAL;
		if (!dot)
			break;
		s = dot + 1;
	}

	memset(ack, 0, sizeof(*ack));
	if (nt == JS_ACK_V1_TOKENS) {
		num = &t[2];
	} else if (nt >= JS_ACK_V2_TOKENS) {
		/* "$JS.ACK.a.b.c.d.e.f.g.h.i." has an empty token: invalid. */
		if (nt > JS_ACK_V2_TOKENS && !t[JS_ACK_V2_TOKENS].len)
			return -EINVAL;
		ack->v2 = true;
		if (!(t[0].len == 1 && t[0].ptr[0] == '_'))
			ack->domain = t[0];
		ack->account = t[1];
		if (nt > JS_ACK_V2_TOKENS)
			ack->token = t[JS_ACK_V2_TOKENS];
		memmove(t, t + 2, 7 * sizeof(t[0]));
		num = &t[2];
	} else {
		return -EINVAL;
	}
	ack->stream = t[0];
	ack->consumer = t[1];
	if (!parse_u64(num[0].ptr, num[0].len, &ack->delivered) ||
	    !parse_u64(num[1].ptr, num[1].len, &ack->stream_seq) ||
	    !parse_u64(num[2].ptr, num[2].len, &ack->consumer_seq) ||
	    !parse_u64(num[3].ptr, num[3].len, &ack->timestamp_ns) ||
	    !parse_u64(num[4].ptr, num[4].len, &ack->pending)) {
		memset(ack, 0, sizeof(*ack));
		return -EINVAL;
	}
	return 0;
}

/* struct ws_parser_ops: user is a const struct ws_nats_sink *. */
static void *ops_create(void *user)
{
	const struct ws_nats_sink *sink = user;

	if (!sink) {
		errno = EINVAL;
		return NULL;
	}
	return ws_nats_parser_new(sink->cb, sink->ctx);
}

static int ops_feed(void *state, const uint8_t *buf, size_t len)
{
	return ws_nats_parser_feed(state, buf, len);
}

static int ops_gap(void *state, uint64_t len)
{
	return ws_nats_parser_gap(state, len);
}

static void ops_destroy(void *state)
{
	ws_nats_parser_free(state);
}

const struct ws_parser_ops ws_nats_parser_ops = {
	.name = "nats",
	.proto = WS_PROTO_NATS,
	.create = ops_create,
	.feed = ops_feed,
	.gap = ops_gap,
	.destroy = ops_destroy,
};
