/* test_sample_select.c: the sampler's partial selections (top-k heap with vectorised block
 * skips, bucketed top-p with a radix sort, vectorised greedy) against a reference that sorts
 * the whole vocabulary, as the chain did before them. Same params and seed -> the same token,
 * draw after draw, on random logits full of ties, with -inf, NaN and +inf entries, over
 * vocabularies from 1 to 262144 entries and a grid of temperature / top-k / top-p / min-p.
 * The reference is written from the chain's documentation (sample.h): candidates ordered by
 * (logit desc, id asc); top-k the first k; top-p the shortest prefix holding top_p of the
 * softmax mass (of the top-k set, or of the whole vocabulary without top-k); min-p relative
 * to the best; one uniform draw over the kept candidates in that order (in id order when
 * neither top-k nor top-p sorts them). NaN counts as -inf. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sample.h"
#include "test.h"

struct rc {
    float l;
    int32_t id;
};

static int cmp_best(const void *pa, const void *pb)
{
    const struct rc *a = pa, *b = pb;
    if (a->l > b->l)
        return -1;
    if (a->l < b->l)
        return 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

static float ref_scaled(float d, float inv_t)
{
    float v = d * inv_t;
    return isnan(v) ? 0.0f : v;
}

/* One draw of the documented chain over a full sort (no penalties, bias or mask). */
static int32_t ref_draw(const float *l, int32_t nv, const struct lg_sample_params *p,
                        struct lg_rng *rng, struct rc *c)
{
    if (p->temperature <= 0.0f) {
        int32_t best = -1;
        for (int32_t i = 0; i < nv; i++)
            if (l[i] > -INFINITY && (best < 0 || l[i] > l[best]))
                best = i;
        return best;
    }
    const float inv_t = 1.0f / p->temperature;
    int32_t n = 0;
    for (int32_t i = 0; i < nv; i++)
        if (l[i] > -INFINITY)
            c[n++] = (struct rc){l[i], i};
    if (n == 0)
        return -1;
    if (p->top_k > 0 || p->top_p < 1.0f)
        qsort(c, (size_t)n, sizeof *c, cmp_best);
    if (p->top_k > 0) {
        if (n > p->top_k)
            n = p->top_k;
        if (p->top_p < 1.0f && n > 1) {
            float m = c[0].l;
            double z = 0.0, cum = 0.0;
            for (int32_t i = 0; i < n; i++)
                z += (double)expf(ref_scaled(c[i].l - m, inv_t));
            for (int32_t i = 0; i < n; i++) {
                cum += (double)expf(ref_scaled(c[i].l - m, inv_t));
                if (cum >= (double)p->top_p * z) {
                    n = i + 1;
                    break;
                }
            }
        }
    } else if (p->top_p < 1.0f) {
        float m = c[0].l;
        double z = 0.0, cum = 0.0;
        for (int32_t i = 0; i < nv; i++) /* the whole vocabulary, in id order */
            if (l[i] > -INFINITY)
                z += (double)expf(ref_scaled(l[i] - m, inv_t));
        for (int32_t i = 0; i < n; i++) {
            cum += (double)expf(ref_scaled(c[i].l - m, inv_t));
            if (cum >= (double)p->top_p * z) {
                n = i + 1;
                break;
            }
        }
    }
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (c[i].l > m)
            m = c[i].l;
    if (p->min_p > 0.0f) {
        float thr = logf(p->min_p);
        int32_t w = 0;
        for (int32_t i = 0; i < n; i++)
            if (ref_scaled(c[i].l - m, inv_t) >= thr)
                c[w++] = c[i];
        n = w;
    }
    double z = 0.0;
    for (int32_t i = 0; i < n; i++)
        z += (double)expf(ref_scaled(c[i].l - m, inv_t));
    double u = lg_rng_uniform(rng) * z, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cum += (double)expf(ref_scaled(c[i].l - m, inv_t));
        if (u < cum)
            return c[i].id;
    }
    return c[n - 1].id;
}

enum { SHAPE_TIES = 0, SHAPE_FLAT = 1, SHAPE_PEAKED = 2 };

/* Random logits: SHAPE_TIES draws from 40 values (most entries tie with many others),
 * SHAPE_FLAT from a narrow continuous range (a nucleus of most of the vocabulary: the radix
 * path), SHAPE_PEAKED like a model (a few hundred tokens far above the rest). special adds
 * -inf, NaN and, rarely, +inf entries. */
static void fill(float *l, int32_t nv, int shape, bool special, struct lg_rng *r)
{
    for (int32_t i = 0; i < nv; i++) {
        uint64_t x = lg_rng_next(r);
        if (shape == SHAPE_TIES)
            l[i] = (float)(x % 40) * 0.25f - 5.0f;
        else if (shape == SHAPE_FLAT)
            l[i] = (float)lg_rng_uniform(r) * 0.5f;
        else
            l[i] = (float)(lg_rng_uniform(r) * 6.0 + (x % 997 == 0 ? 14.0 : 0.0));
        if (special) {
            uint64_t y = x >> 40;
            if (y % 13 == 0)
                l[i] = -INFINITY;
            else if (y % 17 == 0)
                l[i] = NAN;
        }
    }
    if (special && nv > 3 && lg_rng_next(r) % 4 == 0)
        l[(int32_t)(lg_rng_next(r) % (uint64_t)nv)] = INFINITY;
}

static int n_compared;

/* Draws n_draws tokens from a sampler and from the reference with the same seed. */
static void compare(const float *l, int32_t nv, const struct lg_sample_params *p, int n_draws,
                    struct rc *scratch, const char *what)
{
    struct lg_sampler *s = NULL;
    struct lg_err err = {0};
    CHECK_MSG(lg_sampler_create(p, nv, &s, &err) == LG_OK, "create: %s", err.msg);
    if (!s)
        return;
    struct lg_rng r;
    lg_rng_seed(&r, p->seed);
    for (int k = 0; k < n_draws; k++) {
        int32_t want = ref_draw(l, nv, p, &r, scratch), got = -1;
        enum lg_status st = lg_sampler_sample(s, l, &got, NULL, &err);
        if (want < 0) {
            CHECK_MSG(st == LG_ERR_RANGE, "%s: nothing to draw but status %d", what, (int)st);
            break;
        }
        CHECK_MSG(st == LG_OK && got == want,
                  "%s (n_vocab %d, T %g, top_k %d, top_p %g, min_p %g, seed %llu, draw %d): "
                  "token %d, full sort %d",
                  what, (int)nv, (double)p->temperature, (int)p->top_k, (double)p->top_p,
                  (double)p->min_p, (unsigned long long)p->seed, k, (int)got, (int)want);
        n_compared++;
        if (got != want)
            break;
    }
    lg_sampler_destroy(s);
}

static struct lg_sample_params params(float t, int32_t k, float top_p, float min_p,
                                      uint64_t seed)
{
    struct lg_sample_params p;
    lg_sample_params_default(&p);
    p.temperature = t;
    p.top_k = k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.seed = seed;
    return p;
}

/* Small vocabularies: the whole grid. */
static void test_grid(void)
{
    static const int32_t sizes[] = {1, 2, 5, 31, 32, 33, 100, 1000, 5000};
    static const float temps[] = {0.0f, 0.5f, 1.0f, 3.0f};
    static const int32_t ks[] = {0, 1, 3, 64, 4500};
    static const float ps[] = {1.0f, 0.95f, 0.3f, 0.0f};
    static const float mps[] = {0.0f, 0.1f};
    float *l = malloc(5000 * sizeof *l);
    struct rc *c = malloc(5000 * sizeof *c);
    CHECK(l && c);
    if (!l || !c) {
        free(l);
        free(c);
        return;
    }
    struct lg_rng r;
    lg_rng_seed(&r, 77);
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int32_t nv = sizes[si];
        for (int shape = 0; shape < 3; shape++) {
            for (int special = 0; special < 2; special++) {
                fill(l, nv, shape, special, &r);
                for (size_t a = 0; a < sizeof temps / sizeof *temps; a++)
                    for (size_t b = 0; b < sizeof ks / sizeof *ks; b++)
                        for (size_t d = 0; d < sizeof ps / sizeof *ps; d++)
                            for (size_t e = 0; e < sizeof mps / sizeof *mps; e++) {
                                struct lg_sample_params p = params(
                                    temps[a], ks[b], ps[d], mps[e], lg_rng_next(&r) % 1000);
                                compare(l, nv, &p, 3, c, "grid");
                            }
            }
        }
    }
    free(l);
    free(c);
}

/* Gemma's vocabulary: top-p alone over nuclei of a few hundred to most of the entries (the
 * radix path), top-k, greedy. */
static void test_big(void)
{
    enum { NV = 262144 };
    float *l = malloc(NV * sizeof *l);
    struct rc *c = malloc(NV * sizeof *c);
    CHECK(l && c);
    if (!l || !c) {
        free(l);
        free(c);
        return;
    }
    struct lg_rng r;
    lg_rng_seed(&r, 2026);
    struct {
        int shape;
        bool special;
        float t, top_p, min_p;
        int32_t k;
    } cases[] = {
        {SHAPE_PEAKED, false, 1.0f, 0.95f, 0.0f, 0},  {SHAPE_PEAKED, true, 1.0f, 0.5f, 0.0f, 0},
        {SHAPE_FLAT, false, 1.0f, 0.95f, 0.0f, 0},    {SHAPE_FLAT, true, 2.0f, 0.99f, 0.0f, 0},
        {SHAPE_TIES, false, 1.0f, 0.9f, 0.0f, 0},     {SHAPE_TIES, true, 0.7f, 0.6f, 0.05f, 0},
        {SHAPE_PEAKED, false, 1.0f, 0.95f, 0.0f, 64}, {SHAPE_TIES, true, 1.0f, 0.95f, 0.0f, 64},
        {SHAPE_FLAT, false, 1.0f, 1.0f, 0.0f, 5000},  {SHAPE_TIES, true, 0.0f, 1.0f, 0.0f, 0},
        {SHAPE_PEAKED, false, 0.0f, 1.0f, 0.0f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fill(l, NV, cases[i].shape, cases[i].special, &r);
        struct lg_sample_params p =
            params(cases[i].t, cases[i].k, cases[i].top_p, cases[i].min_p, 100 + i);
        compare(l, NV, &p, 4, c, "262144");
    }
    free(l);
    free(c);
}

int main(void)
{
    test_grid();
    test_big();
    printf("%d draws compared with the full-sort reference\n", n_compared);
    CHECK(n_compared > 10000);
    return lg_test_done("test_sample_select");
}
