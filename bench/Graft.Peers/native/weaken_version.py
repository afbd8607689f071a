#!/usr/bin/env python3
"""Marks one version requirement (e.g. GLIBCXX_3.4.32) of an ELF64 shared library weak, in place.

The dynamic loader refuses a library that needs a symbol version its dependencies do not define; a weak requirement is
only reported, and a symbol with that version then binds to any unversioned definition, such as one in a preloaded
library. Used on the bench's own copy of libLibTorchSharp.so (bench/Graft.Peers); stdlib only.

usage: weaken_version.py LIBRARY VERSION
"""
import struct
import sys

VER_FLG_WEAK = 0x2


def weaken(path, version):
    with open(path, "r+b") as f:
        data = bytearray(f.read())
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            sys.exit(f"{path}: not a little-endian ELF64 file")
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
        SHT_GNU_VERNEED = 0x6FFFFFFE
        changed = 0
        for name, type_, flags, addr, offset, size, link, info, align, entsize in sections:
            if type_ != SHT_GNU_VERNEED:
                continue
            strtab = sections[link][4]
            entry = offset
            for _ in range(info):
                vn_version, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
                aux = entry + vn_aux
                for _ in range(vn_cnt):
                    vna_hash, vna_flags, vna_other, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                    end = data.index(0, strtab + vna_name)
                    if data[strtab + vna_name:end].decode() == version and not vna_flags & VER_FLG_WEAK:
                        struct.pack_into("<H", data, aux + 4, vna_flags | VER_FLG_WEAK)
                        changed += 1
                    aux += vna_next
                entry += vn_next
        f.seek(0)
        f.write(data)
    print(f"{path}: {version} marked weak ({changed} requirement(s) changed)")


if __name__ == "__main__":
    weaken(sys.argv[1], sys.argv[2])
