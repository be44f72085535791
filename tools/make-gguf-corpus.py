#!/usr/bin/env python3
"""make-gguf-corpus.py: writes the malformed-GGUF corpus and the fuzz seeds.

Usage: tools/make-gguf-corpus.py [REPO_ROOT]   (default: the directory above tools/)

Writes
  tests/corpus/gguf/*.gguf            one malformed file per class, named after what it tests
  tests/golden/gguf/corpus_expect.tsv file, expected status, expected message substrings
                                      ("a|b" = either), read by tests/unit/test_gguf_corpus.c
  tests/fuzz/corpus/gguf/*.gguf       a few small valid files (fuzz seeds)

Only the Python standard library is used: every byte is laid out here by hand with struct,
so the corpus does not depend on any GGUF library (ours or gguf-py). The classes follow
shared/spec/hardening.md §3 and the advisories in §1 (CVE-2025-53630, CVE-2026-27940,
Ollama CVE-2025-0315 alignment 0, CVE-2026-7482 offsets past EOF, nested-array recursion).
Re-running it rewrites the same bytes (deterministic).
"""
import os
import struct
import sys

# value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
# tensor types (GGML ids): F32 0, F16 1, Q8_0 8 (32 elems in 34 bytes), Q4_K 12, I8 24
T_F32, T_F16, T_Q8_0, T_Q4_K, T_I8 = 0, 1, 8, 12, 24
TRUNC = "truncated|run past the end|cannot fit|ends past the end of the file"


class B:
    """A byte builder that remembers field boundaries (offset, name) for truncation files."""

    def __init__(self):
        self.b = bytearray()
        self.marks = []

    def mark(self, name):
        self.marks.append((len(self.b), name))

    def raw(self, data, name=None):
        if name:
            self.mark(name)
        self.b += data
        return self

    def u32(self, v, name=None):
        return self.raw(struct.pack("<I", v & 0xFFFFFFFF), name)

    def u64(self, v, name=None):
        return self.raw(struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF), name)

    def s(self, text, name=None):
        data = text.encode() if isinstance(text, str) else text
        self.u64(len(data), name and name + ".len")
        return self.raw(data, name and name + ".bytes")

    def pad(self, align):
        while len(self.b) % align:
            self.b.append(0)
        return self


def header(b, n_tensors, n_kv, version=3, magic=b"GGUF"):
    b.raw(magic, "magic").u32(version, "version").u64(n_tensors, "n_tensors").u64(n_kv, "n_kv")


def kv_scalar(b, key, vtype, fmt, v, tag):
    b.s(key, tag + ".key")
    b.u32(vtype, tag + ".type")
    b.raw(struct.pack(fmt, v), tag + ".value")


def kv_str(b, key, text, tag):
    b.s(key, tag + ".key")
    b.u32(STR, tag + ".type")
    b.s(text, tag + ".value")


def kv_arr(b, key, etype, fmt, items, tag):
    b.s(key, tag + ".key")
    b.u32(ARR, tag + ".type")
    b.u32(etype, tag + ".elem_type")
    b.u64(len(items), tag + ".n")
    b.mark(tag + ".elems")
    for x in items:
        if etype == STR:
            b.s(x)
        else:
            b.raw(struct.pack(fmt, x))


def tensor_info(b, name, ne, ttype, offset, tag):
    b.s(name, tag + ".name")
    b.u32(len(ne), tag + ".n_dims")
    for i, d in enumerate(ne):
        b.u64(d, "%s.ne%d" % (tag, i))
    b.u32(ttype, tag + ".type")
    b.u64(offset, tag + ".offset")


def nbytes(ne, ttype):
    n = 1
    for d in ne:
        n *= d
    return {T_F32: n * 4, T_F16: n * 2, T_Q8_0: n // 32 * 34, T_Q4_K: n // 256 * 144,
            T_I8: n}[ttype]


TENSORS = [("token_embd.weight", [32, 4], T_Q8_0), ("blk.0.attn_norm.weight", [32], T_F32),
           ("blk.0.ffn_up.weight", [8, 2, 2], T_F16)]


def valid_file(align=32, with_align_kv=True, tensors=TENSORS, extra_kvs=None):
    """A small, valid, model-shaped file; returns the builder (marks kept)."""
    kvs = 9 + (1 if with_align_kv else 0) + len(extra_kvs or [])
    b = B()
    header(b, len(tensors), kvs)
    kv_str(b, "general.architecture", "gemma3", "kv0")
    if with_align_kv:
        kv_scalar(b, "general.alignment", U32, "<I", align, "kv_align")
    kv_scalar(b, "gemma3.block_count", U32, "<I", 1, "kv1")
    kv_scalar(b, "gemma3.attention.layer_norm_rms_epsilon", F32, "<f", 1e-6, "kv2")
    kv_scalar(b, "tokenizer.ggml.add_bos_token", BOOL, "<B", 1, "kv3")
    kv_scalar(b, "general.seed", I64, "<q", -7, "kv4")
    kv_arr(b, "tokenizer.ggml.tokens", STR, None, ["<pad>", "<eos>", "<bos>", "a", "\u2581b"], "kv5")
    kv_arr(b, "tokenizer.ggml.scores", F32, "<f", [0.0, -1.0, -2.0, -3.5, -4.0], "kv6")
    kv_arr(b, "tokenizer.ggml.token_type", I32, "<i", [3, 3, 3, 1, 1], "kv7")
    # a nested array: [[1, 2], [3]] of u16
    b.s("test.nested", "kv8.key")
    b.u32(ARR, "kv8.type").u32(ARR, "kv8.elem_type").u64(2, "kv8.n")
    b.u32(U16, "kv8.e0.elem_type").u64(2, "kv8.e0.n").raw(struct.pack("<HH", 1, 2), "kv8.e0.elems")
    b.u32(U16, "kv8.e1.elem_type").u64(1, "kv8.e1.n").raw(struct.pack("<H", 3), "kv8.e1.elems")
    for e in extra_kvs or []:
        e(b)
    off = 0
    layout = []
    for i, (name, ne, tt) in enumerate(tensors):
        tensor_info(b, name, ne, tt, off, "t%d" % i)
        layout.append(off)
        off += (nbytes(ne, tt) + align - 1) // align * align
    b.mark("padding")
    b.pad(align)
    b.mark("data")
    for i, (name, ne, tt) in enumerate(tensors):
        start = len(b.b)
        b.mark("data.t%d" % i)
        b.raw(bytes((i * 37 + k) & 0xFF for k in range(nbytes(ne, tt))))
        b.pad(align)
        assert start - b.marks[[m[1] for m in b.marks].index("data")][0] == layout[i]
    return b


def mini(n_tensors, n_kv, body, version=3, magic=b"GGUF", data=b""):
    """Header + whatever body() writes + data (used for targeted malformations)."""
    b = B()
    header(b, n_tensors, n_kv, version, magic)
    body(b)
    b.raw(data)
    return bytes(b.b)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    cdir = os.path.join(root, "tests", "corpus", "gguf")
    gdir = os.path.join(root, "tests", "golden", "gguf")
    fdir = os.path.join(root, "tests", "fuzz", "corpus", "gguf")
    for d in (cdir, gdir, fdir):
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.endswith(".gguf"):
                os.unlink(os.path.join(d, f))
    files = []  # (name, bytes, status, substrings)

    def add(name, data, status, want):
        assert all(name != f[0] for f in files), name
        files.append((name + ".gguf", bytes(data), status, want))

    # ---- truncation at every field boundary of a valid file ----
    base = valid_file()
    seen = set()
    for off, name in base.marks:
        if off in seen or off >= len(base.b):
            continue
        seen.add(off)
        add("trunc_%05d_before_%s" % (off, name.replace(".", "_")), base.b[:off], "FORMAT",
            "magic at byte 0|" + TRUNC if off < 4 else TRUNC)
    # cut inside a multi-byte field and inside the tensor data
    add("trunc_inside_version", base.b[:6], "FORMAT", "version at byte 4: truncated")
    add("trunc_inside_data_last_byte", base.b[:-1], "FORMAT", "ends past the end of the file")

    # ---- header ----
    add("bad_magic_ggml", b"GGML" + bytes(base.b[4:]), "FORMAT", "not a GGUF file")
    add("bad_magic_lowercase", b"gguf" + bytes(base.b[4:]), "FORMAT", "not a GGUF file (magic 67")
    for v in (0, 1, 4, 0xFFFFFFFF):
        add("version_%d" % v, mini(0, 0, lambda b: None, version=v), "VERSION",
            "version %d is not supported" % v)
    add("version_3_big_endian", mini(0, 0, lambda b: None, version=0x03000000), "UNSUPPORTED",
        "big-endian")
    add("n_kv_2e64_minus_1", mini(0, (1 << 64) - 1, lambda b: None), "FORMAT",
        "18446744073709551615 key-value pairs exceed the cap")
    add("n_kv_65537", mini(0, 65537, lambda b: None), "FORMAT", "65537 key-value pairs exceed")
    add("n_kv_more_than_file_holds", mini(0, 1000, lambda b: kv_str(b, "a", "b", "x")), "FORMAT",
        "1000 key-value pairs cannot fit")
    add("n_tensors_2e64_minus_1", mini((1 << 64) - 1, 0, lambda b: None), "FORMAT",
        "18446744073709551615 tensors exceed the cap")
    add("n_tensors_2e20_plus_1", mini((1 << 20) + 1, 0, lambda b: None), "FORMAT",
        "1048577 tensors exceed the cap")
    add("n_tensors_more_than_file_holds", mini(100, 0, lambda b: b.raw(bytes(64))), "FORMAT",
        "100 tensor infos cannot fit")

    # ---- keys ----
    add("key_len_2e64_minus_1", mini(0, 1, lambda b: b.u64((1 << 64) - 1).raw(bytes(32))),
        "FORMAT", "key length at byte 24: 18446744073709551615 bytes exceed the 65536-byte cap")
    add("key_len_65537", mini(0, 1, lambda b: b.u64(65537).raw(b"k" * 65537).u32(U8).raw(b"\0")),
        "FORMAT", "key length at byte 24: 65537 bytes exceed the 65536-byte cap")
    add("key_len_past_eof", mini(0, 1, lambda b: b.u64(1000).raw(b"key").raw(bytes(20))), "FORMAT",
        "key length at byte 24: 1000 bytes run past the end")
    add("key_empty", mini(0, 1, lambda b: b.s("").u32(U8).raw(b"\1").raw(bytes(8))), "FORMAT",
        "kv #0 key at byte 24: empty key")
    add("key_with_nul", mini(0, 1, lambda b: b.s(b"gen\0eral").u32(U8).raw(b"\1")), "FORMAT",
        "key contains a NUL byte")
    add("key_duplicate",
        mini(0, 3, lambda b: (kv_scalar(b, "a.b", U32, "<I", 1, "x"), kv_str(b, "c", "d", "y"),
                              kv_scalar(b, "a.b", U8, "<B", 2, "z"))),
        "FORMAT", "kv #2 'a.b' key at byte")
    add("key_with_newline_dup",
        mini(0, 2, lambda b: (kv_scalar(b, "x\ny", U8, "<B", 1, "x"),
                              kv_scalar(b, "x\ny", U8, "<B", 1, "y"))),
        "FORMAT", "kv #1 'x?y' key at byte 40: duplicate key (first at byte 24)")

    # ---- values ----
    add("value_type_13", mini(0, 1, lambda b: b.s("k").u32(13).raw(bytes(8))), "FORMAT",
        "unknown value type 13")
    add("value_type_ffffffff", mini(0, 1, lambda b: b.s("k").u32(0xFFFFFFFF).raw(bytes(8))),
        "FORMAT", "unknown value type 4294967295")
    add("string_len_2e64_minus_1",
        mini(0, 1, lambda b: b.s("k").u32(STR).u64((1 << 64) - 1).raw(bytes(16))), "FORMAT",
        "value length at byte 37: 18446744073709551615 bytes exceed the 16777216-byte cap")
    add("string_len_16mib_plus_1",
        mini(0, 1, lambda b: b.s("k").u32(STR).u64((16 << 20) + 1).raw(bytes(16))), "FORMAT",
        "16777217 bytes exceed the 16777216-byte cap")
    add("string_len_past_eof", mini(0, 1, lambda b: b.s("k").u32(STR).u64(4096).raw(b"abc")),
        "FORMAT", "value length at byte 37: 4096 bytes run past the end")
    add("string_len_wraps_pointer",
        mini(0, 1, lambda b: b.s("k").u32(STR).u64((1 << 64) - 8).raw(bytes(16))), "FORMAT",
        "18446744073709551608 bytes exceed")
    add("bool_value_2", mini(0, 1, lambda b: b.s("k").u32(BOOL).raw(b"\2")), "FORMAT",
        "bool value 2 is not 0 or 1")
    add("u64_value_truncated", mini(0, 1, lambda b: b.s("k").u32(U64).raw(b"\1\2\3")), "FORMAT",
        "value at byte 37: truncated, needs 8 bytes but 3 are left")
    add("f64_value_truncated", mini(0, 1, lambda b: b.s("k").u32(F64).raw(b"\1\2\3\4\5")),
        "FORMAT", "value at byte 37: truncated, needs 8 bytes but 5 are left")

    # ---- arrays ----
    def arr_hdr(b, et, n, key="arr"):
        b.s(key).u32(ARR).u32(et).u64(n)

    add("array_elem_type_13", mini(0, 1, lambda b: (arr_hdr(b, 13, 1), b.raw(bytes(8)))), "FORMAT",
        "unknown array element type 13")
    add("array_elem_type_ffffffff",
        mini(0, 1, lambda b: (arr_hdr(b, 0xFFFFFFFF, 1), b.raw(bytes(8)))), "FORMAT",
        "unknown array element type 4294967295")
    add("array_len_2e64_minus_1",
        mini(0, 1, lambda b: (arr_hdr(b, U8, (1 << 64) - 1), b.raw(bytes(8)))), "FORMAT",
        "18446744073709551615 elements exceed the cap of 67108864")
    add("array_len_2e26_plus_1", mini(0, 1, lambda b: (arr_hdr(b, U8, (1 << 26) + 1),
                                                       b.raw(bytes(8)))), "FORMAT",
        "67108865 elements exceed the cap")
    add("array_u32_len_past_eof", mini(0, 1, lambda b: (arr_hdr(b, U32, 1000), b.raw(bytes(40)))),
        "FORMAT", "1000 u32 elements cannot fit in the 40 bytes left")
    add("array_u64_len_times_size_overflows",
        mini(0, 1, lambda b: (arr_hdr(b, U64, 1 << 61), b.raw(bytes(16)))), "FORMAT",
        "2305843009213693952 elements exceed the cap")
    add("array_f64_len_past_eof", mini(0, 1, lambda b: (arr_hdr(b, F64, 3), b.raw(bytes(20)))),
        "FORMAT", "3 f64 elements cannot fit in the 20 bytes left")
    add("array_strings_count_past_eof",
        mini(0, 1, lambda b: (arr_hdr(b, STR, 100), b.s("a"), b.s("b"))), "FORMAT",
        "100 string elements cannot fit")
    add("array_string_len_huge",
        mini(0, 1, lambda b: (arr_hdr(b, STR, 3), b.s("a"), b.s("b"), b.u64((1 << 63) + 5),
                              b.raw(bytes(8)))), "FORMAT",
        "value[2] length at byte 69: 9223372036854775813 bytes exceed the 16777216-byte cap")
    add("array_string_past_eof",
        mini(0, 1, lambda b: (arr_hdr(b, STR, 3), b.s("a"), b.u64(100), b.raw(bytes(20)))),
        "FORMAT", "value[1] length at byte 60: 100 bytes run past the end")
    add("array_bool_element_3",
        mini(0, 1, lambda b: (arr_hdr(b, BOOL, 4), b.raw(b"\1\0\3\1"))), "FORMAT",
        "bool element 2 has value 3")
    add("array_nested_depth_4",
        mini(0, 1, lambda b: (b.s("n").u32(ARR), [b.u32(ARR).u64(1) for _ in range(3)],
                              b.u32(U8).u64(1).raw(b"\1"))), "FORMAT",
        "value[0][0] element type at byte 61: arrays nested deeper than 3 levels")
    add("array_nested_depth_100000",
        mini(0, 1, lambda b: (b.s("deep").u32(ARR), [b.u32(ARR).u64(1) for _ in range(100000)])),
        "FORMAT", "kv #0 'deep' value[0][0] element type at byte 64: arrays nested deeper")
    add("array_nested_count_past_eof",
        mini(0, 1, lambda b: (b.s("n").u32(ARR).u32(ARR).u64(50), b.u32(U8).u64(0))), "FORMAT",
        "50 array elements cannot fit")
    add("array_nested_inner_type_bad",
        mini(0, 1, lambda b: (b.s("n").u32(ARR).u32(ARR).u64(2), b.u32(U8).u64(1).raw(b"\1"),
                              b.u32(77).u64(1).raw(b"\1"))), "FORMAT",
        "value[1] element type at byte 62: unknown array element type 77")
    add("array_declared_u32_holds_strings",
        mini(0, 2, lambda b: (arr_hdr(b, U32, 2), b.s("ab"), b.s("cd"))),
        "FORMAT", "kv #1 key length at byte 59: 156257 bytes exceed the 65536-byte cap")

    # ---- general.alignment ----
    def align_kv(vtype, fmt, v):
        return lambda b: (b.s("general.alignment"), b.u32(vtype), b.raw(struct.pack(fmt, v)))

    for a in (0, 3, 24, 1 << 21, 1 << 31):
        add("alignment_%d" % a, mini(0, 1, align_kv(U32, "<I", a)), "FORMAT",
            "alignment %d is not a power of two in 1..1048576" % a)
    add("alignment_type_u64", mini(0, 1, align_kv(U64, "<Q", 32)), "FORMAT",
        "'general.alignment' at byte 24: type is u64, expected u32")
    add("alignment_type_i32", mini(0, 1, align_kv(I32, "<i", 32)), "FORMAT", "type is i32")
    add("alignment_type_string", mini(0, 1, lambda b: kv_str(b, "general.alignment", "32", "a")),
        "FORMAT", "type is string, expected u32")
    add("alignment_type_f32", mini(0, 1, align_kv(F32, "<f", 32.0)), "FORMAT", "type is f32")

    # ---- tensor infos ----
    def tfile(infos, data_len=256, align=32, n_kv=0, kvs=lambda b: None):
        def body(b):
            kvs(b)
            for info in infos:
                info(b)
            b.pad(align)
            b.raw(bytes(data_len))
        return mini(len(infos), n_kv, body)

    def ti(name="w", ne=(32,), tt=T_F32, off=0, n_dims=None):
        def f(b):
            b.s(name)
            b.u32(len(ne) if n_dims is None else n_dims)
            for d in ne:
                b.u64(d)
            b.u32(tt)
            b.u64(off)
        return f

    add("tensor_name_len_2e64_minus_1",
        mini(1, 0, lambda b: (b.u64((1 << 64) - 1), b.raw(bytes(40)))), "FORMAT",
        "tensor #0 name length at byte 24: 18446744073709551615 bytes exceed the 65536-byte cap")
    add("tensor_name_past_eof", mini(1, 0, lambda b: (b.u64(500), b.raw(bytes(40)))), "FORMAT",
        "tensor #0 name length at byte 24: 500 bytes run past the end")
    add("tensor_name_empty", tfile([ti(name="")]), "FORMAT", "empty tensor name")
    add("tensor_name_with_nul", tfile([ti(name="a\0b")]), "FORMAT",
        "tensor name contains a NUL byte")
    add("tensor_name_duplicate", tfile([ti(name="w", off=0), ti(name="v", off=128),
                                        ti(name="w", off=256)], data_len=512), "FORMAT",
        "tensor 'w' (#2) name at byte 90: duplicate tensor name (first at byte 24)")
    add("tensor_n_dims_0", tfile([ti(ne=(), n_dims=0)]), "FORMAT", "0 dimensions (allowed 1..4)")
    add("tensor_n_dims_5", tfile([ti(ne=(32, 1, 1, 1, 1))]), "FORMAT",
        "5 dimensions (allowed 1..4)")
    add("tensor_n_dims_ffffffff", tfile([ti(ne=(32,), n_dims=0xFFFFFFFF)]), "FORMAT",
        "4294967295 dimensions")
    add("tensor_ne_product_overflow_cve_2025_53630",
        tfile([ti(ne=(1 << 32, 1 << 32), tt=T_I8)]), "FORMAT",
        "dimension 1 (4294967296) makes the element count overflow 2^62")
    add("tensor_ne_product_2e62", tfile([ti(ne=(1 << 31, 1 << 31), tt=T_I8)]), "FORMAT",
        "dimension 1 (2147483648) makes the element count overflow")
    add("tensor_ne_dim_2e63", tfile([ti(ne=(1 << 63,), tt=T_I8)]), "FORMAT",
        "dimension 0 (9223372036854775808)")
    add("tensor_ne_4d_overflow", tfile([ti(ne=(1 << 16, 1 << 16, 1 << 16, 1 << 16), tt=T_I8)]),
        "FORMAT", "dimension 3 (65536) makes")
    add("tensor_type_4_hole", tfile([ti(tt=4)]), "UNSUPPORTED", "unknown tensor type 4")
    add("tensor_type_1000", tfile([ti(tt=1000)]), "UNSUPPORTED", "unknown tensor type 1000")
    add("tensor_type_7fffffff", tfile([ti(tt=0x7FFFFFFF)]), "UNSUPPORTED",
        "unknown tensor type 2147483647")
    add("tensor_q4_k_ne0_not_block_multiple", tfile([ti(ne=(32, 2), tt=T_Q4_K)]), "FORMAT",
        "ne[0] = 32 is not a multiple of the Q4_K block size 256")
    add("tensor_q8_0_ne0_33", tfile([ti(ne=(33,), tt=T_Q8_0)]), "FORMAT",
        "ne[0] = 33 is not a multiple of the Q8_0 block size 32")
    add("tensor_nbytes_overflow_f32", tfile([ti(ne=(1 << 61,), tt=T_F32)]), "FORMAT",
        "F32 tensor byte size overflows 2^62")
    add("tensors_sum_overflow_cve_2026_27940",
        tfile([ti(name="a", ne=(3 << 60,), tt=T_I8, off=0),
               ti(name="b", ne=(3 << 60,), tt=T_I8, off=0)]), "FORMAT",
        "tensor 'b' (#1) type at byte 78: tensor bytes so far sum to 2^62 or more")
    add("tensor_offset_2e63", tfile([ti(off=1 << 63)]), "FORMAT",
        "offset 9223372036854775808 is not below 2^62")
    add("tensor_offset_misaligned", tfile([ti(off=16)]), "FORMAT",
        "offset 16 is not aligned to 32")
    add("tensor_offset_misaligned_custom_alignment",
        tfile([ti(off=64)], n_kv=1, kvs=align_kv(U32, "<I", 128), align=128), "FORMAT",
        "offset 64 is not aligned to 128")
    add("tensor_offset_past_eof", tfile([ti(off=4096)]), "FORMAT",
        "data [4096, 4224) ends past the end of the file")
    add("tensor_end_past_eof", tfile([ti(ne=(32, 3), off=0)], data_len=256), "FORMAT",
        "data [0, 384) ends past the end of the file (352 bytes; data section at byte 96 has 256 bytes)")
    add("tensor_offset_bleeding_llama_cve_2026_7482",
        tfile([ti(ne=(1 << 20,), off=1 << 40, tt=T_I8)]), "FORMAT",
        "data [1099511627776, 1099512676352) ends past the end of the file")
    add("tensor_offset_plus_size_2e62",
        tfile([ti(ne=(1 << 61,), tt=T_I8, off=(1 << 62) - (1 << 60))]), "FORMAT",
        "+ 2305843009213693952 bytes overflows 2^62")
    add("tensors_overlap",
        tfile([ti(name="a", ne=(64,), off=0), ti(name="b", ne=(32,), off=128)], data_len=512),
        "FORMAT", "tensor 'b' (#1) at byte 57: data [128, 256) overlaps tensor 'a' [0, 256)")
    add("tensors_same_offset",
        tfile([ti(name="a", ne=(32,), off=64), ti(name="b", ne=(8,), off=64)], data_len=512),
        "FORMAT", "data [64, 96) overlaps tensor 'a' [64, 192)|data [64, 192) overlaps tensor 'b'")
    add("tensors_overlap_out_of_order",
        tfile([ti(name="late", ne=(32,), off=256), ti(name="early", ne=(96,), off=0),
               ti(name="mid", ne=(8,), off=160)], data_len=1024), "FORMAT",
        "tensor 'mid' (#2) at byte 97: data [160, 192) overlaps tensor 'early' [0, 384)")
    add("data_section_missing", tfile([ti()], data_len=0, align=1), "FORMAT",
        "ends past the end of the file (57 bytes; data section at byte 64 has 0 bytes)")

    # ---- valid seeds for the fuzzer ----
    seeds = {
        "valid_small.gguf": bytes(valid_file().b),
        "valid_align_64.gguf": bytes(valid_file(align=64).b),
        "valid_no_align_kv.gguf": bytes(valid_file(with_align_kv=False).b),
        "valid_empty.gguf": mini(0, 0, lambda b: None),
        "valid_v2_one_tensor.gguf": mini(1, 1, lambda b: (kv_str(b, "general.name", "x", "k"),
                                                          ti(ne=(8,))(b), b.pad(32),
                                                          b.raw(bytes(32))), version=2),
    }
    for name, data in seeds.items():
        with open(os.path.join(fdir, name), "wb") as f:
            f.write(data)

    with open(os.path.join(gdir, "corpus_expect.tsv"), "w") as tsv:
        tsv.write("# file\tstatus\texpected message substrings ('|' = any of them)\n")
        tsv.write("# generated by tools/make-gguf-corpus.py; do not edit\n")
        for name, data, status, want in files:
            with open(os.path.join(cdir, name), "wb") as f:
                f.write(data)
            tsv.write("%s\t%s\t%s\n" % (name, status, want))
    print("make-gguf-corpus: %d malformed files, %d seeds" % (len(files), len(seeds)))


if __name__ == "__main__":
    main()
