/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Go binaries as the uprobes need them: which Go built an ELF file and where
 * its functions are, from the bytes of the file alone. Stripped binaries
 * (no .symtab) are fine: the Go runtime's own function table, .gopclntab,
 * stays in every Go binary because tracebacks need it.
 *
 * Pure: a buffer in (the whole file), offsets out; no I/O, no allocation, so
 * it is unit-tested on real binaries and fuzzed (tests/fuzz/fuzz_gopclntab.c).
 * Every read is bounds-checked against the buffer; bad input is -EINVAL.
 *
 * Layout of .gopclntab (Go's runtime/symtab.go pcHeader, little-endian,
 * "uintptr" = ptr_size bytes):
 *
 *   Go 1.18+ (magic 0xfffffff0; 1.20+ 0xfffffff1):
 *     magic u32 | 0 u8 | 0 u8 | min_lc u8 | ptr_size u8
 *     nfunc, nfiles, text_start, funcname_off, cu_off, filetab_off,
 *     pctab_off, pcln_off                                    (uintptr each)
 *     at pcln_off: nfunc+1 x { entry_off u32, func_off u32 }  (entry_off
 *       relative to text_start, func_off to pcln_off; the last is the end)
 *     at pcln_off + func_off: _func { entry_off u32, name_off i32, ... }
 *     name: NUL-terminated at funcname_off + name_off
 *   Go 1.16-1.17 (magic 0xfffffffa): no text_start field; functab entries
 *     are { entry uintptr (absolute), func_off uintptr }, _func starts
 *     { entry uintptr, name_off i32 }.
 *
 * .go.buildinfo: "\xff Go buildinf:" | ptr_size u8 | flags u8 | ... ; with
 * flags bit 1 (Go 1.18+) the version string follows at 32, length as a
 * uvarint; older binaries hold a pointer to a Go string header at 16.
 */
#ifndef WIRESPAN_GOPCLNTAB_H
#define WIRESPAN_GOPCLNTAB_H

#include <stddef.h>
#include <stdint.h>

/* The oldest Go with the register ABI on amd64 (R14 = g, args in AX, BX..). */
#define WS_GO_MIN_MINOR 17

struct ws_gobin {
	const uint8_t *buf;
	size_t len;
	/* .gopclntab: file offset and size */
	uint64_t pcln_off, pcln_len;
	uint32_t magic;
	uint8_t ptr_size;
	uint64_t nfunc;
	uint64_t text_start;		     /* vaddr of runtime.text (1.18+) */
	uint64_t funcname_off, pcln_tab_off; /* within .gopclntab */
	/* "go1.19.8", or "" when the build info could not be read */
	char version[32];
	unsigned go_major, go_minor; /* 0 when unknown */
	/* program headers, for vaddr -> file offset */
	uint64_t phoff;
	uint16_t phnum, phentsize;
};

/*
 * Parse an ELF64 x86-64 file: its .gopclntab header and its Go version.
 * 0; -ENOEXEC: not an ELF64 x86-64 file, or no .gopclntab (not Go);
 * -EINVAL: malformed; -EPROTONOSUPPORT: a pclntab format not known here.
 */
int ws_gobin_parse(const uint8_t *buf, size_t len, struct ws_gobin *gb);

/*
 * The entry of the function named name (exact, e.g.
 * "net/http.(*Request).write"): its vaddr and the file offset of that
 * vaddr (what a uprobe attaches to). 0, -ENOENT, or -EINVAL (malformed).
 */
int ws_gobin_func(const struct ws_gobin *gb, const char *name, uint64_t *vaddr,
		  uint64_t *file_off);

/*
 * Where to put a uprobe in a Go function whose code starts at code[0..n):
 * the bytes from the entry to the conditional jump of its stack-bound check
 *   [lea -X(%rsp),%r12 ;] cmp 0x10(%r14),%rsp|%r12 ; jbe morestack
 * (amd64, Go 1.17+). The kernel emulates a jump in place, while the
 * instruction at the entry (lea, cmp) must be single-stepped out of line:
 * a second trap, 30x the cost on the test machine (docs/ARCHITECTURE.md).
 * The registers the probes read (RAX, RBX, R14) are unchanged by then.
 * Returns the offset of the jbe, or 0 (probe the entry) for any other
 * prologue (leaf functions, huge frames).
 */
size_t ws_go_probe_skip(const uint8_t *code, size_t n);

/* "go1.19.8" -> 1, 19 (also "go1.21rc2", "devel go1.22-..."). 0 or -EINVAL. */
int ws_go_version_parse(const char *s, unsigned *major, unsigned *minor);

/* The file offset of vaddr in a loaded segment, inside the file. 0 or
 * -ENOENT. */
int ws_gobin_file_off(const struct ws_gobin *gb, uint64_t vaddr, uint64_t *off);

#endif /* WIRESPAN_GOPCLNTAB_H */
