/* repack_avx512.c: AVX512-VNNI matrix products on R8 weights (Q4_0, Q8_0, Q4_K, Q6_K; layout
 * in kern/repack.c).
 *
 * kern/repack_avx2.c's kernels (same contract, layout, tiling, chunking and prepass; read its
 * header first) with each maddubs (+ madd with ones, + add) chain replaced by vpdpbusd in its
 * 256-bit EVEX form (_mm256_dpbusd_epi32, AVX512-VNNI + VL): per 32-bit lane, the products of
 * 4 unsigned bytes (first operand: weights) with 4 signed bytes (second: a broadcast of 4
 * activation bytes) are added to the i32 accumulator, without saturation and without the i16
 * intermediate, so the per-block integer totals are the same exact integers as before (and as
 * the scalar reference's) and every output stays bit-identical to lg_vec_dot_ref.
 * - Q4_0: the accumulator starts at -8 * sum(y) (the prepass) and takes the 8 dpbusd of the
 *   block (nibbles 0..15 unsigned).
 * - Q8_0: dpbusd(|w|, sign(y, w)); |-128| = 128 is exact as an unsigned byte.
 * - Q4_K: per 32-element sub-block 8 dpbusd into i32 (<= 32 * 15 * 128), then times the 6-bit
 *   scale as an i32 (vpmulld); mins as in the AVX2 file.
 * - Q6_K: per 16-element sub-block 4 dpbusd (quants 0..63) into i32, times the signed scale
 *   (vpmulld); the +32 correction as in the AVX2 file.
 * Only reached through lg_gemm_q_for with the dot4 that lg_qdot_fill_avx512 installs when the
 * CPU has AVX512-VNNI (kern/matmul_q.c). No allocation; reentrant.
 *
 * The kernel body is kern/repack_body.h, shared with kern/repack_avx2.c; this file gives it
 * the VNNI integer steps and the exported name.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

/* The integer steps of repack_body.h (see there) in AVX512-VNNI: vpdpbusd adds the products of
 * unsigned weight bytes w and signed activation bytes y straight to i32 lanes. */
#define R8_GEMM_NAME lg_gemm_r8_avx512
#define R8_PIN_REG(v) "+v"(v)

/* s + w0.y0 + w1.y1 */
static inline __m256i r8_dot2(__m256i s, __m256i w0, __m256i y0, __m256i w1, __m256i y1)
{
    return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(s, w0, y0), w1, y1);
}

/* s + w.y */
static inline __m256i r8_dot(__m256i s, __m256i w, __m256i y)
{
    return _mm256_dpbusd_epi32(s, w, y);
}

static inline __m256i r8_dot32(__m256i s, __m256i w, __m256i y)
{
    return _mm256_dpbusd_epi32(s, w, y);
}

/* Q4_0 block: the accumulator starts at -sy, so the 8 dpbusd leave the total */
static inline __m256i r8_q4_0_start(int32_t sy)
{
    return _mm256_set1_epi32(-sy);
}

static inline __m256i r8_q4_0_end(__m256i s, int32_t sy)
{
    (void)sy;
    return s;
}

/* i32 sums times the sub-block scales (an i32 per row: R8_SC / R8_SCS) */
static inline __m256i r8_scaled(__m256i s, __m256i sc)
{
    return _mm256_mullo_epi32(s, sc);
}

/* Q6_K sub-block: 4 dpbusd into one i32 sum, times sc */
static inline __m256i r8_q6_dot(__m256i w0, __m256i y0, __m256i w1, __m256i y1, __m256i w2,
                                __m256i y2, __m256i w3, __m256i y3, __m256i sc)
{
    const __m256i s = r8_dot2(_mm256_setzero_si256(), w0, y0, w1, y1);
    return _mm256_mullo_epi32(r8_dot2(s, w2, y2, w3, y3), sc);
}

/* Q6_K sub-block one product vector at a time, all in s[0] */
#define R8_Q6_SLOT(i) 0
static inline void r8_q6_step(__m256i s[2], int i, __m256i w, __m256i y)
{
    s[0] = _mm256_dpbusd_epi32(i ? s[0] : _mm256_setzero_si256(), w, y);
}

static inline __m256i r8_q6_scaled(const __m256i s[2], __m256i sc)
{
    return _mm256_mullo_epi32(s[0], sc);
}

/* In every 32-bit lane: byte i of the lane as an i32 (zero-extended). */
static inline __m256i lane_byte32(__m256i v, int i)
{
    const __m256i ctl = _mm256_add_epi32(_mm256_set1_epi32((int)((unsigned)i | 0x80808000u)),
                                         _mm256_setr_epi32(0, 4, 8, 12, 0, 4, 8, 12));
    return _mm256_shuffle_epi8(v, ctl);
}

/* In every 32-bit lane: signed byte i of the lane as an i32. */
static inline __m256i lane_byte32s(__m256i v, int i)
{
    const __m256i ctl = _mm256_add_epi32(
        _mm256_set1_epi32((int)(0x00808080u | (unsigned)i << 24)),
        _mm256_setr_epi32(0, 0x4000000, 0x8000000, 0xc000000, 0, 0x4000000, 0x8000000, 0xc000000));
    return _mm256_srai_epi32(_mm256_shuffle_epi8(v, ctl), 24);
}

#define R8_SC(v, i) lane_byte32(v, i)
#define R8_SCS(v, i) lane_byte32s(v, i)

#include "kern/repack_body.h"
