#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Write small synthetic Go ELF files: the seed corpus of fuzz_gopclntab and
the fixtures of tests/unit/test_gopclntab.c (which knows what each holds).

Each file: an ELF64 x86-64 header, one PT_LOAD mapping the whole file at
0x400000, a .text of 0x40 bytes at file offset 0x200, a .gopclntab in the
layout of one Go release, a .go.buildinfo naming that release, .shstrtab.
Functions (entry = .text + off): main.main +0x00,
net/http.(*Request).write +0x10, net/http.(*persistConn).roundTrip +0x20.

  go118.elf  magic 0xfffffff0, version inline          ("go1.18.10")
  go120.elf  magic 0xfffffff1, version inline          ("go1.21.0")
  go117.elf  magic 0xfffffffa, version behind a pointer ("go1.17.13")
  go116.elf  magic 0xfffffffa, version behind a pointer ("go1.16.15")

Run from the repository root: python3 tests/fuzz/gen_gopclntab_corpus.py
"""
import struct
import pathlib

BASE = 0x400000
TEXT_OFF = 0x200
FUNCS = [("main.main", 0x00), ("net/http.(*Request).write", 0x10),
         ("net/http.(*persistConn).roundTrip", 0x20)]
TEXT_LEN = 0x40


def pclntab(magic):
    names = b""
    name_off = []
    for n, _ in FUNCS:
        name_off.append(len(names))
        names += n.encode() + b"\0"
    new = magic != 0xfffffffa
    nfields = 8 if new else 7
    hdr_len = 8 + 8 * nfields
    funcname_off = hdr_len
    pcln_off = funcname_off + len(names)
    pcln_off += (-pcln_off) % 8
    w = 4 if new else 8
    ftab_len = (len(FUNCS) + 1) * 2 * w
    funcs = b""
    ftab = b""
    for i, (_, off) in enumerate(FUNCS):
        foff = ftab_len + len(funcs)
        if new:
            ftab += struct.pack("<II", off, foff)
            funcs += struct.pack("<Ii", off, name_off[i]) + b"\0" * 32
        else:
            ftab += struct.pack("<QQ", BASE + TEXT_OFF + off, foff)
            funcs += struct.pack("<Qi", BASE + TEXT_OFF + off, name_off[i]) + b"\0" * 28
    ftab += struct.pack("<II", TEXT_LEN, 0) if new else struct.pack("<QQ", BASE + TEXT_OFF + TEXT_LEN, 0)
    if new:
        fields = [len(FUNCS), 1, BASE + TEXT_OFF, funcname_off, 0, 0, 0, pcln_off]
    else:
        fields = [len(FUNCS), 1, funcname_off, 0, 0, 0, pcln_off]
    hdr = struct.pack("<IBBBB", magic, 0, 0, 1, 8) + struct.pack("<%dQ" % nfields, *fields)
    body = hdr + names
    body += b"\0" * (pcln_off - len(body))
    return body + ftab + funcs


def buildinfo(version, inline, vaddr):
    head = b"\xff Go buildinf:" + bytes([8, 2 if inline else 0])
    if inline:
        v = version.encode()
        return head + b"\0" * 16 + bytes([len(v)]) + v + bytes([0])
    # pointer format: at 16 a pointer to a Go string header {data, len}
    sh = vaddr + 32
    data = vaddr + 48
    return head + struct.pack("<QQ", sh, 0) + struct.pack("<QQ", data, len(version)) + version.encode()


def elf(magic, version, inline):
    out = bytearray(TEXT_OFF)
    out += b"\xcc" * TEXT_LEN
    secs = [(".text", TEXT_OFF, TEXT_LEN)]
    pc = pclntab(magic)
    secs.append((".gopclntab", len(out), len(pc)))
    out += pc
    out += b"\0" * ((-len(out)) % 16)
    bi = buildinfo(version, inline, BASE + len(out))
    secs.append((".go.buildinfo", len(out), len(bi)))
    out += bi
    shstr = b"\0"
    name_at = {}
    for n, _, _ in secs + [(".shstrtab", 0, 0)]:
        name_at[n] = len(shstr)
        shstr += n.encode() + b"\0"
    secs.append((".shstrtab", len(out), len(shstr)))
    out += shstr
    out += b"\0" * ((-len(out)) % 8)
    shoff = len(out)
    sh = b"\0" * 64
    for n, off, size in secs:
        flags = 6 if n == ".text" else (2 if n != ".shstrtab" else 0)
        addr = BASE + off if n != ".shstrtab" else 0
        typ = 3 if n == ".shstrtab" else 1
        sh += struct.pack("<IIQQQQIIQQ", name_at[n], typ, flags, addr, off, size, 0, 0, 1, 0)
    out += sh
    total = len(out)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    ehdr += struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, BASE + TEXT_OFF, 64, shoff, 0, 64, 56, 1, 64,
                        len(secs) + 1, len(secs))
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, BASE, BASE, total, total, 0x1000)
    out[0:64] = ehdr
    out[64:64 + 56] = phdr
    return bytes(out)


def main():
    d = pathlib.Path(__file__).resolve().parent / "corpus" / "gopclntab"
    d.mkdir(parents=True, exist_ok=True)
    for name, magic, ver, inline in [("go118.elf", 0xfffffff0, "go1.18.10", True),
                                     ("go120.elf", 0xfffffff1, "go1.21.0", True),
                                     ("go117.elf", 0xfffffffa, "go1.17.13", False),
                                     ("go116.elf", 0xfffffffa, "go1.16.15", False)]:
        (d / name).write_bytes(elf(magic, ver, inline))


if __name__ == "__main__":
    main()
