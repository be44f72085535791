/* attn_avx512.c: AVX-512 attention for prefill over an F32 / F16 / Q8_0 / Q4_0 KV cache.
 *
 * Bit-identical to ref_attention (kern/ref.c) like the AVX2 kernel: q.k keeps the reference's 8
 * lanes (lane j sums elements i with i % 8 == j, in order, one fused multiply-add per step) and
 * its reduction ((0+4)+(1+5))+((2+6)+(3+7)); V is accumulated element by element in key order,
 * one fused multiply-add per key; the softmax is lg_kern_attn_softmax, 16 lanes at a time.
 * The 16 lanes of a register therefore hold two independent 8-lane sums in the scores: one
 * query head against two keys ([k_j | k_j+1] times [q | q]), so each FMA does the work of two
 * AVX2 ones. The grouped-query path takes the G = 2, 4 or 8 query heads of a KV head and 2 or 4
 * key pairs at once (8 or 16 accumulators): a key's elements are widened once for all G heads,
 * a head's q elements loaded once for all keys of the step. The 8-lane sums are reduced 16 at a
 * time by a transpose (shuffles between registers, then the reference's three adds).
 * V: 32 output dims per pass over the keys, 16 per register, for all G heads.
 * Anything else (decode's few (token, KV head) units, group sizes other than 2/4/8, head sizes
 * not a multiple of 16, a scratch too small for a group) runs the AVX2 kernel, which is also
 * bit-identical to the reference.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/vexp.h"
#include "quant/quant.h"

static void (*attn_avx2)(const struct lg_attn_args *a, int ith, int nth);

/* An f16 block scale, widened exactly. */
static inline float f16_scale(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

static inline size_t blk_bytes(uint32_t type)
{
    return type == LG_QTYPE_Q8_0 ? 34 : 18;
}

/* The scale vector of two keys' block at element e: [d0 x 8 | d1 x 8] (block types only). */
static inline __m512 pair_scale(const uint8_t *k0, const uint8_t *k1, uint32_t type, int64_t e)
{
    const size_t bb = blk_bytes(type);
    return _mm512_insertf32x8(_mm512_set1_ps(f16_scale(k0 + (size_t)(e / 32) * bb)),
                              _mm256_set1_ps(f16_scale(k1 + (size_t)(e / 32) * bb)), 1);
}

/* Elements e..e+7 (e % 8 == 0) of two keys, widened exactly: [k0 | k1]. ds: pair_scale. */
static inline __attribute__((always_inline)) __m512 k_pair(const uint8_t *k0, const uint8_t *k1,
                                                         uint32_t type, int64_t e, __m512 ds)
{
    switch (type) {
    case LG_QTYPE_F16: {
        __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(k0 + 2 * e));
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(k1 + 2 * e));
        return _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(a), b, 1));
    }
    case LG_QTYPE_Q8_0: {
        const size_t o = (size_t)(e / 32) * 34 + 2 + (size_t)(e % 32);
        __m128i a = _mm_loadl_epi64((const __m128i *)(const void *)(k0 + o));
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(k1 + o));
        __m512 f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_unpacklo_epi64(a, b)));
        return _mm512_mul_ps(f, ds);
    }
    case LG_QTYPE_Q4_0: {
        /* element j < 16 of a block: low nibble of qs[j]; 16 + j: high nibble */
        const int g = (int)(e % 32 / 8);
        const size_t o = (size_t)(e / 32) * 18 + 2 + (size_t)(8 * (g & 1));
        __m128i a = _mm_loadl_epi64((const __m128i *)(const void *)(k0 + o));
        __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(k1 + o));
        __m512i n = _mm512_cvtepu8_epi32(_mm_unpacklo_epi64(a, b));
        n = g < 2 ? _mm512_and_si512(n, _mm512_set1_epi32(15)) : _mm512_srli_epi32(n, 4);
        n = _mm512_sub_epi32(n, _mm512_set1_epi32(8));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(n), ds);
    }
    default:
        return _mm512_insertf32x8(
            _mm512_castps256_ps512(_mm256_loadu_ps((const float *)(const void *)k0 + e)),
            _mm256_loadu_ps((const float *)(const void *)k1 + e), 1);
    }
}

/* Elements e..e+15 (e % 16 == 0) of one V head, widened exactly. */
static inline __attribute__((always_inline)) __m512 v_x16(const uint8_t *v, uint32_t type,
                                                         int64_t e)
{
    switch (type) {
    case LG_QTYPE_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(v + 2 * e)));
    case LG_QTYPE_Q8_0: {
        const uint8_t *blk = v + (size_t)(e / 32) * 34;
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 2 + e % 32));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)),
                             _mm512_set1_ps(f16_scale(blk)));
    }
    case LG_QTYPE_Q4_0: {
        const uint8_t *blk = v + (size_t)(e / 32) * 18;
        __m512i n = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 2)));
        n = e % 32 == 0 ? _mm512_and_si512(n, _mm512_set1_epi32(15)) : _mm512_srli_epi32(n, 4);
        n = _mm512_sub_epi32(n, _mm512_set1_epi32(8));
        return _mm512_mul_ps(_mm512_cvtepi32_ps(n), _mm512_set1_ps(f16_scale(blk)));
    }
    default:
        return _mm512_loadu_ps((const float *)(const void *)v + e);
    }
}

/* ---- the 8-lane reductions, 16 at a time --------------------------------------------------- *
 * A register of scores holds two 8-lane sums (128-bit quarters Q0 Q1 | Q2 Q3: lanes 0-3 and 4-7
 * of the first sum, then of the second). The reference reduces a sum a0..a7 as
 * b_l = a_l + a_(l+4), c0 = b0 + b1, c1 = b2 + b3, c0 + c1; the steps below do each stage for
 * several sums at once, moving the partial results between registers with shuffles. */

/* Stage 1 on A and B: [b(A.sum0) | b(A.sum1) | b(B.sum0) | b(B.sum1)], 4 lanes each. */
static inline __m512 red1(__m512 A, __m512 B)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(A, B, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Stages 2 and 3 within each quarter: x[0] + x[1], x[2] + x[3] of U and of V interleaved. */
static inline __m512 red2(__m512 U, __m512 V)
{
    return _mm512_add_ps(_mm512_shuffle_ps(U, V, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(U, V, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The 16 sums of z[0..7] (two each): lane 4L + m holds sum (L & 1) of z[2m + (L >> 1)]. */
static inline __m512 reduce16(const __m512 *z)
{
    __m512 u0 = red1(z[0], z[1]), u1 = red1(z[2], z[3]);
    __m512 u2 = red1(z[4], z[5]), u3 = red1(z[6], z[7]);
    return red2(red2(u0, u1), red2(u2, u3));
}

/* ---- the attention softmax ------------------------------------------------------------------ */

/* lg_kern_attn_softmax's weight of z = score - max (kern/ref.c: attn_exp and the cut), 16 lanes:
 * lg_exp16 (kern/vexp.h) is the same operations, each rounded once as there. */
static inline __m512 attn_exp16(__m512 z)
{
    const __m512 lo = _mm512_set1_ps((float)LG_ATTN_EXP_MIN);
    const __mmask16 cut = _mm512_cmp_ps_mask(z, lo, _CMP_LT_OQ);
    const __mmask16 nan = _mm512_cmp_ps_mask(z, z, _CMP_UNORD_Q);
    /* z in [lo, 0] where it is used: 2^n normal, so vscalefps forms the same product */
    __m512 e = lg_exp16(_mm512_max_ps(z, lo));
    e = _mm512_mask_mov_ps(e, nan, z);
    return _mm512_maskz_mov_ps((__mmask16)~cut, e);
}

/* lg_kern_attn_softmax bit for bit (the double sum in the same 8 lanes: a register of 8 doubles
 * takes elements i..i+7, then i+8..i+15). */
static void attn_softmax16(float *x, int64_t n)
{
    if (n <= 0)
        return;
    const __m512 x0 = _mm512_set1_ps(x[0]);
    __m512 vmx = x0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        vmx = _mm512_max_ps(vmx, _mm512_loadu_ps(x + i));
    const __mmask16 tail = (__mmask16)((1u << (n - i)) - 1u);
    if (i < n)
        vmx = _mm512_max_ps(vmx, _mm512_mask_loadu_ps(x0, tail, x + i));
    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmx));
    __m512d acc = _mm512_setzero_pd();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = attn_exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), mx));
        _mm512_storeu_ps(x + i, e);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    if (i < n) { /* lanes past n add +0 (exact) */
        const __m512 e = _mm512_maskz_mov_ps(
            tail, attn_exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), mx)));
        _mm512_mask_storeu_ps(x + i, tail, e);
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    double a[8];
    _mm512_storeu_pd(a, acc);
    const double sum = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
    const __m512 inv = _mm512_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n)
        _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
}

/* ---- grouped-query attention: G query heads of one KV head, one token ---------------------- */

/* Scores sc[g * n_keys + j] = scale * q_g . K_j (softcapped) for the G heads (q: G rows of d)
 * against keys lo.. (slot (lo + j) % n_slots), 2P keys per step; d % 16 == 0. */
static inline __attribute__((always_inline)) void qk_group(const struct lg_attn_args *a,
                                                          const float *q, const uint8_t *kb,
                                                          size_t ks, int64_t lo, int64_t n_keys,
                                                          float *sc, uint32_t type, int G, int P)
{
    const int64_t d = a->head_dim;
    const int NZ = G * P; /* accumulators: 8 or 16 */
    int64_t slot0 = lo % a->n_slots;
    for (int64_t j0 = 0; j0 < n_keys; j0 += 2 * P) {
        const uint8_t *kp[8];
        _Pragma("GCC unroll 8")
        for (int i = 0; i < 2 * P; i++) {
            int64_t j = j0 + i < n_keys ? j0 + i : n_keys - 1; /* past the end: a repeat */
            int64_t slot = slot0 + j;
            if (slot >= a->n_slots)
                slot -= a->n_slots;
            kp[i] = kb + (size_t)slot * ks;
        }
        __m512 acc[16];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < NZ; i++)
            acc[i] = _mm512_setzero_ps();
        __m512 ds[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                        _mm512_setzero_ps()};
        for (int64_t e = 0; e < d; e += 8) {
            if ((type == LG_QTYPE_Q8_0 || type == LG_QTYPE_Q4_0) && e % 32 == 0) {
                _Pragma("GCC unroll 4")
                for (int p = 0; p < P; p++)
                    ds[p] = pair_scale(kp[2 * p], kp[2 * p + 1], type, e);
            }
            __m512 kx[4];
            _Pragma("GCC unroll 4")
            for (int p = 0; p < P; p++)
                kx[p] = k_pair(kp[2 * p], kp[2 * p + 1], type, e, ds[p]);
            _Pragma("GCC unroll 8")
            for (int g = 0; g < G; g++) {
                const __m512 qg = _mm512_broadcast_f32x8(_mm256_loadu_ps(q + g * d + e));
                _Pragma("GCC unroll 4")
                for (int p = 0; p < P; p++)
                    acc[p * G + g] = _mm512_fmadd_ps(qg, kx[p], acc[p * G + g]);
            }
        }
        const __m512 vscale = _mm512_set1_ps(a->scale);
        _Pragma("GCC unroll 2")
        for (int r = 0; r < NZ; r += 8) {
            float t[16];
            _mm512_storeu_ps(t, _mm512_mul_ps(reduce16(acc + r), vscale));
            _Pragma("GCC unroll 16")
            for (int l = 0; l < 16; l++) {
                const int L = l >> 2, m = l & 3;
                const int i = r + 2 * m + (L >> 1); /* accumulator p * G + g */
                const int p = i / G, g = i % G;
                const int64_t j = j0 + 2 * p + (L & 1);
                if (j < n_keys) {
                    float s = t[l];
                    if (a->softcap > 0.0f)
                        s = a->softcap * tanhf(s / a->softcap);
                    sc[g * n_keys + j] = s;
                }
            }
        }
    }
}

/* out_g[0..d) = sum_j w_g[j] V_j for the G heads (rows of d), in key order from 0 (as the
 * reference's memset + axpy per key); 32 dims per pass over the keys; d % 16 == 0. */
static inline __attribute__((always_inline)) void v_group(const struct lg_attn_args *a,
                                                         float *out, const uint8_t *vb, size_t vs,
                                                         int64_t lo, int64_t n_keys,
                                                         const float *w, uint32_t type, int G)
{
    const int64_t d = a->head_dim;
    int64_t e = 0;
    for (; e + 32 <= d; e += 32) {
        __m512 acc[16];
        _Pragma("GCC unroll 16")
        for (int i = 0; i < 2 * G; i++)
            acc[i] = _mm512_setzero_ps();
        for (int64_t j = 0, slot = lo % a->n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (a->n_slots - slot < n_keys - j ? a->n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs; j < end; j++, v += vs) {
                const __m512 v0 = v_x16(v, type, e), v1 = v_x16(v, type, e + 16);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < G; g++) {
                    const __m512 wj = _mm512_set1_ps(w[g * n_keys + j]);
                    acc[2 * g] = _mm512_fmadd_ps(wj, v0, acc[2 * g]);
                    acc[2 * g + 1] = _mm512_fmadd_ps(wj, v1, acc[2 * g + 1]);
                }
            }
        }
        _Pragma("GCC unroll 8")
        for (int g = 0; g < G; g++) {
            _mm512_storeu_ps(out + g * d + e, acc[2 * g]);
            _mm512_storeu_ps(out + g * d + e + 16, acc[2 * g + 1]);
        }
    }
    if (e < d) { /* 16 dims left */
        __m512 acc[8];
        _Pragma("GCC unroll 8")
        for (int g = 0; g < G; g++)
            acc[g] = _mm512_setzero_ps();
        for (int64_t j = 0, slot = lo % a->n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (a->n_slots - slot < n_keys - j ? a->n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs; j < end; j++, v += vs) {
                const __m512 v0 = v_x16(v, type, e);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < G; g++)
                    acc[g] = _mm512_fmadd_ps(_mm512_set1_ps(w[g * n_keys + j]), v0, acc[g]);
            }
        }
        _Pragma("GCC unroll 8")
        for (int g = 0; g < G; g++)
            _mm512_storeu_ps(out + g * d + e, acc[g]);
    }
}

/* The specialisations: storage type x group size (2, 4 or 8), each with its own loops. Key
 * pairs per step: 4 for G = 2 and 4 (8 and 16 accumulators), 2 for G = 8 (16). */
#define LG_ATTN_TYPES(F, G, P)                                                                 \
    switch (type) {                                                                            \
    case LG_QTYPE_F16:                                                                         \
        F(LG_QTYPE_F16, G, P);                                                                 \
        break;                                                                                 \
    case LG_QTYPE_Q8_0:                                                                        \
        F(LG_QTYPE_Q8_0, G, P);                                                                \
        break;                                                                                 \
    case LG_QTYPE_Q4_0:                                                                        \
        F(LG_QTYPE_Q4_0, G, P);                                                                \
        break;                                                                                 \
    default:                                                                                   \
        F(LG_QTYPE_F32, G, P);                                                                 \
        break;                                                                                 \
    }
#define LG_ATTN_GROUPS(F)                                                                      \
    switch (G) {                                                                               \
    case 2:                                                                                    \
        LG_ATTN_TYPES(F, 2, 4);                                                                \
        break;                                                                                 \
    case 4:                                                                                    \
        LG_ATTN_TYPES(F, 4, 4);                                                                \
        break;                                                                                 \
    default:                                                                                   \
        LG_ATTN_TYPES(F, 8, 2);                                                                \
        break;                                                                                 \
    }

static void qk_group_typed(const struct lg_attn_args *a, const float *q, const uint8_t *kb,
                           size_t ks, int64_t lo, int64_t n_keys, float *sc, uint32_t type, int G)
{
#define QK(T, GG, PP) qk_group(a, q, kb, ks, lo, n_keys, sc, T, GG, PP)
    LG_ATTN_GROUPS(QK)
#undef QK
}

static void v_group_typed(const struct lg_attn_args *a, float *out, const uint8_t *vb, size_t vs,
                          int64_t lo, int64_t n_keys, const float *w, uint32_t type, int G)
{
#define VG(T, GG, PP) v_group(a, out, vb, vs, lo, n_keys, w, T, GG)
    LG_ATTN_GROUPS(VG)
#undef VG
}

/* The group size this kernel takes (2, 4 or 8), or 0 for the AVX2 kernel (see the top). */
static int group_heads(const struct lg_attn_args *a, int nth)
{
    const int64_t group = a->n_head / a->n_head_kv;
    if (!(group == 2 || group == 4 || group == 8) || a->head_dim % 16 != 0 ||
        a->n_tok * a->n_head_kv < 2 * (int64_t)nth)
        return 0;
    int64_t last = a->pos0 + a->n_tok; /* keys seen by the last query */
    int64_t max_keys = a->window > 0 && a->window < last ? a->window : last;
    return group * max_keys <= a->scratch_stride ? (int)group : 0;
}

static void avx512_attention(const struct lg_attn_args *a, int ith, int nth)
{
    const int G = group_heads(a, nth);
    if (!G) {
        attn_avx2(a, ith, nth);
        return;
    }
    const int64_t d = a->head_dim;
    const size_t hbk = lg_attn_head_bytes(a->type_k, d), hbv = lg_attn_head_bytes(a->type_v, d);
    const size_t ks = a->k_stride ? a->k_stride : (size_t)a->n_head_kv * hbk;
    const size_t vs = a->v_stride ? a->v_stride : (size_t)a->n_head_kv * hbv;
    const uint8_t *kb = a->k, *vb = a->v;
    float *sc = a->scratch + (int64_t)ith * a->scratch_stride;
    /* units (token, KV head) dealt in turn, so that the long causal rows of the chunk's last
     * tokens spread over the threads */
    for (int64_t u = ith; u < a->n_tok * a->n_head_kv; u += nth) {
        int64_t t = u / a->n_head_kv, kvh = u % a->n_head_kv, h0 = kvh * G;
        int64_t pos = a->pos0 + t;
        int64_t lo = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
        int64_t n_keys = pos - lo + 1;
        qk_group_typed(a, a->q + (t * a->n_head + h0) * d, kb + (size_t)kvh * hbk, ks, lo,
                       n_keys, sc, a->type_k, G);
        for (int g = 0; g < G; g++)
            attn_softmax16(sc + g * n_keys, n_keys);
        v_group_typed(a, a->out + (t * a->n_head + h0) * d, vb + (size_t)kvh * hbv, vs, lo,
                      n_keys, sc, a->type_v, G);
    }
}

void lg_attn_fill_avx512(struct lg_kern *k)
{
    struct lg_kern t;
    memset(&t, 0, sizeof t);
    lg_attn_fill_avx2(&t);
    attn_avx2 = t.attention;
    k->attention = avx512_attention;
}
