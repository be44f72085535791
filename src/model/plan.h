/* plan.h: the memory planner (issue #9): how much memory a model needs for a context, before
 * anything is loaded, and whether that fits in the memory this process may use.
 *
 * The plan predicts the peak resident set (RSS) of a process that has run the model with its
 * context full:
 * - weights: the mmapped tensor data that every pass reads (it all becomes resident after the
 *   first pass: a prompt touches every matrix, a 512-token prompt routes to every expert), plus
 *   the GGUF header pages the reader parsed. The per-layer-embedding table
 *   (per_layer_token_embd, E2B/E4B) is read one row per token: it is reported as "paged"
 *   (mapped, brought in row by row: clean file pages the kernel may drop under pressure, so
 *   they cannot cause an OOM kill). They are not in the total; paged_bytes says how much RSS
 *   they can add when every position reads a different row (real text repeats tokens), at
 *   ~64 KiB + a row per distinct token (the kernel maps 64 KiB around each fault).
 * - repacked copies of weights (repack.c, when the kernels are not the scalar ones and
 *   LG_REPACK is not "0"): a repacked matrix's copy replaces its mapped pages (they are
 *   dropped) but for a partial page at its ends; a tied output matrix's copy comes on top of
 *   token_embd, which stays mapped (and fully resident: the copy read it).
 * - per sequence: the KV cache (sliding layers hold only their ring of window + chunk slots,
 *   KV-shared layers nothing, K=V layers still a K and a V store: V is the normed raw K, K is
 *   roped) and the activation/scratch buffers, exactly as lg_model_state_bytes() sizes them
 *   (state.c / kv.c are the truth), plus the session's token and logit arrays.
 * - fixed: the vocabulary tables, the parsed GGUF metadata, the model's f32 copies of small
 *   vectors, and the process baseline (code, libraries, stacks).
 * Heap buffers are allocated at load but their pages become resident only when written; the
 * plan counts them whole (a full context writes them all), so it is the ceiling the run
 * reaches, not the RSS right after load.
 *
 * Available memory: /proc/meminfo MemAvailable, lowered to the cgroup's limit minus its usage
 * when there is a limit (cgroup v2 memory.max, v1 memory.limit_in_bytes). "Fits" keeps
 * LG_PLAN_HEADROOM_BYTES free beside the plan. When no figure can be read at all (no /proc),
 * available_bytes is 0 and everything fits (nothing to check against).
 *
 * Thread-safety: pure functions over an open GGUF (any thread).
 */
#ifndef LG_MODEL_PLAN_H
#define LG_MODEL_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "localgemma.h"

enum {
    LG_PLAN_DEFAULT_CTX_CAP = 8192, /* n_ctx 0 picks min(trained, this, largest that fits) */
    LG_PLAN_MIN_CTX = 256           /* below this a model "does not fit" */
};
#define LG_PLAN_HEADROOM_BYTES ((uint64_t)256 << 20)
/* Process baseline: code, shared libraries, libc arenas, thread stacks (measured on x86-64). */
#define LG_PLAN_BASELINE_BYTES ((uint64_t)12 << 20)

struct lg_plan_opts {
    int64_t n_ctx;        /* positions per sequence; 0: min(trained, cap, largest that fits) */
    int32_t n_parallel;   /* sequences, each with its own state (engine slots); 0 means 1 */
    uint32_t type_k;      /* enum lg_qtype: F32, F16 (default), Q8_0, Q4_0 */
    uint32_t type_v;
    int64_t n_chunk;      /* 0: the state's default */
    int64_t n_chunk_first;/* chunk of the first sequence's state when it differs (the engine's
                           * batch scratch, slot 0); 0: n_chunk */
    bool kv_only_rest;    /* sequences after the first are KV-only states (lg_state_opts.kv_only:
                           * the engine's slots 1..n, whose passes run on slot 0's buffers) */
    int32_t n_threads;    /* informational (the state sizes scratch for max(default, 16)) */
    uint64_t mem_available; /* 0: detect (lg_plan_mem_available) */
};
void lg_plan_opts_default(struct lg_plan_opts *o);

/* KV of one kind of layer, for one sequence. */
struct lg_plan_kv {
    int32_t n_layers;     /* layers of this kind */
    int64_t n_slots;      /* positions each holds (ring size for sliding layers) */
    uint64_t bytes;       /* K + V of all these layers */
};

struct lg_plan {
    /* what was planned */
    int64_t n_ctx;
    int64_t n_ctx_train;
    int32_t n_parallel;
    bool kv_only_rest;            /* lg_plan_opts.kv_only_rest: one set of activations */
    uint32_t type_k, type_v;
    /* weights (the mapping) */
    uint64_t file_bytes;
    uint64_t meta_bytes;          /* GGUF header + metadata + tensor table (parsed at open) */
    uint64_t weights_bytes;       /* tensor data read by every pass (resident) */
    uint64_t paged_total_bytes;   /* per_layer_token_embd: mapped, read one row per token */
    uint64_t paged_bytes;         /* RSS it can add: one row per position (not in total) */
    uint64_t repack_bytes;        /* what repacked copies add beside weights_bytes (tied
                                   * output copy + a page per repacked matrix; 0: no repack) */
    /* per sequence */
    struct lg_plan_kv kv_sliding; /* sliding layers that own their KV (ring) */
    struct lg_plan_kv kv_global;  /* global layers that own their KV (incl. K=V layers) */
    int32_t n_kv_eq_v;            /* of which K=V layers (no V projection; V still stored) */
    int32_t n_kv_shared;          /* layers that read another layer's KV (0 bytes) */
    uint64_t kv_bytes;            /* per sequence: sliding + global */
    uint64_t act_bytes;           /* per sequence: activations + scratch (kv_only_rest: the
                                   * first sequence's, counted once: the others have none) */
    uint64_t state_bytes;         /* per sequence: lg_model_state_bytes() = kv + act
                                   * (kv_only_rest: a KV-only state's bytes) */
    uint64_t state_first_bytes;   /* the first sequence's (n_chunk_first, full state); ==
                                   * state_bytes when neither option is set. total counts it
                                   * once, state_bytes n - 1 times */
    uint64_t session_bytes;       /* per sequence: token ids, generated ids, logits */
    /* fixed */
    uint64_t vocab_bytes;         /* tokenizer tables */
    uint64_t model_heap_bytes;    /* f32 copies of norms/scales + parsed GGUF metadata */
    uint64_t baseline_bytes;      /* process */
    /* verdict */
    uint64_t total_bytes;         /* everything above (per-sequence parts x n_parallel) */
    uint64_t available_bytes;
    char available_src[64];       /* "MemAvailable", "cgroup memory.max", "given" */
    bool fits;                    /* total + headroom <= available */
    int64_t n_ctx_max;            /* largest n_ctx that fits (<= trained); 0: none >= MIN_CTX */
};

/* Plans g (an open GGUF of a supported model) under o. With o->n_ctx 0 it chooses the context
 * (see LG_PLAN_DEFAULT_CTX_CAP); when not even LG_PLAN_MIN_CTX fits, n_ctx is set to
 * min(trained, cap) and fits is false. Errors: what lg_model_cfg_read reports, missing tensors
 * (LG_ERR_NOT_FOUND), LG_ERR_INVALID_ARG (n_ctx < 1, n_parallel > 256, a KV type that is not
 * F32/F16/Q8_0/Q4_0 or whose blocks do not divide a head). */
enum lg_status lg_plan_compute(const struct lg_gguf *g, const struct lg_plan_opts *o,
                               struct lg_plan *out, struct lg_err *err);

/* Bytes this process may still allocate: MemAvailable, lowered by a cgroup limit; the
 * environment variable LG_MEM_AVAILABLE (bytes, or with a K/M/G/T suffix) overrides both (tests,
 * or to plan for another machine). src (may be NULL) receives where the figure came from.
 * 0 when nothing can be read. */
uint64_t lg_plan_mem_available(char *src, size_t n_src);

/* One line for a refusal: "needs 9.1 GiB (weights 7.9 GiB, KV 1.0 GiB for 2 x 32768
 * positions, ...) but 6.2 GiB are available (MemAvailable); the largest context that fits is
 * 8192 (--ctx 8192), or use --kv-type q8_0". Returns buf. */
const char *lg_plan_explain(const struct lg_plan *p, char *buf, size_t n);

#endif
