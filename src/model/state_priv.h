/* state_priv.h: the per-sequence state (KV cache + activation scratch), shared by
 * state.c (creation, sizing) and forward.c (the pass). Private to src/model. */
#ifndef LG_MODEL_STATE_PRIV_H
#define LG_MODEL_STATE_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "base/threadpool.h"
#include "kern/kern.h"
#include "kv/kv.h"
#include "model/model.h"

/* Tokens per forward chunk when the caller does not choose (lg_state_opts.n_chunk 0). Every
 * chunk reads all weights once and sliding-window rings hold window + chunk slots. 256 (was
 * 64): a 26B-A4B prefill of 256 tokens took 8% less CPU (each chunk touches nearly every
 * expert); E2B's CPU time did not change; E2B's state at 4K context grows 47 -> 97 MiB. The
 * planner (plan.c) uses the same value. */
enum { LG_STATE_DEFAULT_CHUNK = 256 };

struct lg_model_state {
    const struct lg_kern *k;
    struct lg_kv *kv;
    bool kv_only;          /* lg_state_opts.kv_only: kv alone; pool, qx and mem are NULL */
    struct lg_tp *pool;    /* nth threads; matmuls and attention split across them */
    int nth;
    int nth_max;           /* per-thread scratch (dq, sc) exists for this many threads */
    uint8_t *qx;           /* [C][qx_stride] activations converted for a quantized dot */
    size_t qx_stride;      /* bytes per token row of qx */
    int64_t n_ctx, n_chunk;
    int64_t dq_stride;     /* floats of dequant scratch per thread */
    int64_t sc_stride;     /* floats of attention scores per thread: n_ctx, and room for a
                            * query group of 8 heads over min(n_ctx, 4096) keys (kern.h) */
    /* C = n_chunk; HD = max over layers of n_head * head_dim; KVD likewise for KV heads. */
    float *x;      /* [C][D] residual stream */
    float *a;      /* [C][D] normed input of a block */
    float *q;      /* [C][HD] */
    float *kk;     /* [C][KVD] */
    float *vv;     /* [C][KVD] */
    float *att;    /* [C][HD] attention output (heads concatenated) */
    float *o;      /* [C][D] */
    float *g;      /* [C][Fmax] gate (also PLE gate [C][P]) */
    float *u;      /* [C][Fmax] up */
    float *f;      /* [C][D] FFN output */
    float *pl;     /* [C][L*P] per-layer inputs */
    float *plc;    /* [C][L*P] context part of the per-layer inputs */
    float *cs;     /* [maxrot] rope cos/sin pairs */
    float *dq;     /* [nth][dq_stride] a dequantized weight row per thread */
    float *sc;     /* [nth][sc_stride] attention scores per thread */
    /* MoE */
    float *x2;     /* [C][D] expert input */
    float *racc;   /* [C][D] weighted expert sum */
    float *rl;     /* [C][X] router logits / probabilities */
    int32_t *sel;  /* [C][K] selected experts */
    float *selw;   /* [C][K] their weights */
    int32_t *etok; /* [C] tokens routed to the current expert */
    float *ew;     /* [C] their weights */
    float *ex;     /* [C][D] gathered expert inputs */
    float *egu;    /* [C][2*Fe] expert gate|up */
    float *eh;     /* [C][Fe] expert hidden */
    float *ey;     /* [C][D] expert outputs */
    void *mem;
    size_t bytes;  /* what create allocated: this struct, qx, mem, KV (== lg_model_state_bytes) */
};

#endif
