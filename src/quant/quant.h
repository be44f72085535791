/* quant.h: GGML tensor types: size table, reference (scalar) dequantize and quantize.
 *
 * Type ids are GGML's (they are stored in GGUF files). The reference functions define
 * "correct"; fast kernels in kern/ are tested against them. All functions are pure: any
 * thread. Block byte layouts are drawn above each struct in quant_blocks.h.
 */
#ifndef LG_QUANT_H
#define LG_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

enum lg_qtype {
    LG_QTYPE_F32 = 0,
    LG_QTYPE_F16 = 1,
    LG_QTYPE_Q4_0 = 2,
    LG_QTYPE_Q4_1 = 3,
    LG_QTYPE_Q5_0 = 6,
    LG_QTYPE_Q5_1 = 7,
    LG_QTYPE_Q8_0 = 8,
    LG_QTYPE_Q8_1 = 9,
    LG_QTYPE_Q2_K = 10,
    LG_QTYPE_Q3_K = 11,
    LG_QTYPE_Q4_K = 12,
    LG_QTYPE_Q5_K = 13,
    LG_QTYPE_Q6_K = 14,
    LG_QTYPE_Q8_K = 15,
    LG_QTYPE_IQ2_XXS = 16,
    LG_QTYPE_IQ2_XS = 17,
    LG_QTYPE_IQ3_XXS = 18,
    LG_QTYPE_IQ1_S = 19,
    LG_QTYPE_IQ4_NL = 20,
    LG_QTYPE_IQ3_S = 21,
    LG_QTYPE_IQ2_S = 22,
    LG_QTYPE_IQ4_XS = 23,
    LG_QTYPE_I8 = 24,
    LG_QTYPE_I16 = 25,
    LG_QTYPE_I32 = 26,
    LG_QTYPE_I64 = 27,
    LG_QTYPE_F64 = 28,
    LG_QTYPE_IQ1_M = 29,
    LG_QTYPE_BF16 = 30,
    LG_QTYPE_TQ1_0 = 34,
    LG_QTYPE_TQ2_0 = 35,
    LG_QTYPE_MXFP4 = 39,
    LG_QTYPE_NVFP4 = 40,
    LG_QTYPE_Q1_0 = 41,
    LG_QTYPE_COUNT = 42
};

struct lg_qtype_info {
    const char *name;     /* "Q4_K", ... as gguf-py names them */
    uint32_t block_size;  /* elements per block (1 for plain types) */
    uint32_t type_size;   /* bytes per block */
    bool can_dequant;     /* we have a reference dequantizer */
    bool can_quant;       /* we have a reference quantizer */
};

/* Info for a type id, or NULL when the id is not a known GGML type (holes included). */
const struct lg_qtype_info *lg_qtype_get(uint32_t type);

/* Type id by name (case-insensitive), or -1. */
int lg_qtype_from_name(const char *name);

/* Bytes of a row of n elements; LG_ERR_FORMAT when n is not a multiple of the block size,
 * LG_ERR_RANGE on overflow, LG_ERR_UNSUPPORTED for an unknown type. */
enum lg_status lg_qtype_row_bytes(uint32_t type, uint64_t n, uint64_t *out);

/* Reference dequantization of n elements (n a multiple of the block size). When the type has
 * no dequantizer (can_dequant false), is unknown, or n is not a block multiple, dst[0..n) is
 * filled with NaN instead (check can_dequant / lg_qtype_row_bytes first). */
void lg_dequant_row(enum lg_qtype type, const void *src, float *dst, int64_t n);

/* Reference quantization of n elements (n a multiple of the block size), into
 * lg_qtype_row_bytes(type, n) bytes at dst. Results equal ggml's reference (non-imatrix)
 * quantizers (see tests/unit/test_quant*.c for which are verified bit for bit). When the type
 * has no quantizer (can_quant false) or n is not a block multiple, dst is not touched. */
void lg_quant_row(enum lg_qtype type, const float *src, void *dst, int64_t n);

/* Checked forms of the two above: LG_ERR_UNSUPPORTED when the type cannot be (de)quantized,
 * LG_ERR_FORMAT when n is negative or not a block multiple. */
enum lg_status lg_dequant_row_checked(uint32_t type, const void *src, float *dst, int64_t n);
enum lg_status lg_quant_row_checked(uint32_t type, const float *src, void *dst, int64_t n);

/* Scalar conversions (IEEE round-to-nearest-even, as ggml). */
float lg_f16_to_f32(uint16_t h);
uint16_t lg_f32_to_f16(float f);
float lg_bf16_to_f32(uint16_t h);
uint16_t lg_f32_to_bf16(float f);

#endif
