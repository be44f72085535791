/* qdot_ref.c: scalar reference quantized dot products (see qdot.h).
 *
 * Every weight block is decoded to small integers (q) with integer scales, multiplied with the
 * int8 activations in int32, and only the block total is scaled in float, which is how ggml's
 * reference vec_dot functions compute (so the quantization error is the same; float rounding
 * differs only in summation order). Blocks are memcpy'd out: rows need no alignment.
 */
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant_blocks.h"

int lg_act_type(uint32_t w)
{
    switch (w) {
    case LG_QTYPE_Q4_0:
    case LG_QTYPE_Q5_0:
    case LG_QTYPE_Q8_0:
    case LG_QTYPE_IQ4_NL:
    case LG_QTYPE_MXFP4:
        return LG_QTYPE_Q8_0;
    case LG_QTYPE_Q4_1:
    case LG_QTYPE_Q5_1:
        return LG_QTYPE_Q8_1;
    case LG_QTYPE_Q2_K:
    case LG_QTYPE_Q3_K:
    case LG_QTYPE_Q4_K:
    case LG_QTYPE_Q5_K:
    case LG_QTYPE_Q6_K:
    case LG_QTYPE_IQ4_XS:
        return LG_QTYPE_Q8_K;
    case LG_QTYPE_F16:
    case LG_QTYPE_BF16:
    case LG_QTYPE_F32:
        return (int)w;
    default:
        return -1;
    }
}

size_t lg_act_row_bytes(uint32_t w, int64_t n)
{
    int a = lg_act_type(w);
    uint64_t b;
    if (a < 0 || n < 0 || lg_qtype_row_bytes((uint32_t)a, (uint64_t)n, &b) != LG_OK)
        return 0;
    return (size_t)b;
}

void lg_act_quantize(uint32_t w, const float *x, void *dst, int64_t n)
{
    int a = lg_act_type(w);
    uint16_t *h = dst;
    switch (a) {
    case LG_QTYPE_F32:
        memcpy(dst, x, (size_t)n * sizeof(float));
        break;
    case LG_QTYPE_F16:
        for (int64_t i = 0; i < n; i++)
            h[i] = lg_f32_to_f16(x[i]);
        break;
    case LG_QTYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            h[i] = lg_f32_to_bf16(x[i]);
        break;
    case LG_QTYPE_Q8_0:
        lg_quant_q8_0(x, dst, n);
        break;
    case LG_QTYPE_Q8_1:
        lg_quant_q8_1(x, dst, n);
        break;
    case LG_QTYPE_Q8_K:
        lg_quant_q8_k(x, dst, n);
        break;
    default:
        break;
    }
}

static int32_t dot_i8(const int8_t *a, const int8_t *b, int n)
{
    int32_t s = 0;
    for (int i = 0; i < n; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

/* ---- 32-element blocks against Q8_0 / Q8_1 ---------------------------------------------- */

/* Decodes the nibbles of a Q4_0-style block: q[j] = lo(qs[j]), q[j + 16] = hi(qs[j]). */
static void nibbles(const uint8_t *qs, int8_t *q)
{
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(qs[j] & 15);
        q[j + 16] = (int8_t)(qs[j] >> 4);
    }
}

static void add_high_bits(const uint8_t qh[4], int8_t *q)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    for (int j = 0; j < 32; j++)
        q[j] = (int8_t)(q[j] | (int8_t)(((h >> j) & 1) << 4));
}

/* The term block ib adds to the Q4_0 / Q8_0 dots: (float)isum * (dw * dy). Shared with the
 * R8 layout's scalar path (lg_qdot_ref_block), so both are the same arithmetic. */
static float term_q4_0(const void *w, const void *a)
{
    struct lg_block_q4_0 x;
    struct lg_block_q8_0 y;
    memcpy(&x, w, sizeof x);
    memcpy(&y, a, sizeof y);
    int8_t q[32];
    nibbles(x.qs, q);
    for (int j = 0; j < 32; j++)
        q[j] = (int8_t)(q[j] - 8);
    return (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d));
}

static float term_q8_0(const void *w, const void *a)
{
    struct lg_block_q8_0 x, y;
    memcpy(&x, w, sizeof x);
    memcpy(&y, a, sizeof y);
    return (float)dot_i8(x.qs, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d));
}

static float ref_q4_0(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++)
        s += term_q4_0((const uint8_t *)w + ib * sizeof(struct lg_block_q4_0),
                       (const uint8_t *)a + ib * sizeof(struct lg_block_q8_0));
    return s;
}

static float ref_q5_0(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q5_0 x;
        struct lg_block_q8_0 y;
        memcpy(&x, (const uint8_t *)w + ib * sizeof x, sizeof x);
        memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);
        int8_t q[32];
        nibbles(x.qs, q);
        add_high_bits(x.qh, q);
        for (int j = 0; j < 32; j++)
            q[j] = (int8_t)(q[j] - 16);
        s += (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d));
    }
    return s;
}

static float ref_q8_0(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++)
        s += term_q8_0((const uint8_t *)w + ib * sizeof(struct lg_block_q8_0),
                       (const uint8_t *)a + ib * sizeof(struct lg_block_q8_0));
    return s;
}

static float ref_iq4_nl(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_iq4_nl x;
        struct lg_block_q8_0 y;
        memcpy(&x, (const uint8_t *)w + ib * sizeof x, sizeof x);
        memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);
        int8_t q[32];
        nibbles(x.qs, q);
        for (int j = 0; j < 32; j++)
            q[j] = lg_kvalues_iq4nl[q[j]];
        s += (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d));
    }
    return s;
}

static float ref_mxfp4(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_mxfp4 x;
        struct lg_block_q8_0 y;
        memcpy(&x, (const uint8_t *)w + ib * sizeof x, sizeof x);
        memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);
        int8_t q[32];
        nibbles(x.qs, q);
        for (int j = 0; j < 32; j++)
            q[j] = lg_kvalues_mxfp4[q[j]];
        s += (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(y.d) * lg_e8m0_to_f32_half(x.e));
    }
    return s;
}

static float ref_q4_1(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q4_1 x;
        struct lg_block_q8_1 y;
        memcpy(&x, (const uint8_t *)w + ib * sizeof x, sizeof x);
        memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);
        int8_t q[32];
        nibbles(x.qs, q);
        s += (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d)) +
             lg_f16_to_f32(x.m) * lg_f16_to_f32(y.s);
    }
    return s;
}

static float ref_q5_1(const void *w, const void *a, int64_t n)
{
    float s = 0.0f;
    for (int64_t ib = 0; ib < n / LG_QK; ib++) {
        struct lg_block_q5_1 x;
        struct lg_block_q8_1 y;
        memcpy(&x, (const uint8_t *)w + ib * sizeof x, sizeof x);
        memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);
        int8_t q[32];
        nibbles(x.qs, q);
        add_high_bits(x.qh, q);
        s += (float)dot_i8(q, y.qs, 32) * (lg_f16_to_f32(x.d) * lg_f16_to_f32(y.d)) +
             lg_f16_to_f32(x.m) * lg_f16_to_f32(y.s);
    }
    return s;
}

/* ---- 256-element super-blocks against Q8_K ---------------------------------------------- */

/* A decoded super-block: x[e] = d * sc[e/16] * q[e] - dmin * mn[e/16]. */
struct kblock {
    int8_t q[256];
    int32_t sc[16];
    int32_t mn[16];
    float d, dmin;
};

static float kdot(const struct kblock *b, const struct lg_block_q8_k *y)
{
    int32_t isum = 0, msum = 0;
    for (int k = 0; k < 16; k++) {
        isum += b->sc[k] * dot_i8(b->q + 16 * k, y->qs + 16 * k, 16);
        msum += b->mn[k] * (int32_t)y->bsums[k];
    }
    return y->d * (b->d * (float)isum - b->dmin * (float)msum);
}

/* 6-bit scale/min pair k of Q4_K / Q5_K. */
static void scale_min_k4(const uint8_t *s, int k, int32_t *sc, int32_t *m)
{
    if (k < 4) {
        *sc = s[k] & 63;
        *m = s[k + 4] & 63;
    } else {
        *sc = (s[k + 4] & 15) | ((s[k - 4] >> 6) << 4);
        *m = (s[k + 4] >> 4) | ((s[k] >> 6) << 4);
    }
}

static void dec_q2_k(const void *p, struct kblock *b)
{
    struct lg_block_q2_k x;
    memcpy(&x, p, sizeof x);
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++)
                b->q[128 * h + 32 * j + l] = (int8_t)((x.qs[32 * h + l] >> (2 * j)) & 3);
    for (int k = 0; k < 16; k++) {
        b->sc[k] = x.scales[k] & 15;
        b->mn[k] = x.scales[k] >> 4;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = lg_f16_to_f32(x.dmin);
}

static void dec_q3_k(const void *p, struct kblock *b)
{
    struct lg_block_q3_k x;
    memcpy(&x, p, sizeof x);
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                int low2 = (x.qs[32 * h + l] >> (2 * j)) & 3;
                int hb = (x.hmask[l] >> (4 * h + j)) & 1;
                b->q[128 * h + 32 * j + l] = (int8_t)(low2 - (hb ? 0 : 4));
            }
    for (int k = 0; k < 16; k++) {
        int lo = k < 8 ? x.scales[k] & 15 : x.scales[k - 8] >> 4;
        int hi = (x.scales[8 + k % 4] >> (2 * (k / 4))) & 3;
        b->sc[k] = (lo | hi << 4) - 32;
        b->mn[k] = 0;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = 0.0f;
}

static void dec_q4_k(const void *p, struct kblock *b)
{
    struct lg_block_q4_k x;
    memcpy(&x, p, sizeof x);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            b->q[64 * c + l] = (int8_t)(x.qs[32 * c + l] & 15);
            b->q[64 * c + 32 + l] = (int8_t)(x.qs[32 * c + l] >> 4);
        }
    for (int k = 0; k < 8; k++) {
        int32_t sc, m;
        scale_min_k4(x.scales, k, &sc, &m);
        b->sc[2 * k] = b->sc[2 * k + 1] = sc;
        b->mn[2 * k] = b->mn[2 * k + 1] = m;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = lg_f16_to_f32(x.dmin);
}

static void dec_q5_k(const void *p, struct kblock *b)
{
    struct lg_block_q5_k x;
    memcpy(&x, p, sizeof x);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            b->q[64 * c + l] = (int8_t)(x.qs[32 * c + l] & 15);
            b->q[64 * c + 32 + l] = (int8_t)(x.qs[32 * c + l] >> 4);
        }
    for (int e = 0; e < 256; e++)
        b->q[e] = (int8_t)(b->q[e] | (((x.qh[e % 32] >> (e / 32)) & 1) << 4));
    for (int k = 0; k < 8; k++) {
        int32_t sc, m;
        scale_min_k4(x.scales, k, &sc, &m);
        b->sc[2 * k] = b->sc[2 * k + 1] = sc;
        b->mn[2 * k] = b->mn[2 * k + 1] = m;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = lg_f16_to_f32(x.dmin);
}

static void dec_q6_k(const void *p, struct kblock *b)
{
    struct lg_block_q6_k x;
    memcpy(&x, p, sizeof x);
    for (int h = 0; h < 2; h++) {
        for (int s = 0; s < 2; s++)
            for (int l = 0; l < 64; l++)
                b->q[128 * h + 64 * s + l] = (int8_t)((x.ql[64 * h + l] >> (4 * s)) & 15);
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 32; l++) {
                int e = 128 * h + 32 * j + l;
                b->q[e] = (int8_t)((b->q[e] | (((x.qh[32 * h + l] >> (2 * j)) & 3) << 4)) - 32);
            }
    }
    for (int k = 0; k < 16; k++) {
        b->sc[k] = x.scales[k];
        b->mn[k] = 0;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = 0.0f;
}

static void dec_iq4_xs(const void *p, struct kblock *b)
{
    struct lg_block_iq4_xs x;
    memcpy(&x, p, sizeof x);
    for (int k = 0; k < 8; k++) {
        int ls = ((x.scales_l[k / 2] >> (4 * (k % 2))) & 15) | (((x.scales_h >> (2 * k)) & 3) << 4);
        for (int j = 0; j < 16; j++) {
            b->q[32 * k + j] = lg_kvalues_iq4nl[x.qs[16 * k + j] & 15];
            b->q[32 * k + 16 + j] = lg_kvalues_iq4nl[x.qs[16 * k + j] >> 4];
        }
        b->sc[2 * k] = b->sc[2 * k + 1] = ls - 32;
        b->mn[2 * k] = b->mn[2 * k + 1] = 0;
    }
    b->d = lg_f16_to_f32(x.d);
    b->dmin = 0.0f;
}

#define KDOT(name, blk, dec)                                                                   \
    static float name(const void *w, const void *a, int64_t n)                                 \
    {                                                                                          \
        float s = 0.0f;                                                                        \
        for (int64_t ib = 0; ib < n / LG_QK_K; ib++) {                                         \
            struct kblock b;                                                                   \
            struct lg_block_q8_k y;                                                            \
            dec((const uint8_t *)w + ib * sizeof(blk), &b);                                    \
            memcpy(&y, (const uint8_t *)a + ib * sizeof y, sizeof y);                          \
            s += kdot(&b, &y);                                                                 \
        }                                                                                      \
        return s;                                                                              \
    }

KDOT(ref_q2_k, struct lg_block_q2_k, dec_q2_k)
KDOT(ref_q3_k, struct lg_block_q3_k, dec_q3_k)
KDOT(ref_q4_k, struct lg_block_q4_k, dec_q4_k)
KDOT(ref_q5_k, struct lg_block_q5_k, dec_q5_k)
KDOT(ref_q6_k, struct lg_block_q6_k, dec_q6_k)
KDOT(ref_iq4_xs, struct lg_block_iq4_xs, dec_iq4_xs)

/* The term block w adds to the reference dot (the R8 layout's scalar path, kern/repack.c). */
float lg_qdot_ref_block(uint32_t type, const void *w, const void *a)
{
    struct kblock b;
    struct lg_block_q8_k y;
    switch (type) {
    case LG_QTYPE_Q4_0:
        return term_q4_0(w, a);
    case LG_QTYPE_Q8_0:
        return term_q8_0(w, a);
    case LG_QTYPE_Q4_K:
        dec_q4_k(w, &b);
        break;
    default:
        dec_q6_k(w, &b);
        break;
    }
    memcpy(&y, a, sizeof y);
    return kdot(&b, &y);
}

/* ---- float types (ggml sums these in double in its scalar path) ------------------------- */

static float ref_f16(const void *w, const void *a, int64_t n)
{
    const uint8_t *pw = w, *pa = a;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t x, y;
        memcpy(&x, pw + 2 * i, 2);
        memcpy(&y, pa + 2 * i, 2);
        s += (double)(lg_f16_to_f32(x) * lg_f16_to_f32(y));
    }
    return (float)s;
}

static float ref_bf16(const void *w, const void *a, int64_t n)
{
    const uint8_t *pw = w, *pa = a;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t x, y;
        memcpy(&x, pw + 2 * i, 2);
        memcpy(&y, pa + 2 * i, 2);
        s += (double)(lg_bf16_to_f32(x) * lg_bf16_to_f32(y));
    }
    return (float)s;
}

/* F32 keeps the kernel module's f32 dot (8 partial sums), so the F32 path is unchanged. */
static float ref_f32(const void *w, const void *a, int64_t n)
{
    return lg_kern_dot_f32(w, a, n);
}

const lg_vec_dot_fn lg_vec_dot_ref[LG_QTYPE_COUNT] = {
    [LG_QTYPE_F32] = ref_f32,       [LG_QTYPE_F16] = ref_f16,     [LG_QTYPE_BF16] = ref_bf16,
    [LG_QTYPE_Q4_0] = ref_q4_0,     [LG_QTYPE_Q4_1] = ref_q4_1,   [LG_QTYPE_Q5_0] = ref_q5_0,
    [LG_QTYPE_Q5_1] = ref_q5_1,     [LG_QTYPE_Q8_0] = ref_q8_0,   [LG_QTYPE_IQ4_NL] = ref_iq4_nl,
    [LG_QTYPE_MXFP4] = ref_mxfp4,   [LG_QTYPE_Q2_K] = ref_q2_k,   [LG_QTYPE_Q3_K] = ref_q3_k,
    [LG_QTYPE_Q4_K] = ref_q4_k,     [LG_QTYPE_Q5_K] = ref_q5_k,   [LG_QTYPE_Q6_K] = ref_q6_k,
    [LG_QTYPE_IQ4_XS] = ref_iq4_xs,
};
