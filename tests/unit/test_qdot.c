/* test_qdot.c: the quantized dot products and their blocked matmul driver.
 *
 * 1. The scalar reference dot of every weight type equals (to float rounding, bound stated
 *    below) the double-precision dot of the dequantized weights with the dequantized
 *    activations: this ties the integer arithmetic to quant/'s reference formats.
 * 2. Every compiled ISA's vec_dot / vec_dot4 equals the reference within the same bound, on
 *    lengths of one block, a few blocks and an odd number of blocks (and, for the float
 *    types, lengths that are not a multiple of the vector width).
 * 3. lg_matmul_q over row ranges (one row, odd row counts, split ranges), 1..9 tokens, with
 *    NaN-filled outputs and padded strides, equals per-element reference dots.
 * Inputs are random with per-block magnitudes that vary over 4 decades (to exercise scales). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kern/kern.h"
#include "kern/qdot.h"
#include "quant/quant.h"
#include "test.h"

static void fill(float *x, int64_t n)
{
    float scale = 1.0f;
    for (int64_t i = 0; i < n; i++) {
        if (i % 32 == 0)
            scale = powf(10.0f, 2.0f * lg_test_frand() - 1.0f);
        x[i] = lg_test_frand() * scale;
    }
}

static const uint32_t types[] = {LG_QTYPE_Q4_0, LG_QTYPE_Q4_1, LG_QTYPE_Q5_0, LG_QTYPE_Q5_1,
                                 LG_QTYPE_Q8_0, LG_QTYPE_IQ4_NL, LG_QTYPE_MXFP4, LG_QTYPE_Q2_K,
                                 LG_QTYPE_Q3_K, LG_QTYPE_Q4_K, LG_QTYPE_Q5_K, LG_QTYPE_Q6_K,
                                 LG_QTYPE_IQ4_XS, LG_QTYPE_F16, LG_QTYPE_BF16, LG_QTYPE_F32};
enum { N_TYPES = sizeof types / sizeof types[0] };

/* Element count granularity of a dot for weight type t. */
static int64_t granule(uint32_t t)
{
    int64_t bw = lg_qtype_get(t)->block_size;
    int64_t ba = lg_qtype_get((uint32_t)lg_act_type(t))->block_size;
    return bw > ba ? bw : ba;
}

struct row {
    uint8_t *w, *a;
    float *wd, *ad;
    double abs_sum; /* sum |w| |a| over the dequantized values */
    double expect;  /* sum w a in double */
};

static void make_row(uint32_t t, int64_t n, struct row *r)
{
    uint64_t wb, ab;
    lg_qtype_row_bytes(t, (uint64_t)n, &wb);
    ab = lg_act_row_bytes(t, n);
    float *wf = malloc((size_t)n * sizeof(float)), *af = malloc((size_t)n * sizeof(float));
    r->w = malloc((size_t)wb + 1);
    r->a = malloc((size_t)ab + 1);
    r->wd = malloc((size_t)n * sizeof(float));
    r->ad = malloc((size_t)n * sizeof(float));
    fill(wf, n);
    fill(af, n);
    lg_quant_row((enum lg_qtype)t, wf, r->w, n);
    lg_dequant_row((enum lg_qtype)t, r->w, r->wd, n);
    lg_act_quantize(t, af, r->a, n);
    lg_dequant_row((enum lg_qtype)lg_act_type(t), r->a, r->ad, n);
    r->abs_sum = 0;
    r->expect = 0;
    for (int64_t i = 0; i < n; i++) {
        r->abs_sum += fabs((double)r->wd[i] * r->ad[i]);
        r->expect += (double)r->wd[i] * r->ad[i];
    }
    free(wf);
    free(af);
}

static void free_row(struct row *r)
{
    free(r->w);
    free(r->a);
    free(r->wd);
    free(r->ad);
}

/* Float-rounding bound: relative 2e-6 of the magnitude (block totals are exact integers; the
 * error comes from scale products and the float sum), plus Q8_1's sum term, which is stored
 * as an f16 (relative 2^-11 of |m * s| per block). */
static double bound(uint32_t t, const struct row *r, int64_t n)
{
    double b = 2e-6 * r->abs_sum + 1e-30;
    if (t == LG_QTYPE_Q4_1 || t == LG_QTYPE_Q5_1) {
        double ms = 0;
        for (int64_t i = 0; i < n; i++)
            ms += fabs((double)r->ad[i]) * fabs((double)r->wd[i]) + fabs((double)r->ad[i]);
        b += 1e-3 * ms;
    }
    return b;
}

static void test_dots(const struct lg_kern *k)
{
    for (int it = 0; it < N_TYPES; it++) {
        uint32_t t = types[it];
        const struct lg_qtype_info *qi = lg_qtype_get(t);
        CHECK_MSG(lg_vec_dot_ref[t] != NULL, "no reference dot for %s", qi->name);
        CHECK_MSG(k->vec_dot[t] != NULL, "[%s] empty vec_dot slot for %s", k->isa, qi->name);
        if (!lg_vec_dot_ref[t] || !k->vec_dot[t] || !qi->can_quant)
            continue;
        int64_t g = granule(t);
        int64_t lens[5] = {g, 2 * g, 7 * g, g == 1 ? 37 : 3 * g, g == 1 ? 1 : 5 * g};
        for (int il = 0; il < 5; il++) {
            int64_t n = lens[il];
            struct row r;
            make_row(t, n, &r);
            double b = bound(t, &r, n);
            float ref = lg_vec_dot_ref[t](r.w, r.a, n);
            if (k == lg_kern_ref())
                CHECK_MSG(fabs(ref - r.expect) <= b, "ref dot %s n=%lld: %.9g vs %.9g (bound %g)",
                          qi->name, (long long)n, (double)ref, r.expect, b);
            float got = k->vec_dot[t](r.w, r.a, n);
            CHECK_MSG(fabs(got - ref) <= b, "[%s] dot %s n=%lld: %.9g vs ref %.9g (bound %g)",
                      k->isa, qi->name, (long long)n, (double)got, (double)ref, b);
            free_row(&r);
        }
    }
}

/* The blocked driver with this table's dots over awkward shapes and split row ranges. */
static void test_matmul_q(const struct lg_kern *k)
{
    const int64_t shapes[][2] = {{1, 1}, {5, 3}, {33, 9}, {2, 4}, {70, 5}};
    for (int it = 0; it < N_TYPES; it++) {
        uint32_t t = types[it];
        const struct lg_qtype_info *qi = lg_qtype_get(t);
        if (!k->vec_dot[t] || !qi->can_quant)
            continue;
        int64_t cols = granule(t) == 1 ? 45 : 2 * granule(t);
        for (int is = 0; is < 5; is++) {
            int64_t rows = shapes[is][0], nt = shapes[is][1];
            uint64_t wb;
            lg_qtype_row_bytes(t, (uint64_t)cols, &wb);
            size_t ab = lg_act_row_bytes(t, cols);
            /* padded strides that keep every block struct (and f32) aligned */
            size_t wstride = ((size_t)wb + 7) / 4 * 4, astride = (ab + 7) / 4 * 4;
            int64_t ldy = rows + 3;
            uint8_t *w = malloc(wstride * (size_t)rows), *a = malloc(astride * (size_t)nt);
            float *f = malloc((size_t)cols * sizeof(float));
            float *y = malloc((size_t)(ldy * nt) * sizeof(float));
            for (int64_t r = 0; r < rows; r++) {
                fill(f, cols);
                lg_quant_row((enum lg_qtype)t, f, w + (size_t)r * wstride, cols);
            }
            for (int64_t j = 0; j < nt; j++) {
                fill(f, cols);
                lg_act_quantize(t, f, a + (size_t)j * astride, cols);
            }
            struct lg_wmat m = {.type = t, .data = w, .rows = rows, .cols = cols,
                                .row_bytes = wstride};
            for (int64_t i = 0; i < ldy * nt; i++)
                y[i] = NAN;
            int64_t mid = rows / 2;
            lg_matmul_q(k->vec_dot[t], k->vec_dot4[t], &m, a, astride, y, ldy, nt, 0, mid);
            lg_matmul_q(k->vec_dot[t], k->vec_dot4[t], &m, a, astride, y, ldy, nt, mid, rows);
            int bad = 0, pad = 0;
            for (int64_t j = 0; j < nt; j++) {
                for (int64_t r = 0; r < rows; r++) {
                    const uint8_t *wr = w + (size_t)r * wstride, *ar = a + (size_t)j * astride;
                    float want = lg_vec_dot_ref[t](wr, ar, cols);
                    double mag = 0;
                    float *wd = malloc((size_t)cols * sizeof(float));
                    float *ad = malloc((size_t)cols * sizeof(float));
                    lg_dequant_row((enum lg_qtype)t, wr, wd, cols);
                    lg_dequant_row((enum lg_qtype)lg_act_type(t), ar, ad, cols);
                    for (int64_t c = 0; c < cols; c++)
                        mag += fabs((double)wd[c] * ad[c]) + fabs((double)ad[c]);
                    free(wd);
                    free(ad);
                    double e = fabs((double)y[j * ldy + r] - want);
                    if (!(e <= 2e-6 * mag + 1e-3 * mag * (t == LG_QTYPE_Q4_1 || t == LG_QTYPE_Q5_1)))
                        bad++;
                }
                for (int64_t r = rows; r < ldy; r++)
                    pad |= !isnan(y[j * ldy + r]);
            }
            CHECK_MSG(!bad, "[%s] matmul_q %s %lldx%lld n_tok=%lld: %d wrong", k->isa, qi->name,
                      (long long)rows, (long long)cols, (long long)nt, bad);
            CHECK_MSG(!pad, "[%s] matmul_q %s wrote past rows", k->isa, qi->name);
            free(w);
            free(a);
            free(f);
            free(y);
        }
    }
}

/* The activation formats: sizes, and the bytes equal quant/'s reference quantizers. */
static void test_act(void)
{
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_Q4_0), LG_QTYPE_Q8_0);
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_Q5_1), LG_QTYPE_Q8_1);
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_Q6_K), LG_QTYPE_Q8_K);
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_IQ4_XS), LG_QTYPE_Q8_K);
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_F16), LG_QTYPE_F16);
    CHECK_EQ_INT(lg_act_type(LG_QTYPE_IQ2_XXS), -1);
    CHECK_EQ_INT(lg_act_row_bytes(LG_QTYPE_Q4_K, 512), 2 * 292);
    CHECK_EQ_INT(lg_act_row_bytes(LG_QTYPE_Q4_0, 64), 2 * 34);
    CHECK_EQ_INT(lg_act_row_bytes(LG_QTYPE_Q4_0, 48), 0);
    CHECK_EQ_INT(lg_act_row_bytes(LG_QTYPE_F32, 3), 12);
    float x[256];
    uint8_t a[292], b[292];
    fill(x, 256);
    lg_act_quantize(LG_QTYPE_Q2_K, x, a, 256);
    lg_quant_row(LG_QTYPE_Q8_K, x, b, 256);
    CHECK(memcmp(a, b, 292) == 0);
    lg_act_quantize(LG_QTYPE_MXFP4, x, a, 64);
    lg_quant_row(LG_QTYPE_Q8_0, x, b, 64);
    CHECK(memcmp(a, b, 68) == 0);
}

int main(void)
{
    lg_test_rand_seed(4);
    test_act();
    const char *isas[] = {"ref", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        const struct lg_kern *k = lg_kern_select(isas[i]);
        if (!k)
            continue;
        printf("test_qdot: isa %s\n", k->isa);
        test_dots(k);
        test_matmul_q(k);
    }
    return lg_test_done("test_qdot");
}
