/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small JSON-lines writer for output whose shape we control. Strings that
 * carry captured bytes are escaped byte for byte (every byte >= 0x7f or < 0x20
 * becomes \u00XX), so `s.encode("latin-1")` gives back the exact bytes; a
 * generic JSON library would pass invalid UTF-8 through unescaped.
 */
#ifndef WIRESPAN_JSONW_H
#define WIRESPAN_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct ws_jsonw {
	char *buf;
	size_t len, cap;
	bool first; /* no member written yet in the current object */
	bool oom; /* an allocation failed: the line is dropped, counted by the caller */
};

/*
 * Escape n bytes as the inside of a JSON string into dst (room for 6 * n
 * bytes). utf8: pass bytes >= 0x80 through (src is valid UTF-8); else every
 * byte >= 0x7f becomes \u00XX (one character per byte, for raw bytes).
 * Returns the bytes written.
 */
size_t ws_json_escape(char *dst, const uint8_t *src, size_t n, bool utf8);
/* Decimal digits of v into out (room for 20). Returns the digits written. */
size_t ws_json_u64(char *out, uint64_t v);

void jw_init(struct ws_jsonw *w);
void jw_free(struct ws_jsonw *w);
void jw_begin(struct ws_jsonw *w); /* start a line's object */
void jw_obj_open(struct ws_jsonw *w, const char *key);
void jw_obj_close(struct ws_jsonw *w);
void jw_str(struct ws_jsonw *w, const char *key, const char *s);
void jw_bytes(struct ws_jsonw *w, const char *key, const uint8_t *b, size_t n);
void jw_u64(struct ws_jsonw *w, const char *key, uint64_t v);
void jw_bool(struct ws_jsonw *w, const char *key, bool v);
/* End the line and write it to f. Returns 0, or -ENOMEM / -EIO. */
int jw_end(struct ws_jsonw *w, FILE *f);

#endif
