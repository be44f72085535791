/* test_kern.c: every kernel table (ref and each ISA this CPU runs) against naive formulas
 * computed in double, on awkward shapes (one row, one column of blocks, sizes that are not a
 * multiple of 8, thread splits that leave a thread empty). Outputs are NaN-filled first so a
 * kernel that skips an element fails. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "quant/quant.h"
#include "test.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void fill(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = frand() * scale;
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
        }
        free(q);
        free(o);
        free(kk);
        free(vv);
        free(sc);
    }
}

int main(void)
{
    const char *isas[] = {"ref", "avx2", "avx512"};
    int n_tables = 0;
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        const struct lg_kern *k = lg_kern_select(isas[i]);
        if (!k)
            continue;
        n_tables++;
        CHECK(k->matmul && k->rmsnorm && k->rope_neox && k->softmax && k->gelu_tanh && k->mul &&
              k->axpy && k->attention);
        test_matmul(k);
        test_rmsnorm(k);
        test_rope(k);
        test_pointwise(k);
        test_attention(k);
    }
    CHECK(n_tables >= 1);
    CHECK(lg_kern_get() != NULL);
    CHECK(lg_kern_select("nonsense") == NULL);
    CHECK(strcmp(lg_kern_select("ref")->isa, "ref") == 0);
    return lg_test_done("test_kern");
}
