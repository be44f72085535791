/* ops_avx512.c: AVX-512 versions of the element-wise kernels around the matrix products
 * (issue #10): rmsnorm, rope_neox, gelu_tanh, mul, axpy and the activation quantizers, 16 lanes
 * at a time with masked loads and stores for the tails. Built with the AVX-512 flags (F, BW,
 * VL, DQ); the avx512 table takes them (kern/kern.c: lg_kern_fill_avx512), other slots keep
 * the AVX2 ones. Q8_0 conversion: 4 blocks at a time (their maxima, scales and f16 scales
 * computed together).
 *
 * What each one promises:
 * - mul, axpy, rope_neox: bit-identical to the reference (one rounding per operation, no FMA).
 * - rmsnorm: the sum of squares in double as the reference (each square exact), in 32 lanes
 *   instead of one chain, so only the rounding of that double sum can differ; the scaling is
 *   the reference's two float multiplies. Within 3e-7 of the reference (tests/unit/test_kern.c).
 * - act_quantize (Q8_0, Q8_K, F16 activations): bit-identical to lg_act_quantize (ties away
 *   from zero, NaN and infinities as the reference; Q8_K's nearest_int on the bit pattern and
 *   the first element of maximal |x|). Other formats call the reference.
 * - gelu_tanh: x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3), with the AVX2 file's exp
 *   polynomial (2^n applied by vscalefps) and the division done as a reciprocal estimate
 *   refined on the quotient (q + (x - q d) / d: within about an ulp of x / d; vdivps on 512 bits
 *   issues once per ~10 cycles, which would make it the bottleneck). Within 3e-7 |x| of the
 *   exact value (tests/unit/test_kern.c); not bit-identical to the reference or to the AVX2
 *   version (they differ in about 0.4% of elements, by an ulp).
 * Each element is computed the same way wherever it sits in the array (tails are masked vector
 * operations), so a token's result does not depend on how many tokens share a call.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "kern/vexp.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"

static inline __mmask16 tail_mask(int64_t n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

/* ---- gelu ----------------------------------------------------------------------------------- */

/* Where -2u > Z_MAX gelu(x) is below 1e-33 |x|: it is returned as 0 (the reference's 1 + tanh u
 * rounds to 0 not much further out), which also keeps 1 / (1 + e^z) away from subnormals
 * (slow microcode assists). */
#define GELU_Z_MAX 80.0f

static inline __m512 gelu16(__m512 x)
{
    __m512 x3 = _mm512_mul_ps(_mm512_mul_ps(x, x), x);
    __m512 inner = _mm512_fmadd_ps(_mm512_set1_ps(0.044715f), x3, x);
    __m512 z = _mm512_mul_ps(inner, _mm512_set1_ps(-2.0f * 0.7978845608028654f));
    __mmask16 big = _mm512_cmp_ps_mask(z, _mm512_set1_ps(GELU_Z_MAX), _CMP_GT_OQ);
    __m512 zc = _mm512_max_ps(_mm512_min_ps(z, _mm512_set1_ps(GELU_Z_MAX)),
                              _mm512_set1_ps(-87.0f));
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), lg_exp16(zc)); /* in [1, e^80] */
    __m512 r = _mm512_rcp14_ps(d);                                 /* 2^-14 relative */
    __m512 q = _mm512_mul_ps(x, r);
    __m512 res = _mm512_fnmadd_ps(q, d, x); /* x - q d */
    q = _mm512_fmadd_ps(res, r, q);
    /* NaN and +-infinity pass through (the refinement would make inf - inf); -infinity then
     * has z > Z_MAX and becomes 0 below, as in the reference */
    __mmask16 odd = _mm512_cmp_ps_mask(_mm512_abs_ps(x), _mm512_set1_ps(INFINITY), _CMP_NLT_UQ);
    q = _mm512_mask_mov_ps(q, odd, x);
    return _mm512_maskz_mov_ps((__mmask16)~big, q);
}

static void avx512_gelu_tanh(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(x + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* ---- element-wise --------------------------------------------------------------------------- */

static void avx512_mul(float *y, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i)));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, a + i),
                                                      _mm512_maskz_loadu_ps(m, b + i)));
    }
}

static void avx512_axpy(float *y, const float *x, float s, int64_t n)
{
    const __m512 vs = _mm512_set1_ps(s);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i),
                                              _mm512_mul_ps(vs, _mm512_loadu_ps(x + i))));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm512_mask_storeu_ps(y + i, m,
                              _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
                                            _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(m, x + i))));
    }
}

static void avx512_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    /* squares exact in double, four independent sums (one chain would wait on the adder's
     * latency) */
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    __m512d s2 = _mm512_setzero_pd(), s3 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __m512d b = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        __m512d c = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 16));
        __m512d d = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 24));
        s0 = _mm512_fmadd_pd(a, a, s0); /* exact products: FMA rounds as mul + add */
        s1 = _mm512_fmadd_pd(b, b, s1);
        s2 = _mm512_fmadd_pd(c, c, s2);
        s3 = _mm512_fmadd_pd(d, d, s3);
    }
    for (; i + 8 <= n; i += 8) {
        __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        s0 = _mm512_fmadd_pd(a, a, s0);
    }
    __m512d s01 = _mm512_add_pd(s0, s1), s23 = _mm512_add_pd(s2, s3);
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s01, s23));
    for (; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m512 vs = _mm512_set1_ps(scale);
    i = 0;
    if (w) {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs),
                                                  _mm512_loadu_ps(w + i)));
        if (i < n) {
            __mmask16 m = tail_mask(n - i);
            _mm512_mask_storeu_ps(y + i, m,
                                  _mm512_mul_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs),
                                                _mm512_maskz_loadu_ps(m, w + i)));
        }
    } else {
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vs));
        if (i < n) {
            __mmask16 m = tail_mask(n - i);
            _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vs));
        }
    }
}

/* NeoX RoPE (kern.h): per head, pairs (i, i + n_rot/2) rotated by cs[i] = (cos, sin), 16 pairs
 * at a time; a c - b s and b c + a s as separate multiplies and an add, as the reference. */
static void avx512_rope_neox(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot,
                             const float *cs)
{
    const int64_t half = n_rot / 2;
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                           30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (int64_t h = 0; h < n_head; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i += 16) {
            const int64_t r = half - i < 16 ? half - i : 16; /* pairs in this step */
            const __mmask16 m = tail_mask(r);
            const __mmask16 m0 = tail_mask(2 * r), m1 = tail_mask(2 * r > 16 ? 2 * r - 16 : 0);
            const __m512 p0 = _mm512_maskz_loadu_ps(m0, cs + 2 * i);
            const __m512 p1 = _mm512_maskz_loadu_ps(m1, cs + 2 * i + 16);
            const __m512 c = _mm512_permutex2var_ps(p0, even, p1);
            const __m512 sn = _mm512_permutex2var_ps(p0, odd, p1);
            const __m512 a = _mm512_maskz_loadu_ps(m, v + i);
            const __m512 b = _mm512_maskz_loadu_ps(m, v + i + half);
            _mm512_mask_storeu_ps(v + i, m,
                                  _mm512_sub_ps(_mm512_mul_ps(a, c), _mm512_mul_ps(b, sn)));
            _mm512_mask_storeu_ps(v + i + half, m,
                                  _mm512_add_ps(_mm512_mul_ps(b, c), _mm512_mul_ps(a, sn)));
        }
    }
}

/* ---- activation quantizers ------------------------------------------------------------------ */

/* max(|x|, acc), NaN lanes of x ignored (vmaxps returns the second operand when either is NaN;
 * acc is never NaN), as the reference's `if (|x| > amax)`. */
static inline __m512 absmax_acc(__m512 acc, __m512 x)
{
    return _mm512_max_ps(_mm512_abs_ps(x), acc);
}

/* The reference's round_i8 on 16 lanes, as int32: roundf (half away from zero), 0 unless
 * -1e9 < v < 1e9 (NaN included); the caller saturates to int8. Half away from zero as
 * trunc(v + copysign(0.49999997, v)): the largest float below 1/2 pushes exact halves over
 * (v + 0.49999997 is within 2^-25 of the next integer and rounds to it) but nothing below a
 * half (an integer plus less than a half stays below the next integer after rounding); checked
 * against trunc / compare / adjust on all 2^32 bit patterns. */
static inline __m512i round_i8x16(__m512 v)
{
    const __m512 h = _mm512_or_ps(_mm512_set1_ps(0.49999997f),
                                  _mm512_and_ps(_mm512_set1_ps(-0.0f), v));
    const __mmask16 ok = _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(1e9f), _CMP_LT_OQ);
    return _mm512_maskz_cvttps_epi32(ok, _mm512_add_ps(v, h));
}

/* One Q8_0 block from its two registers and its 1 / d broadcast. */
static inline void q8_0_qs(uint8_t *qs, __m512 v0, __m512 v1, __m512 vid)
{
    _mm_storeu_si128((__m128i *)(void *)qs,
                     _mm512_cvtsepi32_epi8(round_i8x16(_mm512_mul_ps(v0, vid))));
    _mm_storeu_si128((__m128i *)(void *)(qs + 16),
                     _mm512_cvtsepi32_epi8(round_i8x16(_mm512_mul_ps(v1, vid))));
}

static void quant_q8_0(const float *x, void *dst, int64_t n)
{
    const size_t bs = sizeof(struct lg_block_q8_0);
    uint8_t *out = dst;
    int64_t ib = 0;
    /* four blocks at a time: their maxima, scales and f16 scales computed together, lane-wise
     * (the same IEEE operations as one block at a time) */
    for (; ib + 4 <= n / 32; ib += 4, x += 128, out += 4 * bs) {
        __m512 v[8], m[4];
        for (int j = 0; j < 8; j++)
            v[j] = _mm512_loadu_ps(x + 16 * j);
        for (int b = 0; b < 4; b++)
            m[b] = absmax_acc(absmax_acc(_mm512_setzero_ps(), v[2 * b]), v[2 * b + 1]);
        /* quarter k of t: block k's 4-lane partial maxima, then its maximum in every lane */
        __m512 t0 = _mm512_max_ps(_mm512_shuffle_f32x4(m[0], m[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(m[0], m[1], _MM_SHUFFLE(3, 2, 3, 2)));
        __m512 t1 = _mm512_max_ps(_mm512_shuffle_f32x4(m[2], m[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_f32x4(m[2], m[3], _MM_SHUFFLE(3, 2, 3, 2)));
        __m512 t = _mm512_max_ps(_mm512_shuffle_f32x4(t0, t1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(t0, t1, _MM_SHUFFLE(3, 1, 3, 1)));
        t = _mm512_max_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));
        t = _mm512_max_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
        const __m512 d = _mm512_div_ps(t, _mm512_set1_ps(127.0f));
        const __mmask16 nz = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_NEQ_UQ);
        const __m512 id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0f), d);
        uint16_t dh[16];
        _mm256_storeu_si256((__m256i *)(void *)dh, _mm512_cvtps_ph(d, _MM_FROUND_TO_NEAREST_INT));
        memcpy(out, &dh[0], 2);
        memcpy(out + bs, &dh[4], 2);
        memcpy(out + 2 * bs, &dh[8], 2);
        memcpy(out + 3 * bs, &dh[12], 2);
        q8_0_qs(out + 2, v[0], v[1], _mm512_shuffle_f32x4(id, id, 0x00));
        q8_0_qs(out + bs + 2, v[2], v[3], _mm512_shuffle_f32x4(id, id, 0x55));
        q8_0_qs(out + 2 * bs + 2, v[4], v[5], _mm512_shuffle_f32x4(id, id, 0xaa));
        q8_0_qs(out + 3 * bs + 2, v[6], v[7], _mm512_shuffle_f32x4(id, id, 0xff));
    }
    for (; ib < n / 32; ib++, x += 32, out += bs) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        __m512 am = absmax_acc(absmax_acc(_mm512_setzero_ps(), v0), v1);
        const float d = _mm512_reduce_max_ps(am) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t dh = lg_f32_to_f16(d);
        memcpy(out, &dh, 2);
        q8_0_qs(out + 2, v0, v1, _mm512_set1_ps(id));
    }
}

static void quant_q8_k(const float *x, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t ib = 0; ib < n / 256; ib++, x += 256, out += sizeof(struct lg_block_q8_k)) {
        struct lg_block_q8_k b;
        memset(&b, 0, sizeof b);
        __m512 am = _mm512_setzero_ps();
        for (int g = 0; g < 16; g++)
            am = absmax_acc(am, _mm512_loadu_ps(x + 16 * g));
        const float amax = _mm512_reduce_max_ps(am);
        if (amax != 0.0f) {
            /* the reference keeps the first element whose |x| is the maximum */
            const __m512 va = _mm512_set1_ps(amax);
            float max = 0.0f;
            for (int g = 0; g < 16; g++) {
                __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + 16 * g));
                __mmask16 m = _mm512_cmp_ps_mask(a, va, _CMP_EQ_OQ);
                if (m) {
                    max = x[16 * g + __builtin_ctz((unsigned)m)];
                    break;
                }
            }
            const float iscale = -127.0f / max;
            const __m512 vis = _mm512_set1_ps(iscale);
            const __m512 magic = _mm512_set1_ps(12582912.0f);
            for (int g = 0; g < 16; g++) { /* 16 elements = one bsum */
                __m512 t = _mm512_add_ps(_mm512_mul_ps(vis, _mm512_loadu_ps(x + 16 * g)), magic);
                __m512i i = _mm512_sub_epi32(
                    _mm512_and_si512(_mm512_castps_si512(t), _mm512_set1_epi32(0x007fffff)),
                    _mm512_set1_epi32(0x00400000));
                i = _mm512_max_epi32(i, _mm512_set1_epi32(-128));
                i = _mm512_min_epi32(i, _mm512_set1_epi32(127));
                b.bsums[g] = (int16_t)_mm512_reduce_add_epi32(i);
                _mm_storeu_si128((__m128i *)(void *)(b.qs + 16 * g), _mm512_cvtsepi32_epi8(i));
            }
            b.d = 1.0f / iscale;
        }
        memcpy(out, &b, sizeof b);
    }
}

static void quant_f16(const float *x, void *dst, int64_t n)
{
    uint8_t *out = dst;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(void *)(out + 2 * i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n) {
        __mmask16 m = tail_mask(n - i);
        _mm256_mask_storeu_epi16(out + 2 * i, m,
                                 _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                                 _MM_FROUND_TO_NEAREST_INT));
    }
}

static void avx512_act_quantize(uint32_t w, const float *x, void *dst, int64_t n)
{
    switch (lg_act_type(w)) {
    case LG_QTYPE_Q8_0:
        quant_q8_0(x, dst, n);
        break;
    case LG_QTYPE_Q8_K:
        quant_q8_k(x, dst, n);
        break;
    case LG_QTYPE_F16:
        quant_f16(x, dst, n);
        break;
    default:
        lg_act_quantize(w, x, dst, n);
        break;
    }
}

void lg_kern_fill_avx512(struct lg_kern *k)
{
    k->rmsnorm = avx512_rmsnorm;
    k->rope_neox = avx512_rope_neox;
    k->gelu_tanh = avx512_gelu_tanh;
    k->mul = avx512_mul;
    k->axpy = avx512_axpy;
    k->act_quantize = avx512_act_quantize;
    lg_attn_fill_avx512(k);
}
