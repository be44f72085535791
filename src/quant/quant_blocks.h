/* quant_blocks.h: byte layouts of the GGML block formats, and the per-type reference row
 * functions behind lg_dequant_row / lg_quant_row (internal to src/quant and kern/).
 *
 * All multi-byte fields are little-endian. "f16" is an IEEE binary16 bit pattern (uint16_t).
 * Structs use only naturally aligned members so sizeof equals GGML's type_size (checked by
 * the static asserts below). Reference code copies each block out with memcpy, so block
 * pointers need no alignment; kernels that cast must know their data is aligned.
 *
 * Element numbering: within a block, element i is the i-th float of the row segment the block
 * covers. Where a diagram says "lo nibble -> i, hi nibble -> i+16" it means byte qs[i] holds
 * element i in bits 0..3 and element i+16 in bits 4..7.
 */
#ifndef LG_QUANT_BLOCKS_H
#define LG_QUANT_BLOCKS_H

#include <stdint.h>

#include "quant/quant.h"

enum {
    LG_QK = 32,    /* elements per legacy block (Q4_0..Q8_1, IQ4_NL, MXFP4) */
    LG_QK_K = 256, /* elements per K-quant super-block */
    LG_K_SCALE_BYTES = 12
};

/* Q4_0 (18 bytes, 32 elements, 4.5 bits/weight): x[i] = d * (q[i] - 8), q in 0..15
 *  0      2                      18
 *  +------+----------------------+
 *  | d16  | qs[16]               |   qs[j]: lo nibble -> j, hi nibble -> j+16
 *  +------+----------------------+                                              */
struct lg_block_q4_0 {
    uint16_t d;
    uint8_t qs[LG_QK / 2];
};

/* Q4_1 (20 bytes): x[i] = d * q[i] + m, q in 0..15
 *  0      2      4                      20
 *  +------+------+----------------------+
 *  | d16  | m16  | qs[16] (as Q4_0)     |
 *  +------+------+----------------------+                                       */
struct lg_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[LG_QK / 2];
};

/* Q5_0 (22 bytes): x[i] = d * (q[i] - 16), q = lo4 | hi1 << 4 in 0..31
 *  0      2           6                      22
 *  +------+-----------+----------------------+
 *  | d16  | qh u32 LE | qs[16] (as Q4_0)     |   bit i of qh = bit 4 of q[i]
 *  +------+-----------+----------------------+                                  */
struct lg_block_q5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[LG_QK / 2];
};

/* Q5_1 (24 bytes): x[i] = d * q[i] + m, q in 0..31
 *  0      2      4           8                      24
 *  +------+------+-----------+----------------------+
 *  | d16  | m16  | qh u32 LE | qs[16] (as Q4_0)     |
 *  +------+------+-----------+----------------------+                           */
struct lg_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[LG_QK / 2];
};

/* Q8_0 (34 bytes): x[i] = d * qs[i], qs int8
 *  0      2                              34
 *  +------+------------------------------+
 *  | d16  | qs[32] int8                  |
 *  +------+------------------------------+                                      */
struct lg_block_q8_0 {
    uint16_t d;
    int8_t qs[LG_QK];
};

/* Q8_1 (36 bytes; gguf-py's table says 40, an old layout): x[i] = d * qs[i]; s = d * sum(qs)
 *  0      2      4                              36
 *  +------+------+------------------------------+
 *  | d16  | s16  | qs[32] int8                  |
 *  +------+------+------------------------------+                               */
struct lg_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[LG_QK];
};

/* Q2_K (84 bytes, 256 elements, 2.625 bpw): 16 sub-blocks of 16.
 * Sub-block k (elements 16k..16k+15): x = d*(scales[k]&15) * q - dmin*(scales[k]>>4), q 0..3.
 *  0                16                         80     82     84
 *  +----------------+--------------------------+------+------+
 *  | scales[16]     | qs[64]                   | d16  | dmin16|
 *  +----------------+--------------------------+------+------+
 *  element 128h + 32j + l (h 0..1, j 0..3, l 0..31) = (qs[32h + l] >> 2j) & 3          */
struct lg_block_q2_k {
    uint8_t scales[LG_QK_K / 16];
    uint8_t qs[LG_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
};

/* Q3_K (110 bytes, 3.4375 bpw): 16 sub-blocks of 16, x = d * (sc[k] - 32) * q, q in -4..3.
 *  0             32                      96            108    110
 *  +-------------+-----------------------+-------------+------+
 *  | hmask[32]   | qs[64]                | scales[12]  | d16  |
 *  +-------------+-----------------------+-------------+------+
 *  element e = 128h + 32j + l: low2 = (qs[32h + l] >> 2j) & 3,
 *    q = low2 - 4 unless bit (4h + j) of hmask[l] is set (then q = low2).
 *  6-bit scale k: lo4 = k < 8 ? scales[k] & 15 : scales[k-8] >> 4,
 *                 hi2 = (scales[8 + k%4] >> 2*(k/4)) & 3.                             */
struct lg_block_q3_k {
    uint8_t hmask[LG_QK_K / 8];
    uint8_t qs[LG_QK_K / 4];
    uint8_t scales[LG_K_SCALE_BYTES];
    uint16_t d;
};

/* Q4_K (144 bytes, 4.5 bpw): 8 sub-blocks of 32, x = d*sc[k] * q - dmin*m[k], q 0..15.
 *  0      2       4             16                                   144
 *  +------+-------+-------------+------------------------------------+
 *  | d16  | dmin16| scales[12]  | qs[128]                            |
 *  +------+-------+-------------+------------------------------------+
 *  element 64c + 32s + l (c 0..3, s 0..1): nibble s of qs[32c + l]; sub-block 2c + s.
 *  6-bit sc/m, k < 4: sc = scales[k] & 63, m = scales[k+4] & 63;
 *    k >= 4: sc = (scales[k+4] & 15) | (scales[k-4] >> 6) << 4,
 *            m  = (scales[k+4] >> 4) | (scales[k]   >> 6) << 4.                       */
struct lg_block_q4_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[LG_K_SCALE_BYTES];
    uint8_t qs[LG_QK_K / 2];
};

/* Q5_K (176 bytes, 5.5 bpw): as Q4_K plus a fifth bit, q 0..31.
 *  0      2       4             16            48                     176
 *  +------+-------+-------------+-------------+----------------------+
 *  | d16  | dmin16| scales[12]  | qh[32]      | qs[128] (as Q4_K)    |
 *  +------+-------+-------------+-------------+----------------------+
 *  bit 4 of element e = bit (e / 32) of qh[e % 32].                                   */
struct lg_block_q5_k {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[LG_K_SCALE_BYTES];
    uint8_t qh[LG_QK_K / 8];
    uint8_t qs[LG_QK_K / 2];
};

/* Q6_K (210 bytes, 6.5625 bpw): 16 sub-blocks of 16, x = d * scales[k] * (q - 32), q 0..63.
 *  0                          128              192            208    210
 *  +--------------------------+----------------+--------------+------+
 *  | ql[128]                  | qh[64]         | scales[16] i8| d16  |
 *  +--------------------------+----------------+--------------+------+
 *  element 128h + 64s + l (l 0..63): lo4 = nibble s of ql[64h + l];
 *  element 128h + 32j + l (l 0..31): hi2 = (qh[32h + l] >> 2j) & 3.                  */
struct lg_block_q6_k {
    uint8_t ql[LG_QK_K / 2];
    uint8_t qh[LG_QK_K / 4];
    int8_t scales[LG_QK_K / 16];
    uint16_t d;
};

/* Q8_K (292 bytes): activations for K-quant dot products. x = d * qs; bsums[k] = sum of
 * qs[16k..16k+15]. d is an f32, not an f16.
 *  0        4                                  260                  292
 *  +--------+----------------------------------+--------------------+
 *  | d f32  | qs[256] int8                     | bsums[16] int16    |
 *  +--------+----------------------------------+--------------------+                 */
struct lg_block_q8_k {
    float d;
    int8_t qs[LG_QK_K];
    int16_t bsums[LG_QK_K / 16];
};

/* IQ4_NL (18 bytes): x[i] = d * kvalues_iq4nl[q[i]], nibbles as Q4_0.
 *  0      2                      18
 *  +------+----------------------+
 *  | d16  | qs[16]               |
 *  +------+----------------------+                                              */
struct lg_block_iq4_nl {
    uint16_t d;
    uint8_t qs[LG_QK / 2];
};

/* IQ4_XS (136 bytes, 4.25 bpw): 8 sub-blocks of 32, x = d * (ls[k] - 32) * kvalues[q].
 *  0      2          4             8                                   136
 *  +------+----------+-------------+-----------------------------------+
 *  | d16  | scales_h | scales_l[4] | qs[128]                           |
 *  +------+----------+-------------+-----------------------------------+
 *  ls[k] = ((scales_l[k/2] >> 4*(k%2)) & 15) | ((scales_h >> 2k) & 3) << 4
 *  sub-block k uses qs[16k..16k+15] with nibbles as Q4_0.                             */
struct lg_block_iq4_xs {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[LG_QK_K / 64];
    uint8_t qs[LG_QK_K / 2];
};

/* MXFP4 (17 bytes, OCP microscaling FP4): x[i] = 2^(e-127) * fp4_e2m1(q[i]).
 *  0     1                      17
 *  +-----+----------------------+
 *  | e   | qs[16]               |   e: E8M0 exponent; nibbles as Q4_0
 *  +-----+----------------------+                                               */
struct lg_block_mxfp4 {
    uint8_t e;
    uint8_t qs[LG_QK / 2];
};

_Static_assert(sizeof(struct lg_block_q4_0) == 18, "q4_0 size");
_Static_assert(sizeof(struct lg_block_q4_1) == 20, "q4_1 size");
_Static_assert(sizeof(struct lg_block_q5_0) == 22, "q5_0 size");
_Static_assert(sizeof(struct lg_block_q5_1) == 24, "q5_1 size");
_Static_assert(sizeof(struct lg_block_q8_0) == 34, "q8_0 size");
_Static_assert(sizeof(struct lg_block_q8_1) == 36, "q8_1 size");
_Static_assert(sizeof(struct lg_block_q2_k) == 84, "q2_k size");
_Static_assert(sizeof(struct lg_block_q3_k) == 110, "q3_k size");
_Static_assert(sizeof(struct lg_block_q4_k) == 144, "q4_k size");
_Static_assert(sizeof(struct lg_block_q5_k) == 176, "q5_k size");
_Static_assert(sizeof(struct lg_block_q6_k) == 210, "q6_k size");
_Static_assert(sizeof(struct lg_block_q8_k) == 292, "q8_k size");
_Static_assert(sizeof(struct lg_block_iq4_nl) == 18, "iq4_nl size");
_Static_assert(sizeof(struct lg_block_iq4_xs) == 136, "iq4_xs size");
_Static_assert(sizeof(struct lg_block_mxfp4) == 17, "mxfp4 size");

/* The 16 non-linear IQ4 levels, and the E2M1 levels of MXFP4 doubled (so they are ints). */
extern const int8_t lg_kvalues_iq4nl[16];
extern const int8_t lg_kvalues_mxfp4[16];

/* E8M0 exponent byte -> 2^(e-128), i.e. half the block scale (pairs with the doubled
 * MXFP4 levels). e = 0 and 1 give subnormals, e = 255 gives 2^127. */
float lg_e8m0_to_f32_half(uint8_t e);

/* Row functions: n is a multiple of the block size (checked by the dispatcher). */
typedef void (*lg_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*lg_quant_fn)(const float *src, void *dst, int64_t n);

void lg_dequant_q4_0(const void *src, float *dst, int64_t n);
void lg_dequant_q4_1(const void *src, float *dst, int64_t n);
void lg_dequant_q5_0(const void *src, float *dst, int64_t n);
void lg_dequant_q5_1(const void *src, float *dst, int64_t n);
void lg_dequant_q8_0(const void *src, float *dst, int64_t n);
void lg_dequant_q8_1(const void *src, float *dst, int64_t n);
void lg_quant_q4_0(const float *src, void *dst, int64_t n);
void lg_quant_q4_1(const float *src, void *dst, int64_t n);
void lg_quant_q5_0(const float *src, void *dst, int64_t n);
void lg_quant_q5_1(const float *src, void *dst, int64_t n);
void lg_quant_q8_0(const float *src, void *dst, int64_t n);
void lg_quant_q8_1(const float *src, void *dst, int64_t n);

void lg_dequant_q2_k(const void *src, float *dst, int64_t n);
void lg_dequant_q3_k(const void *src, float *dst, int64_t n);
void lg_dequant_q4_k(const void *src, float *dst, int64_t n);
void lg_dequant_q5_k(const void *src, float *dst, int64_t n);
void lg_dequant_q6_k(const void *src, float *dst, int64_t n);
void lg_dequant_q8_k(const void *src, float *dst, int64_t n);
void lg_quant_q2_k(const float *src, void *dst, int64_t n);
void lg_quant_q3_k(const float *src, void *dst, int64_t n);
void lg_quant_q4_k(const float *src, void *dst, int64_t n);
void lg_quant_q5_k(const float *src, void *dst, int64_t n);
void lg_quant_q6_k(const float *src, void *dst, int64_t n);
void lg_quant_q8_k(const float *src, void *dst, int64_t n);

void lg_dequant_iq4_nl(const void *src, float *dst, int64_t n);
void lg_dequant_iq4_xs(const void *src, float *dst, int64_t n);
void lg_dequant_mxfp4(const void *src, float *dst, int64_t n);
void lg_quant_iq4_nl(const float *src, void *dst, int64_t n);
void lg_quant_iq4_xs(const float *src, void *dst, int64_t n);
void lg_quant_mxfp4(const float *src, void *dst, int64_t n);

#endif
