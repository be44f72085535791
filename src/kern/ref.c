/* ref.c: the scalar reference kernels. They define "correct" for every ISA variant.
 *
 * Plain C with no intrinsics. Sums use 8 independent partial accumulators so that the
 * compiler can keep them in one vector register (and so that prefill is not pathologically
 * slow); this changes rounding only at the 1e-7 relative level. Weight rows of any type are
 * dequantized once per row into the caller's scratch with lg_dequant_row and then dotted
 * with every token of the batch, so a prefill reads each weight once.
 */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant.h"

float lg_kern_dot_f32(const float *a, const float *b, int64_t n)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++)
            acc[k] += a[i + k] * b[i + k];
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Four dot products of one weight row with four token rows: each weight element is loaded
 * once for four tokens (the common prefill case). Same summation order as lg_kern_dot_f32, so
 * the results are bit-identical to four separate calls. */
static void dot4(const float *w, const float *x0, const float *x1, const float *x2,
                 const float *x3, int64_t n, float *out, int64_t ldo)
{
    float a0[8] = {0}, a1[8] = {0}, a2[8] = {0}, a3[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        for (int k = 0; k < 8; k++) {
            float wk = w[i + k];
            a0[k] += wk * x0[i + k];
            a1[k] += wk * x1[i + k];
            a2[k] += wk * x2[i + k];
            a3[k] += wk * x3[i + k];
        }
    }
    float *acc[4] = {a0, a1, a2, a3};
    const float *xs[4] = {x0, x1, x2, x3};
    for (int t = 0; t < 4; t++) {
        float *a = acc[t];
        float s = ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
        for (int64_t j = i; j < n; j++)
            s += w[j] * xs[t][j];
        out[t * ldo] = s;
    }
}

static void share(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    int64_t per = (n + nth - 1) / nth;
    *lo = per * ith;
    *hi = *lo + per;
    if (*lo > n)
        *lo = n;
    if (*hi > n)
        *hi = n;
}

static void ref_matmul(const struct lg_wmat *w, const float *x, int64_t ldx, float *y,
                       int64_t ldy, int64_t n_tok, float *scratch, int ith, int nth)
{
    int64_t r0, r1;
    share(w->rows, ith, nth, &r0, &r1);
    const uint8_t *base = (const uint8_t *)w->data;
    for (int64_t r = r0; r < r1; r++) {
        const float *row;
        if (w->type == LG_QTYPE_F32) {
            row = (const float *)(const void *)(base + (size_t)r * w->row_bytes);
        } else {
            lg_dequant_row((enum lg_qtype)w->type, base + (size_t)r * w->row_bytes, scratch,
                           w->cols);
            row = scratch;
        }
        int64_t t = 0;
        for (; t + 4 <= n_tok; t += 4)
            dot4(row, x + t * ldx, x + (t + 1) * ldx, x + (t + 2) * ldx, x + (t + 3) * ldx,
                 w->cols, y + t * ldy + r, ldy);
        for (; t < n_tok; t++)
            y[t * ldy + r] = lg_kern_dot_f32(row, x + t * ldx, w->cols);
    }
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * (double)x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    if (w) {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * scale * w[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * scale;
    }
}

static void ref_rope_neox(float *x, int64_t n_head, int64_t head_dim, int64_t n_rot,
                          const float *cs)
{
    int64_t half = n_rot / 2;
    for (int64_t h = 0; h < n_head; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = v[i], b = v[i + half];
            v[i] = a * c - b * s;
            v[i + half] = b * c + a * s;
        }
    }
}

/* Softmax in place; a score more than -lo below the maximum gets weight 0 (lo = -INFINITY:
 * none; expf of a finite z >= lo is taken as is, NaN stays NaN). */
static void softmax_cut(float *x, int64_t n, float lo)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float z = x[i] - mx;
        x[i] = !(z < lo) ? expf(z) : 0.0f;
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

static void ref_softmax(float *x, int64_t n)
{
    softmax_cut(x, n, -INFINITY);
}

/* e^z for z in [LG_ATTN_EXP_MIN, 0] (a score minus the maximum): z = n ln2 + r (Cody-Waite,
 * |r| <= ln2/2), the Cephes expf polynomial in r by fused multiply-adds, times 2^n (a normal
 * power of two: n >= -73). About 2 ulp. Every operation is one IEEE rounding that a vector unit
 * performs identically (rintf: round to nearest even), so the ISA kernels reproduce it bit for
 * bit 8 or 16 lanes at a time. */
static inline float attn_exp(float z)
{
    const float n = rintf(z * 1.44269504088896341f);
    float r = fmaf(-n, 0.693359375f, z);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r);
    p = p + 1.0f;
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}

void lg_kern_attn_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        if (x[i] > mx)
            mx = x[i];
    const float lo = (float)LG_ATTN_EXP_MIN;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* lane i % 8, in order */
    for (int64_t i = 0; i < n; i++) {
        const float z = x[i] - mx;
        x[i] = z < lo ? 0.0f : z == z ? attn_exp(z) : z; /* NaN stays NaN */
        acc[i % 8] += (double)x[i];
    }
    const double sum =
        ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

static void ref_gelu_tanh(float *x, int64_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
    }
}

static void ref_softcap(float *x, int64_t n, float cap)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = cap * tanhf(x[i] / cap);
}

static void ref_mul(float *y, const float *a, const float *b, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] * b[i];
}

static void ref_axpy(float *y, const float *x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += s * x[i];
}

size_t lg_attn_head_bytes(uint32_t type, int64_t head_dim)
{
    switch (type) {
    case LG_QTYPE_F16:
        return (size_t)head_dim * 2;
    case LG_QTYPE_Q8_0:
        return (size_t)head_dim / 32 * 34;
    case LG_QTYPE_Q4_0:
        return (size_t)head_dim / 32 * 18;
    default:
        return (size_t)head_dim * sizeof(float);
    }
}

/* q . k for one K head stored in `type`, widened 8 (F32, F16) or 32 (block types) elements at
 * a time: lane j < 8 accumulates q[i] k[i] for i % 8 == j in order, each step one fused
 * multiply-add (one rounding: the ISA kernels do the same with vector FMA); the lanes reduce as
 * ((0+4)+(1+5))+((2+6)+(3+7)); a tail of d % 8 elements (F32 / F16) is fused into the sum one
 * by one. */
static float attn_dot(const float *q, const uint8_t *k, uint32_t type, int64_t d)
{
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, x[32];
    const float *kf = (const float *)(const void *)k;
    int64_t i = 0;
    if (type == LG_QTYPE_F32 || type == LG_QTYPE_F16) {
        for (; i + 8 <= d; i += 8) {
            const float *kx = kf + i;
            if (type == LG_QTYPE_F16) {
                lg_dequant_row(LG_QTYPE_F16, k + 2 * i, x, 8);
                kx = x;
            }
            for (int j = 0; j < 8; j++)
                acc[j] = fmaf(q[i + j], kx[j], acc[j]);
        }
    } else {
        const size_t bb = lg_attn_head_bytes(type, 32);
        for (; i + 32 <= d; i += 32) {
            lg_dequant_row((enum lg_qtype)type, k + (size_t)(i / 32) * bb, x, 32);
            for (int g = 0; g < 32; g += 8)
                for (int j = 0; j < 8; j++)
                    acc[j] = fmaf(q[i + g + j], x[g + j], acc[j]);
        }
    }
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < d; i++) { /* F32 / F16 tail (block types have d % 32 == 0) */
        if (type == LG_QTYPE_F16)
            lg_dequant_row(LG_QTYPE_F16, k + 2 * i, x, 1);
        else
            x[0] = kf[i];
        s = fmaf(q[i], x[0], s);
    }
    return s;
}

/* o[i] = fma(w, v[i], o[i]) for one V head stored in `type`. */
static void attn_axpy(float *o, const uint8_t *v, uint32_t type, float w, int64_t d)
{
    float x[32];
    const int64_t blk = type == LG_QTYPE_F16 ? 1 : 32;
    const size_t bb = lg_attn_head_bytes(type, blk);
    for (int64_t i = 0; i < d; i += 32) {
        int64_t n = d - i < 32 ? d - i : 32;
        const float *vx = (const float *)(const void *)v + i;
        if (type != LG_QTYPE_F32) {
            lg_dequant_row((enum lg_qtype)type, v + (size_t)(i / blk) * bb, x, n);
            vx = x;
        }
        for (int64_t j = 0; j < n; j++)
            o[i + j] = fmaf(w, vx[j], o[i + j]);
    }
}

static void ref_attention(const struct lg_attn_args *a, int ith, int nth)
{
    int64_t n_pairs = a->n_tok * a->n_head, p0, p1;
    share(n_pairs, ith, nth, &p0, &p1);
    int64_t group = a->n_head / a->n_head_kv;
    int64_t d = a->head_dim;
    const size_t hbk = lg_attn_head_bytes(a->type_k, d), hbv = lg_attn_head_bytes(a->type_v, d);
    const size_t ks = a->k_stride ? a->k_stride : (size_t)a->n_head_kv * hbk;
    const size_t vs = a->v_stride ? a->v_stride : (size_t)a->n_head_kv * hbv;
    const uint8_t *kb = a->k, *vb = a->v;
    float *sc = a->scratch + (int64_t)ith * a->scratch_stride;
    for (int64_t p = p0; p < p1; p++) {
        int64_t t = p / a->n_head, h = p % a->n_head, kvh = h / group;
        int64_t pos = a->pos0 + t;
        int64_t lo = 0;
        if (a->window > 0 && pos - a->window + 1 > 0)
            lo = pos - a->window + 1;
        int64_t n_keys = pos - lo + 1;
        const float *q = a->q + (t * a->n_head + h) * d;
        for (int64_t j = 0; j < n_keys; j++) {
            int64_t slot = (lo + j) % a->n_slots;
            const uint8_t *k = kb + (size_t)slot * ks + (size_t)kvh * hbk;
            float s = attn_dot(q, k, a->type_k, d) * a->scale;
            if (a->softcap > 0.0f)
                s = a->softcap * tanhf(s / a->softcap);
            sc[j] = s;
        }
        lg_kern_attn_softmax(sc, n_keys);
        float *o = a->out + (t * a->n_head + h) * d;
        memset(o, 0, (size_t)d * sizeof(float));
        for (int64_t j = 0; j < n_keys; j++) {
            int64_t slot = (lo + j) % a->n_slots;
            attn_axpy(o, vb + (size_t)slot * vs + (size_t)kvh * hbv, a->type_v, sc[j], d);
        }
    }
}

/* One rotation pair from its inverse frequency (the steps after pow, shared by both forms). */
static inline void rope_pair(float *cs, int64_t pos, float inv, float freq_scale, const float *ffi)
{
    float theta = (float)pos * inv;
    if (freq_scale != 1.0f)
        theta *= freq_scale;
    if (ffi)
        theta /= *ffi;
    cs[0] = (float)cos((double)theta);
    cs[1] = (float)sin((double)theta);
}

static inline float rope_inv(int64_t i, int64_t n_rot, float base)
{
    return (float)(1.0 / pow((double)base, (double)(2 * i) / (double)n_rot));
}

void lg_rope_angles(float *cs, int64_t n_rot, int64_t pos, float base, float freq_scale,
                    const float *ff)
{
    for (int64_t i = 0; i < n_rot / 2; i++)
        rope_pair(cs + 2 * i, pos, rope_inv(i, n_rot, base), freq_scale, ff ? ff + i : NULL);
}

void lg_rope_inv_freq(float *inv, int64_t n_rot, float base)
{
    for (int64_t i = 0; i < n_rot / 2; i++)
        inv[i] = rope_inv(i, n_rot, base);
}

void lg_rope_angles_inv(float *cs, int64_t n_rot, int64_t pos, const float *inv,
                        float freq_scale, const float *ff)
{
    for (int64_t i = 0; i < n_rot / 2; i++)
        rope_pair(cs + 2 * i, pos, inv[i], freq_scale, ff ? ff + i : NULL);
}

void lg_kern_glu_quantize_with(const struct lg_kern *k, uint32_t w, const float *g,
                               const float *m, void *dst, int64_t n)
{
    /* 256: a multiple of every activation block (32, 256, 1), so the chunks hold whole blocks */
    enum { CHUNK = 256 };
    float t[CHUNK];
    const size_t cb = lg_act_row_bytes(w, CHUNK);
    uint8_t *out = dst;
    for (int64_t i = 0; i < n; i += CHUNK, out += cb) {
        const int64_t c = n - i < CHUNK ? n - i : CHUNK;
        memcpy(t, g + i, (size_t)c * sizeof(float));
        k->gelu_tanh(t, c);
        k->mul(t, t, m + i, c);
        k->act_quantize(w, t, out, c);
    }
}

static void ref_glu_quantize(uint32_t w, const float *g, const float *m, void *dst, int64_t n)
{
    lg_kern_glu_quantize_with(lg_kern_ref(), w, g, m, dst, n);
}

/* Not const: the quantized dot slots are copied from lg_vec_dot_ref (another file) once. */
static struct lg_kern ref_table = {
    .isa = "ref",
    .matmul = ref_matmul,
    .rmsnorm = ref_rmsnorm,
    .rope_neox = ref_rope_neox,
    .softmax = ref_softmax,
    .gelu_tanh = ref_gelu_tanh,
    .mul = ref_mul,
    .axpy = ref_axpy,
    .softcap = ref_softcap,
    .act_quantize = lg_act_quantize,
    .glu_quantize = ref_glu_quantize,
    .attention = ref_attention,
};

static pthread_once_t ref_once = PTHREAD_ONCE_INIT;

static void ref_init(void)
{
    memcpy(ref_table.vec_dot, lg_vec_dot_ref, sizeof ref_table.vec_dot);
}

const struct lg_kern *lg_kern_ref(void)
{
    pthread_once(&ref_once, ref_init);
    return &ref_table;
}
