#!/usr/bin/env python3
"""make-quant-golden.py: golden data for tests/unit/test_quant.c, from gguf-py (PyPI `gguf`).

Writes tests/golden/quant/:
  deq_<TYPE>.bin  random but reproducible raw blocks of TYPE and gguf.quants.dequantize()'s
                  floats for them (every type gguf-py can dequantize and we implement).
  q_<TYPE>.bin    float inputs and gguf.quants.quantize()'s bytes for them (every type
                  gguf-py can quantize and we implement).
  qg_<TYPE>.bin   float inputs and ggml's own reference quantizer's bytes for them, for the
                  types gguf-py cannot quantize (K-quants, Q8_K, IQ4_NL, IQ4_XS), and for the
                  legacy types (on signed-zero blocks too) and MXFP4 again. Made only when the PyPI package
                  `libggml-python` (prebuilt libggml-base.so, ggml 0.20.2) is installed: its
                  ggml_quantize_chunk() with no importance matrix is exactly what
                  llama-quantize runs. A developer tool: CI only reads the committed files.

File layout (all little-endian):
  magic "LGQG", u32 version (1), u32 kind (0 = dequant, 1 = quant), u32 ggml type id,
  u32 n_elems, u32 n_bytes, then
    kind 0: u8 blocks[n_bytes], f32 expected[n_elems]
    kind 1: f32 input[n_elems], u8 expected[n_bytes]

The blocks include edge cases on purpose: zero, huge (65504, inf), tiny and subnormal f16
scales, negative scales, all-zero and all-ones quants, every E8M0 exponent for MXFP4.
Float inputs include an all-zero block, -0.0 elements, huge and tiny magnitudes, f16-subnormal ranges,
constant blocks and ties in magnitude. Seeded: re-running gives the same files.
Blocks made only of signed zeros are left out of the quantizer inputs: there gguf-py (numpy
argmax/min) and ggml (running max from +0.0) disagree on the sign of a zero scale, and we
follow ggml.

Usage: python3 tools/make-quant-golden.py [OUTDIR]
       (pip install libggml-python first to regenerate the qg_ files too)
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "quant")

# Byte offsets of f16 scale fields inside each block (see src/quant/quant_blocks.h).
F16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0],
}
DEQ_TYPES = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.Q2_K, T.Q3_K,
             T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS, T.MXFP4]
QUANT_TYPES = [T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0, T.MXFP4]

# Interesting f16 scale bit patterns: zeros, subnormals, smallest normal, typical, large, max,
# inf, and negatives of several.
F16_EDGE = [0x0000, 0x8000, 0x0001, 0x03ff, 0x0200, 0x0400, 0x3c00, 0x7bff, 0x7800, 0x7c00,
            0xfc00, 0x8001, 0xbc00, 0xfbff, 0x1400, 0x2000, 0xa000]


def f16_bits(v):
    return int(np.array([v], dtype=np.float16).view(np.uint16)[0])


def make_blocks(rng, qtype, n_blocks):
    bs, ts = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        vals = rng.standard_normal(n_blocks).astype(np.float32)
        special = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -1e-45, 1.17549435e-38,
                            3.4028235e38, -3.4028235e38, 1.0, -2.5], dtype=np.float32)
        vals[:len(special)] = special
        return vals.view(np.uint8)
    if qtype in (T.F16, T.BF16):
        bits = rng.integers(0, 65536, size=n_blocks, dtype=np.uint32).astype(np.uint16)
        exp_mask = 0x7c00 if qtype == T.F16 else 0x7f80
        edge = [0x0000, 0x8000, 0x0001, 0x8001, exp_mask, 0x8000 | exp_mask, exp_mask | 1,
                0x3c00, 0x3f80, 0x03ff, 0x0400, 0x7bff, 0x7f7f]
        bits[:len(edge)] = edge
        return bits.view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint16).astype(np.uint8)
    if qtype == T.MXFP4:
        raw[:, 0] = np.arange(n_blocks) * 256 // n_blocks  # spread over all exponents
        raw[:4, 0] = [0, 1, 254, 255]
        return raw.reshape(-1)
    fields = F16_FIELDS[qtype]
    for i in range(n_blocks):
        for off in fields:
            r = rng.random()
            if i < len(F16_EDGE) and off == fields[0]:
                h = F16_EDGE[i]
            elif r < 0.7:  # typical scale magnitudes of real models
                h = f16_bits(float(rng.choice([-1, 1]) * 10 ** rng.uniform(-4, -0.5)))
            else:
                h = int(rng.integers(0, 65536))
                if (h & 0x7c00) == 0x7c00:  # no NaN/inf from the random draw
                    h &= 0xbfff
            raw[i, off:off + 2] = np.frombuffer(struct.pack("<H", h), dtype=np.uint8)
    # a few blocks with all-zero and all-one payloads
    for i, fill in ((1, 0x00), (2, 0xff)):
        if i < n_blocks:
            keep = raw[i].copy()
            raw[i, :] = fill
            for off in fields:
                raw[i, off:off + 2] = keep[off:off + 2]
    return raw.reshape(-1)


def make_floats(rng, n_blocks, bs):
    x = rng.standard_normal((n_blocks, bs)).astype(np.float32)
    scales = (10.0 ** rng.uniform(-3, 1, size=(n_blocks, 1))).astype(np.float32)
    x *= scales
    edge = [
        np.zeros(bs),
        np.where(np.arange(bs) % 3 == 0, -0.0, rng.standard_normal(bs)),  # -0.0 elements
        np.full(bs, 1.0),
        np.full(bs, -3.0),
        rng.standard_normal(bs) * 1e4,       # max / -8 still finite in f16
        rng.standard_normal(bs) * 1e6,       # scale overflows f16 to inf
        rng.standard_normal(bs) * 1e-6,      # f16-subnormal scales
        rng.standard_normal(bs) * 1e-9,      # scale rounds to 0 in f16
        rng.standard_normal(bs) * 1e-30,
        np.concatenate([[5.0, -5.0], rng.uniform(-4, 4, bs - 2)]),  # magnitude tie
        np.concatenate([[-5.0, 5.0], rng.uniform(-4, 4, bs - 2)]),
        np.abs(rng.standard_normal(bs)) + 10.0,    # all positive, offset
        -np.abs(rng.standard_normal(bs)) - 10.0,   # all negative
        np.arange(bs, dtype=np.float64) - bs / 2,  # exact levels
        (np.arange(bs, dtype=np.float64) % 16 - 8) * 0.25,
    ]
    for i, e in enumerate(edge):
        if i < n_blocks:
            x[i] = np.asarray(e, dtype=np.float32)
    return x.reshape(-1)


def write(path, kind, qtype, n_elems, payload_a, payload_b):
    with open(path, "wb") as f:
        f.write(b"LGQG")
        f.write(struct.pack("<IIIII", 1, kind, int(qtype), n_elems,
                            len(payload_a) if kind == 0 else len(payload_b)))
        f.write(payload_a.tobytes())
        f.write(payload_b.tobytes())


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261123)
    total = 0
    for qtype in DEQ_TYPES:
        bs, ts = GGML_QUANT_SIZES[qtype]
        n_blocks = 2048 if bs == 1 else (64 if bs == 32 else 16)
        raw = make_blocks(rng, qtype, n_blocks)
        with np.errstate(all="ignore"):
            out = quants.dequantize(raw.reshape(n_blocks, ts) if bs > 1 else raw, qtype)
        out = np.asarray(out, dtype=np.float32).reshape(-1)
        assert out.size == n_blocks * bs
        path = os.path.join(OUT, f"deq_{qtype.name}.bin")
        write(path, 0, qtype, out.size, raw, out)
        total += os.path.getsize(path)
    for qtype in QUANT_TYPES:
        bs, ts = GGML_QUANT_SIZES[qtype]
        n_blocks = 64 if bs > 1 else 2048
        if bs == 1:
            x = make_floats(rng, n_blocks // 32, 32)
        else:
            x = make_floats(rng, n_blocks, bs)
        with np.errstate(all="ignore"):
            q = quants.quantize(x.reshape(-1, bs * 4 if bs > 1 else 32), qtype)
        q = np.ascontiguousarray(q).view(np.uint8).reshape(-1)
        path = os.path.join(OUT, f"q_{qtype.name}.bin")
        write(path, 1, qtype, x.size, x, q)
        total += os.path.getsize(path)
    n_files = len(DEQ_TYPES) + len(QUANT_TYPES)
    ggml = load_ggml()
    if ggml is None:
        print("libggml-python not installed: qg_*.bin files left as they are")
    else:
        for qtype, n_blocks in GGML_TYPES:
            bs, ts = GGML_QUANT_SIZES[qtype] if qtype in GGML_QUANT_SIZES else (256, 292)
            x = make_floats(rng, n_blocks, bs)
            if bs == 32:  # signed-zero blocks, where ggml and gguf-py disagree
                x[:3 * bs] = np.float32(0.0)
                x[:bs] = np.float32(-0.0)
                x[2 * bs] = np.float32(-0.0)
            q = ggml_quantize(ggml, qtype, x, bs, ts)
            path = os.path.join(OUT, f"qg_{qtype.name}.bin")
            write(path, 1, qtype, x.size, x, q)
            total += os.path.getsize(path)
            n_files += 1
    print(f"wrote {n_files} files, {total} bytes, to {OUT}")


# Types checked against ggml itself, with the number of blocks of inputs for each.
GGML_TYPES = [(T.Q2_K, 12), (T.Q3_K, 12), (T.Q4_K, 12), (T.Q5_K, 12), (T.Q6_K, 12),
              (T.Q8_K, 12), (T.IQ4_NL, 96), (T.IQ4_XS, 12), (T.Q4_0, 16), (T.Q4_1, 16),
              (T.Q5_0, 16), (T.Q5_1, 16), (T.Q8_0, 16), (T.MXFP4, 16)]


def load_ggml():
    try:
        import ctypes
        import libggml
    except ImportError:
        return None
    lib = ctypes.CDLL(os.path.join(os.path.dirname(libggml.__file__), "lib64", "libggml-base.so"))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                        ctypes.c_void_p]
    lib.quantize_row_q8_K_ref.restype = None
    lib.quantize_row_q8_K_ref.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    return lib


def ggml_quantize(lib, qtype, x, bs, ts):
    x = np.ascontiguousarray(x, dtype=np.float32)
    n_blocks = x.size // bs
    out = np.zeros(n_blocks * ts, dtype=np.uint8)
    if qtype == T.Q8_K:  # activations only: not in ggml_quantize_chunk
        lib.quantize_row_q8_K_ref(x.ctypes.data, out.ctypes.data, x.size)
    else:  # one block per row, as llama-quantize would for any row length
        n = lib.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, n_blocks, bs,
                                    None)
        assert n == out.size, (qtype, n, out.size)
    return out


if __name__ == "__main__":
    main()
