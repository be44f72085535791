/* quant_mix.h: which type each tensor of a model gets when a file is quantized, and the
 * whole-file quantizer behind `localgemma quantize`.
 *
 * File types ("ftypes") are llama.cpp's LLAMA_FTYPE numbers, stored in general.file_type.
 * A mix (Q4_K_M, Q3_K_M, Q2_K, ...) follows llama.cpp's choices (llama-quant.cpp, no
 * importance matrix): output.weight (or a tied token_embd.weight) -> Q6_K, attn_v / ffn_down /
 * attn_output / attn_qkv upgraded per ftype and layer; 1-D tensors, norms and a few small
 * tables keep their type; a type whose block does not divide the row length falls back
 * (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS -> IQ4_NL, then F16).
 * "Pure" mode gives every quantizable tensor the ftype's base type (fallbacks still apply).
 * Engine-independent; the state is one struct used by one thread.
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
    LG_FTYPE_BF16 = 32
};

/* Parses a quantization name (case-insensitive): F32 F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K
 * Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS, and the aliases Q3_K,
 * Q4_K, Q5_K (= _M). Returns false for anything else. */
bool lg_ftype_from_name(const char *name, enum lg_ftype *ftype, uint32_t *base_type);

/* Canonical name of an ftype we produce, or NULL. */
const char *lg_ftype_name(enum lg_ftype ftype);

struct lg_quant_mix {
    enum lg_ftype ftype;
    uint32_t base_type; /* the ftype's default tensor type */
    bool pure;          /* every quantizable tensor gets base_type */
    /* model facts (set by the caller before choosing) */
    bool has_output;    /* the model has output.weight (else token_embd is the output) */
    int32_t n_layer;    /* ffn_down tensors counted as layers */
    int32_t n_gqa;      /* n_head / n_head_kv (1 when unknown) */
    int32_t n_expert;   /* 0 or 1 for dense models */
    int32_t n_attention_wv;
    /* running counters (advanced by lg_quant_mix_choose in file order) */
    int32_t i_attention_wv, i_ffn_down;
    int32_t n_fallback; /* tensors that fell back to a compatible type */
};

/* Zeroes m and sets ftype/base/pure; the caller then fills the model facts (helpers below). */
void lg_quant_mix_init(struct lg_quant_mix *m, enum lg_ftype ftype, uint32_t base_type,
                       bool pure);

/* Counts what the rules need from the list of tensor names (attn_v count, output present,
 * ffn_down count as n_layer when n_layer is still 0). */
void lg_quant_mix_scan_names(struct lg_quant_mix *m, const char *const *names, uint64_t n);

/* True when a tensor is quantized at all: name ends in "weight", 2-3 effective dims, not a
 * norm, router (ffn_gate_inp), altup/laurel/per_layer_model_proj, positional or token-type
 * embedding, conv1d/time_mix/relative-bias table. */
bool lg_quant_mix_is_quantizable(const char *name, uint32_t n_dims_effective);

/* The type for one tensor (call once per tensor, in file order: counters advance).
 * ne is in ggml order; src_type the tensor's type in the input file. Tensors that are not
 * quantizable keep src_type. */
uint32_t lg_quant_mix_choose(struct lg_quant_mix *m, const char *name, uint32_t n_dims,
                             const uint64_t *ne, uint32_t src_type);

/* ---- whole file ------------------------------------------------------------------------ */

struct lg_quant_file_opts {
    enum lg_ftype ftype;
    uint32_t base_type;
    bool pure;
    int32_t n_threads; /* >= 1 */
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

/* Reads in_path, writes out_path (atomically: tmp + fsync + rename, so an interrupted run
 * leaves no out_path), every metadata pair copied except general.file_type and
 * general.quantization_version, which are set. Sources of any type we can dequantize are
 * requantized; a tensor whose chosen type equals its type is copied byte for byte.
 * Errors: LG_ERR_IO/FORMAT from the reader or writer, LG_ERR_UNSUPPORTED when a tensor's
 * type cannot be dequantized, LG_ERR_INVALID_ARG for bad options or in == out. */
enum lg_status lg_quant_file(const char *in_path, const char *out_path,
                             const struct lg_quant_file_opts *opts,
                             struct lg_quant_file_stats *stats, struct lg_err *err);

#endif
