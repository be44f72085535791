/* qdot_more_avx2.c: AVX2 + F16C dot products for Q2_K, Q3_K, IQ4_XS, BF16 and F32 (issue #10),
 * equal to lg_vec_dot_ref's bit for bit (qdot_more.h).
 *
 * K-quants and IQ4_XS: the reference computes, per super-block, the exact int32 totals
 * isum = sum_k sc[k] * dot(q_k, y_k) and msum = sum_k mn[k] * bsums[k], then
 * s += yd * (d * (float)isum - dmin * (float)msum). The integer totals are exact in any order,
 * so they are vectorised freely; the float part is written out in the same order (ISO C mode:
 * no FMA contraction). Where the reference has dmin = 0 and msum = 0 (Q3_K, IQ4_XS) its
 * "- 0.0f * 0.0f" is dropped: x - (+0) == x for every float x, -0 and NaN included.
 *
 * BF16: the reference adds the float products one by one to a double. A product of two bf16
 * values has at most 16 significant bits, so a chunk of products can often be added exactly;
 * when every partial sum of (s, chunk) is exactly representable (checked from exponents, see
 * chunk_is_exact), any order gives the same double as the reference's, and the chunk is summed
 * in vectors; otherwise the chunk is added one product at a time as the reference does.
 *
 * F32: lg_kern_dot_f32's eight partial sums are one vector (mul then add, no FMA).
 *
 * Activations are those of lg_act_quantize: Q8_K with bsums[k] = sum of qs[16k..16k+15]
 * (Q3_K's quants are taken as (q + 4) - 4 and the 4 * bsums term subtracted, as qdot_avx2.c
 * does for Q6_K). Rows aligned as qdot.h states; loads are unaligned anyway.
 */
#include <immintrin.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "kern/qdot_more.h"
#include "quant/quant_blocks.h"

static inline float f16(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* As lg_bf16_to_f32 (inline here: the sequential BF16 path calls it per element). */
static inline float bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __m256i load32(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline int32_t total1(__m256i v)
{
    __m128i q = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_add_epi32(q, _mm_shuffle_epi32(q, 0xb1));
    return _mm_cvtsi128_si32(q);
}

/* ---- Q2_K, Q3_K: 16 sub-blocks of 16 with one scale each --------------------------------- */

/* The 16 int8 scales of a super-block as int16, evens in the low 128-bit lane and odds in the
 * high one: element 32g + l (l < 16) is in sub-block 2g, element 32g + 16 + l in 2g + 1, and a
 * 32-byte product vector holds them in its low / high lane. */
static inline __m256i scales_split(__m128i sc8)
{
    const __m128i deint = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, deint));
}

/* Broadcasts int16 element g (0..7) of each 128-bit lane to the lane: with scales_split's
 * vector, the scales of 32-element group g (sc[2g] low, sc[2g + 1] high). */
static inline __m256i scales_group(__m256i split, int g)
{
    return _mm256_shuffle_epi8(split, _mm256_set1_epi16((short)(0x0100 + 0x0202 * g)));
}

/* sum over 16 sub-blocks of sc[k] * bsums[k] (sc16: int16 in natural order) */
static inline int32_t bsum_dot(__m256i sc16, const int16_t *bsums)
{
    return total1(
        _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)(const void *)bsums)));
}

/* One 32-element group j of a 128-element half: the quants (b >> 2j) & 3, plus bit `hbit` of
 * hv as bit 2 when has_h (Q3_K), times the activations y, times the group's scales sc. */
static inline __m256i group_2bit(__m256i b, int j, __m256i hv, int hbit, int has_h, const int8_t *y,
                                 __m256i sc)
{
    __m256i q = _mm256_and_si256(_mm256_srli_epi16(b, 2 * j), _mm256_set1_epi8(3));
    if (has_h) {
        __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hv, hbit), _mm256_set1_epi8(1));
        q = _mm256_or_si256(q, _mm256_slli_epi16(hb, 2));
    }
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, load32(y)), sc);
}

/* Sum of sc[k] * dot(q_k, y_k) over the 256 elements of a super-block whose 2-bit fields are
 * laid out as Q2_K / Q3_K's qs (element 128h + 32j + l = (qs[32h + l] >> 2j) & 3) plus, for
 * Q3_K (hm not NULL), bit (4h + j) of hm[l] as bit 2. Quants are unsigned here (0..7). The
 * eight groups are written out so that every shift count and shuffle is a constant. */
static inline int32_t isum_2bit(const uint8_t *qs, const uint8_t *hm, __m256i split,
                                const int8_t *yq)
{
    int has_h = hm != NULL;
    __m256i hv = has_h ? load32(hm) : _mm256_setzero_si256();
    __m256i b0 = load32(qs), b1 = load32(qs + 32);
    __m256i s0 = group_2bit(b0, 0, hv, 0, has_h, yq, scales_group(split, 0));
    __m256i s1 = group_2bit(b0, 1, hv, 1, has_h, yq + 32, scales_group(split, 1));
    s0 = _mm256_add_epi32(s0, group_2bit(b0, 2, hv, 2, has_h, yq + 64, scales_group(split, 2)));
    s1 = _mm256_add_epi32(s1, group_2bit(b0, 3, hv, 3, has_h, yq + 96, scales_group(split, 3)));
    s0 = _mm256_add_epi32(s0, group_2bit(b1, 0, hv, 4, has_h, yq + 128, scales_group(split, 4)));
    s1 = _mm256_add_epi32(s1, group_2bit(b1, 1, hv, 5, has_h, yq + 160, scales_group(split, 5)));
    s0 = _mm256_add_epi32(s0, group_2bit(b1, 2, hv, 6, has_h, yq + 192, scales_group(split, 6)));
    s1 = _mm256_add_epi32(s1, group_2bit(b1, 3, hv, 7, has_h, yq + 224, scales_group(split, 7)));
    return total1(_mm256_add_epi32(s0, s1));
}

static float avx2_q2_k(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q2_k *x = w;
    const struct lg_block_q8_k *y = a;
    const __m128i m4 = _mm_set1_epi8(15);
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const struct lg_block_q2_k *b = &x[ib];
        __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)b->scales);
        __m128i sc = _mm_and_si128(raw, m4);
        __m128i mn = _mm_and_si128(_mm_srli_epi16(raw, 4), m4);
        int32_t msum = bsum_dot(_mm256_cvtepu8_epi16(mn), y[ib].bsums);
        int32_t isum = isum_2bit(b->qs, NULL, scales_split(sc), y[ib].qs);
        s += y[ib].d * (f16(b->d) * (float)isum - f16(b->dmin) * (float)msum);
    }
    return s;
}

/* The 16 6-bit Q3_K scales minus 32 (quant_blocks.h's layout), by whole 32-bit words:
 * lo4 of k in 0..7 / 8..15 = low / high nibble of scales[k % 8]; hi2 of k = bits 2 (k / 4)
 * of scales[8 + k % 4]. */
static inline __m128i scales_q3_k(const uint8_t *s)
{
    uint32_t w0, w1, w2;
    memcpy(&w0, s, 4);
    memcpy(&w1, s + 4, 4);
    memcpy(&w2, s + 8, 4);
    const uint32_t m4 = 0x0f0f0f0fu, m2 = 0x03030303u;
    uint32_t s0 = (w0 & m4) | ((w2 & m2) << 4);
    uint32_t s1 = (w1 & m4) | (((w2 >> 2) & m2) << 4);
    uint32_t s2 = ((w0 >> 4) & m4) | (((w2 >> 4) & m2) << 4);
    uint32_t s3 = ((w1 >> 4) & m4) | (((w2 >> 6) & m2) << 4);
    return _mm_sub_epi8(_mm_setr_epi32((int)s0, (int)s1, (int)s2, (int)s3), _mm_set1_epi8(32));
}

static float avx2_q3_k(const void *w, const void *a, int64_t n)
{
    const struct lg_block_q3_k *x = w;
    const struct lg_block_q8_k *y = a;
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const struct lg_block_q3_k *b = &x[ib];
        __m128i sc = scales_q3_k(b->scales);
        /* quants taken as q + 4 in 0..7: sum sc q y = sum sc (q + 4) y - 4 sum sc bsums */
        int32_t corr = bsum_dot(_mm256_cvtepi8_epi16(sc), y[ib].bsums);
        int32_t isum = isum_2bit(b->qs, b->hmask, scales_split(sc), y[ib].qs) - 4 * corr;
        s += y[ib].d * (f16(b->d) * (float)isum);
    }
    return s;
}

/* ---- IQ4_XS: 8 sub-blocks of 32, non-linear levels ---------------------------------------- */

/* The 8 scales ls[k] - 32 of an IQ4_XS block as int16 in both 128-bit lanes (so that
 * scales_group(v, k) broadcasts scale k to the whole vector). The 4-bit low parts (nibble k
 * of scales_l) and the 2-bit high parts (bits 2k of scales_h) are spread to byte k by
 * shifts and masks. */
static inline __m256i scales_iq4_xs(const struct lg_block_iq4_xs *b)
{
    uint32_t sl;
    memcpy(&sl, b->scales_l, 4);
    uint64_t lo = sl, hi = b->scales_h;
    lo = (lo | lo << 16) & 0x0000ffff0000ffffull;
    lo = (lo | lo << 8) & 0x00ff00ff00ff00ffull;
    lo = (lo | lo << 4) & 0x0f0f0f0f0f0f0f0full;
    hi = (hi | hi << 24) & 0x000000ff000000ffull;
    hi = (hi | hi << 12) & 0x000f000f000f000full;
    hi = (hi | hi << 6) & 0x0303030303030303ull;
    __m128i ls = _mm_sub_epi8(_mm_cvtsi64_si128((long long)(lo | hi << 4)), _mm_set1_epi8(32));
    return _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(ls));
}

/* Sub-block k of 32: qs[16k + j] low nibble -> element 32k + j, high -> 32k + 16 + j, mapped
 * through the levels; times y; times the scale sc. */
static inline __m256i group_iq4(const uint8_t *qs, const int8_t *y, __m256i tab, __m256i sc)
{
    __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)qs);
    __m256i nib =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(15));
    __m256i q = _mm256_shuffle_epi8(tab, nib);
    __m256i yv = load32(y);
    /* |y| (<= 128 as u8) times q with y's sign: exact for every int8 y, and a pair of
     * products stays within int16 (2 * 128 * 127) */
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(yv), _mm256_sign_epi8(q, yv));
    return _mm256_madd_epi16(p, sc);
}

static float avx2_iq4_xs(const void *w, const void *a, int64_t n)
{
    const struct lg_block_iq4_xs *x = w;
    const struct lg_block_q8_k *y = a;
    const __m256i tab = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)(const void *)lg_kvalues_iq4nl));
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {
        const struct lg_block_iq4_xs *b = &x[ib];
        const int8_t *yq = y[ib].qs;
        __m256i sc = scales_iq4_xs(b);
        __m256i s0 = group_iq4(b->qs, yq, tab, scales_group(sc, 0));
        __m256i s1 = group_iq4(b->qs + 16, yq + 32, tab, scales_group(sc, 1));
        s0 = _mm256_add_epi32(s0, group_iq4(b->qs + 32, yq + 64, tab, scales_group(sc, 2)));
        s1 = _mm256_add_epi32(s1, group_iq4(b->qs + 48, yq + 96, tab, scales_group(sc, 3)));
        s0 = _mm256_add_epi32(s0, group_iq4(b->qs + 64, yq + 128, tab, scales_group(sc, 4)));
        s1 = _mm256_add_epi32(s1, group_iq4(b->qs + 80, yq + 160, tab, scales_group(sc, 5)));
        s0 = _mm256_add_epi32(s0, group_iq4(b->qs + 96, yq + 192, tab, scales_group(sc, 6)));
        s1 = _mm256_add_epi32(s1, group_iq4(b->qs + 112, yq + 224, tab, scales_group(sc, 7)));
        s += y[ib].d * (f16(b->d) * (float)total1(_mm256_add_epi32(s0, s1)));
    }
    return s;
}

/* ---- BF16 x BF16 -------------------------------------------------------------------------- */

/* Products per exactness check (steps of 16): larger chunks spread the check's cost thinner,
 * smaller ones fall back to the sequential path for less when a chunk is not exact. */
enum { BF16_CHUNK_LOG = 7, BF16_CHUNK = 1 << BF16_CHUNK_LOG };

/* Whether s + any subset of a chunk's products is exactly representable as a double, given
 * the largest exponent field e_max among the products and a lower bound e_min of the smallest
 * among the nonzero ones (UINT32_MAX when all are zero).
 * A finite normal product p of two bf16 values is their exact product (at most 16 significant
 * bits), so it is a multiple of 2^(E - 142) (E its exponent field, |p| < 2^(E - 126)); a chunk
 * of them sums to less than 2^(E_max - 126 + BF16_CHUNK_LOG). s = m 2^(es - 1075) is a
 * multiple of 2^(es - 1075 + ctz m).
 * If everything is a multiple of 2^L and |s| + sum |p| <= 2^(L + 53), every partial sum is an
 * integer times 2^L below 2^53 in magnitude: exact. Subnormal, infinite or NaN products (and a
 * non-finite s) are left to the sequential path. */
static inline int chunk_is_exact(double s, uint32_t e_max, uint32_t e_min)
{
    if (e_min == UINT32_MAX)
        return 1; /* all products are +-0: s + 0 is what the reference computes too */
    if (e_max >= 255 || e_min == 0)
        return 0;
    int lo = (int)e_min - 142, top = (int)e_max - 126 + BF16_CHUNK_LOG;
    if (s != 0.0) {
        uint64_t u;
        memcpy(&u, &s, 8);
        int es = (int)((u >> 52) & 0x7ff);
        if (es == 0 || es == 0x7ff)
            return 0;
        uint64_t m = (u & ((1ull << 52) - 1)) | (1ull << 52);
        int ls = es - 1075 + __builtin_ctzll(m);
        if (ls < lo)
            lo = ls;
        if (es - 1022 > top) /* |s| < 2^(es - 1022) */
            top = es - 1022;
    }
    return top + 1 <= lo + 53;
}

static inline uint32_t hmax_u32(__m256i v)
{
    __m128i q = _mm_max_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    q = _mm_max_epu32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_max_epu32(q, _mm_shuffle_epi32(q, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(q);
}

static inline uint32_t hmin_u32(__m256i v)
{
    __m128i q = _mm_min_epu32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    q = _mm_min_epu32(q, _mm_shuffle_epi32(q, 0x4e));
    q = _mm_min_epu32(q, _mm_shuffle_epi32(q, 0xb1));
    return (uint32_t)_mm_cvtsi128_si32(q);
}

static inline double hsum_pd(__m256d v)
{
    __m128d q = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

/* Running extremes of 8 products' bits without the sign, b = |p| bits << 1 (exponent field in
 * the top byte; as unsigned ints they order like |p|): hi = max b, lo = min (b - 1), where a
 * zero wraps to UINT32_MAX and a nonzero keeps its exponent field or (mantissa 0) one less,
 * which only makes chunk_is_exact stricter. */
static inline void bits_range(__m256 p, __m256i *hi, __m256i *lo)
{
    __m256i b = _mm256_slli_epi32(_mm256_castps_si256(p), 1);
    *hi = _mm256_max_epu32(*hi, b);
    *lo = _mm256_min_epu32(*lo, _mm256_add_epi32(b, _mm256_set1_epi32(-1)));
}

static float avx2_bf16(const void *w, const void *a, int64_t n)
{
    const uint16_t *x = w, *y = a;
    const __m256i z = _mm256_setzero_si256();
    double s = 0.0;
    int64_t i = 0;
    for (; i + BF16_CHUNK <= n; i += BF16_CHUNK) {
        /* bf16 -> f32 is "<< 16": interleaving zeros below each value gives the floats in the
         * order 0-3, 8-11 | 4-7, 12-15 of each 16; x and y alike, so the products are the
         * reference's, permuted. Their double sum is taken along the way and kept only if
         * the chunk turns out exact (the sequential path recomputes them in order). */
        __m256i hi = z, lo = _mm256_set1_epi32(-1);
        __m256d acc[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                          _mm256_setzero_pd()};
        for (int k = 0; k < BF16_CHUNK; k += 16) {
            __m256i vx = load32(x + i + k), vy = load32(y + i + k);
            __m256 p0 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(z, vx)),
                                      _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, vy)));
            __m256 p1 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(z, vx)),
                                      _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, vy)));
            bits_range(p0, &hi, &lo);
            bits_range(p1, &hi, &lo);
            acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(p0)));
            acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps(p0, 1)));
            acc[2] = _mm256_add_pd(acc[2], _mm256_cvtps_pd(_mm256_castps256_ps128(p1)));
            acc[3] = _mm256_add_pd(acc[3], _mm256_cvtps_pd(_mm256_extractf128_ps(p1, 1)));
        }
        uint32_t b_hi = hmax_u32(hi), b_lo = hmin_u32(lo);
        if (chunk_is_exact(s, b_hi >> 24, b_lo == UINT32_MAX ? UINT32_MAX : b_lo >> 24)) {
            s += hsum_pd(
                _mm256_add_pd(_mm256_add_pd(acc[0], acc[1]), _mm256_add_pd(acc[2], acc[3])));
        } else {
            for (int64_t j = i; j < i + BF16_CHUNK; j++)
                s += (double)(bf16(x[j]) * bf16(y[j]));
        }
    }
    for (; i < n; i++)
        s += (double)(bf16(x[i]) * bf16(y[i]));
    return (float)s;
}

/* ---- F32 x F32: lg_kern_dot_f32's order ---------------------------------------------------- */

static float avx2_f32(const void *w, const void *a, int64_t n)
{
    const float *x = w, *y = a;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    /* ((acc0 + acc4) + (acc1 + acc5)) + ((acc2 + acc6) + (acc3 + acc7)) */
    float h[4];
    _mm_storeu_ps(h, _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
    float s = (h[0] + h[1]) + (h[2] + h[3]);
    for (; i < n; i++)
        s += x[i] * y[i];
    return s;
}

void lg_qdot_avx2_more(lg_vec_dot_fn dot[LG_QTYPE_COUNT])
{
    dot[LG_QTYPE_Q2_K] = avx2_q2_k;
    dot[LG_QTYPE_Q3_K] = avx2_q3_k;
    dot[LG_QTYPE_IQ4_XS] = avx2_iq4_xs;
    dot[LG_QTYPE_BF16] = avx2_bf16;
    dot[LG_QTYPE_F32] = avx2_f32;
}
