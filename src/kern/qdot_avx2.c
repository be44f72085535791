/* qdot_avx2.c: AVX2 + FMA + F16C quantized dot products (same contracts as qdot_ref.c).
 *
 * Integer parts are exact; each block's int32 total is scaled in float and accumulated with
 * FMA in 8 lanes, so results differ from the reference only in float summation order.
 * Signed x signed int8 products use the usual identity |a| * sign(b, a) so that
 * _mm256_maddubs_epi16 (unsigned x signed) applies; activations from our quantizers are in
 * [-127, 127], where this is exact.
 */
#include <immintrin.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

void lg_qdot_fill_avx2(lg_vec_dot_fn *dot, lg_vec_dot4_fn *dot4);
lg_gemm_q_fn lg_qdot_gemm_avx2(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4,
                               int64_t n_tok);

static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* 32 nibbles of a Q4_0-style block: bytes 0..15 low nibbles, 16..31 high nibbles. */
static inline __m256i nibbles32(const uint8_t *qs)
{
    __m128i b = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m128i m = _mm_set1_epi8(15);
    __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm256_set_m128i(hi, lo);
}

/* Byte j = 0xFF when bit j of the little-endian u32 at p is set. */
static inline __m256i bits32(const uint8_t *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                              0x0303030303030303LL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), spread);
    b = _mm256_or_si256(b, _mm256_set1_epi64x((long long)0x7fbfdfeff7fbfdfeULL));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

/* Sum of products of 32 signed bytes, as 8 int32 lanes. */
static inline __m256i dot_s8(__m256i x, __m256i y)
{
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* Unsigned bytes x (< 128) times signed bytes y, as 8 int32 lanes. */
static inline __m256i dot_u8(__m256i x, __m256i y)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* ---- against Q8_0 ----------------------------------------------------------------------- */

/* Lane j = the total of v[j]'s eight lanes (exact int32). */
static inline __m256i totals8(const __m256i v[8])
{
    __m256i ab = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    __m256i cd = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(ab, cd, 0x20),
                            _mm256_permute2x128_si256(ab, cd, 0x31));
}

static inline int32_t total1(__m256i v)
{
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
    return _mm_cvtsi128_si32(q);
}

/* Q4_0 and Q8_0 against Q8_0 in the reference's arithmetic: s += (float)isum * (dw * dy)
 * block after block (no FMA), so that the result equals lg_vec_dot_ref's bit for bit and
 * therefore the tiled GEMM's (kern/gemm_avx2.c): decode, prefill and batches give the same
 * numbers. Eight blocks at a time: their int totals and scale products are vectors; only the
 * final float sum is sequential. DECODE(ib) gives block ib's signed quants. */
#define DOT_Q8_0_REF(name, blk, DECODE)                                                        \
    static float name(const void *w, const void *a, int64_t n)                                 \
    {                                                                                          \
        const blk *x = w;                                                                      \
        const struct lg_block_q8_0 *y = a;                                                     \
        const int64_t nb = n / LG_QK;                                                          \
        float s = 0.0f;                                                                        \
        int64_t ib = 0;                                                                        \
        for (; ib + 8 <= nb; ib += 8) {                                                        \
            __m256i v[8];                                                                      \
            for (int j = 0; j < 8; j++)                                                        \
                v[j] = dot_s8(DECODE(ib + j), load32(y[ib + j].qs));                           \
            __m256 dw = _mm256_cvtph_ps(_mm_setr_epi16(                                       \
                (short)x[ib].d, (short)x[ib + 1].d, (short)x[ib + 2].d, (short)x[ib + 3].d,    \
                (short)x[ib + 4].d, (short)x[ib + 5].d, (short)x[ib + 6].d,                    \
                (short)x[ib + 7].d));                                                          \
            __m256 dy = _mm256_cvtph_ps(_mm_setr_epi16(                                       \
                (short)y[ib].d, (short)y[ib + 1].d, (short)y[ib + 2].d, (short)y[ib + 3].d,    \
                (short)y[ib + 4].d, (short)y[ib + 5].d, (short)y[ib + 6].d,                    \
                (short)y[ib + 7].d));                                                          \
            float p[8];                                                                        \
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_cvtepi32_ps(totals8(v)),                  \
                                              _mm256_mul_ps(dw, dy)));                         \
            for (int j = 0; j < 8; j++)                                                        \
                s += p[j];                                                                     \
        }                                                                                      \
        for (; ib < nb; ib++)                                                                  \
            s += (float)total1(dot_s8(DECODE(ib), load32(y[ib].qs))) *                         \
                 (f16(x[ib].d) * f16(y[ib].d));                                                \
        return s;                                                                              \
    }

#define DEC_Q4_0(ib) _mm256_sub_epi8(nibbles32(x[ib].qs), _mm256_set1_epi8(8))
#define DEC_Q8_0(ib) load32(x[ib].qs)
#define DEC_Q5_0(ib)                                                                           \
    _mm256_sub_epi8(_mm256_or_si256(nibbles32(x[ib].qs),                                       \
                                    _mm256_and_si256(bits32(x[ib].qh), _mm256_set1_epi8(16))), \
                    _mm256_set1_epi8(16))
DOT_Q8_0_REF(avx2_q4_0, struct lg_block_q4_0, DEC_Q4_0)
DOT_Q8_0_REF(avx2_q8_0, struct lg_block_q8_0, DEC_Q8_0)
DOT_Q8_0_REF(avx2_q5_0, struct lg_block_q5_0, DEC_Q5_0)
#undef DEC_Q4_0
#undef DEC_Q8_0
#undef DEC_Q5_0

static float avx2_iq4_nl(const void *w, const void *a, int64_t n)
{
    const struct lg_block_iq4_nl *x = w;
    const struct lg_block_q8_0 *y = a;
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)lg_kvalues_iq4nl));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        __m256i q = _mm256_shuffle_epi8(tab, nibbles32(x[ib].qs));
        __m256 p = _mm256_cvtepi32_ps(dot_s8(q, load32(y[ib].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[ib].d) * f16(y[ib].d)), p, acc);
    }
    return hsum8(acc);
}

static float avx2_mxfp4(const void *w, const void *a, int64_t n)
{
    const struct lg_block_mxfp4 *x = w;
    const struct lg_block_q8_0 *y = a;
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)lg_kvalues_mxfp4));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        __m256i q = _mm256_shuffle_epi8(tab, nibbles32(x[ib].qs));
        __m256 p = _mm256_cvtepi32_ps(dot_s8(q, load32(y[ib].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(y[ib].d) * lg_e8m0_to_f32_half(x[ib].e)), p,
                              acc);
    }
    return hsum8(acc);
}

/* ---- against Q8_1 ----------------------------------------------------------------------- */

static float avx2_q4_1(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q4_1 *x = w;
    const struct lg_block_q8_1 *y = a;
    __m256 acc = _mm256_setzero_ps();
    float sm = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        __m256 p = _mm256_cvtepi32_ps(dot_u8(nibbles32(x[ib].qs), load32(y[ib].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[ib].d) * f16(y[ib].d)), p, acc);
        sm += f16(x[ib].m) * f16(y[ib].s);
    }
    return hsum8(acc) + sm;
}

static float avx2_q5_1(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q5_1 *x = w;
    const struct lg_block_q8_1 *y = a;
    __m256 acc = _mm256_setzero_ps();
    float sm = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        __m256i q = _mm256_or_si256(nibbles32(x[ib].qs),
                                    _mm256_and_si256(bits32(x[ib].qh), _mm256_set1_epi8(16)));
        __m256 p = _mm256_cvtepi32_ps(dot_u8(q, load32(y[ib].qs)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(f16(x[ib].d) * f16(y[ib].d)), p, acc);
        sm += f16(x[ib].m) * f16(y[ib].s);
    }
    return hsum8(acc) + sm;
}

/* ---- against Q8_K ----------------------------------------------------------------------- */


/* All eight 6-bit scale/min pairs of a Q4_K / Q5_K block at once (same values as
 * quant_blocks.h's layout), by whole 32-bit words. */
static inline void scales_k4(const uint8_t *s, uint8_t sc[8], uint8_t mn[8])
{
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    uint32_t a = w0 & 0x3f3f3f3fu, b = w1 & 0x3f3f3f3fu;
    uint32_t c = (w2 & 0x0f0f0f0fu) | (((w0 >> 6) & 0x03030303u) << 4);
    uint32_t d = ((w2 >> 4) & 0x0f0f0f0fu) | (((w1 >> 6) & 0x03030303u) << 4);
    memcpy(sc, &a, 4);
    memcpy(sc + 4, &c, 4);
    memcpy(mn, &b, 4);
    memcpy(mn + 4, &d, 4);
}

/* sum_k mn[k] * (bsums[2k] + bsums[2k + 1]) */
static inline int32_t min_sum(const uint8_t mn[8], const int16_t *bsums)
{
    __m128i lo = _mm_loadu_si128((const __m128i *)(const void *)bsums);
    __m128i hi = _mm_loadu_si128((const __m128i *)(const void *)(bsums + 8));
    __m128i pairs = _mm_hadd_epi16(lo, hi); /* 8 sums of adjacent bsums; |sum| <= 4064 */
    uint64_t m8;
    memcpy(&m8, mn, 8);
    __m128i m = _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)m8));
    __m128i p = _mm_madd_epi16(pairs, m);
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0x4e));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0xb1));
    return _mm_cvtsi128_si32(p);
}

/* sum_k scales[k] * bsums[k] over the 16 sub-blocks of a Q6_K block */
static inline int32_t scale_sum16(const int8_t *scales, const int16_t *bsums)
{
    __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(const void *)scales));
    __m256i p = _mm256_madd_epi16(sc, _mm256_loadu_si256((const __m256i *)(const void *)bsums));
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
    return _mm_cvtsi128_si32(q);
}

/* Q4_K / Q5_K share everything but the fifth bit. */
static inline float qk45(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales,
                         uint16_t d, uint16_t dmin, const struct lg_block_q8_k *y, __m256 *acc)
{
    uint8_t sc[8], mn[8];
    scales_k4(scales, sc, mn);
    int32_t msum = min_sum(mn, y->bsums);
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i hb = qh ? load32(qh) : _mm256_setzero_si256();
    __m256i isum = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i b = load32(qs + 32 * c);
        __m256i lo = _mm256_and_si256(b, m4), hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
        if (qh) {
            /* bit (2c) of qh[l] -> element 64c + l, bit (2c + 1) -> 64c + 32 + l */
            __m256i one = _mm256_set1_epi8(1);
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(
                                         _mm256_and_si256(_mm256_srli_epi16(hb, 2 * c + 1), one),
                                         4));
        }
        __m256i plo = _mm256_maddubs_epi16(lo, load32(y->qs + 64 * c));
        __m256i phi = _mm256_maddubs_epi16(hi, load32(y->qs + 64 * c + 32));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16((short)sc[2 * c])));
        isum = _mm256_add_epi32(isum,
                                _mm256_madd_epi16(phi, _mm256_set1_epi16((short)sc[2 * c + 1])));
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(y->d * f16(d)), _mm256_cvtepi32_ps(isum), *acc);
    return y->d * f16(dmin) * (float)msum;
}

/* Q4_K and Q6_K in the reference's arithmetic (see DOT_Q8_0_REF): per super-block the exact
 * int totals, then s += yd * (d * isum - dmin * msum). */
static float avx2_q4_k(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q4_k *x = w;
    const struct lg_block_q8_k *y = a;
    const __m256i m4 = _mm256_set1_epi8(15);
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        uint8_t sc[8], mn[8];
        scales_k4(x[ib].scales, sc, mn);
        int32_t msum = min_sum(mn, y[ib].bsums);
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            __m256i b = load32(x[ib].qs + 32 * c);
            __m256i lo = _mm256_and_si256(b, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            __m256i plo = _mm256_maddubs_epi16(lo, load32(y[ib].qs + 64 * c));
            __m256i phi = _mm256_maddubs_epi16(hi, load32(y[ib].qs + 64 * c + 32));
            isum = _mm256_add_epi32(isum,
                                    _mm256_madd_epi16(plo, _mm256_set1_epi16((short)sc[2 * c])));
            isum = _mm256_add_epi32(
                isum, _mm256_madd_epi16(phi, _mm256_set1_epi16((short)sc[2 * c + 1])));
        }
        s += y[ib].d * (f16(x[ib].d) * (float)total1(isum) - f16(x[ib].dmin) * (float)msum);
    }
    return s;
}

static float avx2_q5_k(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q5_k *x = w;
    const struct lg_block_q8_k *y = a;
    __m256 acc = _mm256_setzero_ps();
    float sm = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++)
        sm += qk45(x[ib].qs, x[ib].qh, x[ib].scales, x[ib].d, x[ib].dmin, &y[ib], &acc);
    return hsum8(acc) - sm;
}

static float avx2_q6_k(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q6_k *x = w;
    const struct lg_block_q8_k *y = a;
    const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const struct lg_block_q6_k *b = &x[ib];
        int32_t msum = scale_sum16(b->scales, y[ib].bsums);
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; h++) {
            __m256i q0 = load32(b->ql + 64 * h), q1 = load32(b->ql + 64 * h + 32);
            __m256i qh = load32(b->qh + 32 * h);
            __m256i v[4];
            v[0] = _mm256_and_si256(q0, m4);
            v[1] = _mm256_and_si256(q1, m4);
            v[2] = _mm256_and_si256(_mm256_srli_epi16(q0, 4), m4);
            v[3] = _mm256_and_si256(_mm256_srli_epi16(q1, 4), m4);
            for (int j = 0; j < 4; j++) {
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), m3);
                __m256i q = _mm256_or_si256(v[j], _mm256_slli_epi16(hi, 4));
                __m256i p = _mm256_maddubs_epi16(q, load32(y[ib].qs + 128 * h + 32 * j));
                int g = 4 * h + j; /* 32-element group: sub-blocks 2g (low lane), 2g + 1 */
                __m256i sv = _mm256_set_m128i(_mm_set1_epi16(b->scales[2 * g + 1]),
                                             _mm_set1_epi16(b->scales[2 * g]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, sv));
            }
        }
        /* q was stored +32: sum sc * (q - 32) * y = sum sc * q * y - 32 * sum sc * bsum;
         * the reference's dmin * msum term is 0 * 0 here, and x - 0 == x */
        s += y[ib].d * (f16(b->d) * (float)(total1(isum) - 32 * msum));
    }
    return s;
}

/* ---- F16 x F16 -------------------------------------------------------------------------- */

static float avx2_f16(const void *w, const void *a, int64_t n)
{
    const uint16_t *x = w, *y = a;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            __m256 vx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(x + i + 8 * k)));
            __m256 vy = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(y + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(vx, vy, acc[k]);
        }
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++)
        s += f16(x[i]) * f16(y[i]);
    return s;
}


/* ---- four activation rows at once (prefill) --------------------------------------------- */

/* Q4_0, Q5_0, Q8_0, Q4_K, Q6_K: four reference-order dots, so that dot4 too equals the reference
 * and the GEMM bit for bit (lg_matmul_q runs the GEMM from 2 to 4 tokens on, so these serve
 * other callers only). */
#define DOT4_OF(name, dot)                                                                     \
    static void name(const void *w, const void *a, size_t lda, int64_t n, float *out,         \
                     int64_t ldo)                                                              \
    {                                                                                          \
        for (int t = 0; t < 4; t++)                                                            \
            out[t * ldo] = dot(w, (const uint8_t *)a + t * lda, n);                            \
    }
DOT4_OF(avx2_q4_0_x4, avx2_q4_0)
DOT4_OF(avx2_q8_0_x4, avx2_q8_0)
DOT4_OF(avx2_q4_k_x4, avx2_q4_k)
DOT4_OF(avx2_q6_k_x4, avx2_q6_k)
DOT4_OF(avx2_q5_0_x4, avx2_q5_0)

/* The tiled kernels go with this file's dot4 functions (the avx2 and avx512 tables). */
lg_gemm_q_fn lg_qdot_gemm_avx2(uint32_t type, uint32_t layout, lg_vec_dot4_fn dot4,
                               int64_t n_tok)
{
    lg_vec_dot4_fn own = type == LG_QTYPE_Q4_0   ? avx2_q4_0_x4
                         : type == LG_QTYPE_Q8_0 ? avx2_q8_0_x4
                         : type == LG_QTYPE_Q5_0 ? avx2_q5_0_x4
                         : type == LG_QTYPE_Q4_K ? avx2_q4_k_x4
                         : type == LG_QTYPE_Q6_K ? avx2_q6_k_x4
                                                 : NULL;
    if (!own || dot4 != own)
        return NULL;
    if (layout == LG_WLAYOUT_R8)
        return lg_gemm_r8_avx2(type);
    if (layout != LG_WLAYOUT_ROWS)
        return NULL;
    /* Q4_0 decode (one token) on GGUF rows: the row-at-a-time dot above is faster end to end
     * than the 8-row kernel (E2B Q4_0, 2 threads, quiet machine: 6.26 vs 5.58 tok/s); same
     * bits. */
    if (n_tok == 1 && type == LG_QTYPE_Q4_0)
        return NULL;
    return lg_gemm_avx2(type, n_tok);
}

void lg_qdot_fill_avx2(lg_vec_dot_fn *dot, lg_vec_dot4_fn *dot4)
{
    dot4[LG_QTYPE_Q4_0] = avx2_q4_0_x4;
    dot4[LG_QTYPE_Q8_0] = avx2_q8_0_x4;
    dot4[LG_QTYPE_Q5_0] = avx2_q5_0_x4;
    dot4[LG_QTYPE_Q4_K] = avx2_q4_k_x4;
    dot4[LG_QTYPE_Q6_K] = avx2_q6_k_x4;
    dot[LG_QTYPE_Q4_0] = avx2_q4_0;
    dot[LG_QTYPE_Q5_0] = avx2_q5_0;
    dot[LG_QTYPE_Q8_0] = avx2_q8_0;
    dot[LG_QTYPE_IQ4_NL] = avx2_iq4_nl;
    dot[LG_QTYPE_MXFP4] = avx2_mxfp4;
    dot[LG_QTYPE_Q4_1] = avx2_q4_1;
    dot[LG_QTYPE_Q5_1] = avx2_q5_1;
    dot[LG_QTYPE_Q4_K] = avx2_q4_k;
    dot[LG_QTYPE_Q5_K] = avx2_q5_k;
    dot[LG_QTYPE_Q6_K] = avx2_q6_k;
    dot[LG_QTYPE_F16] = avx2_f16;
}
