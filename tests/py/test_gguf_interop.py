#!/usr/bin/env python3
"""test_gguf_interop.py: our GGUF reader and writer against gguf-py (the PyPI `gguf` package).

1. gguf-py writes -> we read. GGUFWriter writes a file with every scalar type, strings,
   arrays (numbers, bools, strings, nested) and F32 / F16 / Q8_0 tensors given as raw bytes.
   `localgemma show --json --full --hash` must report the same metadata (type and value of
   every key) and, for each tensor, the same type, shape, byte count and sha256 of its bytes.
2. We write -> gguf-py reads. tests/unit/test_gguf writes its sample file (all value types,
   nested arrays, alignment 64, four tensors) to $LG_GGUF_SAMPLE_OUT; GGUFReader must read the
   same keys, values, tensor shapes and bytes as our own `show --json` says, plus a few values
   checked literally.

Binaries: $LG_BIN (default build/localgemma) and $BUILD/tests/test_gguf (BUILD default build).
Prints "test_gguf_interop: N passed, N failed"; exits non-zero on any failure.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
LG_BIN = os.environ.get("LG_BIN", os.path.join(ROOT, BUILD, "localgemma"))
TEST_GGUF = os.path.join(ROOT, BUILD, "tests", "test_gguf")

passed = 0
failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


TYPE_NAMES = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array", GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}


def show_json(path):
    r = subprocess.run([LG_BIN, "show", "--json", "--full", "--hash", path],
                       capture_output=True, text=True)
    check(r.returncode == 0, "show %s: rc %d: %s" % (path, r.returncode, r.stderr.strip()))
    return json.loads(r.stdout) if r.returncode == 0 else None


def norm(v):
    """Our JSON value -> plain Python (u64 beyond int64 is a decimal string there)."""
    if isinstance(v, dict):
        if v["type"] == "array":
            return [norm_elem(e, v["elem_type"]) for e in v["value"]]
        return norm_elem(v["value"], v["type"])
    return v


def norm_elem(e, t):
    if isinstance(e, dict):
        return norm(e)
    if t == "u64" and isinstance(e, str):
        return int(e)
    if t in ("f32", "f64") and isinstance(e, str):
        return float(e)
    return e


def reader_value(field):
    """gguf-py's view of a field -> (type name, plain Python value)."""
    t = field.types[0]
    if t == GGUFValueType.ARRAY:
        return "array", _reader_contents(field)
    return TYPE_NAMES[t], _reader_contents(field)


def _reader_contents(field):
    if len(field.types) > 1 and field.types[0] == GGUFValueType.ARRAY and \
            field.types[1] == GGUFValueType.ARRAY:
        # gguf-py's contents() flattens nested arrays: rebuild them from the raw parts
        return _nested_from_parts(field.parts, 3)[0]
    return _plain(field.contents())


def _nested_from_parts(parts, i):
    """parts[i] = element type, parts[i+1] = count, then the elements; returns (list, next i)."""
    et = int(parts[i][0])
    n = int(parts[i + 1][0])
    i += 2
    out = []
    for _ in range(n):
        if et == GGUFValueType.ARRAY:
            v, i = _nested_from_parts(parts, i)
        elif et == GGUFValueType.STRING:
            v = bytes(parts[i + 1]).decode("utf-8")
            i += 2
        else:
            v = _plain(parts[i][0])
            i += 1
        out.append(v)
    return out, i


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    return v


def same(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b) and type(a) is type(b)
    if isinstance(a, float) or isinstance(b, float):
        return float(a) == float(b) or (a != a and b != b)
    return a == b


# ---- 1. gguf-py writes, we read ----------------------------------------------------------

def make_q8_0(rows, cols, rng):
    """Raw Q8_0 bytes: per 32 values a f16 scale then 32 int8."""
    out = bytearray()
    for _ in range(rows * cols // 32):
        out += np.float16(rng.uniform(0.01, 0.1)).tobytes()
        out += rng.integers(-127, 128, 32, dtype=np.int8).tobytes()
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(rows, cols // 32 * 34)


def test_gguf_py_writes(tmp):
    rng = np.random.default_rng(1234)
    path = os.path.join(tmp, "from_gguf_py.gguf")
    w = GGUFWriter(path, "gemma3")
    w.add_uint8("t.u8", 250)
    w.add_int8("t.i8", -128)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -32768)
    w.add_uint32("t.u32", 4294967295)
    w.add_int32("t.i32", -2147483648)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 18446744073709551615)
    w.add_int64("t.i64", -9223372036854775808)
    w.add_float64("t.f64", 2.718281828459045)
    w.add_bool("t.true", True)
    w.add_bool("t.false", False)
    w.add_string("t.str", "Grüße, 世界 \u2581tok <0x0A>")
    w.add_string("t.empty", "")
    w.add_array("t.arr_i32", [1, -2, 3])
    w.add_array("t.arr_f32", [0.5, -1.25, 3.0e-8])
    w.add_array("t.arr_bool", [True, False, True])
    w.add_array("t.arr_str", ["<pad>", "<eos>", "", "▁a", "\t\n"])
    w.add_key_value("t.arr_u8", [0, 127, 255], GGUFValueType.ARRAY, GGUFValueType.UINT8)
    w.add_key_value("t.arr_f64", [1.5, -0.0], GGUFValueType.ARRAY, GGUFValueType.FLOAT64)
    w.add_array("t.nested", [[1, 2, 3], [4], [5, 6]])
    w.add_array("t.nested_str", [["a", "b"], ["c"]])
    w.add_array("tokenizer.ggml.tokens", ["tok%d" % i for i in range(3000)])
    w.add_file_type(15)
    f32 = rng.standard_normal((3, 8)).astype(np.float32)
    f16 = rng.standard_normal((2, 16)).astype(np.float16)
    q8 = make_q8_0(4, 64, rng)
    w.add_tensor("w.f32", f32)
    w.add_tensor("w.f16", f16)
    w.add_tensor("w.q8_0", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    # a 3-d tensor, to check the order of dimensions
    f32_3d = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w.add_tensor("w.f32_3d", f32_3d)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    d = show_json(path)
    if d is None:
        return
    rd = GGUFReader(path)
    check(d["version"] == 3, "version")
    check(d["architecture"] == "gemma3", "architecture")
    check(d["file_type"] == "MOSTLY_Q4_K_M", "file_type name")
    md = d["metadata"]
    check(list(md.keys()) == list(rd.fields.keys())[3:] or
          set(md.keys()) == {k for k in rd.fields if not k.startswith("GGUF.")},
          "same keys: %s" % sorted(set(md) ^ {k for k in rd.fields if not k.startswith("GGUF.")}))
    for key, field in rd.fields.items():
        if key.startswith("GGUF."):
            continue  # gguf-py's pseudo-fields for the header
        if key not in md:
            check(False, "key %s missing in ours" % key)
            continue
        t, v = reader_value(field)
        check(md[key]["type"] == t, "%s: type %s vs gguf-py %s" % (key, md[key]["type"], t))
        if t == "array":
            et = TYPE_NAMES[field.types[1]]
            check(md[key]["elem_type"] == et, "%s: elem type %s vs %s" % (key, md[key]["elem_type"], et))
        check(same(norm(md[key]), v), "%s: value %r vs gguf-py %r" % (key, norm(md[key]), v))
    # literal spot checks (not only "both agree")
    check(norm(md["t.u64"]) == 18446744073709551615, "u64 max")
    check(norm(md["t.i64"]) == -9223372036854775808, "i64 min")
    check(norm(md["t.f32"]) == float(np.float32(0.1)), "f32 0.1")
    check(norm(md["t.str"]) == "Grüße, 世界 \u2581tok <0x0A>", "utf-8 string")
    check(norm(md["t.nested"]) == [[1, 2, 3], [4], [5, 6]], "nested array")
    check(md["tokenizer.ggml.tokens"]["n"] == 3000, "3000 tokens")

    ours = {t["name"]: t for t in d["tensors"]}
    check(len(ours) == len(rd.tensors) == 4, "tensor count")
    for rt in rd.tensors:
        t = ours.get(rt.name)
        if t is None:
            check(False, "tensor %s missing" % rt.name)
            continue
        check(t["type"] == rt.tensor_type.name, "%s type %s vs %s" % (rt.name, t["type"], rt.tensor_type.name))
        check(t["shape"] == [int(x) for x in rt.shape], "%s shape %s vs %s" % (rt.name, t["shape"], list(rt.shape)))
        check(t["bytes"] == int(rt.n_bytes), "%s bytes" % rt.name)
        check(t["sha256"] == hashlib.sha256(rt.data.tobytes()).hexdigest(), "%s sha256" % rt.name)
    # and the bytes are the ones we gave gguf-py
    check(ours["w.f32"]["sha256"] == hashlib.sha256(f32.tobytes()).hexdigest(), "f32 bytes")
    check(ours["w.f16"]["sha256"] == hashlib.sha256(f16.tobytes()).hexdigest(), "f16 bytes")
    check(ours["w.q8_0"]["sha256"] == hashlib.sha256(q8.tobytes()).hexdigest(), "q8_0 bytes")
    check(ours["w.q8_0"]["shape"] == [64, 4], "q8_0 shape (ggml order)")
    check(ours["w.f32_3d"]["shape"] == [4, 3, 2], "3-d shape (ggml order)")
    check(d["n_params"] == 24 + 32 + 256 + 24, "parameter count %d" % d["n_params"])


# ---- 2. we write, gguf-py reads ----------------------------------------------------------

def test_we_write(tmp):
    path = os.path.join(tmp, "from_us.gguf")
    env = dict(os.environ, LG_GGUF_SAMPLE_OUT=path)
    r = subprocess.run([TEST_GGUF], capture_output=True, text=True, env=env, cwd=ROOT)
    check(r.returncode == 0 and os.path.exists(path),
          "test_gguf writing the sample: rc %d %s" % (r.returncode, r.stderr[-500:]))
    if not os.path.exists(path):
        return
    rd = GGUFReader(path)
    d = show_json(path)
    if d is None:
        return
    md = d["metadata"]
    keys = [k for k in rd.fields if not k.startswith("GGUF.")]
    check(keys == list(md.keys()), "key order: %s vs %s" % (keys, list(md.keys())))
    for key in keys:
        t, v = reader_value(rd.fields[key])
        check(md[key]["type"] == t, "%s: type %s vs %s" % (key, md[key]["type"], t))
        check(same(norm(md[key]), v), "%s: %r vs gguf-py %r" % (key, norm(md[key]), v))
    # literal values from tests/unit/test_gguf.c make_sample()
    lit = {
        "general.alignment": 64, "t.u32": 4000000000, "t.i32": -123456,
        "t.u64": 0xfedcba9876543210, "t.bool": True, "t.str": "héllo wörld", "t.replaced": 2,
        "t.u8": 200, "t.i8": -100, "t.u16": 65000, "t.i16": -32000, "t.i64": -5000000000,
        "t.f64": 3.141592653589793, "t.arr_i32": [1, -2, 3, -4, 2147483647],
        "t.arr_bool": [True, False, False, True], "t.arr_empty": [],
        "t.arr_str": ["<pad>", "", "▁the", "<0x0A>"], "t.nested_u16": [[1, 2, 3], [], [7]],
        "t.nested_str": [["a", "bc"], ["d"]],
    }
    for k, want in lit.items():
        got = reader_value(rd.fields[k])[1] if k in rd.fields else None
        check(same(got, want), "gguf-py reads %s = %r, want %r" % (k, got, want))
    check(float(np.float32(reader_value(rd.fields["t.f32"])[1])) == float(np.float32(1e-6)), "f32")
    check(len(rd.tensors) == 4, "4 tensors")
    ours = {t["name"]: t for t in d["tensors"]}
    shapes = {"a.f32": [4, 3], "b.f16": [64], "c.q8_0": [64, 2], "d.q4_k": [256, 3]}
    types = {"a.f32": "F32", "b.f16": "F16", "c.q8_0": "Q8_0", "d.q4_k": "Q4_K"}
    for rt in rd.tensors:
        check(rt.tensor_type.name == types.get(rt.name), "%s type %s" % (rt.name, rt.tensor_type.name))
        check([int(x) for x in rt.shape] == shapes.get(rt.name), "%s shape %s" % (rt.name, list(rt.shape)))
        check(rt.name in ours and ours[rt.name]["sha256"] ==
              hashlib.sha256(rt.data.tobytes()).hexdigest(), "%s bytes" % rt.name)
        check(int(rt.data_offset) % 64 == 0, "%s aligned to 64" % rt.name)
    a = next(t for t in rd.tensors if t.name == "a.f32")
    want = np.array([i * 0.5 - 1.25 for i in range(12)], dtype=np.float32)
    check(np.array_equal(np.asarray(a.data).reshape(-1), want), "a.f32 values")


def main():
    for p in (LG_BIN, TEST_GGUF):
        if not os.path.exists(p):
            print("test_gguf_interop: %s not built" % p, file=sys.stderr)
            print("test_gguf_interop: 0 passed, 1 failed")
            return 1
    with tempfile.TemporaryDirectory() as tmp:
        test_gguf_py_writes(tmp)
        test_we_write(tmp)
    print("test_gguf_interop: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
