/* SPDX-License-Identifier: Apache-2.0 */
#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gopclntab.h"

#define MAGIC_116 0xfffffffau
#define MAGIC_118 0xfffffff0u
#define MAGIC_120 0xfffffff1u

static const char buildinfo_magic[] = "\xff Go buildinf:";

/* Bounds-checked little-endian reads: false when [off, off+n) is outside. */
static bool in(size_t len, uint64_t off, uint64_t n)
{
	return off <= len && n <= len - off;
}

static uint64_t rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static bool get(const uint8_t *buf, size_t len, uint64_t off, unsigned n,
		uint64_t *v)
{
	if (!in(len, off, n))
		return false;
	*v = rd(buf + off, n);
	return true;
}

/* The section named name: its file offset and size. */
static int find_section(const uint8_t *b, size_t len, const char *name,
			uint64_t *off, uint64_t *size)
{
	uint64_t shoff, shentsize, shnum, shstrndx, stroff, strsize, i;
	size_t nlen = strlen(name) + 1;

	if (!get(b, len, offsetof(Elf64_Ehdr, e_shoff), 8, &shoff) ||
	    !get(b, len, offsetof(Elf64_Ehdr, e_shentsize), 2, &shentsize) ||
	    !get(b, len, offsetof(Elf64_Ehdr, e_shnum), 2, &shnum) ||
	    !get(b, len, offsetof(Elf64_Ehdr, e_shstrndx), 2, &shstrndx))
		return -EINVAL;
	if (shentsize < sizeof(Elf64_Shdr) || shstrndx >= shnum ||
	    !in(len, shoff, shnum * shentsize))
		return -EINVAL;
	stroff = shoff + shstrndx * shentsize;
	if (!get(b, len, stroff + offsetof(Elf64_Shdr, sh_offset), 8,
		 &stroff) ||
	    !get(b, len,
		 shoff + shstrndx * shentsize + offsetof(Elf64_Shdr, sh_size),
		 8, &strsize) ||
	    !in(len, stroff, strsize))
		return -EINVAL;
	for (i = 0; i < shnum; i++) {
		uint64_t sh = shoff + i * shentsize, nameoff = 0, type = 0;

		get(b, len, sh + offsetof(Elf64_Shdr, sh_name), 4, &nameoff);
		get(b, len, sh + offsetof(Elf64_Shdr, sh_type), 4, &type);
		if (type == SHT_NOBITS || nameoff >= strsize ||
		    strsize - nameoff < nlen ||
		    memcmp(b + stroff + nameoff, name, nlen))
			continue;
		get(b, len, sh + offsetof(Elf64_Shdr, sh_offset), 8, off);
		get(b, len, sh + offsetof(Elf64_Shdr, sh_size), 8, size);
		return in(len, *off, *size) ? 0 : -EINVAL;
	}
	return -ENOENT;
}

int ws_go_version_parse(const char *s, unsigned *major, unsigned *minor)
{
	const char *p = strstr(s, "go1.");
	unsigned long mi = 0;
	int digits = 0;

	if (!p)
		return -EINVAL;
	for (p += 4; *p >= '0' && *p <= '9' && digits < 4; p++, digits++)
		mi = mi * 10 + (unsigned long)(*p - '0');
	if (!digits)
		return -EINVAL;
	*major = 1;
	*minor = (unsigned)mi;
	return 0;
}

/* The Go version from .go.buildinfo, into gb->version (left "" if not). */
static void read_version(struct ws_gobin *gb, uint64_t off, uint64_t size)
{
	const uint8_t *b = gb->buf;
	uint64_t n = 0, shift = 0, p, str, slen, foff;
	unsigned ps;

	if (size < 32 || memcmp(b + off, buildinfo_magic, 14))
		return;
	ps = b[off + 14];
	if (ps != 8)
		return;
	if (b[off + 15] & 2) {
		/* inline: uvarint length, then the bytes */
		for (p = off + 32; p < off + size && shift < 64; p++) {
			n |= (uint64_t)(b[p] & 0x7f) << shift;
			shift += 7;
			if (!(b[p] & 0x80))
				break;
		}
		if (p >= off + size)
			return;
		str = p + 1;
		slen = n;
		if (slen > off + size - str)
			return;
	} else {
		/* a pointer to a Go string header { data, len } */
		if (ws_gobin_file_off(gb, rd(b + off + 16, 8), &foff) ||
		    !get(b, gb->len, foff, 8, &str) ||
		    !get(b, gb->len, foff + 8, 8, &slen) ||
		    ws_gobin_file_off(gb, str, &str) || !in(gb->len, str, slen))
			return;
	}
	if (slen >= sizeof(gb->version))
		return;
	memcpy(gb->version, b + str, slen);
	gb->version[slen] = 0;
	if (memchr(gb->version, 0, slen) ||
	    ws_go_version_parse(gb->version, &gb->go_major, &gb->go_minor)) {
		gb->version[0] = 0;
		gb->go_major = gb->go_minor = 0;
	}
}

/* The pcHeader at gb->pcln_off. */
static int read_pcheader(struct ws_gobin *gb)
{
	const uint8_t *h = gb->buf + gb->pcln_off;
	uint64_t n = gb->pcln_len, ps;
	unsigned nfields;

	if (n < 8)
		return -EINVAL;
	gb->magic = (uint32_t)rd(h, 4);
	ps = h[7];
	if (gb->magic != MAGIC_116 && gb->magic != MAGIC_118 &&
	    gb->magic != MAGIC_120)
		return -EPROTONOSUPPORT;
	if (h[4] || h[5] || ps != 8)
		return -EPROTONOSUPPORT; /* 64-bit only */
	gb->ptr_size = (uint8_t)ps;
	nfields = gb->magic == MAGIC_116 ? 7 : 8;
	if (n < 8 + nfields * ps)
		return -EINVAL;
	gb->nfunc = rd(h + 8, 8);
	if (gb->magic == MAGIC_116) {
		gb->text_start = 0;
		gb->funcname_off = rd(h + 8 + 2 * 8, 8);
		gb->pcln_tab_off = rd(h + 8 + 6 * 8, 8);
	} else {
		gb->text_start = rd(h + 8 + 2 * 8, 8);
		gb->funcname_off = rd(h + 8 + 3 * 8, 8);
		gb->pcln_tab_off = rd(h + 8 + 7 * 8, 8);
	}
	/* the function table must fit: nfunc+1 entries */
	if (gb->funcname_off >= n || gb->pcln_tab_off >= n ||
	    gb->nfunc > (n - gb->pcln_tab_off) / 8)
		return -EINVAL;
	return 0;
}

int ws_gobin_parse(const uint8_t *buf, size_t len, struct ws_gobin *gb)
{
	uint64_t v, off, size;
	int err;

	memset(gb, 0, sizeof(*gb));
	gb->buf = buf;
	gb->len = len;
	if (!buf || len < sizeof(Elf64_Ehdr) || memcmp(buf, ELFMAG, SELFMAG) ||
	    buf[EI_CLASS] != ELFCLASS64 || buf[EI_DATA] != ELFDATA2LSB)
		return -ENOEXEC;
	get(buf, len, offsetof(Elf64_Ehdr, e_machine), 2, &v);
	if (v != EM_X86_64)
		return -ENOEXEC;
	get(buf, len, offsetof(Elf64_Ehdr, e_phoff), 8, &gb->phoff);
	get(buf, len, offsetof(Elf64_Ehdr, e_phnum), 2, &v);
	gb->phnum = (uint16_t)v;
	get(buf, len, offsetof(Elf64_Ehdr, e_phentsize), 2, &v);
	gb->phentsize = (uint16_t)v;
	if (gb->phentsize < sizeof(Elf64_Phdr) ||
	    !in(len, gb->phoff, (uint64_t)gb->phnum * gb->phentsize))
		return -EINVAL;
	err = find_section(buf, len, ".gopclntab", &gb->pcln_off,
			   &gb->pcln_len);
	if (err)
		return err == -ENOENT ? -ENOEXEC : err;
	err = read_pcheader(gb);
	if (err)
		return err;
	if (!find_section(buf, len, ".go.buildinfo", &off, &size))
		read_version(gb, off, size);
	return 0;
}

size_t ws_go_probe_skip(const uint8_t *c, size_t n)
{
	static const uint8_t cmp_rsp[] = {0x49, 0x3b, 0x66, 0x10};
	static const uint8_t cmp_r12[] = {0x4d, 0x3b, 0x66, 0x10};
	size_t i = 0;

	/* lea disp8/disp32(%rsp),%r12 then cmp 0x10(%r14),%r12 */
	if (n >= 5 && c[0] == 0x4c && c[1] == 0x8d && c[3] == 0x24 &&
	    (c[2] == 0x64 || c[2] == 0xa4)) {
		i = c[2] == 0x64 ? 5 : 8;
		if (n < i + 4 || memcmp(c + i, cmp_r12, 4))
			return 0;
	} else if (n < 4 || memcmp(c, cmp_rsp, 4)) {
		return 0;
	}
	i += 4;
	/* jbe rel8 or jbe rel32 */
	if ((n > i + 1 && c[i] == 0x76) ||
	    (n > i + 5 && c[i] == 0x0f && c[i + 1] == 0x86))
		return i;
	return 0;
}

int ws_gobin_file_off(const struct ws_gobin *gb, uint64_t vaddr, uint64_t *off)
{
	unsigned i;

	for (i = 0; i < gb->phnum; i++) {
		uint64_t ph = gb->phoff + (uint64_t)i * gb->phentsize, type = 0,
			 pv = 0, po = 0, pf = 0;

		get(gb->buf, gb->len, ph + offsetof(Elf64_Phdr, p_type), 4,
		    &type);
		get(gb->buf, gb->len, ph + offsetof(Elf64_Phdr, p_vaddr), 8,
		    &pv);
		get(gb->buf, gb->len, ph + offsetof(Elf64_Phdr, p_offset), 8,
		    &po);
		get(gb->buf, gb->len, ph + offsetof(Elf64_Phdr, p_filesz), 8,
		    &pf);
		if (type == PT_LOAD && vaddr >= pv && vaddr - pv < pf &&
		    po < gb->len && vaddr - pv < gb->len - po) {
			*off = vaddr - pv + po;
			return 0;
		}
	}
	return -ENOENT;
}

/* Function i of the table: its entry vaddr and name offset. */
static int func_at(const struct ws_gobin *gb, uint64_t i, uint64_t *entry,
		   const char **name, size_t *name_max)
{
	const uint8_t *t = gb->buf + gb->pcln_off;
	uint64_t n = gb->pcln_len, ft = gb->pcln_tab_off, foff, e, no;
	unsigned w = gb->magic == MAGIC_116 ? 8 : 4;

	if (!get(t, n, ft + i * 2 * w, w, &e) ||
	    !get(t, n, ft + i * 2 * w + w, w, &foff) || foff > n - ft ||
	    !get(t, n, ft + foff + w, 4, &no))
		return -EINVAL;
	*entry = gb->magic == MAGIC_116 ? e : gb->text_start + e;
	no = (uint64_t)(int64_t)(int32_t)no;
	if (no >= n - gb->funcname_off)
		return -EINVAL;
	*name = (const char *)t + gb->funcname_off + no;
	*name_max = n - gb->funcname_off - no;
	return 0;
}

int ws_gobin_func(const struct ws_gobin *gb, const char *name, uint64_t *vaddr,
		  uint64_t *file_off)
{
	size_t nlen = strlen(name) + 1, max;
	const char *fn;
	uint64_t i, entry;

	/* the table is sorted by address, not name: one linear pass */
	for (i = 0; i < gb->nfunc; i++) {
		if (func_at(gb, i, &entry, &fn, &max))
			return -EINVAL;
		if (max < nlen || memcmp(fn, name, nlen))
			continue;
		*vaddr = entry;
		return ws_gobin_file_off(gb, entry, file_off) ? -EINVAL : 0;
	}
	return -ENOENT;
}
