/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target for agent/gopclntab.c: a whole file as the uprobe
 * attacher reads it (ELF header, sections, .gopclntab, .go.buildinfo).
 *
 * The input is copied into an exact-size allocation (ASan catches any read
 * past it), parsed, and every function the attacher looks for is looked
 * up, plus a name taken from the input's tail. A found function must map to
 * a file offset inside the input; a version must parse as go1.N.
 * Seeds: tests/fuzz/gen_gopclntab_corpus.py.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gopclntab.h"

static void look(const struct ws_gobin *gb, const char *name, size_t size)
{
	uint64_t va = 0, off = 0;

	if (!ws_gobin_func(gb, name, &va, &off) && off >= size)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = malloc(size ? size : 1);
	struct ws_gobin gb;
	unsigned ma, mi;
	char name[64];
	size_t n;

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (!ws_gobin_parse(buf, size, &gb)) {
		look(&gb, "main.main", size);
		look(&gb, "net/http.(*Request).write", size);
		look(&gb, "net/http.(*persistConn).roundTrip", size);
		n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
		memcpy(name, data + size - n, n);
		name[n] = 0;
		look(&gb, name, size);
		if (gb.version[0] &&
		    (ws_go_version_parse(gb.version, &ma, &mi) || ma != 1 ||
		     mi != gb.go_minor))
			abort();
	}
	n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
	memcpy(name, data, n);
	name[n] = 0;
	ws_go_version_parse(name, &ma, &mi);
	free(buf);
	return 0;
}
