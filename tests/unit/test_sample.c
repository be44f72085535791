/* test_sample.c: the sampler chain on crafted logits with fixed seeds: greedy and its ties,
 * top-k = 1 == greedy, exact kept sets for top-p / min-p / top-k, penalties and bias moving
 * the expected entries, the grammar mask hook, the temperature -> 0 limit, seed
 * reproducibility, a chi-square test of the draw, logprobs, a 262144-entry vocabulary, and
 * params from GGUF general.sampling.* keys. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "sample/sample.h"
#include "test.h"

static struct lg_sampler *mk(const struct lg_sample_params *p, int32_t n_vocab)
{
    struct lg_sampler *s = NULL;
    struct lg_err err = {0};
    enum lg_status st = lg_sampler_create(p, n_vocab, &s, &err);
    CHECK_MSG(st == LG_OK, "create: %s", err.msg);
    return s;
}

static struct lg_sample_params plain(void)
{
    struct lg_sample_params p;
    lg_sample_params_default(&p);
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = 1234;
    return p;
}

static int32_t draw(struct lg_sampler *s, const float *l)
{
    int32_t t = -1;
    struct lg_err err = {0};
    enum lg_status st = lg_sampler_sample(s, l, &t, NULL, &err);
    if (st != LG_OK)
        return -1;
    return t;
}

/* Draws n times and returns the set of tokens seen as a bitmask (vocab <= 64). */
static uint64_t drawn_set(struct lg_sampler *s, const float *l, int n, int *counts)
{
    uint64_t set = 0;
    for (int i = 0; i < n; i++) {
        int32_t t = draw(s, l);
        if (t < 0 || t >= 64)
            return ~0ull;
        set |= 1ull << t;
        if (counts)
            counts[t]++;
    }
    return set;
}

static void logits_from_probs(const double *p, int n, float *l)
{
    for (int i = 0; i < n; i++)
        l[i] = (float)log(p[i]) + 3.0f; /* an offset: softmax must not care */
}

static enum lg_status mask_3_9(void *user, uint32_t *allowed, int32_t n_vocab,
                               struct lg_err *err)
{
    (void)user;
    (void)err;
    if (n_vocab > 9) {
        allowed[0] |= 1u << 3;
        allowed[0] |= 1u << 9;
    }
    return LG_OK;
}

static enum lg_status mask_none(void *user, uint32_t *allowed, int32_t n_vocab,
                                struct lg_err *err)
{
    (void)user;
    (void)allowed;
    (void)n_vocab;
    (void)err;
    return LG_OK;
}

static void test_greedy_and_ties(void)
{
    struct lg_sample_params p = plain();
    p.temperature = 0.0f;
    struct lg_sampler *s = mk(&p, 8);
    float l[8] = {0.1f, 2.0f, -1.0f, 2.0f, 1.9f, NAN, 2.0f, -INFINITY};
    CHECK_EQ_INT(draw(s, l), 1); /* three-way tie at 2.0 -> lowest id */
    l[1] = 1.0f;
    CHECK_EQ_INT(draw(s, l), 3);
    float nan_big[8] = {NAN, NAN, 0.0f, NAN, NAN, NAN, NAN, NAN};
    CHECK_EQ_INT(draw(s, nan_big), 2); /* NaN is -inf, never chosen */
    float dead[8];
    for (int i = 0; i < 8; i++)
        dead[i] = -INFINITY;
    int32_t t = 77;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_sampler_sample(s, dead, &t, NULL, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(t, 77);
    lg_sampler_destroy(s);
}

static void test_topk1_is_greedy(void)
{
    enum { NV = 1000 };
    static float l[NV];
    struct lg_sample_params pg = plain(), pk = plain();
    pg.temperature = 0.0f;
    pk.top_k = 1;
    pk.temperature = 1.5f;
    struct lg_sampler *g = mk(&pg, NV), *k = mk(&pk, NV);
    struct lg_rng r;
    lg_rng_seed(&r, 99);
    int same = 0;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < NV; i++)
            l[i] = (float)(lg_rng_uniform(&r) * 10.0 - 5.0);
        if (trial % 10 == 0) /* plant ties at the top */
            l[500] = l[100] = 9.0f;
        int32_t a = draw(g, l), b = draw(k, l);
        same += a == b && a >= 0;
        if (trial % 10 == 0)
            CHECK_EQ_INT(a, 100);
    }
    CHECK_EQ_INT(same, 200);
    lg_sampler_destroy(g);
    lg_sampler_destroy(k);
}

static void test_exact_sets(void)
{
    /* probabilities 0.4 0.25 0.15 0.1 0.06 0.04 */
    const double pr[6] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
    float l[6];
    logits_from_probs(pr, 6, l);
    struct lg_sample_params p = plain();

    p.top_p = 0.7f; /* 0.4, 0.65, 0.80 -> first three */
    struct lg_sampler *s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0x7);
    lg_sampler_destroy(s);

    p.top_p = 0.65f; /* cumulative reaches exactly 0.65 at two (float rounding aside) */
    p.top_p = 0.6f;
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0x3);
    lg_sampler_destroy(s);

    p = plain();
    p.min_p = 0.3f; /* keep p >= 0.12: 0.4 0.25 0.15 */
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0x7);
    lg_sampler_destroy(s);
    p.min_p = 0.2f; /* keep p >= 0.08: four */
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0xf);
    lg_sampler_destroy(s);

    p = plain();
    p.top_k = 4;
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0xf);
    lg_sampler_destroy(s);

    /* chain order: top-k 5 renormalises (sum 0.96), top-p 0.9 keeps 0.4 .25 .15 .1 (0.9/0.96
     * = 0.9375 >= 0.9 only after four), then min-p 0.3 drops 0.1 (< 0.12) */
    p = plain();
    p.top_k = 5;
    p.top_p = 0.9f;
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0xf);
    lg_sampler_destroy(s);
    p.min_p = 0.3f;
    s = mk(&p, 6);
    CHECK_EQ_INT(drawn_set(s, l, 4000, NULL), 0x7);
    lg_sampler_destroy(s);

    /* top-p ratios inside the kept set stay proportional: 0.4 : 0.25 */
    p = plain();
    p.top_p = 0.6f;
    s = mk(&p, 6);
    int counts[64] = {0};
    drawn_set(s, l, 20000, counts);
    CHECK_NEAR((double)counts[0] / 20000.0, 0.4 / 0.65, 0.015);
    lg_sampler_destroy(s);
}

static void test_penalties_bias_mask(void)
{
    struct lg_sample_params p = plain();
    p.temperature = 0.0f;
    float l[12] = {2.0f, 1.9f, -0.5f, 0.0f, -3.0f, 0.5f, 0.2f, 0.1f, 0.0f, 1.0f, 0.0f, 0.0f};
    struct lg_err err = {0};

    p.repeat_penalty = 1.1f; /* 2.0/1.1 = 1.818 < 1.9 */
    struct lg_sampler *s = mk(&p, 12);
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_accept(s, 0);
    CHECK_EQ_INT(draw(s, l), 1);
    lg_sampler_reset(s);
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_destroy(s);

    /* negative logits are multiplied: token 2 at -0.5 * 10 must lose to token 4 at -3 when
     * everything else is banned */
    p = plain();
    p.temperature = 0.0f;
    p.repeat_penalty = 10.0f;
    s = mk(&p, 12);
    struct lg_logit_bias ban[10];
    int nb = 0;
    for (int i = 0; i < 12; i++)
        if (i != 2 && i != 4)
            ban[nb++] = (struct lg_logit_bias){i, -INFINITY};
    CHECK_EQ_INT(lg_sampler_set_logit_bias(s, ban, (size_t)nb, &err), LG_OK);
    CHECK_EQ_INT(draw(s, l), 2);
    lg_sampler_accept(s, 2);
    CHECK_EQ_INT(draw(s, l), 4); /* -5.0 < -3.0 */
    lg_sampler_destroy(s);

    /* frequency: 3 x 0.05 = 0.15 pushes 2.0 below 1.9; once (0.05) does not */
    p = plain();
    p.temperature = 0.0f;
    p.frequency_penalty = 0.05f;
    s = mk(&p, 12);
    lg_sampler_accept(s, 0);
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_accept(s, 0);
    lg_sampler_accept(s, 0);
    CHECK_EQ_INT(draw(s, l), 1);
    lg_sampler_destroy(s);

    /* presence: once is enough, repeats do not add */
    p = plain();
    p.temperature = 0.0f;
    p.presence_penalty = 0.2f;
    p.penalty_last_n = 3;
    s = mk(&p, 12);
    lg_sampler_accept(s, 0);
    CHECK_EQ_INT(draw(s, l), 1); /* 1.8 < 1.9 */
    lg_sampler_accept(s, 1);     /* 1: 1.7, 0: 1.8 */
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_accept(s, 5);
    lg_sampler_accept(s, 6); /* window of 3 holds 1 5 6: token 0 is free again */
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_accept(s, 7);
    lg_sampler_accept(s, 8); /* window 6 7 8 */
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_destroy(s);

    /* logit bias */
    p = plain();
    p.temperature = 0.0f;
    s = mk(&p, 12);
    struct lg_logit_bias b1[2] = {{0, -INFINITY}, {7, 5.0f}};
    CHECK_EQ_INT(lg_sampler_set_logit_bias(s, b1, 1, &err), LG_OK);
    CHECK_EQ_INT(draw(s, l), 1);
    CHECK_EQ_INT(lg_sampler_set_logit_bias(s, b1, 2, &err), LG_OK);
    CHECK_EQ_INT(draw(s, l), 7);
    struct lg_logit_bias bad[3] = {{12, 1.0f}, {-1, 1.0f}, {3, NAN}};
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(lg_sampler_set_logit_bias(s, &bad[i], 1, &err), LG_ERR_RANGE);
    CHECK_EQ_INT(draw(s, l), 7); /* old list kept */
    CHECK_EQ_INT(lg_sampler_set_logit_bias(s, NULL, 0, &err), LG_OK);

    /* grammar mask hook */
    lg_sampler_set_mask(s, mask_3_9, NULL);
    CHECK_EQ_INT(draw(s, l), 9);
    lg_sampler_set_mask(s, mask_none, NULL);
    int32_t t = -5;
    CHECK_EQ_INT(lg_sampler_sample(s, l, &t, NULL, &err), LG_ERR_RANGE);
    lg_sampler_set_mask(s, NULL, NULL);
    CHECK_EQ_INT(draw(s, l), 0);
    lg_sampler_destroy(s);

    /* the caller's logits are never modified */
    p = plain();
    p.repeat_penalty = 2.0f;
    s = mk(&p, 12);
    lg_sampler_accept(s, 0);
    float copy[12];
    memcpy(copy, l, sizeof l);
    draw(s, l);
    CHECK(memcmp(copy, l, sizeof l) == 0);
    lg_sampler_destroy(s);
}

static void test_temperature_and_seeds(void)
{
    enum { NV = 300 };
    static float l[NV];
    struct lg_rng r;
    lg_rng_seed(&r, 7);
    struct lg_sample_params pg = plain(), pt = plain();
    pg.temperature = 0.0f;
    pt.temperature = 1e-3f;
    struct lg_sampler *g = mk(&pg, NV), *t = mk(&pt, NV);
    int same = 0;
    for (int trial = 0; trial < 300; trial++) {
        for (int i = 0; i < NV; i++)
            l[i] = (float)(lg_rng_uniform(&r) * 4.0);
        int best = 0;
        for (int i = 1; i < NV; i++)
            best = l[i] > l[best] ? i : best;
        l[best] += 0.05f; /* a margin of 50 T: the runner-up has odds e^-50 */
        same += draw(g, l) == draw(t, l);
    }
    CHECK_EQ_INT(same, 300);
    lg_sampler_destroy(g);
    lg_sampler_destroy(t);

    /* same seed -> same sequence; another seed -> another sequence */
    for (int i = 0; i < NV; i++)
        l[i] = (float)(i % 17) * 0.1f;
    struct lg_sample_params p = plain();
    p.seed = 42;
    struct lg_sampler *a = mk(&p, NV), *b = mk(&p, NV);
    p.seed = 43;
    struct lg_sampler *c = mk(&p, NV);
    int eq_ab = 0, eq_ac = 0;
    int32_t first[64];
    for (int i = 0; i < 64; i++) {
        int32_t x = draw(a, l), y = draw(b, l), z = draw(c, l);
        first[i] = x;
        eq_ab += x == y;
        eq_ac += x == z;
    }
    CHECK_EQ_INT(eq_ab, 64);
    CHECK(eq_ac < 20);
    /* re-seeding replays */
    lg_sampler_seed(a, 42);
    int replay = 0;
    for (int i = 0; i < 64; i++)
        replay += draw(a, l) == first[i];
    CHECK_EQ_INT(replay, 64);
    lg_sampler_destroy(a);
    lg_sampler_destroy(b);
    lg_sampler_destroy(c);

    /* xoshiro256** reference: first outputs for state {1,2,3,4} (from the authors' C code) */
    struct lg_rng x = {{1, 2, 3, 4}};
    CHECK(lg_rng_next(&x) == 11520u);
    CHECK(lg_rng_next(&x) == 0u);
    CHECK(lg_rng_next(&x) == 1509978240u);
    CHECK(lg_rng_next(&x) == 1215971899390074240u);
}

static void test_chi_square(void)
{
    const double pr[8] = {0.30, 0.20, 0.15, 0.12, 0.10, 0.07, 0.04, 0.02};
    float l[8];
    logits_from_probs(pr, 8, l);
    struct lg_sample_params p = plain();
    p.seed = 2024;
    struct lg_sampler *s = mk(&p, 8);
    int counts[64] = {0};
    const int n = 50000;
    drawn_set(s, l, n, counts);
    double chi = 0.0;
    for (int i = 0; i < 8; i++) {
        double e = pr[i] * n;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    /* 7 degrees of freedom: P(chi2 > 24.32) = 0.001 */
    CHECK_MSG(chi < 24.32, "chi2 = %.2f", chi);

    /* temperature 2 flattens to p^(1/2) (renormalised) */
    p.temperature = 2.0f;
    lg_sampler_destroy(s);
    s = mk(&p, 8);
    memset(counts, 0, sizeof counts);
    drawn_set(s, l, n, counts);
    double z = 0.0, q[8];
    for (int i = 0; i < 8; i++)
        z += sqrt(pr[i]);
    chi = 0.0;
    for (int i = 0; i < 8; i++) {
        q[i] = sqrt(pr[i]) / z;
        double e = q[i] * n;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    CHECK_MSG(chi < 24.32, "chi2 at T=2: %.2f", chi);
    lg_sampler_destroy(s);
}

static void test_logprobs(void)
{
    float l[10] = {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f, -INFINITY, 2.0f, 0.5f, 1.5f};
    struct lg_sample_params p = plain();
    p.temperature = 0.0f;
    p.n_logprobs = 4;
    p.repeat_penalty = 5.0f; /* logprobs must ignore it: they describe the model */
    struct lg_sampler *s = mk(&p, 10);
    lg_sampler_accept(s, 1);
    struct lg_sample_info info;
    int32_t t = -1;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_sampler_sample(s, l, &t, &info, &err), LG_OK);
    CHECK_EQ_INT(t, 4);
    double z = 0.0;
    for (int i = 0; i < 10; i++)
        if (i != 6)
            z += exp((double)l[i]);
    CHECK_NEAR(info.logprob, 3.0 - log(z), 1e-5);
    CHECK_EQ_INT(info.n_top, 4);
    int want[4] = {1, 4, 2, 7};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(info.top[i].token, want[i]);
        CHECK_NEAR(info.top[i].logprob, (double)l[want[i]] - log(z), 1e-5);
    }
    lg_sampler_destroy(s);
}

static int cmp_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void test_big_vocab(void)
{
    enum { NV = 262144 };
    float *l = malloc(NV * sizeof *l), *sorted = malloc(NV * sizeof *sorted);
    CHECK(l && sorted);
    if (!l || !sorted) {
        free(l);
        free(sorted);
        return;
    }
    struct lg_rng r;
    lg_rng_seed(&r, 5);
    for (int i = 0; i < NV; i++) /* logit-like: most mass in a few hundred tokens */
        l[i] = (float)(lg_rng_uniform(&r) * 8.0 + (i % 1000 == 0 ? 10.0 : 0.0));
    memcpy(sorted, l, NV * sizeof *l);
    qsort(sorted, NV, sizeof *sorted, cmp_desc);

    struct lg_sample_params p;
    lg_sample_params_default(&p); /* Gemma defaults: temp 1, top_k 64, top_p 0.95 */
    p.seed = 11;
    struct lg_sampler *s = mk(&p, NV);
    int inside = 0;
    const int n = 300;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        int32_t t = draw(s, l);
        inside += t >= 0 && l[t] >= sorted[63];
    }
    double per_tok = (now_s() - t0) / n;
    CHECK_EQ_INT(inside, n);
    printf("262144-vocab sample (top_k 64, top_p 0.95): %.3f ms/token\n", per_tok * 1e3);
    lg_sampler_destroy(s);

    /* top-p alone: nucleus from a full sort in double precision */
    p.top_k = 0;
    p.top_p = 0.5f;
    s = mk(&p, NV);
    double z = 0.0, m = sorted[0];
    for (int i = 0; i < NV; i++)
        z += exp(sorted[i] - m);
    double cum = 0.0;
    int k = 0;
    while (k < NV && cum < 0.5 * z)
        cum += exp(sorted[k++] - m);
    float thr = sorted[k - 1];
    inside = 0;
    t0 = now_s();
    for (int i = 0; i < n; i++) {
        int32_t t = draw(s, l);
        inside += t >= 0 && l[t] >= thr;
    }
    per_tok = (now_s() - t0) / n;
    CHECK_EQ_INT(inside, n);
    printf("262144-vocab sample (top_p 0.5 alone, nucleus %d): %.3f ms/token\n", k,
           per_tok * 1e3);
    lg_sampler_destroy(s);
    free(l);
    free(sorted);
}

static void test_params(void)
{
    struct lg_sample_params p;
    struct lg_err err = {0};
    lg_sample_params_default(&p);
    CHECK_NEAR(p.temperature, 1.0, 0);
    CHECK_EQ_INT(p.top_k, 64);
    CHECK_NEAR(p.top_p, 0.95, 1e-7);
    CHECK_EQ_INT(lg_sample_params_check(&p, &err), LG_OK);
    struct lg_sample_params bad = p;
    bad.top_p = 1.5f;
    CHECK_EQ_INT(lg_sample_params_check(&bad, &err), LG_ERR_RANGE);
    CHECK(strstr(err.msg, "top_p") != NULL);
    bad = p;
    bad.temperature = NAN;
    CHECK_EQ_INT(lg_sample_params_check(&bad, &err), LG_ERR_RANGE);
    bad = p;
    bad.top_k = -3;
    CHECK_EQ_INT(lg_sample_params_check(&bad, &err), LG_ERR_RANGE);
    bad = p;
    bad.n_logprobs = 21;
    CHECK_EQ_INT(lg_sample_params_check(&bad, &err), LG_ERR_RANGE);
    bad = p;
    bad.penalty_last_n = LG_SAMPLE_MAX_PENALTY_N + 1;
    CHECK_EQ_INT(lg_sample_params_check(&bad, &err), LG_ERR_RANGE);
    struct lg_sampler *s = NULL;
    CHECK_EQ_INT(lg_sampler_create(&bad, 10, &s, &err), LG_ERR_RANGE);
    CHECK(s == NULL);
    CHECK_EQ_INT(lg_sampler_create(&p, 0, &s, &err), LG_ERR_INVALID_ARG);

    /* from GGUF: good keys applied, a bad one reported and skipped */
    char path[] = "/tmp/lg_test_sample_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    CHECK(w != NULL);
    if (!w)
        return;
    lg_gguf_writer_add_str(w, "general.architecture", "gemma3");
    lg_gguf_writer_add_f32(w, "general.sampling.temp", 0.7f);
    lg_gguf_writer_add_i32(w, "general.sampling.top_k", 40);
    lg_gguf_writer_add_f32(w, "general.sampling.top_p", 1.5f); /* out of range */
    lg_gguf_writer_add_f32(w, "general.sampling.min_p", 0.05f);
    lg_gguf_writer_add_str(w, "general.sampling.penalty_repeat", "x"); /* wrong type */
    enum lg_status st = lg_gguf_writer_write(w, path, NULL, NULL, &err);
    lg_gguf_writer_destroy(w);
    CHECK_MSG(st == LG_OK, "gguf write: %s", err.msg);
    struct lg_gguf *g = NULL;
    if (st == LG_OK && lg_gguf_open(path, &g, &err) == LG_OK) {
        lg_sample_params_default(&p);
        st = lg_sample_params_from_gguf(&p, g, &err);
        CHECK_EQ_INT(st, LG_ERR_RANGE);
        CHECK(strstr(err.msg, "general.sampling.top_p") != NULL);
        CHECK_NEAR(p.temperature, 0.7, 1e-6);
        CHECK_EQ_INT(p.top_k, 40);
        CHECK_NEAR(p.top_p, 0.95, 1e-7); /* bad value skipped */
        CHECK_NEAR(p.min_p, 0.05, 1e-7);
        CHECK_NEAR(p.repeat_penalty, 1.0, 0);
        lg_gguf_close(g);
    } else {
        CHECK_MSG(0, "gguf open: %s", err.msg);
    }
    unlink(path);
}

int main(void)
{
    test_greedy_and_ties();
    test_topk1_is_greedy();
    test_exact_sets();
    test_penalties_bias_mask();
    test_temperature_and_seeds();
    test_chi_square();
    test_logprobs();
    test_big_vocab();
    test_params();
    return lg_test_done("test_sample");
}
