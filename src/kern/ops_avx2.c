/* ops_avx2.c: AVX2 versions of the element-wise kernels around the matrix products (issue #10):
 * rmsnorm, gelu_tanh, mul, axpy, the final logit softcap and the activation quantizers that
 * feed the quantized dots.
 *
 * What each one promises against kern/ref.c:
 * - mul, axpy: bit-identical (one rounding per operation as in C without FP contraction, no
 *   FMA).
 * - rmsnorm: the sum of squares is accumulated in double as the reference does (each product
 *   of two floats is exact in double), in 8 lanes instead of one chain, so only the rounding of
 *   that double sum can differ; the scaling is the reference's two float multiplies.
 * - act_quantize (Q8_0, Q8_K, F16 activations): bit-identical to lg_act_quantize, including
 *   NaN, infinities and ties (roundf rounds half away from zero; Q8_K uses ggml's nearest_int
 *   trick, reproduced on the bit pattern). Other formats call the reference.
 * - gelu_tanh, softcap: a vector exp (Cody-Waite reduction, degree-6 polynomial, ~2 ulp) in
 *   place of libm's tanhf: within a few ulp of the reference, not bit-identical. gelu uses
 *   0.5 x (1 + tanh u) = x / (1 + exp(-2u)), which has no cancellation.
 * Every function computes an element the same way wherever it sits in the array (tails go
 * through the vector code on a padded copy, or through scalar code doing the same operations),
 * so a token's result does not depend on how many tokens share the call: decode, prefill and
 * batches stay bit-identical within this ISA.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "kern/vexp.h"
#include "quant/quant.h"
#include "quant/quant_blocks.h"

/* ---- element-wise --------------------------------------------------------------------------- */

static inline __m256 gelu8(__m256 x)
{
    /* u = sqrt(2/pi) (x + 0.044715 x^3); gelu = x / (1 + e^(-2u)) */
    __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
    __m256 inner = _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x);
    __m256 z = _mm256_mul_ps(inner, _mm256_set1_ps(-2.0f * 0.7978845608028654f));
    __m256 g = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), lg_exp8(z)));
    /* e^z overflows (lg_exp8 clamps): the reference's 1 + tanh u is 0 there */
    return _mm256_andnot_ps(_mm256_cmp_ps(z, _mm256_set1_ps(88.0f), _CMP_GT_OQ), g);
}

static void avx2_gelu_tanh(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(t, gelu8(_mm256_loadu_ps(t)));
        memcpy(x + i, t, (size_t)(n - i) * sizeof(float));
    }
}

/* cap * tanh(x / cap), tanh(y) = sign(y) (1 - 2 / (e^(2|y|) + 1)): absolute error ~1e-7 cap. */
static inline __m256 softcap8(__m256 x, __m256 cap, __m256 inv_cap)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 y = _mm256_mul_ps(x, inv_cap);
    __m256 ay = _mm256_andnot_ps(sign, y);
    __m256 e = lg_exp8(_mm256_add_ps(ay, ay));
    __m256 t = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                             _mm256_div_ps(_mm256_set1_ps(2.0f),
                                           _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
    t = _mm256_or_ps(t, _mm256_and_ps(sign, y));
    /* NaN in, NaN out (lg_exp8's clamps would turn it into a number) */
    t = _mm256_blendv_ps(t, y, _mm256_cmp_ps(y, y, _CMP_UNORD_Q));
    return _mm256_mul_ps(cap, t);
}

static void avx2_softcap(float *x, int64_t n, float cap)
{
    const __m256 c = _mm256_set1_ps(cap), ic = _mm256_set1_ps(1.0f / cap);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, softcap8(_mm256_loadu_ps(x + i), c, ic));
    if (i < n) {
        float t[8] = {0};
        memcpy(t, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(t, softcap8(_mm256_loadu_ps(t), c, ic));
        memcpy(x + i, t, (size_t)(n - i) * sizeof(float));
    }
}

static void avx2_mul(float *y, const float *a, const float *b, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    for (; i < n; i++)
        y[i] = a[i] * b[i];
}

static void avx2_axpy(float *y, const float *x, float s, int64_t n)
{
    const __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(vs, _mm256_loadu_ps(x + i))));
    for (; i < n; i++)
        y[i] += s * x[i];
}

static void avx2_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(a, a, s0); /* exact products: FMA rounds as mul + add */
        s1 = _mm256_fmadd_pd(b, b, s1);
    }
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(s0, s1));
    double ss = (l[0] + l[2]) + (l[1] + l[3]);
    for (; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    const __m256 vs = _mm256_set1_ps(scale);
    i = 0;
    if (w) {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                                  _mm256_loadu_ps(w + i)));
        for (; i < n; i++)
            y[i] = x[i] * scale * w[i];
    } else {
        for (; i + 8 <= n; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vs));
        for (; i < n; i++)
            y[i] = x[i] * scale;
    }
}

/* ---- activation quantizers ------------------------------------------------------------------ */

/* max |x| over 8 lanes, NaN lanes ignored (as the reference's `if (|x| > amax)`):
 * _mm256_max_ps(a, b) returns b when either is NaN, and acc is never NaN. */
static inline __m256 absmax_acc(__m256 acc, __m256 x)
{
    return _mm256_max_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x), acc);
}

static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* The reference's round_i8 on 8 lanes, as int32: roundf (half away from zero) clamped to
 * [-128, 127] (by the caller's saturating packs), 0 unless -1e9 < v < 1e9 (NaN included). */
static inline __m256i round_i8x8(__m256 v)
{
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(v, t); /* exact */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 away = _mm256_cmp_ps(_mm256_andnot_ps(sign, frac), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(sign, v));
    t = _mm256_add_ps(t, _mm256_and_ps(away, one));
    __m256 ok = _mm256_and_ps(_mm256_cmp_ps(v, _mm256_set1_ps(-1e9f), _CMP_GT_OQ),
                              _mm256_cmp_ps(v, _mm256_set1_ps(1e9f), _CMP_LT_OQ));
    return _mm256_cvttps_epi32(_mm256_and_ps(t, ok));
}

/* 32 int32 (4 vectors of 8, in order) saturated to int8, in order. */
static inline __m256i pack_i8x32(__m256i a, __m256i b, __m256i c, __m256i d)
{
    __m256i ab = _mm256_packs_epi32(a, b); /* a0-3 b0-3 | a4-7 b4-7 */
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i r = _mm256_packs_epi16(ab, cd); /* a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7 */
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quant_q8_0(const float *x, void *dst, int64_t n)
{
    uint8_t *out = dst;
    for (int64_t ib = 0; ib < n / 32; ib++, x += 32, out += sizeof(struct lg_block_q8_0)) {
        __m256 v[4];
        __m256 am = _mm256_setzero_ps();
        for (int g = 0; g < 4; g++) {
            v[g] = _mm256_loadu_ps(x + 8 * g);
            am = absmax_acc(am, v[g]);
        }
        const float d = hmax8(am) / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int g = 0; g < 4; g++)
            q[g] = round_i8x8(_mm256_mul_ps(v[g], vid));
        uint16_t dh = lg_f32_to_f16(d);
        memcpy(out, &dh, 2);
        _mm256_storeu_si256((__m256i *)(void *)(out + 2), pack_i8x32(q[0], q[1], q[2], q[3]));
    }
}

static inline int32_t hsum_i32x8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

static void quant_q8_k(const float *x, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / 256; ib++, x += 256, out += sizeof(struct lg_block_q8_k)) {
        struct lg_block_q8_k b;
        memset(&b, 0, sizeof b);
        __m256 am = _mm256_setzero_ps();
        for (int g = 0; g < 32; g++)
            am = absmax_acc(am, _mm256_loadu_ps(x + 8 * g));
        const float amax = hmax8(am);
        if (amax != 0.0f) {
            /* the reference keeps the first element whose |x| is the maximum */
            const __m256 va = _mm256_set1_ps(amax);
            float max = 0.0f;
            for (int g = 0; g < 32; g++) {
                __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * g));
                int m = _mm256_movemask_ps(_mm256_cmp_ps(a, va, _CMP_EQ_OQ));
                if (m) {
                    max = x[8 * g + __builtin_ctz((unsigned)m)];
                    break;
                }
            }
            const float iscale = -127.0f / max;
            const __m256 vis = _mm256_set1_ps(iscale);
            const __m256 magic = _mm256_set1_ps(12582912.0f);
            for (int g = 0; g < 8; g++) { /* 32 elements = 2 bsums */
                __m256i q[4];
                for (int h = 0; h < 4; h++) {
                    __m256 t = _mm256_add_ps(_mm256_mul_ps(vis, _mm256_loadu_ps(x + 32 * g + 8 * h)),
                                             magic);
                    __m256i i = _mm256_sub_epi32(
                        _mm256_and_si256(_mm256_castps_si256(t), _mm256_set1_epi32(0x007fffff)),
                        _mm256_set1_epi32(0x00400000));
                    i = _mm256_max_epi32(i, _mm256_set1_epi32(-128));
                    q[h] = _mm256_min_epi32(i, _mm256_set1_epi32(127));
                }
                b.bsums[2 * g] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[0], q[1]));
                b.bsums[2 * g + 1] = (int16_t)hsum_i32x8(_mm256_add_epi32(q[2], q[3]));
                _mm256_storeu_si256((__m256i *)(void *)(b.qs + 32 * g),
                                    pack_i8x32(q[0], q[1], q[2], q[3]));
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
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) {
        uint16_t h = lg_f32_to_f16(x[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

static void avx2_act_quantize(uint32_t w, const float *x, void *dst, int64_t n)
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

void lg_kern_fill_avx2(struct lg_kern *k)
{
    k->rmsnorm = avx2_rmsnorm;
    k->gelu_tanh = avx2_gelu_tanh;
    k->mul = avx2_mul;
    k->axpy = avx2_axpy;
    k->softcap = avx2_softcap;
    k->act_quantize = avx2_act_quantize;
}
