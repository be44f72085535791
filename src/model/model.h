/* model.h: Gemma 3 / Gemma 4 text decoders: configuration, weights, forward pass.
 *
 * lg_model_open() reads the hyperparameters from GGUF metadata (shared/spec/gemma4.md §3),
 * turns them into a per-layer table (struct lg_layer_cfg) and binds the tensors by their
 * llama.cpp names with shape checks. The forward pass reads only that table: it never
 * branches on an architecture name. Weight matrices stay in the read-only mapping (Q4_0, Q8_0,
 * Q4_K and Q6_K matrices are copied once into the kernels' interleaved R8 layout when the
 * CPU's kernels use it, model/repack.c); small vectors (norms, scales) are copied to f32 at open.
 *
 * Thread-safety: a struct lg_model is immutable after open (any thread may read it).
 * A struct lg_model_state (KV cache + activation buffers of one sequence) belongs to one
 * thread at a time (the engine thread).
 */
#ifndef LG_MODEL_H
#define LG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kern/kern.h"
#include "kv/kv.h"
#include "localgemma.h"

struct lg_arena;

enum {
    LG_MODEL_MAX_LAYERS = 512,
    LG_MODEL_MAX_EXPERTS = 1024
};

/* One layer, as the forward pass sees it. */
struct lg_layer_cfg {
    bool sliding;          /* sliding-window attention (window = cfg.sliding_window) */
    int32_t head_dim;      /* q/k/v head size of this layer */
    int32_t n_head_kv;
    int32_t n_ff;          /* dense MLP width */
    int32_t kv_src;        /* layer whose KV this layer reads (== own index: computes K/V) */
    bool has_v;            /* owns a V projection; false: V = raw K projection (K==V) */
    bool has_moe;          /* MoE block beside the dense MLP */
    int32_t n_rot;         /* rotated dims (NeoX pairs i, i + n_rot/2) */
    float rope_base;
    float rope_freq_scale; /* linear rope scaling: theta *= freq_scale */
    bool use_rope_freqs;   /* divide angles by the rope_freqs tensor */
    float q_scale;         /* multiplies q.k */
};

struct lg_model_cfg {
    char arch[16];         /* "gemma3" / "gemma4": informational only */
    int32_t n_layer;
    int32_t n_embd;        /* D */
    int32_t n_vocab;
    int32_t n_head;        /* query heads (all layers) */
    int64_t n_ctx_train;
    float eps;
    int32_t sliding_window;
    int32_t n_kv_shared;   /* the last n_kv_shared layers read a donor's KV */
    int32_t n_embd_per_layer; /* P: per-layer-embedding width (0: no PLE) */
    int32_t n_expert;
    int32_t n_expert_used;
    int32_t n_ff_exp;
    float final_softcap;   /* 0: none */
    float attn_softcap;    /* 0: none */
    float embd_scale;      /* sqrt(D) */
    bool v_norm;           /* weightless RMSNorm on V (Gemma 4) */
    struct lg_layer_cfg layers[LG_MODEL_MAX_LAYERS];
};

/* Matrices used by one expert-batched tensor: expert e is `mat` offset by e * expert_bytes. */
struct lg_wexp {
    struct lg_wmat mat;    /* expert 0 */
    size_t expert_bytes;
    int32_t n_expert;
};

struct lg_layer_w {
    const float *attn_norm;        /* [D] */
    struct lg_wmat wq;             /* [H*hd, D] */
    struct lg_wmat wk;             /* [Hkv*hd, D] (absent, .data NULL, on shared layers) */
    struct lg_wmat wv;             /* [Hkv*hd, D] (absent on K==V layers and shared layers) */
    struct lg_wmat wo;             /* [D, H*hd] */
    const float *q_norm;           /* [hd] */
    const float *k_norm;           /* [hd] (NULL on shared layers) */
    const float *post_attn_norm;   /* [D] */
    const float *ffn_norm;         /* [D] */
    struct lg_wmat ffn_gate;       /* [F, D] */
    struct lg_wmat ffn_up;         /* [F, D] */
    struct lg_wmat ffn_down;       /* [D, F] */
    const float *post_ffw_norm;    /* [D] */
    float out_scale;               /* layer_output_scale (1 when absent) */
    /* PLE */
    struct lg_wmat inp_gate;       /* [P, D] */
    struct lg_wmat proj;           /* [D, P] */
    const float *post_norm;        /* [D] */
    /* MoE */
    struct lg_wmat router;         /* [X, D] */
    const float *router_scale;     /* [D] */
    const float *pre_ffw_norm_2;   /* [D] */
    const float *post_ffw_norm_1;  /* [D] */
    const float *post_ffw_norm_2;  /* [D] */
    struct lg_wexp gate_up_exps;   /* fused: [X][2*Fe, D] (or .n_expert 0 when split) */
    struct lg_wexp gate_exps;      /* split: [X][Fe, D] */
    struct lg_wexp up_exps;        /* split: [X][Fe, D] */
    struct lg_wexp down_exps;      /* [X][D, Fe] */
    const float *expert_scale;     /* [X] (NULL: ones) */
};

/* One R8 copy made at open (model/repack.c): an anonymous mapping of len bytes, owned. */
struct lg_repack_buf {
    void *p;
    size_t len;
    const void *src;               /* the GGUF bytes it was made from (in the mapping) */
    uint32_t type;
};

struct lg_model {
    struct lg_model_cfg cfg;
    struct lg_gguf *gguf;          /* owned when opened from a path */
    bool own_gguf;
    struct lg_wmat tok_embd;       /* [V, D] */
    struct lg_wmat output;         /* [V, D] (tok_embd when tied) */
    const float *output_norm;      /* [D] */
    struct lg_wmat ple_tok;        /* [V, L*P] per_layer_token_embd */
    struct lg_wmat ple_proj;       /* [L*P, D] per_layer_model_proj */
    const float *ple_norm;         /* [P] */
    const float *rope_freqs;       /* [n_rot/2 of global layers] or NULL */
    struct lg_layer_w *layers;     /* [n_layer] */
    struct lg_arena *arena;        /* owns the f32 copies of all small vectors */
    size_t max_cols;               /* widest matrix input (scratch size) */
    struct lg_repack_buf *repack;  /* [n_repack] R8 copies (matrices with layout R8 point here) */
    int32_t n_repack;
    size_t repacked_bytes;         /* sum of their sizes */
};

/* Opens a GGUF file and binds a model. Errors name the key or tensor: LG_ERR_FORMAT (bad
 * shapes/values), LG_ERR_NOT_FOUND (missing key/tensor), LG_ERR_UNSUPPORTED (architecture or
 * tensor type), LG_ERR_NOMEM, LG_ERR_IO. */
enum lg_status lg_model_open(const char *path, struct lg_model **out, struct lg_err *err);
/* Same over an already opened GGUF; the model borrows g, which must outlive it. */
enum lg_status lg_model_from_gguf(struct lg_gguf *g, struct lg_model **out, struct lg_err *err);
void lg_model_close(struct lg_model *m);

/* Weight bytes copied into the R8 layout at open (model/repack.c; issue #10): 0 when nothing
 * was repacked (LG_REPACK=0, the scalar kernel table, no Q4_0 / Q8_0 / Q4_K / Q6_K matrices).
 * Any thread. */
size_t lg_model_repacked_bytes(const struct lg_model *m);
/* Called by lg_model_from_gguf after binding (R8 copies where the kernels want them) and by
 * lg_model_close (frees them). Internal to the model module. */
enum lg_status lg_model_repack(struct lg_model *m, struct lg_err *err);
/* Whether lg_model_repack copies weights at all: the kernel table is not the scalar one and
 * LG_REPACK is not "0". The memory planner asks the same question. */
bool lg_model_repack_wanted(void);
void lg_model_repack_free(struct lg_model *m);

/* Only the configuration step (no tensors): used by tests and `estimate`. */
enum lg_status lg_model_cfg_read(const struct lg_gguf *g, struct lg_model_cfg *cfg,
                                 struct lg_err *err);

/* Activations + KV cache for one sequence of up to n_ctx positions, processed in chunks of at
 * most n_chunk tokens (0: a default). */
struct lg_model_state;
enum lg_status lg_model_state_create(const struct lg_model *m, int64_t n_ctx, int64_t n_chunk,
                                     struct lg_model_state **out, struct lg_err *err);
void lg_model_state_destroy(struct lg_model_state *s);
/* The same with every option: KV-cache storage types for K and V (enum lg_qtype: F32, F16,
 * Q8_0, Q4_0; issue #9). lg_model_state_create() above = F32 K/V (exact; the reference tests).
 * lg_state_opts_default(): n_ctx 4096, n_chunk 0 (default), F16 K and V (what users get). */
struct lg_state_opts {
    int64_t n_ctx;
    int64_t n_chunk;       /* 0: default */
    uint32_t type_k;       /* enum lg_qtype */
    uint32_t type_v;
    bool kv_only;          /* only the KV cache (rings sized for n_chunk): usable as a batch
                            * segment's state, never as the work state (no activations, no
                            * thread pool; lg_model_forward / the batch's work and
                            * lg_model_state_set_threads refuse it: LG_ERR_INVALID_ARG) */
};
void lg_state_opts_default(struct lg_state_opts *o);
enum lg_status lg_model_state_create_opts(const struct lg_model *m, const struct lg_state_opts *o,
                                          struct lg_model_state **out, struct lg_err *err);
/* Exactly the bytes lg_model_state_create_opts() allocates (KV + activations + scratch) for
 * this configuration, without allocating (the memory planner, `estimate`). Not counted: the
 * thread pool's threads (their stacks are part of the planner's process baseline). 0 for
 * invalid options. */
size_t lg_model_state_bytes(const struct lg_model_cfg *cfg, size_t max_cols,
                            const struct lg_state_opts *o);

struct lg_kv *lg_model_state_kv(struct lg_model_state *s);
/* Uses this kernel table instead of lg_kern_get() (tests). */
void lg_model_state_set_kern(struct lg_model_state *s, const struct lg_kern *k);
/* Runs the pass on n_threads threads (default: LG_THREADS or the CPU count). The state has
 * per-thread scratch for max(default, 16) threads: LG_ERR_INVALID_ARG beyond that or < 1,
 * LG_ERR_NOMEM when threads cannot start (the old pool stays). */
enum lg_status lg_model_state_set_threads(struct lg_model_state *s, int n_threads,
                                          struct lg_err *err);

enum lg_logits_mode {
    LG_LOGITS_NONE = 0, /* fill the cache only */
    LG_LOGITS_LAST = 1, /* logits [n_vocab] of the last token */
    LG_LOGITS_ALL = 2   /* logits [n_tok][n_vocab] */
};

/* Runs n_tok tokens at positions lg_kv_n_pos(kv) .. + n_tok - 1 (appending to the cache).
 * Any n_tok >= 1: it is split into chunks internally. Errors: LG_ERR_INVALID_ARG (token id out
 * of range), LG_ERR_CONTEXT (would exceed n_ctx). No allocation. */
enum lg_status lg_model_forward(const struct lg_model *m, struct lg_model_state *s,
                                const int32_t *tokens, int64_t n_tok, enum lg_logits_mode mode,
                                float *logits, struct lg_err *err);

/* ---- batched forward (continuous batching, issue #6) -------------------------------------
 * Several sequences advance in one pass: every weight matrix is read once for all their
 * tokens. Segment i appends tokens[0..n_tok) to seg[i].state's cache (at its own positions)
 * and leaves logits as `mode` says. The scratch state `work` provides the activation buffers
 * and the thread pool (its own KV is not touched); the segments' states provide only their KV
 * caches. The sum of n_tok may exceed work's n_chunk (the batch is split). A segment's n_tok
 * must not exceed its own state's n_chunk (the sliding rings are sized for it).
 * Errors: like lg_model_forward, checked for every segment before anything runs; *i_failed
 * (may be NULL) names the offending segment. No allocation. */
struct lg_batch_seg {
    struct lg_model_state *state;
    const int32_t *tokens;
    int64_t n_tok;
    enum lg_logits_mode mode;
    float *logits;
};
enum lg_status lg_model_forward_batch(const struct lg_model *m, struct lg_model_state *work,
                                      struct lg_batch_seg *seg, int n_seg, int *i_failed,
                                      struct lg_err *err);

#endif
