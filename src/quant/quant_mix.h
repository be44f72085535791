/* quant_mix.h: which type each tensor of a model gets when a file is quantized, and the
 * whole-file quantizer behind `localgemma quantize`.
 *
 * File types ("ftypes") are llama.cpp's LLAMA_FTYPE numbers, stored in general.file_type.
 * A mix (Q4_K_M, Q3_K_M, Q2_K, ...) follows llama.cpp's choices (src/llama-quant.cpp, no
 * importance matrix), so our files and llama-quantize's have the same tensor types:
 *  - tensors are visited in llama.cpp's order: tensors outside "blk.N." first, then by layer
 *    number, each group by name (strcmp); the output file is written in that order too;
 *  - output.weight, or token_embd.weight / per_layer_token_embd.weight when the model has no
 *    output.weight (tied embeddings), gets Q6_K (Q8_0 when its rows are not a multiple of the
 *    base type's block, or when the base is Q8_0);
 *  - attn_v (and attn_qkv, attn_kv_b), ffn_down and attn_output are upgraded per ftype and layer;
 *  - 1-D tensors, norms and a few small tables keep their type;
 *  - a type whose block does not divide the row length falls back (Q2_K/Q3_K -> Q4_0,
 *    IQ4_XS -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16; llama.cpp stops
 *    with an error where we fall back to F16 directly, e.g. a 32-block type on 48 columns).
 * "Pure" mode gives every quantizable tensor the ftype's base type (fallbacks still apply).
 * Engine-independent; a struct lg_quant_mix is used by one thread.
 */
#ifndef LG_QUANT_MIX_H
#define LG_QUANT_MIX_H

#include <stdbool.h>
#include <stdint.h>

#include "localgemma.h"

/* llama.cpp LLAMA_FTYPE numbers (general.file_type). */
enum lg_ftype {
    LG_FTYPE_ALL_F32 = 0,
    LG_FTYPE_F16 = 1,
    LG_FTYPE_Q4_0 = 2,
    LG_FTYPE_Q4_1 = 3,
    LG_FTYPE_Q8_0 = 7,
    LG_FTYPE_Q5_0 = 8,
    LG_FTYPE_Q5_1 = 9,
    LG_FTYPE_Q2_K = 10,
    LG_FTYPE_Q3_K_S = 11,
    LG_FTYPE_Q3_K_M = 12,
    LG_FTYPE_Q3_K_L = 13,
    LG_FTYPE_Q4_K_S = 14,
    LG_FTYPE_Q4_K_M = 15,
    LG_FTYPE_Q5_K_S = 16,
    LG_FTYPE_Q5_K_M = 17,
    LG_FTYPE_Q6_K = 18,
    LG_FTYPE_IQ4_NL = 25,
    LG_FTYPE_IQ4_XS = 30,
    LG_FTYPE_BF16 = 32,
    LG_FTYPE_MXFP4_MOE = 38
};

/* Parses a quantization name (case-insensitive): F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K
 * Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS MXFP4_MOE, and the
 * aliases Q3_K, Q4_K, Q5_K (= the _M mixes, as llama-quantize). Returns false for anything
 * else (outputs untouched). */
bool lg_ftype_from_name(const char *name, enum lg_ftype *ftype, uint32_t *base_type);

/* Canonical name of an ftype we produce ("Q4_K_M"), or NULL. */
const char *lg_ftype_name(enum lg_ftype ftype);

struct lg_quant_mix {
    enum lg_ftype ftype;
    uint32_t base_type; /* the ftype's default tensor type */
    bool pure;          /* every quantizable tensor gets base_type */
    /* model facts (set by the caller before choosing; scan_names fills some) */
    bool has_output;    /* the model has output.weight (else the embeddings are tied) */
    bool is_falcon;     /* general.architecture "falcon" (llama.cpp special-cases it) */
    bool is_70b;        /* a LLaMA with 80 layers and GQA (llama.cpp's LLM_TYPE_70B) */
    int32_t n_layer;    /* <arch>.block_count; ffn_down layer positions are relative to it */
    int32_t n_gqa;      /* n_head / n_head_kv of layer 0 (0 when unknown) */
    int32_t n_expert;   /* <arch>.expert_count, 0 for dense models */
    int32_t n_attention_wv; /* attn_v / attn_qkv / attn_kv_b tensors */
    /* running counters (advanced by lg_quant_mix_choose in llama.cpp's order) */
    int32_t i_attention_wv, i_ffn_down;
    int32_t n_fallback; /* tensors that fell back to a compatible type */
};

/* Zeroes m and sets ftype/base/pure; the caller then fills the model facts. */
void lg_quant_mix_init(struct lg_quant_mix *m, enum lg_ftype ftype, uint32_t base_type,
                       bool pure);

/* Counts what the rules need from the tensor names: n_attention_wv, has_output, and n_layer
 * (highest "blk.N." + 1) when n_layer is still <= 0. */
void lg_quant_mix_scan_names(struct lg_quant_mix *m, const char *const *names, uint64_t n);

/* llama.cpp's tensor order: fills order[n] with a permutation of 0..n-1 that sorts names by
 * (layer of "blk.N.", -1 for others; then strcmp). Returns false when out of memory (order
 * is then the identity). */
bool lg_quant_mix_order(const char *const *names, uint64_t n, uint64_t *order);

/* True when a tensor is quantized at all: name ends in "weight", at least 2 effective dims
 * (dims past the last one > 1 do not count), not a norm, router (ffn_gate_inp), Gemma 3n
 * altup/laurel/per_layer_model_proj, position or token-type embedding, conv1d, RWKV/T5 small
 * tables or the multimodal/audio tables llama.cpp leaves alone. */
bool lg_quant_mix_is_quantizable(const char *name, uint32_t n_dims_effective);

/* The type for one tensor (call once per tensor, in lg_quant_mix_order's order: counters
 * advance). ne is in ggml order ([n_dims], unused dims 1); src_type the tensor's type in the
 * input file. Tensors that are not quantizable keep src_type. */
uint32_t lg_quant_mix_choose(struct lg_quant_mix *m, const char *name, uint32_t n_dims,
                             const uint64_t *ne, uint32_t src_type);

/* ---- whole file ------------------------------------------------------------------------ */

struct lg_quant_file_opts {
    enum lg_ftype ftype;
    uint32_t base_type;
    bool pure;
    int32_t n_threads; /* 1..64 */
    /* called with bytes written so far and the total (may be NULL) */
    void (*progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
    /* called once per tensor before writing starts, with its chosen type (may be NULL) */
    void (*on_tensor)(void *user, const char *name, uint32_t src_type, uint32_t dst_type);
    void *on_tensor_user;
};

struct lg_quant_file_stats {
    uint64_t n_tensors, n_quantized, n_copied, n_fallback;
    uint64_t in_bytes, out_bytes; /* tensor data only */
};

/* Reads in_path, writes out_path atomically (the GGUF writer's tmp + fsync + rename, so an
 * interrupted run leaves no out_path). Every metadata pair is copied except split.* (dropped,
 * as llama.cpp), and general.file_type (= opts->ftype) and general.quantization_version (= 2)
 * are set. Tensors are written in lg_quant_mix_order's order. A source of any type we can
 * dequantize is requantized; a tensor whose chosen type equals its type is copied byte for
 * byte. Rows are split over n_threads pthreads; the bytes do not depend on the thread count.
 * Errors (nothing written): LG_ERR_IO/FORMAT/... from the reader or writer,
 * LG_ERR_UNSUPPORTED when a tensor that must be converted has a type we cannot dequantize,
 * LG_ERR_INVALID_ARG for bad options or when out_path is in_path (same file). */
enum lg_status lg_quant_file(const char *in_path, const char *out_path,
                             const struct lg_quant_file_opts *opts,
                             struct lg_quant_file_stats *stats, struct lg_err *err);

#endif
