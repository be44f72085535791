/* test_kern.c: every kernel table (ref and each ISA this CPU runs) against naive formulas
 * computed in double, on awkward shapes (one row, one column of blocks, sizes that are not a
 * multiple of 8, thread splits that leave a thread empty). Outputs are NaN-filled first so a
 * kernel that skips an element fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant.h"
#include "test.h"

static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lg_test_frand() * scale;
}

static void nan_fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
}

/* y = W x for every (type, rows, cols, n_tok) in a few shapes, with several thread splits. */
static void test_matmul(const struct lg_kern *k)
{
    const uint32_t types[] = {LG_QTYPE_F32, LG_QTYPE_F16, LG_QTYPE_BF16, LG_QTYPE_Q8_0,
                              LG_QTYPE_Q4_0};
    const int64_t shapes[][3] = {{1, 32, 1}, {7, 64, 3}, {33, 96, 5}, {5, 256, 1}, {3, 8, 2}};
    for (size_t it = 0; it < sizeof types / sizeof types[0]; it++) {
        const struct lg_qtype_info *qi = lg_qtype_get(types[it]);
        if (!qi || !qi->can_quant || !qi->can_dequant)
            continue;
        for (size_t is = 0; is < sizeof shapes / sizeof shapes[0]; is++) {
            int64_t rows = shapes[is][0], cols = shapes[is][1], nt = shapes[is][2];
            if (cols % qi->block_size)
                continue;
            uint64_t rb;
            CHECK(lg_qtype_row_bytes(types[it], (uint64_t)cols, &rb) == LG_OK);
            size_t stride = (size_t)rb + 8; /* a row stride larger than the row */
            uint8_t *wq = calloc((size_t)rows, stride);
            float *wf = malloc((size_t)(rows * cols) * sizeof(float));
            float *wd = malloc((size_t)(rows * cols) * sizeof(float));
            int64_t ldx = cols + 3, ldy = rows + 2;
            float *x = malloc((size_t)(nt * ldx) * sizeof(float));
            float *y = malloc((size_t)(nt * ldy) * sizeof(float));
            float *scratch = malloc((size_t)(4 * cols) * sizeof(float));
            fill(wf, rows * cols, 1.0f);
            fill(x, nt * ldx, 1.0f);
            for (int64_t r = 0; r < rows; r++) {
                lg_quant_row((enum lg_qtype)types[it], wf + r * cols, wq + (size_t)r * stride,
                             cols);
                lg_dequant_row((enum lg_qtype)types[it], wq + (size_t)r * stride,
                               wd + r * cols, cols);
            }
            struct lg_wmat w = {.type = types[it], .data = wq, .rows = rows, .cols = cols,
                                .row_bytes = stride};
            for (int nth = 1; nth <= 4; nth += 3) {
                nan_fill(y, nt * ldy);
                for (int ith = 0; ith < nth; ith++)
                    k->matmul(&w, x, ldx, y, ldy, nt, scratch + ith * cols, ith, nth);
                double maxe = 0;
                int bad_pad = 0;
                for (int64_t t = 0; t < nt; t++) {
                    for (int64_t r = 0; r < rows; r++) {
                        double s = 0;
                        for (int64_t c = 0; c < cols; c++)
                            s += (double)wd[r * cols + c] * x[t * ldx + c];
                        double e = fabs(s - y[t * ldy + r]);
                        if (!(e <= maxe))
                            maxe = isnan(e) ? INFINITY : e;
                    }
                    for (int64_t r = rows; r < ldy; r++)
                        bad_pad |= !isnan(y[t * ldy + r]);
                }
                CHECK_MSG(maxe <= 1e-4 * sqrt((double)cols), "[%s] matmul %s %lldx%lld n=%lld "
                          "nth=%d: err %g", k->isa, qi->name, (long long)rows, (long long)cols,
                          (long long)nt, nth, maxe);
                CHECK_MSG(!bad_pad, "[%s] matmul wrote past rows", k->isa);
            }
            free(wq);
            free(wf);
            free(wd);
            free(x);
            free(y);
            free(scratch);
        }
    }
}

static void test_rmsnorm(const struct lg_kern *k)
{
    const int64_t ns[] = {1, 7, 64, 130};
    for (size_t i = 0; i < 4; i++) {
        int64_t n = ns[i];
        float x[130], w[130], y[130];
        fill(x, n, 3.0f);
        fill(w, n, 1.0f);
        for (int use_w = 0; use_w < 2; use_w++) {
            nan_fill(y, n);
            k->rmsnorm(y, x, use_w ? w : NULL, n, 1e-6f);
            double ss = 0;
            for (int64_t j = 0; j < n; j++)
                ss += (double)x[j] * x[j];
            double inv = 1.0 / sqrt(ss / (double)n + 1e-6);
            double maxe = 0;
            for (int64_t j = 0; j < n; j++) {
                double want = x[j] * inv * (use_w ? w[j] : 1.0);
                double e = fabs(want - y[j]);
                if (!(e <= maxe))
                    maxe = isnan(e) ? INFINITY : e;
            }
            CHECK_MSG(maxe <= 1e-5, "[%s] rmsnorm n=%lld: %g", k->isa, (long long)n, maxe);
        }
        /* in place */
        float z[130];
        memcpy(z, x, sizeof z);
        k->rmsnorm(z, z, w, n, 1e-6f);
        k->rmsnorm(y, x, w, n, 1e-6f);
        CHECK(memcmp(y, z, (size_t)n * sizeof(float)) == 0);
    }
}

static void test_rope(const struct lg_kern *k)
{
    /* head_dim 12 with n_rot 8 (dims 8..11 pass through), 3 heads, freq factors. */
    const int64_t H = 3, hd = 12, n_rot = 8, pos = 37;
    const float base = 10000.0f, ff[4] = {1.0f, 2.0f, 1e30f, 1.0f};
    float x[36], y[36], cs[8];
    fill(x, H * hd, 1.0f);
    memcpy(y, x, sizeof x);
    lg_rope_angles(cs, n_rot, pos, base, 1.0f, ff);
    k->rope_neox(y, H, hd, n_rot, cs);
    double maxe = 0;
    for (int64_t h = 0; h < H; h++) {
        const float *a = x + h * hd;
        const float *b = y + h * hd;
        for (int64_t i = 0; i < n_rot / 2; i++) {
            double th = pos * pow(base, -2.0 * (double)i / (double)n_rot) / ff[i];
            double w0 = a[i] * cos(th) - a[i + n_rot / 2] * sin(th);
            double w1 = a[i + n_rot / 2] * cos(th) + a[i] * sin(th);
            maxe = fmax(maxe, fabs(w0 - b[i]));
            maxe = fmax(maxe, fabs(w1 - b[i + n_rot / 2]));
        }
        for (int64_t i = n_rot; i < hd; i++)
            maxe = fmax(maxe, fabs((double)a[i] - b[i]));
        /* pair 2 has factor 1e30: the identity */
        CHECK(b[2] == a[2] && b[6] == a[6]);
    }
    CHECK_MSG(maxe <= 1e-5, "[%s] rope: %g", k->isa, maxe);
    /* Every ISA equals the reference bit for bit: half of n_rot below, at and past a multiple
     * of 16, dims past n_rot untouched. */
    {
        const int64_t shapes[][2] = {{12, 8}, {64, 40}, {256, 256}, {512, 512}, {96, 66}};
        for (size_t is = 0; is < sizeof shapes / sizeof shapes[0]; is++) {
            const int64_t hd2 = shapes[is][0], nr = shapes[is][1], nh = 3;
            float *x0 = malloc((size_t)(nh * hd2) * sizeof(float));
            float *x1 = malloc((size_t)(nh * hd2) * sizeof(float));
            float *ang = malloc((size_t)nr * sizeof(float));
            fill(x0, nh * hd2, 2.0f);
            memcpy(x1, x0, (size_t)(nh * hd2) * sizeof(float));
            lg_rope_angles(ang, nr, 1234, 1e4f, 1.0f, NULL);
            k->rope_neox(x0, nh, hd2, nr, ang);
            lg_kern_ref()->rope_neox(x1, nh, hd2, nr, ang);
            CHECK_MSG(memcmp(x0, x1, (size_t)(nh * hd2) * sizeof(float)) == 0,
                      "[%s] rope head %lld n_rot %lld differs from ref", k->isa, (long long)hd2,
                      (long long)nr);
            free(x0);
            free(x1);
            free(ang);
        }
    }
    /* The two-step form (inverse frequencies once per layer) equals it bit for bit. */
    {
        const float ffs[6] = {1.0f, 2.0f, 1e30f, 1.0f, 0.5f, 3.0f};
        float inv[6], a1[12], a2[12];
        for (int sc = 0; sc < 2; sc++) {
            lg_rope_inv_freq(inv, 12, 1e6f);
            for (int64_t p = 0; p < 5000; p += 997) {
                lg_rope_angles(a1, 12, p, 1e6f, sc ? 0.25f : 1.0f, sc ? ffs : NULL);
                lg_rope_angles_inv(a2, 12, p, inv, sc ? 0.25f : 1.0f, sc ? ffs : NULL);
                CHECK_MSG(memcmp(a1, a2, sizeof a1) == 0, "rope angles in two steps differ at "
                          "pos %lld", (long long)p);
            }
        }
    }
    /* Linear scaling: freq_scale 0.5 at pos equals pos/2 without scaling. */
    float c1[8], c2[8];
    lg_rope_angles(c1, 8, 40, base, 0.5f, NULL);
    lg_rope_angles(c2, 8, 20, base, 1.0f, NULL);
    for (int i = 0; i < 8; i++)
        CHECK_NEAR(c1[i], c2[i], 1e-6);
}

static void test_pointwise(const struct lg_kern *k)
{
    float x[19], y[19], z[19];
    fill(x, 19, 6.0f);
    memcpy(y, x, sizeof x);
    k->gelu_tanh(y, 19);
    for (int i = 0; i < 19; i++) {
        double v = x[i];
        double want = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        CHECK_NEAR(y[i], want, 1e-5);
    }
    memcpy(y, x, sizeof x);
    k->softmax(y, 19);
    double mx = x[0], sum = 0, tot = 0;
    for (int i = 1; i < 19; i++)
        mx = fmax(mx, x[i]);
    for (int i = 0; i < 19; i++)
        sum += exp(x[i] - mx);
    for (int i = 0; i < 19; i++) {
        CHECK_NEAR(y[i], exp(x[i] - mx) / sum, 1e-6);
        tot += y[i];
    }
    CHECK_NEAR(tot, 1.0, 1e-5);
    float big[3] = {1000.0f, 1000.0f, -1000.0f};
    k->softmax(big, 3);
    CHECK_NEAR(big[0], 0.5, 1e-6);
    CHECK(big[2] == 0.0f);
    fill(z, 19, 1.0f);
    nan_fill(y, 19);
    k->mul(y, x, z, 19);
    for (int i = 0; i < 19; i++)
        CHECK(y[i] == x[i] * z[i]);
    memcpy(y, z, sizeof z);
    k->axpy(y, x, 0.5f, 19);
    for (int i = 0; i < 19; i++)
        CHECK_NEAR(y[i], z[i] + 0.5 * x[i], 1e-6);
}

/* Attention over a ring: keys of position j in slot j % n_slots; naive reference in double. */
static void test_attention(const struct lg_kern *k)
{
    struct {
        int64_t n_tok, H, Hkv, hd, n_slots, pos0, window;
        float softcap;
    } cases[] = {
        {1, 2, 1, 8, 16, 0, 0, 0.0f},    /* first token, GQA 2:1 */
        {5, 4, 2, 6, 32, 3, 0, 0.0f},    /* global, odd head dim */
        {6, 4, 4, 8, 9, 20, 4, 0.0f},    /* sliding W=4, ring of 9 slots wrapping */
        {3, 3, 1, 5, 7, 11, 5, 2.0f},    /* sliding + softcap, MQA */
        {4, 2, 2, 16, 40, 30, 1, 0.0f},  /* window 1: only itself */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t T = cases[c].n_tok, H = cases[c].H, Hkv = cases[c].Hkv, d = cases[c].hd;
        int64_t S = cases[c].n_slots, p0 = cases[c].pos0, W = cases[c].window;
        float *q = malloc((size_t)(T * H * d) * sizeof(float));
        float *o = malloc((size_t)(T * H * d) * sizeof(float));
        float *kk = malloc((size_t)(S * Hkv * d) * sizeof(float));
        float *vv = malloc((size_t)(S * Hkv * d) * sizeof(float));
        float *sc = malloc((size_t)(3 * 64) * sizeof(float));
        fill(q, T * H * d, 1.0f);
        fill(kk, S * Hkv * d, 1.0f);
        fill(vv, S * Hkv * d, 1.0f);
        for (int nth = 1; nth <= 3; nth += 2) {
            nan_fill(o, T * H * d);
            struct lg_attn_args a = {.q = q, .out = o, .k = kk, .v = vv, .n_tok = T, .n_head = H,
                                     .n_head_kv = Hkv, .head_dim = d, .n_slots = S, .pos0 = p0,
                                     .window = W, .scale = 0.7f, .softcap = cases[c].softcap,
                                     .scratch = sc, .scratch_stride = 64};
            for (int ith = 0; ith < nth; ith++)
                k->attention(&a, ith, nth);
            double maxe = 0;
            for (int64_t t = 0; t < T; t++) {
                int64_t pos = p0 + t;
                for (int64_t h = 0; h < H; h++) {
                    int64_t kvh = h / (H / Hkv);
                    double w[64], mx = -1e300, sum = 0;
                    int64_t lo = W ? (pos - W + 1 > 0 ? pos - W + 1 : 0) : 0;
                    for (int64_t j = lo; j <= pos; j++) {
                        double s = 0;
                        for (int64_t i = 0; i < d; i++)
                            s += (double)q[(t * H + h) * d + i] * kk[((j % S) * Hkv + kvh) * d + i];
                        s *= 0.7;
                        if (cases[c].softcap > 0)
                            s = cases[c].softcap * tanh(s / cases[c].softcap);
                        w[j - lo] = s;
                        mx = fmax(mx, s);
                    }
                    for (int64_t j = lo; j <= pos; j++)
                        sum += (w[j - lo] = exp(w[j - lo] - mx));
                    for (int64_t i = 0; i < d; i++) {
                        double acc = 0;
                        for (int64_t j = lo; j <= pos; j++)
                            acc += w[j - lo] / sum * vv[((j % S) * Hkv + kvh) * d + i];
                        double e = fabs(acc - o[(t * H + h) * d + i]);
                        if (!(e <= maxe))
                            maxe = isnan(e) ? INFINITY : e;
                    }
                }
            }
            CHECK_MSG(maxe <= 1e-5, "[%s] attention case %zu nth %d: %g", k->isa, c, nth, maxe);
            /* every ISA equals the reference bit for bit, whatever the thread split */
            float *ro = malloc((size_t)(T * H * d) * sizeof(float));
            struct lg_attn_args ra = a;
            ra.out = ro;
            lg_kern_ref()->attention(&ra, 0, 1);
            CHECK_MSG(memcmp(ro, o, (size_t)(T * H * d) * sizeof(float)) == 0,
                      "[%s] attention case %zu nth %d: not bit-identical to ref", k->isa, c, nth);
            free(ro);
        }
        free(q);
        free(o);
        free(kk);
        free(vv);
        free(sc);
    }
}


/* The attention softmax: keys far below the maximum get weight exactly 0 (never a subnormal),
 * the rest are the ordinary softmax; NaN propagates. */
static void test_attn_softmax(void)
{
    float x[40], y[40];
    for (int i = 0; i < 40; i++)
        x[i] = 5.0f - 3.0f * (float)i; /* scores 5, 2, -1, ... down to -112 */
    memcpy(y, x, sizeof x);
    lg_kern_attn_softmax(y, 40);
    double sum = 0, tot = 0;
    for (int i = 0; i < 40; i++)
        if (x[i] - 5.0f >= LG_ATTN_EXP_MIN)
            sum += exp((double)x[i] - 5.0);
    int sub = 0;
    for (int i = 0; i < 40; i++) {
        double z = (double)x[i] - 5.0;
        double want = z >= LG_ATTN_EXP_MIN ? exp(z) / sum : 0.0;
        CHECK_MSG(fabs(y[i] - want) <= 1e-6 * want + 1e-30, "attn softmax %d: %g vs %g", i,
                  (double)y[i], want);
        sub |= y[i] != 0.0f && fabsf(y[i]) < 1.17549435e-38f;
        tot += y[i];
    }
    CHECK(!sub);
    CHECK(y[39] == 0.0f && y[17] == 0.0f && y[16] > 0.0f); /* -51 and -48 below the max */
    CHECK_NEAR(tot, 1.0, 1e-6);
    float z[3] = {1.0f, NAN, 0.0f};
    lg_kern_attn_softmax(z, 3);
    CHECK(isnan(z[0]) || isnan(z[1]));
}

/* Peaked attention (scores spread over hundreds): no subnormal weights, each ISA still equals
 * the reference bit for bit, and the result is close to the exact one. */
static void test_attention_peaked(const struct lg_kern *k)
{
    const int64_t T = 9, H = 4, Hkv = 2, d = 24, S = 64, p0 = 30;
    float q[9 * 4 * 24], kk[64 * 2 * 24], vv[64 * 2 * 24], o[9 * 4 * 24], ro[9 * 4 * 24];
    float sc[3 * 64];
    fill(q, T * H * d, 1.0f);
    fill(kk, S * Hkv * d, 1.0f);
    fill(vv, S * Hkv * d, 1.0f);
    struct lg_attn_args a = {.q = q, .out = ro, .k = kk, .v = vv, .n_tok = T, .n_head = H,
                             .n_head_kv = Hkv, .head_dim = d, .n_slots = S, .pos0 = p0,
                             .window = 0, .scale = 60.0f, .scratch = sc, .scratch_stride = 64};
    lg_kern_ref()->attention(&a, 0, 1);
    for (int nth = 1; nth <= 3; nth++) {
        nan_fill(o, T * H * d);
        a.out = o;
        for (int ith = 0; ith < nth; ith++)
            k->attention(&a, ith, nth);
        CHECK_MSG(memcmp(o, ro, sizeof o) == 0, "[%s] peaked attention nth %d differs from ref",
                  k->isa, nth);
    }
    double maxe = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t kvh = h / (H / Hkv), n_keys = p0 + t + 1;
            double w[64], mx = -1e300, sum = 0;
            for (int64_t j = 0; j < n_keys; j++) {
                double s = 0;
                for (int64_t i = 0; i < d; i++)
                    s += (double)q[(t * H + h) * d + i] * kk[(j * Hkv + kvh) * d + i];
                w[j] = s * 60.0;
                mx = fmax(mx, w[j]);
            }
            for (int64_t j = 0; j < n_keys; j++)
                sum += (w[j] = exp(w[j] - mx));
            for (int64_t i = 0; i < d; i++) {
                double acc = 0;
                for (int64_t j = 0; j < n_keys; j++)
                    acc += w[j] / sum * vv[(j * Hkv + kvh) * d + i];
                maxe = fmax(maxe, fabs(acc - ro[(t * H + h) * d + i]));
            }
        }
    CHECK_MSG(maxe <= 1e-4, "[%s] peaked attention vs exact: %g", k->isa, maxe);
}

/* Grouped-query attention (the AVX2 kernel takes the 2, 4 or 8 query heads of a KV head
 * together when the scratch holds their scores and there are >= 2 (token, KV head) units per
 * thread): bit for bit the reference, for every KV storage type, with sliding rings that wrap,
 * softcap, several thread counts. The scratch here is big enough for the grouped path. */
static void test_attention_gqa(const struct lg_kern *k)
{
    struct {
        int64_t n_tok, H, Hkv, hd, n_slots, pos0, window;
        float softcap;
    } cases[] = {
        {7, 8, 1, 64, 40, 0, 0, 0.0f},     /* group 8 (Gemma 4 E2B), prefill from 0 */
        {6, 8, 2, 32, 13, 20, 7, 0.0f},    /* group 4, window 7, ring of 13 wrapping */
        {5, 4, 2, 96, 64, 33, 0, 30.0f},   /* group 2, softcap */
        {9, 16, 2, 32, 24, 50, 16, 0.0f},  /* group 8, 2 KV heads, wrapped ring */
        /* Gemma 4 head sizes, odd key counts (the AVX-512 kernel's 2 and 4 key steps leave a
         * tail), rings that wrap mid-step */
        {12, 8, 1, 256, 40, 17, 24, 0.0f}, /* group 8, head 256, window 24 */
        {6, 8, 1, 512, 64, 60, 0, 0.0f},   /* group 8, head 512, ring of 64 wrapping */
        {7, 4, 1, 256, 21, 3, 13, 0.0f},   /* group 4, head 256, window 13 in a ring of 21 */
        {6, 4, 2, 48, 30, 0, 0, 20.0f},    /* group 2, head 48 (16 past 32; F32/F16), softcap */
    };
    const uint32_t types[4] = {LG_QTYPE_F32, LG_QTYPE_F16, LG_QTYPE_Q8_0, LG_QTYPE_Q4_0};
    const int64_t stride = 8 * 128;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t T = cases[c].n_tok, H = cases[c].H, Hkv = cases[c].Hkv, d = cases[c].hd;
        CHECK((H / Hkv) * (cases[c].pos0 + T) <= stride); /* the scratch holds a group's scores */
        int64_t S = cases[c].n_slots, W = Hkv * d;
        float *q = malloc((size_t)(T * H * d) * sizeof(float));
        float *o = malloc((size_t)(T * H * d) * sizeof(float));
        float *ro = malloc((size_t)(T * H * d) * sizeof(float));
        float *kf = malloc((size_t)(S * W) * sizeof(float));
        float *vf = malloc((size_t)(S * W) * sizeof(float));
        uint8_t *kq = malloc((size_t)(S * W) * sizeof(float));
        uint8_t *vq = malloc((size_t)(S * W) * sizeof(float));
        float *sc = malloc((size_t)(3 * stride) * sizeof(float));
        fill(q, T * H * d, 1.0f);
        fill(kf, S * W, 1.0f);
        fill(vf, S * W, 1.0f);
        for (int it = 0; it < 4; it++) {
            /* K and V in mirrored types; block types need d % 32 == 0, else F32 / F16 */
            uint32_t tk = types[it], tv = types[3 - it];
            if (d % 32) {
                tk = it & 1 ? LG_QTYPE_F16 : LG_QTYPE_F32;
                tv = it & 1 ? LG_QTYPE_F32 : LG_QTYPE_F16;
            }
            uint64_t rb;
            CHECK(lg_qtype_row_bytes(tk, (uint64_t)W, &rb) == LG_OK);
            for (int64_t r = 0; r < S; r++) {
                lg_quant_row((enum lg_qtype)tk, kf + r * W, kq + (size_t)r * rb, W);
                lg_quant_row((enum lg_qtype)tk, vf + r * W, vq + (size_t)r * rb, W);
            }
            struct lg_attn_args a = {.q = q, .out = ro, .k = kq, .v = vq, .type_k = tk,
                                     .type_v = tv, .n_tok = T, .n_head = H,
                                     .n_head_kv = Hkv, .head_dim = d, .n_slots = S,
                                     .pos0 = cases[c].pos0, .window = cases[c].window,
                                     .scale = 0.3f, .softcap = cases[c].softcap, .scratch = sc,
                                     .scratch_stride = stride};
            /* K and V in different types: V gets the mirrored type (row sizes differ) */
            uint64_t rbv;
            CHECK(lg_qtype_row_bytes(tv, (uint64_t)W, &rbv) == LG_OK);
            for (int64_t r = 0; r < S; r++)
                lg_quant_row((enum lg_qtype)tv, vf + r * W, vq + (size_t)r * rbv, W);
            lg_kern_ref()->attention(&a, 0, 1);
            for (int nth = 1; nth <= 3; nth++) {
                nan_fill(o, T * H * d);
                a.out = o;
                for (int ith = 0; ith < nth; ith++)
                    k->attention(&a, ith, nth);
                a.out = ro;
                CHECK_MSG(memcmp(o, ro, (size_t)(T * H * d) * sizeof(float)) == 0,
                          "[%s] GQA attention case %zu K %s V %s nth %d: not bit-identical to "
                          "ref", k->isa, c, lg_qtype_get(tk)->name,
                          lg_qtype_get(tv)->name, nth);
            }
        }
        free(q);
        free(o);
        free(ro);
        free(kf);
        free(vf);
        free(kq);
        free(vq);
        free(sc);
    }
}

/* ---- element-wise ops and activation quantizers against the reference table ---------------- */

static const int64_t ODD_SIZES[] = {1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257};
enum { N_ODD = sizeof ODD_SIZES / sizeof ODD_SIZES[0], MAX_ODD = 257 };

/* An element's result may not depend on its place in the array or on n (decode == prefill):
 * op on the whole array == op on each element alone, bit for bit. */
static int same_bits(const float *a, const float *b, int64_t n)
{
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* mul, axpy: bit-identical to the reference; rmsnorm: within 2 ulp-ish of it. */
static void test_ops_vs_ref(const struct lg_kern *k)
{
    const struct lg_kern *r = lg_kern_ref();
    float a[MAX_ODD], b[MAX_ODD], w[MAX_ODD], y1[MAX_ODD], y2[MAX_ODD];
    for (int i = 0; i < N_ODD; i++) {
        int64_t n = ODD_SIZES[i];
        fill(a, n, 10.0f);
        fill(b, n, 0.1f);
        fill(w, n, 2.0f);
        nan_fill(y1, n);
        nan_fill(y2, n);
        k->mul(y1, a, b, n);
        r->mul(y2, a, b, n);
        CHECK_MSG(same_bits(y1, y2, n), "[%s] mul n=%lld", k->isa, (long long)n);
        memcpy(y1, b, sizeof b);
        memcpy(y2, b, sizeof b);
        k->axpy(y1, a, 0.37f, n);
        r->axpy(y2, a, 0.37f, n);
        CHECK_MSG(same_bits(y1, y2, n), "[%s] axpy n=%lld", k->isa, (long long)n);
        for (int use_w = 0; use_w < 2; use_w++) {
            nan_fill(y1, n);
            k->rmsnorm(y1, a, use_w ? w : NULL, n, 1e-6f);
            r->rmsnorm(y2, a, use_w ? w : NULL, n, 1e-6f);
            double maxe = 0;
            for (int64_t j = 0; j < n; j++) {
                double e = fabs((double)y1[j] - y2[j]) / (fabs((double)y2[j]) + 1e-30);
                if (!(e <= maxe))
                    maxe = isnan(e) ? INFINITY : e;
            }
            CHECK_MSG(maxe <= 3e-7, "[%s] rmsnorm n=%lld vs ref: rel %g", k->isa, (long long)n,
                      maxe);
        }
    }
}

static double gelu_exact(double v)
{
    return 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}

/* gelu_tanh and softcap (vector exp in the ISA tables): close to the exact function over a
 * wide range, position-independent, and NaN / infinity handled. */
static void test_gelu_softcap(const struct lg_kern *k)
{
    float x[MAX_ODD], y[MAX_ODD], one[1];
    const float scales[] = {1e-6f, 0.5f, 4.0f, 12.0f, 100.0f};
    double maxe_g = 0, maxe_c = 0;
    for (int i = 0; i < N_ODD; i++) {
        int64_t n = ODD_SIZES[i];
        for (size_t sc = 0; sc < sizeof scales / sizeof scales[0]; sc++) {
            fill(x, n, scales[sc]);
            memcpy(y, x, sizeof x);
            k->gelu_tanh(y, n);
            for (int64_t j = 0; j < n; j++) {
                /* relative to max(|x|, 1e-3): gelu(x) ~ x/2 near 0, ~x or ~0 far out */
                double e = fabs(y[j] - gelu_exact(x[j])) / fmax(fabs((double)x[j]), 1e-3);
                if (!(e <= maxe_g))
                    maxe_g = isnan(e) ? INFINITY : e;
                one[0] = x[j];
                k->gelu_tanh(one, 1);
                CHECK_MSG(memcmp(one, y + j, sizeof(float)) == 0,
                          "[%s] gelu of element %lld of %lld differs alone", k->isa, (long long)j,
                          (long long)n);
            }
            const float cap = 30.0f;
            memcpy(y, x, sizeof x);
            k->softcap(y, n, cap);
            for (int64_t j = 0; j < n; j++) {
                double e = fabs(y[j] - cap * tanh((double)x[j] / cap));
                if (!(e <= maxe_c))
                    maxe_c = isnan(e) ? INFINITY : e;
                one[0] = x[j];
                k->softcap(one, 1, cap);
                CHECK_MSG(memcmp(one, y + j, sizeof(float)) == 0,
                          "[%s] softcap of element %lld of %lld differs alone", k->isa,
                          (long long)j, (long long)n);
            }
        }
    }
    CHECK_MSG(maxe_g <= 3e-7, "[%s] gelu_tanh: max error %g (relative to |x|)", k->isa, maxe_g);
    CHECK_MSG(maxe_c <= 30.0 * 2e-7, "[%s] softcap: max abs error %g", k->isa, maxe_c);
    float e[6] = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e30f};
    k->softcap(e, 6, 30.0f);
    CHECK(isnan(e[0]));
    CHECK(e[1] == 30.0f && e[2] == -30.0f && e[3] == 0.0f && e[4] == 0.0f && e[5] == 30.0f);
    float g[5] = {NAN, INFINITY, 0.0f, 1e30f, -1e30f};
    k->gelu_tanh(g, 5);
    CHECK(isnan(g[0]));
    CHECK(g[1] == INFINITY && g[2] == 0.0f && g[3] == 1e30f && g[4] == 0.0f);
}

/* gelu_tanh on a dense sweep of [-16, 16] (every 2^-9, plus the region where gelu of a
 * negative x leaves the normal range): within 3e-7 of the exact value relative to max(|x|, 1e-3),
 * never a subnormal result. */
static void test_gelu_sweep(const struct lg_kern *k)
{
    enum { N = 16384 + 4096 };
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    for (int i = 0; i < 16384; i++)
        x[i] = -16.0f + (float)i / 512.0f;
    for (int i = 0; i < 4096; i++)
        x[16384 + i] = -11.0f + (float)i / 1024.0f; /* -11 .. -7 */
    memcpy(y, x, N * sizeof(float));
    k->gelu_tanh(y, N);
    double maxe = 0;
    int sub = 0;
    for (int i = 0; i < N; i++) {
        double e = fabs(y[i] - gelu_exact(x[i])) / fmax(fabs((double)x[i]), 1e-3);
        if (!(e <= maxe))
            maxe = isnan(e) ? INFINITY : e;
        sub |= y[i] != 0.0f && fabsf(y[i]) < 1.17549435e-38f;
    }
    CHECK_MSG(maxe <= 3e-7, "[%s] gelu sweep: max error %g (relative to |x|)", k->isa, maxe);
    CHECK_MSG(!sub, "[%s] gelu sweep: a subnormal result", k->isa);
    free(x);
    free(y);
}

/* glu_quantize == gelu_tanh, mul, act_quantize of the same table, byte for byte, for every
 * activation format (Q8_0, Q8_K, F16, and Q8_1 through the reference quantizer), lengths that
 * end mid-chunk; g and m are not written. */
static void test_glu_quantize(const struct lg_kern *k)
{
    const uint32_t wtypes[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q4_K, LG_QTYPE_F16, LG_QTYPE_Q4_1};
    const int64_t ns[] = {32, 256, 512 + 32, 2048 + 256 + 64};
    enum { NMAX = 2048 + 256 + 64 };
    float *g = malloc(NMAX * sizeof(float)), *m = malloc(NMAX * sizeof(float));
    float *g0 = malloc(NMAX * sizeof(float)), *m0 = malloc(NMAX * sizeof(float));
    float *t = malloc(NMAX * sizeof(float));
    for (size_t iw = 0; iw < sizeof wtypes / sizeof wtypes[0]; iw++)
        for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++) {
            const int64_t n = ns[in];
            size_t rb = lg_act_row_bytes(wtypes[iw], n);
            if (!rb)
                continue; /* e.g. Q8_K needs n % 256 == 0 */
            fill(g, n, 5.0f);
            fill(m, n, 2.0f);
            g[n / 2] = NAN; /* a NaN goes through like any value */
            memcpy(g0, g, (size_t)n * sizeof(float));
            memcpy(m0, m, (size_t)n * sizeof(float));
            uint8_t *a = malloc(rb), *b = malloc(rb);
            memset(a, 0xa5, rb);
            memset(b, 0x5a, rb);
            k->glu_quantize(wtypes[iw], g, m, a, n);
            memcpy(t, g, (size_t)n * sizeof(float));
            k->gelu_tanh(t, n);
            k->mul(t, t, m, n);
            k->act_quantize(wtypes[iw], t, b, n);
            CHECK_MSG(memcmp(a, b, rb) == 0, "[%s] glu_quantize %s n=%lld differs from gelu, "
                      "mul, act_quantize", k->isa, lg_qtype_get(wtypes[iw])->name, (long long)n);
            CHECK_MSG(memcmp(g, g0, (size_t)n * sizeof(float)) == 0 &&
                          memcmp(m, m0, (size_t)n * sizeof(float)) == 0,
                      "[%s] glu_quantize wrote to its inputs", k->isa);
            free(a);
            free(b);
        }
    free(g);
    free(m);
    free(g0);
    free(m0);
    free(t);
}

static float f_of_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One act_quantize case: the table's bytes == lg_act_quantize's bytes. */
static int act_case(const struct lg_kern *k, uint32_t wtype, const float *x, int64_t n,
                    const char *what)
{
    size_t rb = lg_act_row_bytes(wtype, n);
    if (!rb)
        return 1;
    uint8_t *a = malloc(rb), *b = malloc(rb);
    memset(a, 0xa5, rb);
    memset(b, 0x5a, rb);
    k->act_quantize(wtype, x, a, n);
    lg_act_quantize(wtype, x, b, n);
    int ok = memcmp(a, b, rb) == 0;
    CHECK_MSG(ok, "[%s] act_quantize for %s, n=%lld, %s: differs from the reference", k->isa,
              lg_qtype_get(wtype)->name, (long long)n, what);
    free(a);
    free(b);
    return ok;
}

/* The activation quantizers must equal lg_act_quantize byte for byte: random rows at several
 * scales, ties (x * id exactly k + 1/2), a repeated maximum of both signs, zeros, NaN,
 * infinities, subnormals and huge values; and (F16) a sweep over float bit patterns. */
static void test_act_quantize(const struct lg_kern *k)
{
    /* Q4_0 -> Q8_0 activations, Q4_K -> Q8_K, F16 -> F16, Q4_1 -> Q8_1 (reference fallback) */
    const uint32_t wtypes[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q4_K, LG_QTYPE_F16, LG_QTYPE_Q4_1};
    enum { N = 1024 };
    float *x = malloc(N * sizeof(float));
    for (size_t it = 0; it < sizeof wtypes / sizeof wtypes[0]; it++) {
        uint32_t wt = wtypes[it];
        const int64_t ns[] = {32, 256, 512, N};
        const float scales[] = {1e-30f, 1e-3f, 1.0f, 300.0f, 1e20f};
        for (size_t in = 0; in < 4; in++)
            for (size_t sc = 0; sc < 5; sc++) {
                fill(x, ns[in], scales[sc]);
                act_case(k, wt, x, ns[in], "random");
            }
        /* ties: block max 127 (id == 1 in Q8_0) and values k + 0.5; for Q8_K max -127 */
        for (int64_t i = 0; i < N; i++)
            x[i] = (float)((i * 37) % 254 - 127) + ((i & 1) ? 0.5f : -0.5f);
        for (int64_t b = 0; b < N; b += 32)
            x[b] = (b & 64) ? 127.0f : -127.0f;
        act_case(k, wt, x, N, "ties");
        /* a maximum that repeats with both signs (Q8_K keeps the first) */
        fill(x, N, 1.0f);
        for (int64_t b = 0; b < N; b += 256) {
            x[b + 17] = -2.0f;
            x[b + 200] = 2.0f;
            x[b + 3] = (b & 256) ? 2.0f : 1.5f;
        }
        act_case(k, wt, x, N, "repeated max");
        memset(x, 0, N * sizeof(float));
        x[5] = -0.0f;
        act_case(k, wt, x, N, "zeros");
        const float specials[] = {NAN, -NAN, INFINITY, -INFINITY, 1e-45f, -1e-40f, 3e38f,
                                  -3e38f, 65519.0f, 65520.0f, 6e-8f, 2.9e-8f, 0.5f, -0.5f};
        for (size_t sp = 0; sp < sizeof specials / sizeof specials[0]; sp++) {
            fill(x, N, 1.0f);
            for (int64_t i = (int64_t)sp; i < N; i += 97)
                x[i] = specials[sp];
            char what[48];
            snprintf(what, sizeof what, "special %g", (double)specials[sp]);
            act_case(k, wt, x, N, what);
            /* the special alone with zeros around it */
            memset(x, 0, N * sizeof(float));
            x[40] = specials[sp];
            act_case(k, wt, x, N, what);
        }
    }
    /* F16: every 4099th float bit pattern (NaNs, subnormals, overflow, ties of the 13 dropped
     * bits), 1024 at a time */
    int bad = 0;
    for (uint64_t u = 0; u < (1ull << 32) && !bad; u += (uint64_t)4099 * N) {
        for (int64_t i = 0; i < N; i++)
            x[i] = f_of_bits((uint32_t)(u + (uint64_t)i * 4099));
        bad = !act_case(k, LG_QTYPE_F16, x, N, "bit sweep");
    }
    /* f16 rounding ties: mantissas ending in exactly 0x1000 (half of the dropped bits) */
    for (int64_t i = 0; i < N; i++)
        x[i] = f_of_bits(0x38800000u + (uint32_t)i * 0x2000u * 37 + 0x1000u);
    act_case(k, LG_QTYPE_F16, x, N, "f16 ties");
    free(x);
}

int main(void)
{
    lg_test_rand_seed(9);
    const char *isas[] = {"ref", "avx2", "avx512"};
    int n_tables = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const struct lg_kern *k = lg_kern_select(isas[i]);
        if (!k)
            continue;
        n_tables++;
        CHECK(k->matmul && k->rmsnorm && k->rope_neox && k->softmax && k->gelu_tanh && k->mul &&
              k->axpy && k->softcap && k->act_quantize && k->glu_quantize && k->attention);
        test_matmul(k);
        test_rmsnorm(k);
        test_rope(k);
        test_pointwise(k);
        test_attention(k);
        test_attention_peaked(k);
        test_attention_gqa(k);
        test_ops_vs_ref(k);
        test_gelu_softcap(k);
        test_gelu_sweep(k);
        test_glu_quantize(k);
        test_act_quantize(k);
    }
    CHECK(n_tables >= 1);
    test_attn_softmax();
    CHECK(lg_kern_get() != NULL);
    CHECK(lg_kern_select("nonsense") == NULL);
    CHECK(strcmp(lg_kern_select("ref")->isa, "ref") == 0);
    return lg_test_done("test_kern");
}
