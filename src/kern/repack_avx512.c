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
 * One token (decode, issue #10) has its own tiles here, in 512-bit vectors: decode streams
 * every weight byte once and does little work per byte, so fewer instructions per byte let the
 * loads overlap better with the arithmetic. A 64-byte load holds two consecutive quant vectors
 * of the block (both halves: the same 8 rows, lane = row); one vpermd of the activation bytes
 * puts the 4 activation bytes of each half's vector in that half, vpdpbusd sums in i32, and
 * the two halves of the exact integer total are added before the float step, which is the
 * 256-bit one of the body (same order, same rounding, no FMA). (The list above is for more
 * than one token.) Per type:
 * - Q4_0: the accumulator's low half starts at -8 * sum(y); 4 dpbusd per block.
 * - Q8_0: AVX-512 has no vpsignb, so the weights go in as w + 128 (xor 0x80, unsigned) and the
 *   accumulator's low half starts at -128 * sum(y) (the prepass with offset 128;
 *   |sum| <= 32 * 255 * 128 fits i32).
 * - Q4_K: per 32-element sub-block 4 dpbusd; the halves of two sub-blocks' sums are added into
 *   one vector [sub-block 2c | 2c + 1] (lane = row in each half), times both 6-bit scales in one
 *   vpmulld; mins as the body.
 * - Q6_K: per 16-element sub-block 2 dpbusd on quants 0..63 (ql nibble | qh bits << 4 with one
 *   ternary-logic step), pairs of sub-blocks times their signed scales as for Q4_K; the +32
 *   correction (32 * sum scale * bsums) with 4 vpmaddwd of scale pairs and bsums pairs.
 * Measured (single thread, 512 MB of R8 weights from DRAM, against a plain AVX-512 read loop
 * over the same bytes, alternating in one run on a shared machine): Q4_0 ~90 %, Q8_0 ~97 %,
 * Q4_K ~77-88 %, Q6_K ~75-80 % of the read loop's rate, where the 256-bit tiles without
 * software prefetch gave 65-70 %, 80-85 %, 75 %, 45 %. From cache (1 MB) the one-token tiles
 * do Q6_K ~1.35x as fast as the 256-bit tile, the others about as fast: the gain in DRAM is
 * the prefetch plus fewer instructions in flight per byte.
 * Several tokens (prefill, batched decode; issue #10) have pair tiles here for two whole
 * groups side by side, in 512-bit vectors: vector k of group g in the low half and of g + 1 in
 * the high half (lane = row, 16 rows), so every lane holds the whole exact integer total of its
 * row for the block as in the 256-bit tiles, one 32-bit activation broadcast serves 16 rows,
 * and the weight work (load, nibble split, + 128) is shared by up to 8 tokens (Q4_0, Q8_0;
 * 4 for the decoded Q4_K / Q6_K chunks, which hold both groups' decoded vectors side by
 * side). The float step is the 256-bit one's on 16 lanes: same order, same rounding, no FMA.
 * - Q4_0: the accumulator starts at -8 * sum(y); 8 dpbusd per block and token. The prepass
 *   stages each tile's activation blocks, scales and sums block-major (struct r8_stage), so that
 *   8 tokens cost one pointer (8 separate ones spilled).
 * - Q8_0: w + 128 (xor 0x80) as for one token, the accumulator starting at -128 * sum(y)
 *   (R8_Q8_0_OFFSET_N: the prepass for several tokens has offset 128 too; the 256-bit tile
 *   that takes the groups left over ignores it).
 * - Q4_K / Q6_K (more than TT tokens): pair_decode_* decodes both groups' chunk (the body's
 *   decoders, joined), the tiles are tile_*_dec's on 16 lanes; the chunk has DEC_BLOCKS / 2
 *   blocks so that it fits the same buffer; each token's sub-block sum in two dpbusd chains
 *   (the one-chain tile waited on dpbusd latency: ~8 % slower prefill). 2..4 tokens: the
 *   256-bit tiles (pair tiles on the R8 bytes measured ~8 % slower there, memory-bound).
 * Groups the row range cuts, a last odd group, and Q4_K / Q6_K for 2..4 tokens take the 256-bit
 * tiles of the body. Measured (E2B shapes, random weights, 2 threads, prefill of 256 tokens,
 * against the 256-bit tiles, alternating runs on a shared VM): Q4_0 ~85 -> ~135 tok/s, Q8_0
 * ~63 -> ~125, Q4_K_M ~90 -> ~120; 8 tokens: Q4_0 ~77 -> ~97, Q8_0 ~49 -> ~76.
 * Only reached through lg_gemm_q_for with the dot4 that lg_qdot_fill_avx512 installs when the
 * CPU has AVX512-VNNI (kern/matmul_q.c). No allocation; reentrant.
 *
 * The kernel body is kern/repack_body.h, shared with kern/repack_avx2.c; this file gives it
 * the VNNI integer steps, the one-token tiles and the exported name.
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

/* The one-token tiles (defined after the body, whose helpers they use) and the Q8_0 prepass
 * offset one_q8_0 needs. */
struct r8_args;
static void one_q4_0(const struct r8_args *a);
static void one_q8_0(const struct r8_args *a);
static void one_q4_k(const struct r8_args *a);
static void one_q6_k(const struct r8_args *a);
#define R8_ONE_Q4_0 one_q4_0
#define R8_ONE_Q8_0 one_q8_0
#define R8_Q8_0_OFFSET 128 /* one_q8_0 takes w + 128 */
#define R8_ONE_Q4_K one_q4_k
#define R8_ONE_Q6_K one_q6_k
/* The pair tiles (several tokens, 16 rows in 512-bit vectors; defined after the body) and the
 * Q8_0 prepass offset pair_q8_0 needs. */
static void pair_q4_0_1(const struct r8_args *a);
static void pair_q4_0_2(const struct r8_args *a);
static void pair_q4_0_3(const struct r8_args *a);
static void pair_q4_0_4(const struct r8_args *a);
static void pair_q4_0_5(const struct r8_args *a);
static void pair_q4_0_6(const struct r8_args *a);
static void pair_q4_0_7(const struct r8_args *a);
static void pair_q4_0_8(const struct r8_args *a);
static void pair_q8_0_1(const struct r8_args *a);
static void pair_q8_0_2(const struct r8_args *a);
static void pair_q8_0_3(const struct r8_args *a);
static void pair_q8_0_4(const struct r8_args *a);
static void pair_q8_0_5(const struct r8_args *a);
static void pair_q8_0_6(const struct r8_args *a);
static void pair_q8_0_7(const struct r8_args *a);
static void pair_q8_0_8(const struct r8_args *a);
/* clang-format off */
#define R8_PAIR_Q4_0 {pair_q4_0_1, pair_q4_0_2, pair_q4_0_3, pair_q4_0_4, \
                      pair_q4_0_5, pair_q4_0_6, pair_q4_0_7, pair_q4_0_8}
#define R8_PAIR_Q8_0 {pair_q8_0_1, pair_q8_0_2, pair_q8_0_3, pair_q8_0_4, \
                      pair_q8_0_5, pair_q8_0_6, pair_q8_0_7, pair_q8_0_8}
/* clang-format on */
#define R8_PAIR_TT 8
#define R8_STAGE PRE
#define R8_Q8_0_OFFSET_N 128 /* pair_q8_0 takes w + 128 */
static void pair_decode_q4_k(const uint8_t *p, size_t gs, int64_t nb, void *dst);
static void pair_decode_q6_k(const uint8_t *p, size_t gs, int64_t nb, void *dst);
static void pair_q4_k_dec_1(const struct r8_args *a);
static void pair_q4_k_dec_2(const struct r8_args *a);
static void pair_q4_k_dec_3(const struct r8_args *a);
static void pair_q4_k_dec_4(const struct r8_args *a);
static void pair_q6_k_dec_1(const struct r8_args *a);
static void pair_q6_k_dec_2(const struct r8_args *a);
static void pair_q6_k_dec_3(const struct r8_args *a);
static void pair_q6_k_dec_4(const struct r8_args *a);
#define R8_PAIR_DECODE_Q4_K pair_decode_q4_k
#define R8_PAIR_DECODE_Q6_K pair_decode_q6_k
/* clang-format off */
#define R8_PAIR_DEC_Q4_K {pair_q4_k_dec_1, pair_q4_k_dec_2, pair_q4_k_dec_3, pair_q4_k_dec_4}
#define R8_PAIR_DEC_Q6_K {pair_q6_k_dec_1, pair_q6_k_dec_2, pair_q6_k_dec_3, pair_q6_k_dec_4}
/* clang-format on */

#include "kern/repack_body.h"

/* {a x 8, b x 8}: the vpermd control that puts 32-bit lane a of a vector in the low half and
 * lane b in the high half */
static inline __m512i two_lanes(int a, int b)
{
    return _mm512_inserti64x4(_mm512_set1_epi32(a), _mm256_set1_epi32(b), 1);
}

/* Q4_0, one token: a 64-byte load holds qs vectors k, k + 1 of the block (halves = the same 8
 * rows), their low nibbles multiply activation dwords k, k + 1 and their high nibbles dwords
 * 4 + k, 5 + k (vpermd of the block's 32 activation bytes); the two halves are added once per
 * block. The accumulator's low half starts at -8 * sum(y). */
static void one_q4_0(const struct r8_args *a)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    const __m512i c01 = two_lanes(0, 1), c45 = two_lanes(4, 5), c23 = two_lanes(2, 3),
                  c67 = two_lanes(6, 7);
    __m256 acc = a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->yo[0]);
    const uint8_t *p = a->gp;
    const uint8_t *yq = a->ya[0] + offsetof(struct lg_block_q8_0, qs);
    for (int64_t b = 0; b < a->nb; b++, p += Q4_BLOCK, yq += ABYTES) {
        prefetch_block(p, Q4_BLOCK);
        const __m512i y = _mm512_castsi256_si512(loadu(yq));
        const __m512i v0 = _mm512_loadu_si512(p + 16), v1 = _mm512_loadu_si512(p + 80);
        __m512i s = _mm512_maskz_set1_epi32(0xff, -a->sy[0][b]);
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v0, m4), _mm512_permutexvar_epi32(c01, y));
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4),
                                _mm512_permutexvar_epi32(c45, y));
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(v1, m4), _mm512_permutexvar_epi32(c23, y));
        s = _mm512_dpbusd_epi32(s, _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4),
                                _mm512_permutexvar_epi32(c67, y));
        const __m256i isum =
            _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        const __m256 sc = _mm256_mul_ps(scales8(p), _mm256_set1_ps(a->dy[0][b]));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sc));
    }
    _mm256_storeu_ps(a->yo[0], acc);
}

/* Q8_0, one token: 64 bytes (vectors 2m, 2m + 1) of weights w + 128 (unsigned) times
 * activation dwords 2m, 2m + 1; the accumulator's low half starts at -128 * sum(y) (the
 * prepass with offset 128). */
static void one_q8_0(const struct r8_args *a)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    __m512i ctl[4];
    for (int m = 0; m < 4; m++)
        ctl[m] = two_lanes(2 * m, 2 * m + 1);
    __m256 acc = a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->yo[0]);
    const uint8_t *p = a->gp;
    const uint8_t *yq = a->ya[0] + offsetof(struct lg_block_q8_0, qs);
    for (int64_t b = 0; b < a->nb; b++, p += Q8_BLOCK, yq += ABYTES) {
        prefetch_block(p, Q8_BLOCK);
        const __m512i y = _mm512_castsi256_si512(loadu(yq));
        __m512i s = _mm512_maskz_set1_epi32(0xff, -a->sy[0][b]);
        /* clang-format off */
        _Pragma("GCC unroll 4")
        for (int m = 0; m < 4; m++)
            s = _mm512_dpbusd_epi32(s, _mm512_xor_si512(_mm512_loadu_si512(p + 16 + 64 * m), bias),
                                    _mm512_permutexvar_epi32(ctl[m], y));
        /* clang-format on */
        const __m256i isum =
            _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
        const __m256 sc = _mm256_mul_ps(scales8(p), _mm256_set1_ps(a->dy[0][b]));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_cvtepi32_ps(isum), sc));
    }
    _mm256_storeu_ps(a->yo[0], acc);
}

/* In every 32-bit lane: unsigned byte i of the lane (low half) and byte i + 1 (high half) of
 * a 256-bit v broadcast to both halves, as i32 */
static inline __m512i scale_pair_u(__m512i v2, int i)
{
    const __m512i ctl = _mm512_add_epi32(
        _mm512_inserti64x4(_mm512_set1_epi32((int)((unsigned)i | 0x80808000u)),
                           _mm256_set1_epi32((int)((unsigned)(i + 1) | 0x80808000u)), 1),
        _mm512_set4_epi32(12, 8, 4, 0));
    return _mm512_shuffle_epi8(v2, ctl);
}

/* In every 32-bit lane: signed byte i of the lane (low half) and byte i + 1 (high half) of a
 * 256-bit v broadcast to both halves, as i32 */
static inline __m512i scale_pair(__m512i v2, int i)
{
    const __m512i ctl = _mm512_add_epi32(
        _mm512_inserti64x4(_mm512_set1_epi32((int)(0x00808080u | (unsigned)i << 24)),
                           _mm256_set1_epi32((int)(0x00808080u | (unsigned)(i + 1) << 24)), 1),
        _mm512_set4_epi32(0xc000000, 0x8000000, 0x4000000, 0));
    return _mm512_srai_epi32(_mm512_shuffle_epi8(v2, ctl), 24);
}

/* Q4_K, one token: per 64 bytes of qs (vectors 2m, 2m + 1 of chunk c) the low nibbles
 * multiply activation dwords 2m, 2m + 1 and the high ones 8 + 2m, 9 + 2m of the chunk's 64
 * activation bytes; sub-blocks 2c and 2c + 1 (each vector's halves the same rows) folded into
 * one vector of both, times their scales in i32. Mins as tile_q4_k. */
static void one_q4_k(const struct r8_args *a)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    __m512i cl[4], ch[4];
    for (int m = 0; m < 4; m++) {
        cl[m] = two_lanes(2 * m, 2 * m + 1);
        ch[m] = two_lanes(8 + 2 * m, 9 + 2 * m);
    }
    __m256 acc = a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->yo[0]);
    const uint8_t *p = a->gp;
    const struct lg_block_q8_k *y = (const struct lg_block_q8_k *)(const void *)a->ya[0];
    for (int64_t b = 0; b < a->nb; b++, p += Q4K_BLOCK, y++) {
        prefetch_block(p, Q4K_BLOCK);
        __m256i sc_lo, sc_hi, mn[4];
        q4k_scales_mins(p, &sc_lo, &sc_hi, mn);
        const __m256i msum = q4k_msum(mn, y);
        const __m512i s_lo = _mm512_broadcast_i64x4(sc_lo), s_hi = _mm512_broadcast_i64x4(sc_hi);
        __m512i is = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++)
        {
            const __m512i yv = _mm512_loadu_si512(y->qs + 64 * c);
            const uint8_t *q = p + Q4K_QS + 256 * c;
            __m512i sl = _mm512_setzero_si512(), sh = _mm512_setzero_si512();
            _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
            {
                const __m512i v = _mm512_loadu_si512(q + 64 * m);
                sl = _mm512_dpbusd_epi32(sl, _mm512_and_si512(v, m4),
                                         _mm512_permutexvar_epi32(cl[m], yv));
                sh = _mm512_dpbusd_epi32(sh, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                         _mm512_permutexvar_epi32(ch[m], yv));
            }
            /* [sub-block 2c | 2c + 1] per row, times both scales at once */
            const __m512i hs = _mm512_add_epi32(_mm512_shuffle_i64x2(sl, sh, 0x44),
                                                _mm512_shuffle_i64x2(sl, sh, 0xee));
            is = _mm512_add_epi32(
                is, _mm512_mullo_epi32(hs, scale_pair_u(c < 2 ? s_lo : s_hi, 2 * c % 4)));
        }
        const __m256i isum =
            _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1));
        const __m256 d = scales8(p), dmin = scales8(p + Q4K_DMIN);
        const __m256 v = _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum)),
                                       _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(msum)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(y->d), v));
    }
    _mm256_storeu_ps(a->yo[0], acc);
}

/* Q6_K, one token: 32-element group g = 4h + j in 4 64-byte steps (quant vectors 2m, 2m + 1:
 * ql nibble j >> 1, qh bits 2j), activation dwords 8 (g % 2) + 2m, + 1 of the 64 bytes at
 * 64 (g / 2); sub-blocks 2g (m < 2) and 2g + 1 folded into one vector, times their signed
 * scales in i32; the +32 correction subtracted at the end of the block. */
static void one_q6_k(const struct r8_args *a)
{
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    __m512i ctl[8];
    for (int m = 0; m < 8; m++)
        ctl[m] = two_lanes(2 * m, 2 * m + 1);
    /* signed scale bytes 0, 1 (low half) / 2, 3 (high half) of every 32-bit lane into the high
     * bytes of two i16 (srai 8 then sign-extends them) */
    const __m512i pctl = _mm512_add_epi32(
        _mm512_inserti64x4(_mm512_set1_epi32((int)(0x80u | 0x80u << 16 | 1u << 24)),
                           _mm256_set1_epi32((int)(0x80u | 2u << 8 | 0x80u << 16 | 3u << 24)), 1),
        _mm512_set4_epi32(0xc000c00, 0x8000800, 0x4000400, 0));
    __m256 acc = a->first ? _mm256_setzero_ps() : _mm256_loadu_ps(a->yo[0]);
    const uint8_t *p = a->gp;
    const struct lg_block_q8_k *y = (const struct lg_block_q8_k *)(const void *)a->ya[0];
    for (int64_t b = 0; b < a->nb; b++, p += Q6K_BLOCK, y++) {
        prefetch_block(p, Q6K_BLOCK);
        __m512i sv2[4];
        for (int m = 0; m < 4; m++)
            sv2[m] = _mm512_broadcast_i64x4(loadu(p + Q6K_SCALES + 32 * m));
        /* sum_k sc[k] * bsums[k]: scale pairs (2m, 2m + 1) | (2m + 2, 2m + 3) of sv[m] as i16
         * times the matching bsums pairs */
        const __m512i bs = _mm512_castsi256_si512(loadu((const uint8_t *)y->bsums));
        __m512i cz = _mm512_setzero_si512();
        _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++) cz = _mm512_add_epi32(
            cz, _mm512_madd_epi16(_mm512_srai_epi16(_mm512_shuffle_epi8(sv2[m], pctl), 8),
                                  _mm512_permutexvar_epi32(ctl[m], bs)));
        const __m256i corr =
            _mm256_add_epi32(_mm512_castsi512_si256(cz), _mm512_extracti64x4_epi64(cz, 1));
        __m512i is = _mm512_setzero_si512();
        _Pragma("GCC unroll 1") for (int h = 0; h < 2; h++)
        {
            _Pragma("GCC unroll 4") for (int j = 0; j < 4; j++)
            {
                const int g = 4 * h + j;
                const uint8_t *ql = p + 32 * (16 * h + 8 * (j & 1)), *qh = p + Q6K_QH + 256 * h;
                const __m512i yv = _mm512_loadu_si512(y->qs + 64 * (g / 2));
                __m512i s[2];
                _Pragma("GCC unroll 4") for (int m = 0; m < 4; m++)
                {
                    const __m512i vl = _mm512_loadu_si512(ql + 64 * m);
                    const __m512i vh = _mm512_loadu_si512(qh + 64 * m);
                    const __m512i lo = _mm512_and_si512(j >> 1 ? _mm512_srli_epi16(vl, 4) : vl, m4);
                    /* bits 2j, 2j + 1 of each qh byte to bits 4, 5 (16-bit shifts: what
                     * crosses a byte lands outside the mask) */
                    const __m512i hs = j == 0   ? _mm512_slli_epi16(vh, 4)
                                       : j == 1 ? _mm512_slli_epi16(vh, 2)
                                       : j == 2 ? vh
                                                : _mm512_srli_epi16(vh, 2);
                    /* lo | (hs & m30) */
                    const __m512i w = _mm512_ternarylogic_epi32(lo, hs, m30, 0xf8);
                    const __m512i yp = _mm512_permutexvar_epi32(ctl[4 * (g % 2) + m], yv);
                    s[m / 2] = _mm512_dpbusd_epi32(m % 2 ? s[m / 2] : _mm512_setzero_si512(), w, yp);
                }
                /* [sub-block 2g | 2g + 1] per row: the halves of s[0] and of s[1] added,
                 * times the two scales (bytes k % 4, k % 4 + 1 of sv[k / 4]) at once */
                const int k = 2 * g;
                const __m512i hs = _mm512_add_epi32(_mm512_shuffle_i64x2(s[0], s[1], 0x44),
                                                    _mm512_shuffle_i64x2(s[0], s[1], 0xee));
                is = _mm512_add_epi32(is, _mm512_mullo_epi32(hs, scale_pair(sv2[k / 4], k % 4)));
            }
        }
        const __m256i isum = _mm256_sub_epi32(
            _mm256_add_epi32(_mm512_castsi512_si256(is), _mm512_extracti64x4_epi64(is, 1)),
            _mm256_slli_epi32(corr, 5));
        const __m256 d = scales8(p + Q6K_D);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(y->d),
                                               _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum))));
    }
    _mm256_storeu_ps(a->yo[0], acc);
}

/* ---- several tokens: two groups side by side ------------------------------------------------
 * Pair tiles: the 32-byte vector k of group g (low half) and of group g + 1 (high half) in one
 * 512-bit vector, so lane j < 8 is row j of g and lane 8 + j row j of g + 1, each lane the whole
 * exact integer total of its row for the block, as in the 256-bit tiles; one 32-bit broadcast
 * of 4 activation bytes (vpdpbusd's embedded broadcast) serves all 16 rows, and the nibble split
 * (Q4_0) or the + 128 (Q8_0) is shared by the tile's tokens. Float step as TILE_SCALE, 16 rows:
 * acc += (float)isum * (dw * dy), no FMA. */

/* vector at p of group g (low half) and at p + gs of group g + 1 (high half) */
static inline __m512i load_pair(const uint8_t *p, size_t gs)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(loadu(p)), loadu(p + gs), 1);
}

/* the 8 f16 scales at p (rows of g) and at p + gs (rows of g + 1) as 16 floats */
static inline __m512 scales16(const uint8_t *p, size_t gs)
{
    const __m256i h = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)p)),
        _mm_loadu_si128((const __m128i *)(const void *)(p + gs)), 1);
    return _mm512_cvtph_ps(h);
}

static inline __m512i bcast4x16(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

#define PAIR_BEGIN(NT)                                                                             \
    __m512 acc[PTT];                                                                               \
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) acc[t] =                                  \
        a->first ? _mm512_setzero_ps() : _mm512_loadu_ps(a->yo[t]);

#define PAIR_END(NT)                                                                               \
    _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++) _mm512_storeu_ps(a->yo[t], acc[t]);

/* acc += (float)isum * (dw * dy), 16 rows (dy: the staged scales R) */
#define PAIR_SCALE(NT, ISUM, P, GS, R)                                                             \
    {                                                                                              \
        const __m512 dw = scales16(P, GS);                                                         \
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)                                       \
        {                                                                                          \
            __m512 sc = _mm512_mul_ps(dw, _mm512_set1_ps((R)[t].d));                               \
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(ISUM[t]), sc));        \
        }                                                                                          \
    }

/* Q4_0: nibbles 0..15 unsigned, the accumulator starts at -8 * sum(y); activations, scales
 * and sums from the staged prepass (struct r8_stage: one pointer for all the tile's tokens) */
static inline __attribute__((always_inline)) void pair_q4_0(const struct r8_args *a, const int NT)
{
    const __m512i m4 = _mm512_set1_epi8(15);
    const size_t gs = a->gstride;
    PAIR_BEGIN(NT)
    const uint8_t *p = a->gp;
    const struct r8_stage *r = a->st;
    for (int64_t b = 0; b < a->nb; b++, p += Q4_BLOCK, r += NT) {
        prefetch_block(p, Q4_BLOCK);
        prefetch_block(p + gs, Q4_BLOCK);
        const int8_t *yq[PTT];
        __m512i s[PTT];
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)
        {
            yq[t] = r[t].qs;
            s[t] = _mm512_set1_epi32(r[t].sy);
        }
        _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++)
        {
            const __m512i v = load_pair(p + 16 + 32 * k, gs);
            const __m512i lo = _mm512_and_si512(v, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)
            {
                s[t] = _mm512_dpbusd_epi32(s[t], lo, bcast4x16(yq[t] + 4 * k));
                s[t] = _mm512_dpbusd_epi32(s[t], hi, bcast4x16(yq[t] + 16 + 4 * k));
                PIN(s[t]);
            }
        }
        PAIR_SCALE(NT, s, p, gs, r)
    }
    PAIR_END(NT)
}

/* Q8_0: weights w + 128 (unsigned), the accumulator starts at -128 * sum(y) (the staged
 * prepass with offset R8_Q8_0_OFFSET_N) */
static inline __attribute__((always_inline)) void pair_q8_0(const struct r8_args *a, const int NT)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const size_t gs = a->gstride;
    PAIR_BEGIN(NT)
    const uint8_t *p = a->gp;
    const struct r8_stage *r = a->st;
    for (int64_t b = 0; b < a->nb; b++, p += Q8_BLOCK, r += NT) {
        prefetch_block(p, Q8_BLOCK);
        prefetch_block(p + gs, Q8_BLOCK);
        const int8_t *yq[PTT];
        __m512i s[PTT];
        _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)
        {
            yq[t] = r[t].qs;
            s[t] = _mm512_set1_epi32(r[t].sy);
        }
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)
        {
            const __m512i w = _mm512_xor_si512(load_pair(p + 16 + 32 * k, gs), bias);
            _Pragma("GCC unroll 8") for (int t = 0; t < NT; t++)
            {
                s[t] = _mm512_dpbusd_epi32(s[t], w, bcast4x16(yq[t] + 4 * k));
                PIN(s[t]);
            }
        }
        PAIR_SCALE(NT, s, p, gs, r)
    }
    PAIR_END(NT)
}

/* clang-format off */
static void pair_q4_0_1(const struct r8_args *a) { pair_q4_0(a, 1); }
static void pair_q4_0_2(const struct r8_args *a) { pair_q4_0(a, 2); }
static void pair_q4_0_3(const struct r8_args *a) { pair_q4_0(a, 3); }
static void pair_q4_0_4(const struct r8_args *a) { pair_q4_0(a, 4); }
static void pair_q4_0_5(const struct r8_args *a) { pair_q4_0(a, 5); }
static void pair_q4_0_6(const struct r8_args *a) { pair_q4_0(a, 6); }
static void pair_q4_0_7(const struct r8_args *a) { pair_q4_0(a, 7); }
static void pair_q4_0_8(const struct r8_args *a) { pair_q4_0(a, 8); }
static void pair_q8_0_1(const struct r8_args *a) { pair_q8_0(a, 1); }
static void pair_q8_0_2(const struct r8_args *a) { pair_q8_0(a, 2); }
static void pair_q8_0_3(const struct r8_args *a) { pair_q8_0(a, 3); }
static void pair_q8_0_4(const struct r8_args *a) { pair_q8_0(a, 4); }
static void pair_q8_0_5(const struct r8_args *a) { pair_q8_0(a, 5); }
static void pair_q8_0_6(const struct r8_args *a) { pair_q8_0(a, 6); }
static void pair_q8_0_7(const struct r8_args *a) { pair_q8_0(a, 7); }
static void pair_q8_0_8(const struct r8_args *a) { pair_q8_0(a, 8); }
/* clang-format on */

/* Q4_K / Q6_K for more than TT tokens: a chunk of groups g and g + 1 decoded once per call into
 * these (each vector [g | g + 1]: struct q4k_dec / q6_dec of the two groups side by side, the
 * scales as i32 for vpmulld), then read by the pair tiles. Half as many blocks per chunk as the
 * one-group decode, in the same buffer. */
struct q4k_dec2 {
    __m512i w[64], sc[8], mn[4];
    __m512 d, dmin;
};

struct q6_dec2 {
    __m512i w[64], sc[16], scp[8];
    __m512 d;
};

_Static_assert(DEC_BLOCKS / 2 * sizeof(struct q4k_dec2) <= DEC_BLOCKS * sizeof(struct q6_dec) &&
                   DEC_BLOCKS / 2 * sizeof(struct q6_dec2) <= DEC_BLOCKS * sizeof(struct q6_dec),
               "pair decode buffer");

static inline __m512i join(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __m512 joinf(__m256 lo, __m256 hi)
{
    return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

static void pair_decode_q4_k(const uint8_t *p, size_t gs, int64_t nb, void *dst)
{
    for (int64_t b = 0; b < nb; b++, p += Q4K_BLOCK) {
        struct q4k_dec h[2];
        decode_q4_k(p, 1, &h[0]);
        decode_q4_k(p + gs, 1, &h[1]);
        struct q4k_dec2 *o = (struct q4k_dec2 *)dst + b;
        for (int i = 0; i < 64; i++)
            o->w[i] = join(h[0].w[i], h[1].w[i]);
        for (int i = 0; i < 8; i++)
            o->sc[i] = join(h[0].sc[i], h[1].sc[i]);
        for (int i = 0; i < 4; i++)
            o->mn[i] = join(h[0].mn[i], h[1].mn[i]);
        o->d = joinf(h[0].d, h[1].d);
        o->dmin = joinf(h[0].dmin, h[1].dmin);
    }
}

static void pair_decode_q6_k(const uint8_t *p, size_t gs, int64_t nb, void *dst)
{
    for (int64_t b = 0; b < nb; b++, p += Q6K_BLOCK) {
        struct q6_dec h[2];
        decode_q6_k(p, 1, &h[0]);
        decode_q6_k(p + gs, 1, &h[1]);
        struct q6_dec2 *o = (struct q6_dec2 *)dst + b;
        for (int i = 0; i < 64; i++)
            o->w[i] = join(h[0].w[i], h[1].w[i]);
        for (int i = 0; i < 16; i++)
            o->sc[i] = join(h[0].sc[i], h[1].sc[i]);
        for (int i = 0; i < 8; i++)
            o->scp[i] = join(h[0].scp[i], h[1].scp[i]);
        o->d = joinf(h[0].d, h[1].d);
    }
}

/* q4k_msum in 16 rows: sum over the 8 sub-blocks of min * (sum of the activation sub-block) */
static inline __m512i msum16(const __m512i mn[4], const struct lg_block_q8_k *y)
{
    const __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)y->bsums);
    const __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(y->bsums + 8));
    const __m128i bp = _mm_hadd_epi16(lo, hi);
    __m512i m = _mm512_madd_epi16(mn[0], _mm512_broadcastd_epi32(bp));
    m = _mm512_add_epi32(
        m, _mm512_madd_epi16(mn[1], _mm512_broadcastd_epi32(_mm_shuffle_epi32(bp, 1))));
    m = _mm512_add_epi32(
        m, _mm512_madd_epi16(mn[2], _mm512_broadcastd_epi32(_mm_shuffle_epi32(bp, 2))));
    m = _mm512_add_epi32(
        m, _mm512_madd_epi16(mn[3], _mm512_broadcastd_epi32(_mm_shuffle_epi32(bp, 3))));
    return m;
}

static inline __attribute__((always_inline)) void pair_q4_k_dec(const struct r8_args *a,
                                                                const int NT)
{
    const struct q4k_dec2 *pk = (const struct q4k_dec2 *)(const void *)a->gp;
    PAIR_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m512i isum[TT], msum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            msum[t] = msum16(pk[b].mn, y[t]);
            isum[t] = _mm512_setzero_si512();
        }
        _Pragma("GCC unroll 1") for (int sb = 0; sb < 8; sb++)
        {
            /* two dpbusd chains per token (even / odd i): half the latency */
            const __m512i *w = pk[b].w + 8 * sb;
            __m512i s[TT][2];
            _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
            {
                const __m512i wi = _mm512_load_si512(w + i);
                _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
                {
                    s[t][i % 2] = _mm512_dpbusd_epi32(i < 2 ? _mm512_setzero_si512() : s[t][i % 2],
                                                      wi, bcast4x16(y[t]->qs + 32 * sb + 4 * i));
                    PIN(s[t][i % 2]);
                }
            }
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) isum[t] = _mm512_add_epi32(
                isum[t], _mm512_mullo_epi32(_mm512_add_epi32(s[t][0], s[t][1]), pk[b].sc[sb]));
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            __m512 v = _mm512_sub_ps(_mm512_mul_ps(pk[b].d, _mm512_cvtepi32_ps(isum[t])),
                                     _mm512_mul_ps(pk[b].dmin, _mm512_cvtepi32_ps(msum[t])));
            acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_set1_ps(y[t]->d), v));
        }
    }
    PAIR_END(NT)
}

static inline __attribute__((always_inline)) void pair_q6_k_dec(const struct r8_args *a,
                                                                const int NT)
{
    const struct q6_dec2 *pk = (const struct q6_dec2 *)(const void *)a->gp;
    PAIR_BEGIN(NT)
    for (int64_t b = 0; b < a->nb; b++) {
        const struct lg_block_q8_k *y[TT];
        __m512i isum[TT];
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
        {
            y[t] = (const struct lg_block_q8_k *)(const void *)a->ya[t] + b;
            /* 32 * sum_k sc[k] * bsums[k]: the correction of q + 32 */
            __m512i m = _mm512_setzero_si512();
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) m = _mm512_add_epi32(
                m,
                _mm512_madd_epi16(pk[b].scp[k], bcast4x16((const uint8_t *)(y[t]->bsums + 2 * k))));
            isum[t] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(m, 5));
        }
        _Pragma("GCC unroll 1") for (int sb = 0; sb < 16; sb++)
        {
            const __m512i *w = pk[b].w + 4 * sb;
            const __m512i w0 = _mm512_load_si512(w), w1 = _mm512_load_si512(w + 1);
            const __m512i w2 = _mm512_load_si512(w + 2), w3 = _mm512_load_si512(w + 3);
            _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++)
            {
                /* two dpbusd chains: half the latency */
                const int8_t *q = y[t]->qs + 16 * sb;
                __m512i sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, bcast4x16(q));
                __m512i sb2 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w2, bcast4x16(q + 8));
                sa = _mm512_dpbusd_epi32(sa, w1, bcast4x16(q + 4));
                sb2 = _mm512_dpbusd_epi32(sb2, w3, bcast4x16(q + 12));
                isum[t] = _mm512_add_epi32(
                    isum[t], _mm512_mullo_epi32(_mm512_add_epi32(sa, sb2), pk[b].sc[sb]));
                PIN(isum[t]);
            }
        }
        _Pragma("GCC unroll 4") for (int t = 0; t < NT; t++) acc[t] = _mm512_add_ps(
            acc[t], _mm512_mul_ps(_mm512_set1_ps(y[t]->d),
                                  _mm512_mul_ps(pk[b].d, _mm512_cvtepi32_ps(isum[t]))));
    }
    PAIR_END(NT)
}

/* clang-format off */
static void pair_q4_k_dec_1(const struct r8_args *a) { pair_q4_k_dec(a, 1); }
static void pair_q4_k_dec_2(const struct r8_args *a) { pair_q4_k_dec(a, 2); }
static void pair_q4_k_dec_3(const struct r8_args *a) { pair_q4_k_dec(a, 3); }
static void pair_q4_k_dec_4(const struct r8_args *a) { pair_q4_k_dec(a, 4); }
static void pair_q6_k_dec_1(const struct r8_args *a) { pair_q6_k_dec(a, 1); }
static void pair_q6_k_dec_2(const struct r8_args *a) { pair_q6_k_dec(a, 2); }
static void pair_q6_k_dec_3(const struct r8_args *a) { pair_q6_k_dec(a, 3); }
static void pair_q6_k_dec_4(const struct r8_args *a) { pair_q6_k_dec(a, 4); }
/* clang-format on */
