/* attn_avx2.c: AVX2 attention over an F32 / F16 / Q8_0 / Q4_0 KV cache.
 *
 * Same algorithm and the same floating-point operations, in the same order, as ref_attention
 * (kern/ref.c), so the output is bit-identical to the reference: q.k is summed in 8 lanes
 * (lane j takes elements i with i % 8 == j, one fused multiply-add per step) and reduced as
 * ((0+4)+(1+5))+((2+6)+(3+7)); V is accumulated element by element in key order, one fused
 * multiply-add per key. Stored values are widened exactly (F16 with F16C, int8 / nibbles times
 * the block scale d, products that fit in f32). The softmax is lg_kern_attn_softmax (no
 * subnormal weights) computed 8 lanes at a time. What the vectors buy is the conversion: 8
 * keys' elements per instruction instead of a call per element, and V accumulated in registers
 * over all keys for 64 output dims at a time. (Computing q.k for 8 keys at once measured 9% slower:
 * out-of-order execution already overlaps the keys' independent sums.) (token, head) pairs
 * are dealt to the threads in turn (pair p to thread p % nth), so that the long causal rows of
 * a prefill chunk's last tokens do not all land on one thread.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/vexp.h"
#include "quant/quant.h"

static inline float hsum_ref_order(__m256 acc)
{
    float a[8];
    _mm256_storeu_ps(a, acc);
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

static inline __m256 load_f16x8(const uint8_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)p));
}

/* An f16 block scale, widened by F16C (exact, as lg_f16_to_f32). */
static inline float f16_scale(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Q8_0 block (d16, qs[32]): elements 8g..8g+7 as d * q. */
static inline __m256 q8_0_x8(const uint8_t *blk, __m256 d, int g)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + 8 * g));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), d);
}

/* Q4_0 block (d16, qs[16]): element j < 16 is the low nibble of qs[j], element 16 + j the high
 * one; group g (elements 8g..8g+7) as d * (nibble - 8). */
static inline __m256 q4_0_x8(const uint8_t *blk, __m256 d, int g)
{
    __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 2 + 8 * (g & 1)));
    __m256i n = _mm256_cvtepu8_epi32(b);
    n = g < 2 ? _mm256_and_si256(n, _mm256_set1_epi32(15)) : _mm256_srli_epi32(n, 4);
    n = _mm256_sub_epi32(n, _mm256_set1_epi32(8));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(n), d);
}

/* ---- the attention softmax ------------------------------------------------------------------ */

/* lg_kern_attn_softmax's weight of z = score - max (kern/ref.c: attn_exp and the cut), 8 lanes:
 * lg_exp8 (kern/vexp.h) is the same operations, each rounded once as there. */
static inline __m256 attn_exp8(__m256 z)
{
    const __m256 lo = _mm256_set1_ps((float)LG_ATTN_EXP_MIN);
    const __m256 keep = _mm256_cmp_ps(z, lo, _CMP_NLT_UQ); /* !(z < lo): kept, NaN included */
    const __m256 nan = _mm256_cmp_ps(z, z, _CMP_UNORD_Q);
    /* z >= lo where it is used: lg_exp8's clamps change nothing there */
    __m256 e = lg_exp8(_mm256_max_ps(z, lo));
    e = _mm256_blendv_ps(e, z, nan);
    return _mm256_and_ps(e, keep);
}

/* lg_kern_attn_softmax bit for bit (the double sum in the same 8 lanes: elements i..i+3 in one
 * register of 4 doubles, i+4..i+7 in another). A tail of n % 8 goes through the same vector
 * code on a copy padded with x[0] (max) or zeros (weights 0 add +0: exact). */
static void attn_softmax8(float *x, int64_t n)
{
    if (n <= 0)
        return;
    const int64_t nv = n / 8 * 8, nt = n - nv;
    float t[8];
    __m256 vmx = _mm256_set1_ps(x[0]);
    for (int64_t i = 0; i < nv; i += 8)
        vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(x + i));
    if (nt) {
        for (int j = 0; j < 8; j++)
            t[j] = j < nt ? x[nv + j] : x[0];
        vmx = _mm256_max_ps(vmx, _mm256_loadu_ps(t));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmx), _mm256_extractf128_ps(vmx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 mx = _mm256_set1_ps(_mm_cvtss_f32(m4));
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (int64_t i = 0; i < nv; i += 8) {
        const __m256 e = attn_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mx));
        _mm256_storeu_ps(x + i, e);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (nt) {
        for (int j = 0; j < 8; j++)
            t[j] = j < nt ? x[nv + j] : 0.0f;
        _mm256_storeu_ps(t, attn_exp8(_mm256_sub_ps(_mm256_loadu_ps(t), mx)));
        for (int j = (int)nt; j < 8; j++)
            t[j] = 0.0f;
        memcpy(x + nv, t, (size_t)nt * sizeof(float));
        const __m256 e = _mm256_loadu_ps(t);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double b[4];
    _mm256_storeu_pd(b, _mm256_add_pd(a0, a1)); /* b_j = lane j + lane j+4 */
    const double sum = (b[0] + b[1]) + (b[2] + b[3]);
    const float inv = (float)(1.0 / sum);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < nv; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (int64_t i = nv; i < n; i++)
        x[i] *= inv;
}

static float dot_f32(const float *q, const float *k, int64_t d)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(k + i), acc);
    float s = hsum_ref_order(acc);
    for (; i < d; i++)
        s = fmaf(q[i], k[i], s);
    return s;
}

static float dot_f16(const float *q, const uint8_t *k, int64_t d)
{
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8)
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load_f16x8(k + 2 * i), acc);
    float s = hsum_ref_order(acc);
    for (; i < d; i++)
        s = fmaf(q[i], f16_scale(k + 2 * i), s);
    return s;
}

static float dot_q8_0(const float *q, const uint8_t *k, int64_t d)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 32, k += 34) {
        __m256 s = _mm256_set1_ps(f16_scale(k));
        for (int g = 0; g < 4; g++)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8 * g), q8_0_x8(k, s, g), acc);
    }
    return hsum_ref_order(acc);
}

static float dot_q4_0(const float *q, const uint8_t *k, int64_t d)
{
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < d; i += 32, k += 18) {
        __m256 s = _mm256_set1_ps(f16_scale(k));
        for (int g = 0; g < 4; g++)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8 * g), q4_0_x8(k, s, g), acc);
    }
    return hsum_ref_order(acc);
}

static float dot_one(const float *q, const uint8_t *k, uint32_t type, int64_t d)
{
    switch (type) {
    case LG_QTYPE_F16:
        return dot_f16(q, k, d);
    case LG_QTYPE_Q8_0:
        return dot_q8_0(q, k, d);
    case LG_QTYPE_Q4_0:
        return dot_q4_0(q, k, d);
    default:
        return dot_f32(q, (const float *)(const void *)k, d);
    }
}

/* Eight consecutive V elements e0..e0+7 of one head (e0 % 8 == 0). */
static inline __attribute__((always_inline)) __m256 v_x8(const uint8_t *v, uint32_t type, int64_t e0)
{
    switch (type) {
    case LG_QTYPE_F16:
        return load_f16x8(v + 2 * e0);
    case LG_QTYPE_Q8_0: {
        const uint8_t *blk = v + (size_t)(e0 / 32) * 34;
        return q8_0_x8(blk, _mm256_set1_ps(f16_scale(blk)), (int)(e0 % 32 / 8));
    }
    case LG_QTYPE_Q4_0: {
        const uint8_t *blk = v + (size_t)(e0 / 32) * 18;
        return q4_0_x8(blk, _mm256_set1_ps(f16_scale(blk)), (int)(e0 % 32 / 8));
    }
    default:
        return _mm256_loadu_ps((const float *)(const void *)v + e0);
    }
}

enum { TILE = 8 }; /* registers of 8 outputs each: 64 output dims per pass over the keys */

/* o[0..d) = sum_j w[j] * V_j, summed in key order from 0 (as memset + ref_axpy per key).
 * Keys lo.. live in slots (lo + j) % n_slots: walked as runs of consecutive slots (no division
 * per key). Always inlined into attn_v_typed's switch so that each storage type gets its own
 * loop. */
static inline __attribute__((always_inline)) void attn_v(float *o, const uint8_t *vb, size_t vs, size_t head_off, uint32_t type,
                   const float *w, int64_t lo, int64_t n_keys, int64_t n_slots, int64_t d)
{
    int64_t e = 0;
    for (; e + 8 * TILE <= d; e += 8 * TILE) {
        __m256 acc[TILE];
        for (int r = 0; r < TILE; r++)
            acc[r] = _mm256_setzero_ps();
        for (int64_t j = 0, slot = lo % n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (n_slots - slot < n_keys - j ? n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs + head_off; j < end; j++, v += vs) {
                __m256 wj = _mm256_set1_ps(w[j]);
                for (int r = 0; r < TILE; r++)
                    acc[r] = _mm256_fmadd_ps(wj, v_x8(v, type, e + 8 * r), acc[r]);
            }
        }
        for (int r = 0; r < TILE; r++)
            _mm256_storeu_ps(o + e + 8 * r, acc[r]);
    }
    for (; e + 8 <= d; e += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t j = 0, slot = lo % n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (n_slots - slot < n_keys - j ? n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs + head_off; j < end; j++, v += vs)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(w[j]), v_x8(v, type, e), acc);
        }
        _mm256_storeu_ps(o + e, acc);
    }
    for (; e < d; e++) { /* F32 / F16 tails (block types have d % 32 == 0) */
        float acc = 0.0f;
        for (int64_t j = 0, slot = lo % n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (n_slots - slot < n_keys - j ? n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs + head_off; j < end; j++, v += vs) {
                float x = type == LG_QTYPE_F16 ? f16_scale(v + 2 * e)
                                               : ((const float *)(const void *)v)[e];
                acc = fmaf(w[j], x, acc);
            }
        }
        o[e] = acc;
    }
}

static void attn_v_typed(float *o, const uint8_t *vb, size_t vs, size_t head_off,
                         uint32_t type, const float *w, int64_t lo, int64_t n_keys,
                         int64_t n_slots, int64_t d)
{
    switch (type) {
    case LG_QTYPE_F16:
        attn_v(o, vb, vs, head_off, LG_QTYPE_F16, w, lo, n_keys, n_slots, d);
        break;
    case LG_QTYPE_Q8_0:
        attn_v(o, vb, vs, head_off, LG_QTYPE_Q8_0, w, lo, n_keys, n_slots, d);
        break;
    case LG_QTYPE_Q4_0:
        attn_v(o, vb, vs, head_off, LG_QTYPE_Q4_0, w, lo, n_keys, n_slots, d);
        break;
    default:
        attn_v(o, vb, vs, head_off, LG_QTYPE_F32, w, lo, n_keys, n_slots, d);
        break;
    }
}

/* ---- grouped-query attention: the G query heads of one KV head and one token together ----
 * The loops over g are unrolled (G is a constant in each specialisation) so that the G
 * accumulators stay in registers. */

/* Scores of G heads (q: G rows of d, consecutive) against keys lo.. in type `type`:
 * sc[g * n_keys + j] = scale * q_g . K_j (softcapped), each equal bit for bit to dot_one's
 * (same lanes, same order; d % 8 == 0). A key's 8 elements are widened once for all G heads. */
static inline __attribute__((always_inline)) void qk_group(const struct lg_attn_args *a,
                                                          const float *q, const uint8_t *kb,
                                                          size_t ks, int64_t lo, int64_t n_keys,
                                                          float *sc, uint32_t type, int G)
{
    const int64_t d = a->head_dim;
    for (int64_t j = 0, slot = lo % a->n_slots; j < n_keys; slot = 0) {
        int64_t end = j + (a->n_slots - slot < n_keys - j ? a->n_slots - slot : n_keys - j);
        for (const uint8_t *k = kb + (size_t)slot * ks; j < end; j++, k += ks) {
            __m256 acc[8];
            _Pragma("GCC unroll 8")
            for (int g = 0; g < G; g++)
                acc[g] = _mm256_setzero_ps();
            for (int64_t e = 0; e < d; e += 8) {
                const __m256 kx = v_x8(k, type, e);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < G; g++)
                    acc[g] = _mm256_fmadd_ps(_mm256_loadu_ps(q + g * d + e), kx, acc[g]);
            }
            _Pragma("GCC unroll 8")
            for (int g = 0; g < G; g++) {
                float s = hsum_ref_order(acc[g]) * a->scale;
                if (a->softcap > 0.0f)
                    s = a->softcap * tanhf(s / a->softcap);
                sc[g * n_keys + j] = s;
            }
        }
    }
}

/* out_g[0..d) = sum_j w_g[j] V_j for the G heads (rows of d, consecutive), in key order from 0
 * as attn_v; a key's 8 elements are widened once for all G heads. */
static inline __attribute__((always_inline)) void v_group(const struct lg_attn_args *a,
                                                         float *out, const uint8_t *vb, size_t vs,
                                                         int64_t lo, int64_t n_keys,
                                                         const float *w, uint32_t type, int G)
{
    const int64_t d = a->head_dim;
    for (int64_t e = 0; e < d; e += 8) {
        __m256 acc[8];
        _Pragma("GCC unroll 8")
        for (int g = 0; g < G; g++)
            acc[g] = _mm256_setzero_ps();
        for (int64_t j = 0, slot = lo % a->n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (a->n_slots - slot < n_keys - j ? a->n_slots - slot : n_keys - j);
            for (const uint8_t *v = vb + (size_t)slot * vs; j < end; j++, v += vs) {
                const __m256 vx = v_x8(v, type, e);
                _Pragma("GCC unroll 8")
                for (int g = 0; g < G; g++)
                    acc[g] = _mm256_fmadd_ps(_mm256_set1_ps(w[g * n_keys + j]), vx, acc[g]);
            }
        }
        _Pragma("GCC unroll 8")
        for (int g = 0; g < G; g++)
            _mm256_storeu_ps(out + g * d + e, acc[g]);
    }
}

/* The specialisations: storage type x group size (2, 4 or 8), each with its own loops. */
#define LG_ATTN_TYPES(F, G)                                                                    \
    switch (type) {                                                                            \
    case LG_QTYPE_F16:                                                                         \
        F(LG_QTYPE_F16, G);                                                                    \
        break;                                                                                 \
    case LG_QTYPE_Q8_0:                                                                        \
        F(LG_QTYPE_Q8_0, G);                                                                   \
        break;                                                                                 \
    case LG_QTYPE_Q4_0:                                                                        \
        F(LG_QTYPE_Q4_0, G);                                                                   \
        break;                                                                                 \
    default:                                                                                   \
        F(LG_QTYPE_F32, G);                                                                    \
        break;                                                                                 \
    }
#define LG_ATTN_GROUPS(F)                                                                      \
    switch (G) {                                                                               \
    case 2:                                                                                    \
        LG_ATTN_TYPES(F, 2);                                                                   \
        break;                                                                                 \
    case 4:                                                                                    \
        LG_ATTN_TYPES(F, 4);                                                                   \
        break;                                                                                 \
    default:                                                                                   \
        LG_ATTN_TYPES(F, 8);                                                                   \
        break;                                                                                 \
    }

static void qk_group_typed(const struct lg_attn_args *a, const float *q, const uint8_t *kb,
                           size_t ks, int64_t lo, int64_t n_keys, float *sc, uint32_t type, int G)
{
#define QK(T, GG) qk_group(a, q, kb, ks, lo, n_keys, sc, T, GG)
    LG_ATTN_GROUPS(QK)
#undef QK
}

static void v_group_typed(const struct lg_attn_args *a, float *out, const uint8_t *vb, size_t vs,
                          int64_t lo, int64_t n_keys, const float *w, uint32_t type, int G)
{
#define VG(T, GG) v_group(a, out, vb, vs, lo, n_keys, w, T, GG)
    LG_ATTN_GROUPS(VG)
#undef VG
}

/* Heads per group to process together: the whole group (2, 4 or 8 query heads per KV head)
 * when there are enough (token, KV head) units to keep nth threads busy, the head size is a
 * multiple of 8 and the thread's scratch holds the group's scores; else 1 (pair by pair). */
static int group_heads(const struct lg_attn_args *a, int nth)
{
    const int64_t group = a->n_head / a->n_head_kv;
    if (!(group == 2 || group == 4 || group == 8) || a->head_dim % 8 != 0 ||
        a->n_tok * a->n_head_kv < 2 * (int64_t)nth)
        return 1;
    int64_t last = a->pos0 + a->n_tok; /* keys seen by the last query */
    int64_t max_keys = a->window > 0 && a->window < last ? a->window : last;
    return group * max_keys <= a->scratch_stride ? (int)group : 1;
}

static void avx2_attention(const struct lg_attn_args *a, int ith, int nth)
{
    const int64_t group = a->n_head / a->n_head_kv, d = a->head_dim;
    const size_t hbk = lg_attn_head_bytes(a->type_k, d), hbv = lg_attn_head_bytes(a->type_v, d);
    const size_t ks = a->k_stride ? a->k_stride : (size_t)a->n_head_kv * hbk;
    const size_t vs = a->v_stride ? a->v_stride : (size_t)a->n_head_kv * hbv;
    const uint8_t *kb = a->k, *vb = a->v;
    float *sc = a->scratch + (int64_t)ith * a->scratch_stride;
    const int G = group_heads(a, nth);
    if (G > 1) { /* units (token, KV head), dealt in turn */
        for (int64_t u = ith; u < a->n_tok * a->n_head_kv; u += nth) {
            int64_t t = u / a->n_head_kv, kvh = u % a->n_head_kv, h0 = kvh * group;
            int64_t pos = a->pos0 + t;
            int64_t lo = a->window > 0 && pos - a->window + 1 > 0 ? pos - a->window + 1 : 0;
            int64_t n_keys = pos - lo + 1;
            qk_group_typed(a, a->q + (t * a->n_head + h0) * d, kb + (size_t)kvh * hbk, ks, lo,
                           n_keys, sc, a->type_k, G);
            for (int g = 0; g < G; g++)
                attn_softmax8(sc + g * n_keys, n_keys);
            v_group_typed(a, a->out + (t * a->n_head + h0) * d, vb + (size_t)kvh * hbv, vs, lo,
                          n_keys, sc, a->type_v, G);
        }
        return;
    }
    const int64_t n_pairs = a->n_tok * a->n_head;
    for (int64_t p = ith; p < n_pairs; p += nth) {
        int64_t t = p / a->n_head, h = p % a->n_head, kvh = h / group;
        int64_t pos = a->pos0 + t;
        int64_t lo = 0;
        if (a->window > 0 && pos - a->window + 1 > 0)
            lo = pos - a->window + 1;
        int64_t n_keys = pos - lo + 1;
        const float *q = a->q + (t * a->n_head + h) * d;
        for (int64_t j = 0, slot = lo % a->n_slots; j < n_keys; slot = 0) {
            int64_t end = j + (a->n_slots - slot < n_keys - j ? a->n_slots - slot : n_keys - j);
            const uint8_t *k = kb + (size_t)slot * ks + (size_t)kvh * hbk;
            for (; j < end; j++, k += ks) {
                float s = dot_one(q, k, a->type_k, d) * a->scale;
                if (a->softcap > 0.0f)
                    s = a->softcap * tanhf(s / a->softcap);
                sc[j] = s;
            }
        }
        attn_softmax8(sc, n_keys);
        attn_v_typed(a->out + (t * a->n_head + h) * d, vb, vs, (size_t)kvh * hbv, a->type_v, sc,
                     lo, n_keys, a->n_slots, d);
    }
}

void lg_attn_fill_avx2(struct lg_kern *k)
{
    k->attention = avx2_attention;
}
