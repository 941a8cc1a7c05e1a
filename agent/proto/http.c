/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.x message parser: see http.h for the contract.
 *
 * States. ST_HEAD collects a head line by line (start line, field lines, the
 * empty line); ST_BODY counts down a Content-Length body; ST_CHUNK walks the
 * chunked framing byte by byte (cst) and skips chunk data in bulk;
 * ST_CLOSE_BODY counts a body that ends at eof; ST_DISCARD drops bytes up to
 * the next LF; ST_STOPPED counts everything after an upgrade, HTTP/2 or TLS.
 *
 * Fast path: with no partial head held, the head is parsed in place in the
 * caller's buffer (memchr per line, no copy). Only when the buffer ends inside
 * the head is the partial head copied into head[], and then further bytes are
 * appended one line at a time. Either way each line is handed whole to the
 * same line functions, with field positions kept as offsets from the head's
 * first byte, so the result cannot depend on how the stream was split. A
 * message whose body outlives the feed gets its head copied at the end of the
 * feed, so COMPLETE can still show it.
 *
 * Decisions made before a line is complete (a start line that can no longer
 * become valid, a TLS record or HTTP/2 frame at a message start) look only at
 * the bytes of the line seen so far and never reverse as more arrive, and a
 * complete line gets the same verdict; only how early they are taken depends
 * on the split, never what they decide or which bytes they drop.
 *
 * Resynchronisation: after an error or a gap we no longer know where
 * messages begin. p->resync is then set: lines are skipped without being
 * counted (one bad region counts once) until one is a request line with a
 * standard method (a status line for responses); that clears it, and the
 * message it starts is flagged WS_HTTP_F_RESYNC.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wirespan/abi.h"
#include "proto/http.h"

_Static_assert(WS_HTTP_MAX_HEAD <= 65536u && WS_HTTP_MAX_HEAD >= 64u,
	       "head offsets are 16-bit");
_Static_assert(WS_HTTP_MAX_HEADERS >= 1u && WS_HTTP_MAX_HEADERS <= 4096u,
	       "header array lives on the stack while emitting");
_Static_assert(WS_HTTP_MAX_PIPELINE >= 1u && WS_HTTP_MAX_PIPELINE <= 65536u,
	       "pipeline queue indexes are 32-bit");

enum http_state {
	ST_HEAD = 0,
	ST_DISCARD,
	ST_BODY,
	ST_CHUNK,
	ST_CLOSE_BODY,
	ST_STOPPED,
};

/* ST_CHUNK sub-states. */
enum chunk_state {
	CH_SIZE = 0, /* hex digits of a chunk-size line */
	CH_SIZE_WS,  /* blanks after the digits */
	CH_EXT,	     /* chunk extensions, up to the line end */
	CH_SIZE_LF,  /* CR seen on a chunk-size line: LF must follow */
	CH_DATA,     /* remain chunk data bytes to come */
	CH_DATA_CR,  /* after chunk data: CR or LF */
	CH_DATA_LF,  /* after chunk data and CR: LF */
	CH_TRAILER,  /* trailer section, line by line */
};

/* How a message's body is framed, decided when its head is complete. */
enum body_kind {
	B_NONE = 0,
	B_LENGTH,
	B_CHUNKED,
	B_CLOSE,
	B_TUNNEL, /* no body, then the connection changes protocol */
};

/* head_scan() results. */
enum scan {
	HS_MORE = 0, /* the head goes on past the bytes given */
	HS_DONE,     /* the head ends at p->hpos */
	HS_DROP,     /* drop the first p->hpos bytes; p->st says what next */
	HS_STOP,     /* stop parsing: p->stop_why says why */
};

/* start line verdicts */
enum sl {
	SL_NEED = 0, /* valid so far: the line is not complete */
	SL_OK,
	SL_BAD,
	SL_H2, /* "PRI * HTTP/2.0" */
};

/* A field line: offsets from the head's first byte. */
struct hdr_off {
	uint16_t name_off, name_len;
	uint16_t value_off, value_len;
};

/* The message being parsed. Offsets are from the head's first byte. */
struct msg_state {
	uint64_t start_off;
	uint64_t head_end_off;
	uint64_t content_length;
	uint64_t body_len;
	uint64_t body_gap;
	uint64_t chunks;
	uint64_t trailers;
	uint32_t flags;	 /* WS_HTTP_F_* */
	uint32_t lines;	 /* field lines so far */
	uint32_t nhdr;	 /* entries in hdrs[] */
	uint16_t status; /* response */
	uint8_t version;
	uint8_t method;
	uint16_t meth_len; /* request: the method starts the head */
	uint16_t tgt_off, tgt_len;
	uint16_t path_off, path_len;
	uint16_t query_off, query_len;
	uint16_t reason_off, reason_len;
	uint8_t te_chunked; /* "chunked" codings seen */
	bool start_seen;
	bool fold_ok; /* the previous line was a stored field */
	bool cl_present, cl_bad;
	bool te_present, te_chunked_last;
	bool conn_close, conn_keep_alive;
};

struct ws_http_parser {
	struct ws_http_cb cb;
	void *ctx;
	uint8_t kind;	      /* enum ws_http_kind */
	uint8_t st;	      /* enum http_state */
	uint8_t cst;	      /* enum chunk_state */
	uint8_t stop_why;     /* enum ws_http_stop */
	bool resync;	      /* not known to be at a message start */
	bool lost;	      /* flag the next message WS_HTTP_F_RESYNC */
	bool upgrade_pending; /* request: the last one asked to switch */
	bool closed;	      /* eof() was called */
	uint64_t offset;      /* stream offset of the next byte, outside feed */
	const uint8_t *fbuf;  /* during feed: the caller's buffer ... */
	uint64_t foff;	      /* ... and the stream offset of its first byte */
	uint64_t pend;	      /* data bytes consumed into the current message */
	/* The head: in head[] or, during a feed, in the caller's buffer. */
	const char *hbase;
	uint32_t hlen; /* ST_HEAD: bytes held; later: the head's length */
	uint32_t hpos; /* ST_HEAD: bytes of complete lines already parsed */
	uint32_t hcap;
	char *head;	 /* grown on demand up to WS_HTTP_MAX_HEAD */
	uint64_t remain; /* ST_BODY: body bytes; CH_DATA: chunk bytes to come */
	uint64_t csize;	 /* chunk-size being read */
	uint32_t cline;	 /* bytes of the chunk-size line so far */
	uint32_t cdigits;
	uint32_t tline;	 /* bytes of the current trailer line */
	uint32_t tbytes; /* bytes of the trailer section */
	/* Response: methods of the requests not answered yet, oldest first. */
	uint32_t qhead, qlen;
	uint8_t q[WS_HTTP_MAX_PIPELINE];
	struct msg_state m;
	struct ws_http_stats stats;
	struct hdr_off hdrs[WS_HTTP_MAX_HEADERS];
};

static const char *const method_names[WS_HTTP_M_MAX] = {
	[WS_HTTP_M_NONE] = "?",		 [WS_HTTP_M_GET] = "GET",
	[WS_HTTP_M_HEAD] = "HEAD",	 [WS_HTTP_M_POST] = "POST",
	[WS_HTTP_M_PUT] = "PUT",	 [WS_HTTP_M_DELETE] = "DELETE",
	[WS_HTTP_M_CONNECT] = "CONNECT", [WS_HTTP_M_OPTIONS] = "OPTIONS",
	[WS_HTTP_M_TRACE] = "TRACE",	 [WS_HTTP_M_PATCH] = "PATCH",
	[WS_HTTP_M_OTHER] = "OTHER",
};

static const char *const err_names[WS_HTTP_ERR_MAX] = {
	[WS_HTTP_ERR_NONE] = "none",
	[WS_HTTP_ERR_START_LINE] = "start_line",
	[WS_HTTP_ERR_HEAD_TOO_BIG] = "head_too_big",
	[WS_HTTP_ERR_TOO_MANY_HEADERS] = "too_many_headers",
	[WS_HTTP_ERR_CONTENT_LENGTH] = "content_length",
	[WS_HTTP_ERR_TRANSFER_ENCODING] = "transfer_encoding",
	[WS_HTTP_ERR_CHUNK_SIZE] = "chunk_size",
	[WS_HTTP_ERR_CHUNK_END] = "chunk_end",
	[WS_HTTP_ERR_TRAILERS] = "trailers",
};

static const char *const stop_names[WS_HTTP_STOP_MAX] = {
	[WS_HTTP_STOP_NONE] = "none",
	[WS_HTTP_STOP_TUNNEL] = "tunnel",
	[WS_HTTP_STOP_H2] = "h2",
	[WS_HTTP_STOP_TLS] = "tls",
};

/* RFC 9110 tchar: the bytes of a token (method, field name). */
static const uint8_t tchar[256] = {
	/* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	/* 0x20 */ 0, 1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0,
	/* 0x30 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
	/* 0x40 */ 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	/* 0x50 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1,
	/* 0x60 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	/* 0x70 */ 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 0,
};

const char *ws_http_method_name(enum ws_http_method method)
{
	if ((unsigned)method >= WS_HTTP_M_MAX)
		return "?";
	return method_names[method];
}

const char *ws_http_err_name(enum ws_http_err err)
{
	if ((unsigned)err >= WS_HTTP_ERR_MAX)
		return "unknown";
	return err_names[err];
}

const char *ws_http_stop_name(enum ws_http_stop stop)
{
	if ((unsigned)stop >= WS_HTTP_STOP_MAX)
		return "unknown";
	return stop_names[stop];
}

static inline bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_tchar(char c)
{
	return tchar[(unsigned char)c] != 0;
}

/* A request-target byte: no controls, no blanks. */
static inline bool is_target(char c)
{
	return (unsigned char)c > 0x20 && c != 0x7f;
}

static inline size_t min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* ASCII-only so the result never depends on the process locale. */
static inline char ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

/* a (n bytes) equals the lower-case b, ignoring ASCII case. */
static bool ascii_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(a[i]) != b[i])
			return false;
	return true;
}

static bool ascii_ieq_any(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(a[i]) != ascii_lower(b[i]))
			return false;
	return true;
}

enum ws_http_method ws_http_method_parse(const char *s, size_t len)
{
	if (!s)
		return WS_HTTP_M_OTHER;
	switch (len) {
	case 3:
		if (!memcmp(s, "GET", 3))
			return WS_HTTP_M_GET;
		if (!memcmp(s, "PUT", 3))
			return WS_HTTP_M_PUT;
		break;
	case 4:
		if (!memcmp(s, "POST", 4))
			return WS_HTTP_M_POST;
		if (!memcmp(s, "HEAD", 4))
			return WS_HTTP_M_HEAD;
		break;
	case 5:
		if (!memcmp(s, "PATCH", 5))
			return WS_HTTP_M_PATCH;
		if (!memcmp(s, "TRACE", 5))
			return WS_HTTP_M_TRACE;
		break;
	case 6:
		if (!memcmp(s, "DELETE", 6))
			return WS_HTTP_M_DELETE;
		break;
	case 7:
		if (!memcmp(s, "OPTIONS", 7))
			return WS_HTTP_M_OPTIONS;
		if (!memcmp(s, "CONNECT", 7))
			return WS_HTTP_M_CONNECT;
		break;
	}
	return WS_HTTP_M_OTHER;
}

/* s (n bytes) could still grow into a standard method name. */
static bool method_prefix(const char *s, size_t n)
{
	for (int m = WS_HTTP_M_GET; m < WS_HTTP_M_OTHER; m++) {
		const char *name = method_names[m];

		if (n <= strlen(name) && !memcmp(s, name, n))
			return true;
	}
	return false;
}

/* A decimal number up to INT64_MAX; no sign, no blanks. */
static bool parse_len(const char *s, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned char)s[i] - '0';

		if (d > 9 || v > ((uint64_t)INT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = v;
	return true;
}

static inline int hex_val(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * The next element of a comma-separated list in v (n bytes) from *pos, with
 * blanks trimmed; false when the list is exhausted. Empty elements are
 * returned (len 0) so callers can reject them where they matter.
 */
static bool list_next(const char *v, size_t n, size_t *pos, const char **e,
		      size_t *elen)
{
	size_t a = *pos, b;

	if (a > n)
		return false;
	for (b = a; b < n && v[b] != ','; b++)
		;
	*pos = b + 1;
	while (a < b && is_blank(v[a]))
		a++;
	while (b > a && is_blank(v[b - 1]))
		b--;
	*e = v + a;
	*elen = b - a;
	return true;
}

static inline uint64_t at(const struct ws_http_parser *p, const uint8_t *c)
{
	return p->foff + (uint64_t)(c - p->fbuf);
}

static void count_error(struct ws_http_parser *p, enum ws_http_err err,
			uint64_t off)
{
	p->stats.errors[err]++;
	if (p->cb.error)
		p->cb.error(p->ctx, err, off);
}

/* Start a new head whose first byte is at stream offset off. */
static void msg_reset(struct ws_http_parser *p, uint64_t off)
{
	memset(&p->m, 0, sizeof(p->m));
	p->m.start_off = off;
	p->hbase = NULL;
	p->hlen = 0;
	p->hpos = 0;
}

/* Drop the bytes of the current message: they were not a message. */
static void drop_unit(struct ws_http_parser *p)
{
	p->stats.skipped_bytes += p->pend;
	p->pend = 0;
	p->hbase = NULL;
	p->hlen = 0;
	p->hpos = 0;
}

/* Stop parsing the direction; bytes held so far count as stopped. */
static void stop(struct ws_http_parser *p, enum ws_http_stop why)
{
	p->stats.stops[why]++;
	p->stats.stopped_bytes += p->pend;
	p->pend = 0;
	p->stop_why = (uint8_t)why;
	p->st = ST_STOPPED;
	p->hbase = NULL;
	p->hlen = 0;
	p->hpos = 0;
}

/* Lost track of message boundaries: skip to a start line. */
static void lose_sync(struct ws_http_parser *p)
{
	p->resync = true;
	p->lost = true;
}

/* Room in head[] for need bytes; grows geometrically to bound reallocs. */
static bool head_reserve(struct ws_http_parser *p, size_t need)
{
	size_t cap;
	char *h;

	if (need <= p->hcap)
		return true;
	cap = p->hcap ? p->hcap : 512;
	while (cap < need)
		cap *= 2;
	if (cap > WS_HTTP_MAX_HEAD)
		cap = WS_HTTP_MAX_HEAD;
	h = realloc(p->head, cap);
	if (!h) {
		p->stats.nomem++;
		return false;
	}
	p->head = h;
	p->hcap = (uint32_t)cap;
	return true;
}

static inline struct ws_http_str str_at(const char *base, uint16_t off,
					uint16_t len)
{
	struct ws_http_str s = {NULL, 0};

	if (len) {
		s.ptr = base + off;
		s.len = len;
	}
	return s;
}

/*
 * The message as the callback sees it, with its strings in p->hbase; hv
 * holds WS_HTTP_MAX_HEADERS entries.
 */
static void msg_build(const struct ws_http_parser *p, struct ws_http_msg *x,
		      struct ws_http_header *hv)
{
	const struct msg_state *m = &p->m;
	const char *b = p->hbase;

	memset(x, 0, sizeof(*x));
	x->kind = (enum ws_http_kind)p->kind;
	x->flags = m->flags;
	x->version = m->version;
	x->method = (enum ws_http_method)m->method;
	x->status = m->status;
	x->start_off = m->start_off;
	x->head_end_off = m->head_end_off;
	if (m->flags & WS_HTTP_F_CONTENT_LENGTH)
		x->content_length = m->content_length;
	if (!b) {
		x->flags |= WS_HTTP_F_NOMEM;
		return;
	}
	x->method_name = str_at(b, 0, m->meth_len);
	x->target = str_at(b, m->tgt_off, m->tgt_len);
	x->path = str_at(b, m->path_off, m->path_len);
	x->query = str_at(b, m->query_off, m->query_len);
	x->reason = str_at(b, m->reason_off, m->reason_len);
	for (uint32_t i = 0; i < m->nhdr; i++) {
		const struct hdr_off *h = &p->hdrs[i];

		hv[i].name = str_at(b, h->name_off, h->name_len);
		hv[i].value = str_at(b, h->value_off, h->value_len);
	}
	x->headers.v = hv;
	x->headers.n = m->nhdr;
}

/* COMPLETE for x (built by msg_build) ending before stream offset end_off. */
static void msg_finish(struct ws_http_parser *p, struct ws_http_msg *x,
		       uint64_t end_off)
{
	const struct msg_state *m = &p->m;

	if (m->flags & WS_HTTP_F_GAP)
		p->stats.gap_bodies++;
	if (m->flags & WS_HTTP_F_TRUNCATED)
		p->stats.truncated++;
	p->stats.messages++;
	p->stats.msg_bytes += p->pend;
	p->pend = 0;
	x->flags = m->flags | (x->flags & WS_HTTP_F_NOMEM);
	x->end_off = end_off;
	x->body_len = m->body_len;
	x->body_gap = m->body_gap;
	x->chunks = m->chunks;
	x->trailers = m->trailers;
	p->cb.msg(p->ctx, WS_HTTP_EV_COMPLETE, x);
	p->st = ST_HEAD;
	p->hbase = NULL;
	p->hlen = 0;
	p->hpos = 0;
}

/* The message has ended just before stream offset end_off. */
static void complete(struct ws_http_parser *p, uint64_t end_off)
{
	struct ws_http_header hv[WS_HTTP_MAX_HEADERS];
	struct ws_http_msg x;

	msg_build(p, &x, hv);
	msg_finish(p, &x, end_off);
}

/* ---- start lines ---------------------------------------------------- */

/*
 * The request line s (n bytes, CR LF stripped when complete). On a partial
 * line SL_NEED means "valid so far"; SL_BAD is final for any completion.
 */
static enum sl request_line(struct ws_http_parser *p, const char *s, size_t n,
			    bool complete)
{
	static const char pri[] = "PRI * HTTP/2.0";
	static const char ver[] = "HTTP/1.";
	struct msg_state *m = &p->m;
	size_t i = 0, t, v, k;
	const char *qp;
	uint8_t method;

	/* The client preface of HTTP/2 with prior knowledge. */
	if (n <= sizeof(pri) - 1 && !memcmp(s, pri, n)) {
		if (n == sizeof(pri) - 1 && complete)
			return SL_H2;
		if (!complete)
			return SL_NEED;
	}
	while (i < n && is_tchar(s[i]))
		i++;
	if (i > WS_HTTP_MAX_METHOD ||
	    (p->resync && (i > 7 || !method_prefix(s, i))))
		return SL_BAD;
	if (i == n)
		return complete ? SL_BAD : SL_NEED;
	if (i == 0 || s[i] != ' ')
		return SL_BAD;
	method = (uint8_t)ws_http_method_parse(s, i);
	if (p->resync && method == WS_HTTP_M_OTHER)
		return SL_BAD;

	/* request-target: anything but controls and blanks, up to SP. */
	t = i + 1;
	k = t;
	if (complete) {
		/* s[n] is the CR or LF that ended the line: it stops this. */
		while (is_target(s[k]))
			k++;
	} else {
		while (k < n && is_target(s[k]))
			k++;
	}
	if (k == n)
		return complete ? SL_BAD : SL_NEED;
	if (k == t || s[k] != ' ')
		return SL_BAD;

	/* "HTTP/1." DIGIT and nothing after it. */
	v = k + 1;
	for (size_t j = 0; j < sizeof(ver) - 1 && v + j < n; j++)
		if (s[v + j] != ver[j])
			return SL_BAD;
	if (n > v + 7 && (s[v + 7] < '0' || s[v + 7] > '9'))
		return SL_BAD;
	if (n > v + 8)
		return SL_BAD;
	if (n < v + 8)
		return complete ? SL_BAD : SL_NEED;
	if (!complete)
		return SL_NEED;

	qp = memchr(s + t, '?', k - t);
	m->method = method;
	m->version = s[v + 7] == '0' ? 10 : 11;
	m->meth_len = (uint16_t)i;
	m->tgt_off = (uint16_t)t;
	m->tgt_len = (uint16_t)(k - t);
	if (qp) {
		m->query_off = (uint16_t)(qp - s + 1);
		m->query_len = (uint16_t)(k - (size_t)(qp - s) - 1);
	}
	{
		/* path: origin form up to '?'; absolute form after authority */
		size_t pa = t, pe = qp ? (size_t)(qp - s) : k;

		if (s[t] != '/' && s[t] != '*') {
			const char *sep =
				pe - t >= 3 ? memmem(s + t, pe - t, "://", 3)
					    : NULL;

			if (sep && method != WS_HTTP_M_CONNECT) {
				pa = (size_t)(sep - s) + 3;
				while (pa < pe && s[pa] != '/')
					pa++;
			} else {
				pa = pe; /* authority form */
			}
		}
		m->path_off = (uint16_t)pa;
		m->path_len = (uint16_t)(pe - pa);
	}
	return SL_OK;
}

/* The status line s (n bytes): "HTTP/1." DIGIT SP 3DIGIT [SP reason]. */
static enum sl status_line(struct ws_http_parser *p, const char *s, size_t n,
			   bool complete)
{
	static const char ver[] = "HTTP/1.";
	struct msg_state *m = &p->m;

	for (size_t j = 0; j < sizeof(ver) - 1 && j < n; j++)
		if (s[j] != ver[j])
			return SL_BAD;
	if ((n > 7 && (s[7] < '0' || s[7] > '9')) || (n > 8 && s[8] != ' ') ||
	    (n > 9 && (s[9] < '1' || s[9] > '9')) ||
	    (n > 10 && (s[10] < '0' || s[10] > '9')) ||
	    (n > 11 && (s[11] < '0' || s[11] > '9')) ||
	    (n > 12 && s[12] != ' '))
		return SL_BAD;
	if (n < 12 || !complete)
		return complete ? SL_BAD : SL_NEED;
	m->version = s[7] == '0' ? 10 : 11;
	m->status = (uint16_t)((s[9] - '0') * 100 + (s[10] - '0') * 10 +
			       (s[11] - '0'));
	if (n > 13) {
		m->reason_off = 13;
		m->reason_len = (uint16_t)(n - 13);
	}
	return SL_OK;
}

/*
 * A start line: s[0..n), complete (CR LF stripped) or partial. A CR that ends
 * a partial line may be the one before the LF, so it is not looked at yet.
 */
static enum sl start_line(struct ws_http_parser *p, const char *s, size_t n,
			  bool complete)
{
	if (!complete && n && s[n - 1] == '\r')
		n--;
	if (p->kind == WS_HTTP_REQUEST)
		return request_line(p, s, n, complete);
	return status_line(p, s, n, complete);
}

/*
 * What the first bytes of a message (n > 0 of them, up to its first LF at
 * most) say about the stream: HTTP, or another protocol, or SNIFF_NEED more
 * bytes. Every verdict other than SNIFF_NEED is final.
 */
#define SNIFF_NEED (-1)
#define SNIFF_HTTP WS_HTTP_STOP_NONE

static int sniff(const struct ws_http_parser *p, const char *s, size_t n)
{
	const uint8_t *u = (const uint8_t *)s;

	/* TLS handshake record: content type 22, version 3.x. */
	if (u[0] == 0x16) {
		if (n < 2)
			return SNIFF_NEED;
		return u[1] == 0x03 ? WS_HTTP_STOP_TLS : SNIFF_HTTP;
	}
	/*
	 * A server's HTTP/2 preface: a SETTINGS frame (type 4, no flags,
	 * stream 0) of fewer than 256 bytes, a multiple of 6.
	 */
	if (p->kind == WS_HTTP_RESPONSE && u[0] == 0) {
		static const uint8_t want[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

		for (size_t i = 1; i < 9 && i < n; i++)
			if (i == 2 ? u[2] % 6 != 0 : u[i] != want[i])
				return SNIFF_HTTP;
		return n < 9 ? SNIFF_NEED : WS_HTTP_STOP_H2;
	}
	/* After an upgrade request, anything but a request is the tunnel. */
	if (p->upgrade_pending && !is_tchar(s[0]) && s[0] != '\r' &&
	    s[0] != '\n')
		return WS_HTTP_STOP_TUNNEL;
	return SNIFF_HTTP;
}

/* ---- field lines ----------------------------------------------------- */

static void content_length(struct ws_http_parser *p, const char *v, size_t n)
{
	struct msg_state *m = &p->m;
	size_t pos = 0, el;
	const char *e;
	uint64_t cl;

	/* "Content-Length: 5, 5" is one length; "5, 6" none. */
	while (list_next(v, n, &pos, &e, &el)) {
		if (!parse_len(e, el, &cl) ||
		    (m->cl_present && cl != m->content_length)) {
			m->cl_bad = true;
			return;
		}
		m->cl_present = true;
		m->content_length = cl;
	}
}

static void transfer_encoding(struct ws_http_parser *p, const char *v, size_t n)
{
	struct msg_state *m = &p->m;
	size_t pos = 0, el;
	const char *e;

	m->te_present = true;
	while (list_next(v, n, &pos, &e, &el)) {
		size_t tl = 0;

		while (tl < el && e[tl] != ';' && !is_blank(e[tl]))
			tl++;
		if (!tl)
			continue;
		if (tl == 7 && ascii_ieq(e, "chunked", 7)) {
			if (m->te_chunked < UINT8_MAX)
				m->te_chunked++;
			m->te_chunked_last = true;
		} else {
			m->te_chunked_last = false;
		}
	}
}

static void connection(struct ws_http_parser *p, const char *v, size_t n)
{
	size_t pos = 0, el;
	const char *e;

	while (list_next(v, n, &pos, &e, &el)) {
		if (el == 5 && ascii_ieq(e, "close", 5))
			p->m.conn_close = true;
		else if (el == 10 && ascii_ieq(e, "keep-alive", 10))
			p->m.conn_keep_alive = true;
	}
}

/* The fields that change framing or the connection, by name. */
static void field_meaning(struct ws_http_parser *p, const char *name, size_t nl,
			  const char *v, size_t vl)
{
	switch (nl) {
	case 14:
		if (ascii_ieq(name, "content-length", 14))
			content_length(p, v, vl);
		break;
	case 17:
		if (ascii_ieq(name, "transfer-encoding", 17))
			transfer_encoding(p, v, vl);
		break;
	case 10:
		if (ascii_ieq(name, "connection", 10))
			connection(p, v, vl);
		break;
	case 7:
		if (vl && p->kind == WS_HTTP_REQUEST &&
		    ascii_ieq(name, "upgrade", 7))
			p->m.flags |= WS_HTTP_F_UPGRADE;
		break;
	case 6:
		if (p->kind == WS_HTTP_REQUEST && vl == 12 &&
		    ascii_ieq(name, "expect", 6) &&
		    ascii_ieq(v, "100-continue", 12))
			p->m.flags |= WS_HTTP_F_EXPECT_CONTINUE;
		break;
	}
}

/* A complete field line base[a..e), CR LF stripped, not empty. */
static void field_line(struct ws_http_parser *p, const char *base, size_t a,
		       size_t e)
{
	struct msg_state *m = &p->m;
	size_t colon, va, vb;

	if (is_blank(base[a])) {
		/* obs-fold: the previous field's value goes on. */
		p->stats.obs_folds++;
		for (vb = e; vb > a && is_blank(base[vb - 1]); vb--)
			;
		if (!m->fold_ok) {
			m->flags |= WS_HTTP_F_BAD_HEADERS;
		} else if (vb > a) {
			struct hdr_off *h = &p->hdrs[m->nhdr - 1];

			if (!h->value_len) {
				for (va = a; is_blank(base[va]); va++)
					;
				h->value_off = (uint16_t)va;
			}
			h->value_len = (uint16_t)(vb - h->value_off);
			m->flags |= WS_HTTP_F_OBS_FOLD;
		}
		return;
	}
	m->fold_ok = false;
	/* base[e] is the line's CR or LF: no token byte, so it stops this. */
	for (colon = a; is_tchar(base[colon]); colon++)
		;
	if (colon == a || colon >= e || base[colon] != ':') {
		/* No name, no colon, "Name : v" or a control in the name. */
		m->flags |= WS_HTTP_F_BAD_HEADERS;
		return;
	}
	va = colon + 1;
	vb = e;
	while (va < vb && is_blank(base[va]))
		va++;
	while (vb > va && is_blank(base[vb - 1]))
		vb--;
	{
		struct hdr_off *h = &p->hdrs[m->nhdr++];

		h->name_off = (uint16_t)a;
		h->name_len = (uint16_t)(colon - a);
		h->value_off = (uint16_t)va;
		h->value_len = (uint16_t)(vb - va);
		m->fold_ok = true;
		field_meaning(p, base + a, h->name_len, base + va, vb - va);
	}
}

/* ---- heads ----------------------------------------------------------- */

/*
 * A start line that will never be valid, complete (up to hpos) or not (the
 * first avail bytes are dropped).
 */
static enum scan bad_start(struct ws_http_parser *p, size_t avail,
			   bool complete)
{
	if (p->upgrade_pending && !p->resync) {
		/* The switch happened: what follows is the new protocol. */
		p->stop_why = WS_HTTP_STOP_TUNNEL;
		return HS_STOP;
	}
	if (!p->resync)
		count_error(p, WS_HTTP_ERR_START_LINE, p->m.start_off);
	lose_sync(p);
	if (!complete)
		p->hpos = (uint32_t)avail;
	p->st = complete ? ST_HEAD : ST_DISCARD;
	return HS_DROP;
}

/*
 * The head at base, of which avail bytes are known (avail <=
 * WS_HTTP_MAX_HEAD): parse the complete lines after p->hpos.
 */
static enum scan head_scan(struct ws_http_parser *p, const char *base,
			   size_t avail)
{
	struct msg_state *m = &p->m;

	for (;;) {
		const char *s = base + p->hpos;
		size_t rest = avail - p->hpos, a = p->hpos, e;
		const char *nl;
		enum sl v;

		if (!m->start_seen && a == 0 && !p->resync && rest) {
			int sn = sniff(p, s, rest);

			if (sn == SNIFF_NEED)
				return HS_MORE;
			if (sn != SNIFF_HTTP) {
				p->stop_why = (uint8_t)sn;
				return HS_STOP;
			}
		}
		nl = memchr(s, '\n', rest);
		if (!nl) {
			if (!m->start_seen && rest &&
			    start_line(p, s, rest, false) == SL_BAD)
				return bad_start(p, avail, false);
			if (avail < WS_HTTP_MAX_HEAD)
				return HS_MORE;
			/* Full and no end in sight. */
			if (!p->resync)
				count_error(p, WS_HTTP_ERR_HEAD_TOO_BIG,
					    m->start_off);
			lose_sync(p);
			p->hpos = (uint32_t)avail;
			p->st = rest ? ST_DISCARD : ST_HEAD;
			return HS_DROP;
		}
		e = (size_t)(nl - base);
		p->hpos = (uint32_t)(e + 1);
		if (e > a && base[e - 1] == '\r')
			e--;

		if (!m->start_seen) {
			if (e == a) {
				/* Empty lines before a message are allowed. */
				p->st = ST_HEAD;
				return HS_DROP;
			}
			v = start_line(p, base + a, e - a, true);
			if (v == SL_H2) {
				p->stop_why = WS_HTTP_STOP_H2;
				return HS_STOP;
			}
			if (v != SL_OK)
				return bad_start(p, avail, true);
			m->start_seen = true;
			p->resync = false;
			p->upgrade_pending = false;
			if (p->lost) {
				m->flags |= WS_HTTP_F_RESYNC;
				p->lost = false;
			}
			continue;
		}
		if (e == a)
			return HS_DONE;
		if (++m->lines > WS_HTTP_MAX_HEADERS) {
			count_error(p, WS_HTTP_ERR_TOO_MANY_HEADERS,
				    m->start_off);
			lose_sync(p);
			p->st = ST_HEAD;
			return HS_DROP;
		}
		field_line(p, base, a, e);
	}
}

/* Response: the method of the request this answers, queued by expect(). */
static void response_method(struct ws_http_parser *p)
{
	struct msg_state *m = &p->m;
	bool final = m->status >= 200 || m->status == 101;

	if (!p->qlen) {
		m->method = WS_HTTP_M_NONE;
		if (final) {
			m->flags |= WS_HTTP_F_NO_REQUEST;
			p->stats.no_request++;
		}
		return;
	}
	m->method = p->q[p->qhead];
	if (final) {
		p->qhead = (p->qhead + 1) % WS_HTTP_MAX_PIPELINE;
		p->qlen--;
	}
}

/* RFC 9112 6.3: how the body of a complete head is delimited. */
static enum ws_http_err framing(struct ws_http_parser *p, enum body_kind *b)
{
	struct msg_state *m = &p->m;
	bool resp = p->kind == WS_HTTP_RESPONSE;

	*b = B_NONE;
	if (m->te_present && m->cl_present)
		m->flags |= WS_HTTP_F_TE_AND_CL;
	if (m->conn_close || (m->version == 10 && !m->conn_keep_alive))
		m->flags |= WS_HTTP_F_CLOSE;
	if (resp) {
		if (m->status < 200) {
			if (m->status == 101) {
				m->flags |= WS_HTTP_F_TUNNEL;
				*b = B_TUNNEL;
			} else {
				m->flags |= WS_HTTP_F_INTERIM;
			}
			return WS_HTTP_ERR_NONE;
		}
		if (m->method == WS_HTTP_M_HEAD || m->status == 204 ||
		    m->status == 304)
			return WS_HTTP_ERR_NONE;
		if (m->method == WS_HTTP_M_CONNECT && m->status < 300) {
			m->flags |= WS_HTTP_F_TUNNEL;
			*b = B_TUNNEL;
			return WS_HTTP_ERR_NONE;
		}
	} else if (m->method == WS_HTTP_M_CONNECT) {
		/* No content: what follows is the tunnel, once accepted. */
		m->flags |= WS_HTTP_F_UPGRADE;
		return WS_HTTP_ERR_NONE;
	}
	if (m->te_present) {
		if (m->te_chunked > 1)
			return WS_HTTP_ERR_TRANSFER_ENCODING;
		if (m->te_chunked_last) {
			m->flags |= WS_HTTP_F_CHUNKED;
			*b = B_CHUNKED;
			return WS_HTTP_ERR_NONE;
		}
		if (!resp)
			return WS_HTTP_ERR_TRANSFER_ENCODING;
		m->flags |= WS_HTTP_F_UNTIL_CLOSE;
		*b = B_CLOSE;
		return WS_HTTP_ERR_NONE;
	}
	if (m->cl_bad)
		return WS_HTTP_ERR_CONTENT_LENGTH;
	if (m->cl_present) {
		m->flags |= WS_HTTP_F_CONTENT_LENGTH;
		*b = m->content_length ? B_LENGTH : B_NONE;
	} else if (resp) {
		m->flags |= WS_HTTP_F_UNTIL_CLOSE;
		*b = B_CLOSE;
	}
	return WS_HTTP_ERR_NONE;
}

/* The head is complete: p->hpos bytes at p->hbase, all counted in pend. */
static void head_done(struct ws_http_parser *p)
{
	struct ws_http_header hv[WS_HTTP_MAX_HEADERS];
	struct msg_state *m = &p->m;
	struct ws_http_msg x;
	enum ws_http_err err;
	enum body_kind b;

	p->hlen = p->hpos;
	m->head_end_off = m->start_off + p->hpos;
	if (p->kind == WS_HTTP_RESPONSE)
		response_method(p);
	err = framing(p, &b);
	if (err != WS_HTTP_ERR_NONE) {
		count_error(p, err, m->start_off);
		drop_unit(p);
		lose_sync(p);
		p->st = ST_HEAD;
		return;
	}
	if (m->flags & WS_HTTP_F_BAD_HEADERS)
		p->stats.bad_headers++;
	if (m->flags & WS_HTTP_F_TE_AND_CL)
		p->stats.te_and_cl++;
	if (m->flags & WS_HTTP_F_UNTIL_CLOSE)
		p->stats.until_close++;
	if (m->flags & WS_HTTP_F_INTERIM)
		p->stats.interim++;
	if (m->flags & WS_HTTP_F_UPGRADE)
		p->upgrade_pending = true;
	p->stats.heads++;
	msg_build(p, &x, hv);
	p->cb.msg(p->ctx, WS_HTTP_EV_HEAD, &x);

	switch (b) {
	case B_NONE:
		msg_finish(p, &x, m->head_end_off);
		break;
	case B_TUNNEL:
		msg_finish(p, &x, m->head_end_off);
		stop(p, WS_HTTP_STOP_TUNNEL);
		break;
	case B_LENGTH:
		p->st = ST_BODY;
		p->remain = m->content_length;
		break;
	case B_CHUNKED:
		p->st = ST_CHUNK;
		p->cst = CH_SIZE;
		p->csize = 0;
		p->cline = 0;
		p->cdigits = 0;
		p->tbytes = 0;
		break;
	case B_CLOSE:
		p->st = ST_CLOSE_BODY;
		break;
	}
}

/* What head_scan() decided about the head at p->hbase. */
static void head_result(struct ws_http_parser *p, enum scan r)
{
	switch (r) {
	case HS_DONE:
		head_done(p);
		break;
	case HS_STOP:
		stop(p, (enum ws_http_stop)p->stop_why);
		break;
	default: /* HS_DROP; HS_MORE is the caller's */
		drop_unit(p);
		break;
	}
}

/* ST_HEAD, nothing held: parse in place in the caller's buffer. */
static const uint8_t *head_fast(struct ws_http_parser *p, const uint8_t *cur,
				const uint8_t *end)
{
	size_t avail = min_sz((size_t)(end - cur), WS_HTTP_MAX_HEAD);
	enum scan r;

	msg_reset(p, at(p, cur));
	r = head_scan(p, (const char *)cur, avail);
	if (r == HS_MORE) {
		/* The head goes on in a later feed: hold what we have. */
		if (!head_reserve(p, avail)) {
			p->stats.skipped_bytes += avail;
			lose_sync(p);
			p->st = ST_DISCARD;
			return cur + avail;
		}
		memcpy(p->head, cur, avail);
		p->hbase = p->head;
		p->hlen = (uint32_t)avail;
		p->pend = avail;
		return cur + avail;
	}
	if (r == HS_STOP) {
		stop(p, (enum ws_http_stop)p->stop_why);
		return cur; /* ST_STOPPED counts them */
	}
	p->hbase = (const char *)cur;
	p->pend = p->hpos;
	cur += p->hpos;
	head_result(p, r);
	return cur;
}

/* ST_HEAD with a partial head held: append up to the next LF. */
static const uint8_t *head_slow(struct ws_http_parser *p, const uint8_t *cur,
				const uint8_t *end)
{
	size_t room = WS_HTTP_MAX_HEAD - p->hlen;
	size_t n = min_sz((size_t)(end - cur), room);
	const uint8_t *nl = memchr(cur, '\n', n);
	size_t take = nl ? (size_t)(nl - cur) + 1 : n;
	enum scan r;

	if (!head_reserve(p, p->hlen + take)) {
		drop_unit(p);
		p->stats.skipped_bytes += take;
		lose_sync(p);
		p->st = nl ? ST_HEAD : ST_DISCARD;
		return cur + take;
	}
	memcpy(p->head + p->hlen, cur, take);
	p->hlen += (uint32_t)take;
	p->pend += take;
	p->hbase = p->head;
	r = head_scan(p, p->head, p->hlen);
	if (r != HS_MORE)
		head_result(p, r);
	return cur + take;
}

/* ---- bodies ---------------------------------------------------------- */

static const uint8_t *body_feed(struct ws_http_parser *p, const uint8_t *cur,
				const uint8_t *end)
{
	size_t n = (size_t)min_u64((uint64_t)(end - cur), p->remain);

	cur += n;
	p->remain -= n;
	p->pend += n;
	p->m.body_len += n;
	if (!p->remain)
		complete(p, at(p, cur));
	return cur;
}

/* The chunked framing broke at cur: end the message before it. */
static const uint8_t *chunk_error(struct ws_http_parser *p,
				  enum ws_http_err err, const uint8_t *cur)
{
	count_error(p, err, p->m.start_off);
	p->m.flags |= WS_HTTP_F_BAD_BODY | WS_HTTP_F_TRUNCATED;
	complete(p, at(p, cur));
	/* The byte may start the next message, or be the lie's middle. */
	lose_sync(p);
	return cur;
}

/* A chunk-size line ended. */
static void chunk_line_done(struct ws_http_parser *p)
{
	if (p->csize) {
		p->m.chunks++;
		p->remain = p->csize;
		p->cst = CH_DATA;
	} else {
		p->cst = CH_TRAILER;
		p->tline = 0;
	}
	p->csize = 0;
	p->cline = 0;
	p->cdigits = 0;
}

static const uint8_t *chunk_feed(struct ws_http_parser *p, const uint8_t *cur,
				 const uint8_t *end)
{
	while (cur < end) {
		uint8_t c;
		int h;

		if (p->cst == CH_DATA) {
			size_t n = (size_t)min_u64((uint64_t)(end - cur),
						   p->remain);

			cur += n;
			p->remain -= n;
			p->pend += n;
			p->m.body_len += n;
			if (!p->remain)
				p->cst = CH_DATA_CR;
			continue;
		}
		c = *cur;
		switch (p->cst) {
		case CH_SIZE:
		case CH_SIZE_WS:
		case CH_EXT:
		case CH_SIZE_LF:
			if (++p->cline > WS_HTTP_MAX_CHUNK_LINE)
				return chunk_error(p, WS_HTTP_ERR_CHUNK_SIZE,
						   cur);
			if (p->cst == CH_SIZE && (h = hex_val(c)) >= 0) {
				if (p->csize > ((uint64_t)INT64_MAX >> 4))
					return chunk_error(
						p, WS_HTTP_ERR_CHUNK_SIZE, cur);
				p->csize = p->csize << 4 | (uint64_t)h;
				p->cdigits++;
				break;
			}
			if (p->cst == CH_SIZE_LF) {
				if (c != '\n')
					return chunk_error(
						p, WS_HTTP_ERR_CHUNK_SIZE, cur);
				chunk_line_done(p);
				break;
			}
			if (!p->cdigits)
				return chunk_error(p, WS_HTTP_ERR_CHUNK_SIZE,
						   cur);
			if (c == '\r')
				p->cst = CH_SIZE_LF;
			else if (c == '\n')
				chunk_line_done(p);
			else if (p->cst == CH_EXT)
				; /* extensions are skipped */
			else if (c == ';')
				p->cst = CH_EXT;
			else if (is_blank((char)c))
				p->cst = CH_SIZE_WS;
			else
				return chunk_error(p, WS_HTTP_ERR_CHUNK_SIZE,
						   cur);
			break;
		case CH_DATA_CR:
			if (c == '\r')
				p->cst = CH_DATA_LF;
			else if (c == '\n')
				p->cst = CH_SIZE;
			else
				return chunk_error(p, WS_HTTP_ERR_CHUNK_END,
						   cur);
			break;
		case CH_DATA_LF:
			if (c != '\n')
				return chunk_error(p, WS_HTTP_ERR_CHUNK_END,
						   cur);
			p->cst = CH_SIZE;
			break;
		default: /* CH_TRAILER */
			if (++p->tbytes > WS_HTTP_MAX_HEAD)
				return chunk_error(p, WS_HTTP_ERR_TRAILERS,
						   cur);
			if (c == '\n') {
				if (!p->tline) {
					p->pend++;
					cur++;
					complete(p, at(p, cur));
					return cur;
				}
				if (++p->m.trailers > WS_HTTP_MAX_HEADERS)
					return chunk_error(
						p, WS_HTTP_ERR_TRAILERS, cur);
				p->tline = 0;
			} else if (c != '\r') {
				p->tline++;
			}
			break;
		}
		cur++;
		p->pend++;
	}
	return cur;
}

/* ---- entry points ------------------------------------------------------ */

int ws_http_parser_feed(struct ws_http_parser *p, const uint8_t *buf,
			size_t len)
{
	const uint8_t *cur = buf, *end, *nl;

	if (!p || (!buf && len))
		return -EINVAL;
	if (p->closed)
		return -EPIPE;
	if (!len)
		return 0;
	end = buf + len;
	p->fbuf = buf;
	p->foff = p->offset;
	p->stats.bytes += len;

	while (cur < end) {
		switch (p->st) {
		case ST_HEAD:
			if (p->hlen == 0)
				cur = head_fast(p, cur, end);
			else
				cur = head_slow(p, cur, end);
			break;
		case ST_BODY:
			cur = body_feed(p, cur, end);
			break;
		case ST_CHUNK:
			cur = chunk_feed(p, cur, end);
			break;
		case ST_CLOSE_BODY:
			p->pend += (size_t)(end - cur);
			p->m.body_len += (size_t)(end - cur);
			cur = end;
			break;
		case ST_DISCARD:
			nl = memchr(cur, '\n', (size_t)(end - cur));
			if (!nl) {
				p->stats.skipped_bytes += (size_t)(end - cur);
				cur = end;
			} else {
				p->stats.skipped_bytes +=
					(size_t)(nl - cur) + 1;
				cur = nl + 1;
				p->st = ST_HEAD;
			}
			break;
		default: /* ST_STOPPED */
			p->stats.stopped_bytes += (size_t)(end - cur);
			cur = end;
			break;
		}
	}
	/* A body goes on past this buffer: keep the head it belongs to. */
	if (p->hbase && p->hbase != p->head) {
		if (head_reserve(p, p->hlen)) {
			memcpy(p->head, p->hbase, p->hlen);
			p->hbase = p->head;
		} else {
			p->hbase = NULL;
		}
	}
	p->fbuf = NULL;
	p->offset = p->foff + len;
	return 0;
}

int ws_http_parser_gap(struct ws_http_parser *p, uint64_t len)
{
	uint64_t skip;

	if (!p)
		return -EINVAL;
	if (p->closed)
		return -EPIPE;
	if (!len)
		return 0;
	p->stats.gaps++;
	p->stats.gap_bytes += len;

	switch (p->st) {
	case ST_STOPPED:
		p->offset += len;
		return 0;
	case ST_CLOSE_BODY:
		p->m.flags |= WS_HTTP_F_GAP;
		p->m.body_gap += len;
		p->offset += len;
		return 0;
	case ST_BODY:
		skip = min_u64(len, p->remain);
		p->m.flags |= WS_HTTP_F_GAP;
		p->m.body_gap += skip;
		p->remain -= skip;
		p->offset += skip;
		len -= skip;
		if (p->remain)
			return 0;
		complete(p, p->offset);
		if (!len)
			return 0; /* the gap ended with the body: in sync */
		break;
	case ST_CHUNK:
		p->m.flags |= WS_HTTP_F_GAP;
		if (p->cst == CH_DATA) {
			skip = min_u64(len, p->remain);
			p->m.body_gap += skip;
			p->remain -= skip;
			p->offset += skip;
			len -= skip;
			if (!len) {
				if (!p->remain)
					p->cst = CH_DATA_CR;
				return 0;
			}
		}
		/* The chunk framing is lost with the bytes. */
		p->m.flags |= WS_HTTP_F_TRUNCATED;
		complete(p, p->offset);
		break;
	case ST_HEAD:
		if (p->pend && !p->resync) {
			p->stats.gap_heads++;
			/* A final response was cut: its request is answered. */
			if (p->kind == WS_HTTP_RESPONSE && p->m.start_seen &&
			    (p->m.status >= 200 || p->m.status == 101) &&
			    p->qlen) {
				p->qhead =
					(p->qhead + 1) % WS_HTTP_MAX_PIPELINE;
				p->qlen--;
			}
		}
		drop_unit(p);
		break;
	default: /* ST_DISCARD */
		break;
	}
	/* Whatever follows may start anywhere in a message. */
	p->stats.gap_resyncs++;
	lose_sync(p);
	p->st = ST_HEAD;
	p->offset += len;
	return 0;
}

int ws_http_parser_eof(struct ws_http_parser *p)
{
	if (!p)
		return -EINVAL;
	if (p->closed)
		return 0;
	switch (p->st) {
	case ST_CLOSE_BODY:
		p->m.flags |= WS_HTTP_F_EOF;
		complete(p, p->offset);
		break;
	case ST_BODY:
	case ST_CHUNK:
		p->m.flags |= WS_HTTP_F_EOF | WS_HTTP_F_TRUNCATED;
		complete(p, p->offset);
		break;
	case ST_HEAD:
		if (p->pend && !p->resync)
			p->stats.eof_heads++;
		drop_unit(p);
		break;
	default:
		break;
	}
	p->closed = true;
	return 0;
}

int ws_http_parser_tunnel(struct ws_http_parser *p)
{
	if (!p)
		return -EINVAL;
	if (p->st == ST_STOPPED)
		return 0;
	if (p->st == ST_BODY || p->st == ST_CHUNK || p->st == ST_CLOSE_BODY) {
		p->m.flags |= WS_HTTP_F_TRUNCATED;
		complete(p, p->offset);
	}
	stop(p, WS_HTTP_STOP_TUNNEL);
	return 0;
}

int ws_http_parser_expect(struct ws_http_parser *p, enum ws_http_method method)
{
	if (!p || p->kind != WS_HTTP_RESPONSE || method <= WS_HTTP_M_NONE ||
	    method >= WS_HTTP_M_MAX)
		return -EINVAL;
	if (p->qlen == WS_HTTP_MAX_PIPELINE) {
		p->stats.expect_full++;
		return -ENOBUFS;
	}
	p->q[(p->qhead + p->qlen) % WS_HTTP_MAX_PIPELINE] = (uint8_t)method;
	p->qlen++;
	return 0;
}

enum ws_http_stop ws_http_parser_stopped(const struct ws_http_parser *p)
{
	return p ? (enum ws_http_stop)p->stop_why : WS_HTTP_STOP_NONE;
}

struct ws_http_parser *ws_http_parser_new(enum ws_http_kind kind,
					  const struct ws_http_cb *cb,
					  void *ctx)
{
	struct ws_http_parser *p;

	if (!cb || !cb->msg ||
	    (kind != WS_HTTP_REQUEST && kind != WS_HTTP_RESPONSE)) {
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
	p->kind = (uint8_t)kind;
	return p;
}

void ws_http_parser_free(struct ws_http_parser *p)
{
	if (!p)
		return;
	free(p->head);
	free(p);
}

const struct ws_http_stats *ws_http_parser_stats(const struct ws_http_parser *p)
{
	return p ? &p->stats : NULL;
}

uint64_t ws_http_parser_pending(const struct ws_http_parser *p)
{
	return p ? p->pend : 0;
}

const struct ws_http_header *
ws_http_header_find(const struct ws_http_headers *h, const char *name,
		    const struct ws_http_header *prev)
{
	size_t nl, i;

	if (!h || !name || !h->v)
		return NULL;
	nl = strlen(name);
	i = prev ? (size_t)(prev - h->v) + 1 : 0;
	for (; i < h->n; i++) {
		const struct ws_http_header *e = &h->v[i];

		if (e->name.len == nl && ascii_ieq_any(e->name.ptr, name, nl))
			return e;
	}
	return NULL;
}

/* struct ws_parser_ops: user is a const struct ws_http_sink *. */
static void *ops_create(void *user)
{
	const struct ws_http_sink *sink = user;

	if (!sink) {
		errno = EINVAL;
		return NULL;
	}
	return ws_http_parser_new(sink->kind, sink->cb, sink->ctx);
}

static int ops_feed(void *state, const uint8_t *buf, size_t len)
{
	return ws_http_parser_feed(state, buf, len);
}

static int ops_gap(void *state, uint64_t len)
{
	return ws_http_parser_gap(state, len);
}

static void ops_destroy(void *state)
{
	ws_http_parser_free(state);
}

const struct ws_parser_ops ws_http_parser_ops = {
	.name = "http",
	.proto = WS_PROTO_HTTP,
	.create = ops_create,
	.feed = ops_feed,
	.gap = ops_gap,
	.destroy = ops_destroy,
};
