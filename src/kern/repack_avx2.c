/* repack_avx2.c: AVX2 matrix products on R8 weights (Q4_0, Q8_0, Q4_K, Q6_K; layout in
 * kern/repack.c).
 *
 * y[t][r] = dot(W row r, activation row t) for rows [r0, r1) and n_tok tokens, activations in
 * Q8_0 (Q8_K for the K-quants). An R8 group stores, per block, the 8 rows' fields side by side:
 * scales, and quants in vectors whose 32-bit lane j holds 4 bytes of row j, so one 32-bit broadcast
 * of 4 activation bytes multiplies 8 rows at once (_mm256_maddubs_epi16) and the 8 dot products
 * build up in the 8 lanes: no packing, no transposes, no horizontal sums. The same code serves
 * decode (one token: the 8 rows stream once from memory, one load per 32 bytes) and batches (tiles
 * of 8 rows x up to 4 tokens; each weight vector loaded once per tile).
 *
 * Arithmetic: per block the exact int32 total of each row (the same integer as the scalar
 * reference), then acc += (float)isum * (dw * dy) in 8 lanes, block after block, no FMA: lane
 * j follows lg_vec_dot_ref's order and rounding for row j exactly (GCC's ISO C mode does not
 * contract), so outputs are bit-identical to it and to the GGUF-row kernels
 * (tests/unit/test_repack.c).
 * - Q4_0: the nibbles 0..15 go unsigned into maddubs and each block's -8 offset is corrected
 *   with 8 * sum(y) (a per-chunk prepass per token, shared by every row). i16 lanes sum the
 *   8 maddubs of a block: 8 * 2 * 15 * 128 = 30720 < 32767 (activations are in [-127, 127];
 *   even -128 fits).
 * - Q8_0: |w| times sign(y, w); every maddubs (<= 2 * 128 * 127 = 32512) is widened at once.
 *   Exact for w = -128 too as long as y != -128 (our quantizer gives [-127, 127]).
 * - Q4_K: the 6-bit scales and mins of the 8 rows are unpacked with 32-bit lane operations
 *   (each lane one row) and spread to i16 pairs with one byte shuffle; per 32-element
 *   sub-block 8 maddubs sum in i16 (30480 max, as Q4_0), then madd with the scale pair; mins
 *   times the activation block sums (bsums). Per super-block acc += yd * (d * isum - dmin *
 *   msum), the reference's expression.
 * - Q6_K: quants 0..63 (the reference's q + 32) from ql / qh; i16 lanes sum 2 maddubs
 *   (4 * 63 * 127 = 32004) before madd with the signed 16-element sub-block scale; the +32 is
 *   corrected with 32 * sum(scale * bsums). acc += yd * (d * isum) (the reference subtracts
 *   dmin * msum = 0 * 0, which changes nothing).
 * Cache blocking: columns go in chunks; a partial sum leaves the tile through y (or a
 * per-call buffer for a group the row range cuts) and comes back, which does not change the
 * order of the additions. For more than 4 tokens a chunk of one group (<= 20 KiB) stays in L1
 * while the token tiles pass over it; Q4_K / Q6_K chunks are then decoded once per call
 * (lane = row vectors of quants and scale pairs) rather than once per token tile. Row ranges may
 * start and end anywhere: a group the range cuts is computed whole into that buffer and only its
 * rows in range are stored. No allocation: stack buffers of about 43 KiB (123 KiB with the
 * AVX-512 pair tiles' staged prepass). Reentrant.
 *
 * The kernel body is kern/repack_body.h, shared with kern/repack_avx512.c; this file gives it
 * the AVX2 integer steps (maddubs into i16, madd to i32) and the exported name.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

/* The integer steps of repack_body.h (see there) in AVX2: products of unsigned weight bytes w
 * and signed activation bytes y summed in i16 pairs by maddubs (bounds in the header above),
 * widened to i32 by madd. */
#define R8_GEMM_NAME lg_gemm_r8_avx2
#define R8_PIN_REG(v) "+x"(v)

/* s + w.y + w1.y1 in i16 lanes */
static inline __m256i r8_dot2(__m256i s, __m256i w0, __m256i y0, __m256i w1, __m256i y1)
{
    return _mm256_add_epi16(
        s, _mm256_add_epi16(_mm256_maddubs_epi16(w0, y0), _mm256_maddubs_epi16(w1, y1)));
}

/* s + w.y in i16 lanes */
static inline __m256i r8_dot(__m256i s, __m256i w, __m256i y)
{
    return _mm256_add_epi16(s, _mm256_maddubs_epi16(w, y));
}

/* s + w.y in i32 lanes */
static inline __m256i r8_dot32(__m256i s, __m256i w, __m256i y)
{
    return _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(w, y), _mm256_set1_epi16(1)));
}

/* Q4_0 block: the accumulator r8_dot2 starts from, and its i32 total minus sy */
static inline __m256i r8_q4_0_start(int32_t sy)
{
    (void)sy;
    return _mm256_setzero_si256();
}

static inline __m256i r8_q4_0_end(__m256i s, int32_t sy)
{
    return _mm256_sub_epi32(_mm256_madd_epi16(s, _mm256_set1_epi16(1)), _mm256_set1_epi32(sy));
}

/* i16 sums s (r8_dot) times the sub-block scales sc (an i16 pair per row: R8_SC / R8_SCS), in
 * i32 */
static inline __m256i r8_scaled(__m256i s, __m256i sc)
{
    return _mm256_madd_epi16(s, sc);
}

/* Q6_K sub-block: two i16 sums of 2 maddubs each (4 would overflow), each times sc */
static inline __m256i r8_q6_dot(__m256i w0, __m256i y0, __m256i w1, __m256i y1, __m256i w2,
                                __m256i y2, __m256i w3, __m256i y3, __m256i sc)
{
    const __m256i s0 = r8_dot2(_mm256_setzero_si256(), w0, y0, w1, y1);
    const __m256i s1 = r8_dot2(_mm256_setzero_si256(), w2, y2, w3, y3);
    return _mm256_add_epi32(_mm256_madd_epi16(s0, sc), _mm256_madd_epi16(s1, sc));
}

/* Q6_K sub-block one product vector at a time: s[0] sums steps 0, 1 and s[1] steps 2, 3 */
#define R8_Q6_SLOT(i) ((i) / 2)
static inline void r8_q6_step(__m256i s[2], int i, __m256i w, __m256i y)
{
    const __m256i x = _mm256_maddubs_epi16(w, y);
    s[i / 2] = i % 2 ? _mm256_add_epi16(s[i / 2], x) : x;
}

static inline __m256i r8_q6_scaled(const __m256i s[2], __m256i sc)
{
    return _mm256_add_epi32(_mm256_madd_epi16(s[0], sc), _mm256_madd_epi16(s[1], sc));
}

/* Unsigned / signed byte i of every 32-bit lane of v as r8_scaled takes it */
#define R8_SC(v, i) lane_bytes16(v, i, i)
#define R8_SCS(v, i) lane_bytes16s(v, i, i)

/* no one-token tiles of its own: tile_*_1 */
#define R8_ONE_Q4_0 NULL
#define R8_ONE_Q8_0 NULL
#define R8_ONE_Q4_K NULL
#define R8_ONE_Q6_K NULL
#define R8_Q8_0_OFFSET 0
/* no pair tiles: one group at a time */
/* clang-format off */
#define R8_PAIR_Q4_0 {NULL}
#define R8_PAIR_Q8_0 {NULL}
#define R8_Q8_0_OFFSET_N 0
#define R8_PAIR_TT TT
#define R8_STAGE 1
#define R8_PAIR_DECODE_Q4_K NULL
#define R8_PAIR_DECODE_Q6_K NULL
#define R8_PAIR_DEC_Q4_K {NULL}
#define R8_PAIR_DEC_Q6_K {NULL}
/* clang-format on */

#include "kern/repack_body.h"
