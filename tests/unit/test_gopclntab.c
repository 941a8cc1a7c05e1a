/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go binaries' function tables and versions (agent/gopclntab.c): the
 * synthetic files of every pclntab layout (tests/fuzz/corpus/gopclntab,
 * made by tests/fuzz/gen_gopclntab_corpus.py), damaged in every way a
 * loop can think of, and real binaries: a Go program built here (when Go
 * is installed) compared with `go tool nm`, stripped and not, and caddy
 * (when installed), Debian's stripped go1.19 build.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gopclntab.h"
#include "guard.h"

#define CORPUS "tests/fuzz/corpus/gopclntab/"
#define FN_MAIN "main.main"
#define FN_WRITE "net/http.(*Request).write"
#define FN_RT "net/http.(*persistConn).roundTrip"

struct file {
	uint8_t *buf;
	size_t len;
};

static struct file map_file(const char *path)
{
	struct file f = {0};
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return f;
	if (!fstat(fd, &st) && st.st_size > 0) {
		f.buf = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE,
			     fd, 0);
		f.len = (size_t)st.st_size;
		if (f.buf == MAP_FAILED)
			f.buf = NULL;
	}
	close(fd);
	return f;
}

static void unmap_file(struct file *f)
{
	if (f->buf)
		munmap(f->buf, f->len);
}

/* The seed's bytes, right before the guard page. */
static const uint8_t *guarded(const struct file *f)
{
	assert_true(f->len <= GUARD_AREA);
	return guard_copy(f->buf, f->len);
}

static void check_fn(const struct ws_gobin *gb, const char *name, uint64_t want)
{
	uint64_t va = 0, off = 0;

	assert_int_equal(ws_gobin_func(gb, name, &va, &off), 0);
	assert_int_equal(va, want);
	/* one PT_LOAD maps the file at 0x400000 */
	assert_int_equal(off, want - 0x400000);
}

/* Every layout: the version, and the functions where the generator put
 * them (.text at 0x400200). */
static void layouts(void **state)
{
	static const struct {
		const char *file, *version;
		unsigned minor;
	} seeds[] = {
		{"go116.elf", "go1.16.15", 16},
		{"go117.elf", "go1.17.13", 17},
		{"go118.elf", "go1.18.10", 18},
		{"go120.elf", "go1.21.0", 21},
	};
	char path[128];
	struct ws_gobin gb;
	uint64_t va, off;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(seeds) / sizeof(seeds[0]); i++) {
		struct file f;

		snprintf(path, sizeof(path), CORPUS "%s", seeds[i].file);
		f = map_file(path);
		assert_non_null(f.buf);
		assert_int_equal(ws_gobin_parse(guarded(&f), f.len, &gb), 0);
		assert_string_equal(gb.version, seeds[i].version);
		assert_int_equal(gb.go_major, 1);
		assert_int_equal(gb.go_minor, seeds[i].minor);
		assert_int_equal(gb.nfunc, 3);
		check_fn(&gb, FN_MAIN, 0x400200);
		check_fn(&gb, FN_WRITE, 0x400210);
		check_fn(&gb, FN_RT, 0x400220);
		/* exact names only */
		assert_int_equal(ws_gobin_func(&gb, "main.mai", &va, &off),
				 -ENOENT);
		assert_int_equal(ws_gobin_func(&gb, "main.main2", &va, &off),
				 -ENOENT);
		assert_int_equal(ws_gobin_func(&gb, "", &va, &off), -ENOENT);
		unmap_file(&f);
	}
}

/* Not Go, not ELF64 x86-64, unknown pclntab: each its own error. */
static void refusals(void **state)
{
	struct file f = map_file(CORPUS "go118.elf");
	uint8_t *b = malloc(f.len);
	struct ws_gobin gb;
	char *p;

	(void)state;
	assert_non_null(f.buf);
	assert_non_null(b);
	assert_int_equal(ws_gobin_parse(NULL, 0, &gb), -ENOEXEC);
	assert_int_equal(
		ws_gobin_parse((const uint8_t *)"#!/bin/sh\n", 10, &gb),
		-ENOEXEC);
	/* no .gopclntab: not Go */
	memcpy(b, f.buf, f.len);
	p = memmem(b, f.len, ".gopclntab", 10);
	assert_non_null(p);
	p[1] = 'x';
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), -ENOEXEC);
	/* another machine */
	memcpy(b, f.buf, f.len);
	b[18] = 183; /* EM_AARCH64 */
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), -ENOEXEC);
	/* Go 1.2-1.15's table (magic 0xfffffffb) */
	memcpy(b, f.buf, f.len);
	b[0x240] = 0xfb;
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), -EPROTONOSUPPORT);
	/* a 32-bit table */
	memcpy(b, f.buf, f.len);
	b[0x240 + 7] = 4;
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), -EPROTONOSUPPORT);
	/* more functions than the table holds */
	memcpy(b, f.buf, f.len);
	b[0x240 + 8 + 7] = 0x7f;
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), -EINVAL);
	/* no build info: parsed, version unknown */
	memcpy(b, f.buf, f.len);
	p = memmem(b, f.len, "\xff Go buildinf:", 14);
	assert_non_null(p);
	p[3] = 'X';
	assert_int_equal(ws_gobin_parse(b, f.len, &gb), 0);
	assert_string_equal(gb.version, "");
	assert_int_equal(gb.go_minor, 0);
	free(b);
	unmap_file(&f);
}

/* Every prefix and every single-byte change of every seed: no crash, no
 * read past the end (guard page), and whatever is found is in the file. */
static void damage(void **state)
{
	static const char *const seeds[] = {"go116.elf", "go118.elf",
					    "go120.elf"};
	static const char *const names[] = {FN_MAIN, FN_WRITE, FN_RT};
	char path[128];
	struct ws_gobin gb;
	uint64_t va, off;
	size_t s, i, n, k;
	uint8_t *b;

	(void)state;
	for (s = 0; s < 3; s++) {
		struct file f;
		unsigned ok = 0;

		snprintf(path, sizeof(path), CORPUS "%s", seeds[s]);
		f = map_file(path);
		assert_non_null(f.buf);
		for (n = 0; n <= f.len; n++) {
			if (ws_gobin_parse(guard_copy(f.buf, n), n, &gb))
				continue;
			for (k = 0; k < 3; k++)
				if (!ws_gobin_func(&gb, names[k], &va, &off))
					assert_true(off < n);
		}
		for (i = 0; i < f.len; i++) {
			for (k = 0; k < 2; k++) {
				b = (uint8_t *)guarded(&f);
				b[i] ^= k ? 0xff : 0x80;
				if (ws_gobin_parse(b, f.len, &gb))
					continue;
				ok++;
				if (!ws_gobin_func(&gb, FN_RT, &va, &off))
					assert_true(off < f.len);
			}
		}
		assert_true(ok > 0); /* padding bytes change nothing */
		unmap_file(&f);
	}
}

static void versions(void **state)
{
	static const struct {
		const char *s;
		int rc;
		unsigned minor;
	} t[] = {
		{"go1.19.8", 0, 19},  {"go1.17", 0, 17},
		{"go1.21rc2", 0, 21}, {"devel go1.22-abcdef Tue", 0, 22},
		{"go1.", -EINVAL, 0}, {"go2.0", -EINVAL, 0},
		{"", -EINVAL, 0},
	};
	unsigned ma, mi;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ma = mi = 0;
		assert_int_equal(ws_go_version_parse(t[i].s, &ma, &mi),
				 t[i].rc);
		if (!t[i].rc) {
			assert_int_equal(ma, 1);
			assert_int_equal(mi, t[i].minor);
		}
	}
}

/* The probe point: past the stack check's compare, on its jbe. */
static void probe_skip(void **state)
{
	static const struct {
		const char *code;
		size_t n, want;
	} t[] = {
		/* lea -0x230(%rsp),%r12; cmp 0x10(%r14),%r12; jbe rel32 */
		{"\x4c\x8d\xa4\x24\xd0\xfd\xff\xff\x4d\x3b\x66\x10"
		 "\x0f\x86\xc3\x0e\x00\x00",
		 18, 12},
		/* lea -0x28(%rsp),%r12; cmp ...,%r12; jbe rel8 */
		{"\x4c\x8d\x64\x24\xd8\x4d\x3b\x66\x10\x76\x20", 11, 9},
		/* cmp 0x10(%r14),%rsp; jbe rel8 */
		{"\x49\x3b\x66\x10\x76\x3b", 6, 4},
		/* the same cut before the jump's operand: entry */
		{"\x49\x3b\x66\x10\x76", 5, 0},
		{"\x49\x3b\x66\x10\x0f\x86\x00\x00\x00", 9, 0},
		/* a leaf function (no check), a huge frame (other code) */
		{"\x48\x8d\x0c\x40\x48\xff\xc1\xc3", 8, 0},
		{"\x4c\x8b\xe4\x49\x81\xec\x00\x10\x00\x00", 10, 0},
		/* lea then not the r12 compare */
		{"\x4c\x8d\x64\x24\xd8\x49\x3b\x66\x10\x76\x20", 11, 0},
		{"", 0, 0},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_int_equal(
			ws_go_probe_skip(
				guard_copy((const uint8_t *)t[i].code, t[i].n),
				t[i].n),
			t[i].want);
}

/* Run cmd; its first output line into out. 0 or -1. */
static int run_line(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	int ok;

	if (!p)
		return -1;
	ok = fgets(out, (int)cap, p) != NULL;
	if (pclose(p) != 0 || !ok)
		return -1;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

/* The address `go tool nm` gives for name in bin. */
static uint64_t nm_addr(const char *bin, const char *name)
{
	char cmd[512], line[256];

	snprintf(cmd, sizeof(cmd),
		 "go tool nm '%s' | awk '$2 == \"T\" && $3 == \"%s\" "
		 "{print $1; exit}'",
		 bin, name);
	if (run_line(cmd, line, sizeof(line)) || !line[0])
		return 0;
	return strtoull(line, NULL, 16);
}

/* A Go program with an HTTP client, built here; stripped too. */
static void real_go_binary(void **state)
{
	static const char prog[] = "package main\n"
				   "import (\"net/http\"; \"os\")\n"
				   "func main() { if len(os.Args) > 5 { "
				   "http.Get(os.Args[1]) } }\n";
	char dir[] = "/tmp/ws-gopclntab-XXXXXX", cmd[1024], ver[64], bin[128],
	     stripped[160];
	static const char *const names[] = {FN_MAIN, FN_WRITE, FN_RT};
	struct ws_gobin gb;
	uint64_t va, off, want;
	unsigned ma, mi;
	int round;
	size_t k;
	FILE *f;

	(void)state;
	if (system("command -v go >/dev/null 2>&1 && "
		   "command -v strip >/dev/null 2>&1"))
		skip();
	assert_non_null(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd), "%s/main.go", dir);
	f = fopen(cmd, "w");
	assert_non_null(f);
	fputs(prog, f);
	fclose(f);
	snprintf(bin, sizeof(bin), "%s/prog", dir);
	snprintf(stripped, sizeof(stripped), "%s/prog.stripped", dir);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && GO111MODULE=off GOFLAGS= HOME=%s GOCACHE=%s/cache "
		 "go build -o prog main.go >/dev/null 2>&1 && "
		 "strip -o prog.stripped prog",
		 dir, dir, dir);
	assert_int_equal(system(cmd), 0);
	assert_int_equal(run_line("go env GOVERSION", ver, sizeof(ver)), 0);
	assert_int_equal(ws_go_version_parse(ver, &ma, &mi), 0);
	for (round = 0; round < 2; round++) {
		struct file fl = map_file(round ? stripped : bin);

		assert_non_null(fl.buf);
		assert_int_equal(ws_gobin_parse(fl.buf, fl.len, &gb), 0);
		assert_string_equal(gb.version, ver);
		assert_int_equal(gb.go_minor, mi);
		for (k = 0; k < 3; k++) {
			want = nm_addr(bin, names[k]);
			assert_true(want != 0);
			assert_int_equal(
				ws_gobin_func(&gb, names[k], &va, &off), 0);
			assert_int_equal(va, want);
			assert_true(off < fl.len);
		}
		unmap_file(&fl);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* Debian's caddy: stripped, go1.19, cgo (its .text starts with C code, so
 * function entries are relative to runtime.text, not .text). */
static void real_caddy(void **state)
{
	struct file f = map_file("/usr/bin/caddy");
	static const char *const names[] = {FN_WRITE, FN_RT};
	struct ws_gobin gb;
	uint64_t va, off;
	size_t k;

	(void)state;
	if (!f.buf)
		skip();
	assert_int_equal(ws_gobin_parse(f.buf, f.len, &gb), 0);
	assert_true(gb.go_minor >= WS_GO_MIN_MINOR);
	assert_memory_equal(gb.version, "go1.", 4);
	for (k = 0; k < 2; k++) {
		assert_int_equal(ws_gobin_func(&gb, names[k], &va, &off), 0);
		assert_true(off + 16 <= f.len);
		/* a Go function's prologue: the stack bound check against
		 * g->stackguard0, i.e. 0x10(%r14) (cmp ..., 0x10(%r14)),
		 * whose jbe the probes go on */
		assert_non_null(memmem(f.buf + off, 16, "\x3b\x66\x10", 3));
		assert_int_equal(ws_go_probe_skip(f.buf + off, f.len - off),
				 12);
	}
	unmap_file(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(layouts),    cmocka_unit_test(refusals),
		cmocka_unit_test(damage),     cmocka_unit_test(versions),
		cmocka_unit_test(probe_skip), cmocka_unit_test(real_go_binary),
		cmocka_unit_test(real_caddy),
	};

	return cmocka_run_group_tests(tests, guard_setup, guard_teardown);
}
