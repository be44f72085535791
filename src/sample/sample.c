/* sample.c: the sampler chain (see sample.h for the order) and its generator.
 *
 * Invariants: every buffer is sized at create/set_params time; lg_sampler_sample touches
 * only s->work [n_vocab] (when penalties, bias or a mask edit the logits), s->cand [n_vocab],
 * s->counts [n_vocab] (left all-zero between calls) and s->mask_bits. Candidates are ordered
 * by (logit desc, id asc), a total order, so top-k and greedy break ties by the lower id and
 * a seed always gives the same tokens.
 * Top-k keeps a k-entry heap while scanning (blocks of entries that cannot enter it cost one
 * vectorised comparison each), never a sort of the whole vocabulary. Top-p without top-k
 * buckets the probability mass by logit (one pass, fused with the softmax sum), gathers the
 * entries of the buckets that hold the nucleus (a best prefix of the order) and sorts only
 * those, with a radix sort when there are many; the cut inside them is then made exactly as
 * over a full sort. Greedy is a vectorisable max and a scan for its first occurrence.
 * Every path picks the same token for a seed as a full sort of the vocabulary would
 * (tests/unit/test_sample.c checks it against one).
 */
#include "sample/sample.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "base/err.h"
#include "gguf/gguf.h"

struct cand {
    float l;
    int32_t id;
};

/* Top-p buckets: mass by (m - l) / T in steps of 1 / NUC_SCALE up to NUC_BUCKETS / NUC_SCALE
 * (= 32: e^-32 per entry), everything further in one last bucket. Radix digits of 11 bits. */
enum { NUC_BUCKETS = 1024, NUC_SCALE = 32, RADIX_BITS = 11, RADIX_N = 1 << RADIX_BITS };

struct lg_sampler {
    struct lg_sample_params p;
    int32_t n_vocab;
    float *work;          /* [n_vocab] logits after penalties, bias and mask */
    struct cand *cand;    /* [n_vocab] candidates */
    struct cand *cand2;   /* [n_vocab] radix-sort scratch */
    double nuc_mass[NUC_BUCKETS + 1];
    int32_t radix_cnt[RADIX_N];
    int32_t *counts;      /* [n_vocab] occurrences in the window; all zero between calls */
    uint32_t *mask_bits;  /* [(n_vocab + 31) / 32] */
    int32_t *hist;        /* [hist_cap] ring of recent tokens */
    int32_t hist_cap, hist_n, hist_head;
    struct lg_logit_bias bias[LG_SAMPLE_MAX_BIAS];
    size_t n_bias;
    lg_sample_mask_fn mask_fn;
    void *mask_user;
    struct lg_rng rng;
};

/* ---- generator --------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

void lg_rng_seed(struct lg_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lg_rng_next(struct lg_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double lg_rng_uniform(struct lg_rng *r)
{
    return (double)(lg_rng_next(r) >> 11) * 0x1.0p-53;
}

static uint64_t random_seed(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof v, 0) == (ssize_t)sizeof v)
        return v;
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000007u ^ (uint64_t)t.tv_nsec;
}

/* ---- params ------------------------------------------------------------------------------ */

void lg_sample_params_default(struct lg_sample_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 64;
    p->top_p = 0.95f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->penalty_last_n = 64;
    p->seed = LG_SAMPLE_SEED_RANDOM;
    p->n_logprobs = 0;
}

enum lg_status lg_sample_params_check(const struct lg_sample_params *p, struct lg_err *err)
{
    if (isnan(p->temperature) || p->temperature > 100.0f) /* negative means greedy */
        return lg_err_set(err, LG_ERR_RANGE, "temperature must be between 0 and 100");
    if (p->top_k < 0)
        return lg_err_set(err, LG_ERR_RANGE, "top_k must be >= 0");
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return lg_err_set(err, LG_ERR_RANGE, "top_p must be between 0 and 1");
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return lg_err_set(err, LG_ERR_RANGE, "min_p must be between 0 and 1");
    if (!(p->repeat_penalty > 0.0f && p->repeat_penalty <= 10.0f))
        return lg_err_set(err, LG_ERR_RANGE, "repeat_penalty must be in (0, 10]");
    if (!(fabsf(p->presence_penalty) <= 100.0f))
        return lg_err_set(err, LG_ERR_RANGE, "presence_penalty must be between -100 and 100");
    if (!(fabsf(p->frequency_penalty) <= 100.0f))
        return lg_err_set(err, LG_ERR_RANGE, "frequency_penalty must be between -100 and 100");
    if (p->penalty_last_n < 0 || p->penalty_last_n > LG_SAMPLE_MAX_PENALTY_N)
        return lg_err_set(err, LG_ERR_RANGE, "penalty_last_n must be between 0 and %d",
                          LG_SAMPLE_MAX_PENALTY_N);
    if (p->n_logprobs < 0 || p->n_logprobs > LG_SAMPLE_MAX_LOGPROBS)
        return lg_err_set(err, LG_ERR_RANGE, "logprobs must be between 0 and %d",
                          LG_SAMPLE_MAX_LOGPROBS);
    return LG_OK;
}

/* One optional float key: applied when present and inside [lo, hi]. */
static enum lg_status gguf_float(const struct lg_gguf *g, const char *key, float lo, float hi,
                                 float *dst, enum lg_status *first_bad, struct lg_err *err)
{
    if (!lg_gguf_find_kv(g, key))
        return LG_OK;
    float v;
    struct lg_err e;
    enum lg_status st = lg_gguf_get_f32(g, key, &v, &e);
    if (st == LG_OK && !(v >= lo && v <= hi))
        st = lg_err_set(&e, LG_ERR_RANGE, "%s = %g is outside [%g, %g]", key, (double)v,
                        (double)lo, (double)hi);
    if (st == LG_OK)
        *dst = v;
    else if (*first_bad == LG_OK)
        *first_bad = lg_err_set(err, st, "%s", e.msg);
    return st;
}

static enum lg_status gguf_int(const struct lg_gguf *g, const char *key, int64_t lo, int64_t hi,
                               int32_t *dst, enum lg_status *first_bad, struct lg_err *err)
{
    if (!lg_gguf_find_kv(g, key))
        return LG_OK;
    int64_t v;
    struct lg_err e;
    enum lg_status st = lg_gguf_get_i64(g, key, &v, &e);
    if (st == LG_OK && !(v >= lo && v <= hi))
        st = lg_err_set(&e, LG_ERR_RANGE, "%s = %lld is outside [%lld, %lld]", key,
                        (long long)v, (long long)lo, (long long)hi);
    if (st == LG_OK)
        *dst = (int32_t)v;
    else if (*first_bad == LG_OK)
        *first_bad = lg_err_set(err, st, "%s", e.msg);
    return st;
}

enum lg_status lg_sample_params_from_gguf(struct lg_sample_params *p, const struct lg_gguf *g,
                                          struct lg_err *err)
{
    enum lg_status bad = LG_OK;
    gguf_float(g, "general.sampling.temp", 0.0f, 100.0f, &p->temperature, &bad, err);
    gguf_int(g, "general.sampling.top_k", 0, INT32_MAX, &p->top_k, &bad, err);
    gguf_float(g, "general.sampling.top_p", 0.0f, 1.0f, &p->top_p, &bad, err);
    gguf_float(g, "general.sampling.min_p", 0.0f, 1.0f, &p->min_p, &bad, err);
    gguf_int(g, "general.sampling.penalty_last_n", 0, LG_SAMPLE_MAX_PENALTY_N,
             &p->penalty_last_n, &bad, err);
    gguf_float(g, "general.sampling.penalty_repeat", 1e-3f, 10.0f, &p->repeat_penalty, &bad,
               err);
    return bad;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

enum lg_status lg_sampler_create(const struct lg_sample_params *p, int32_t n_vocab,
                                 struct lg_sampler **out, struct lg_err *err)
{
    *out = NULL;
    if (n_vocab < 1)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "sampler: n_vocab %d", (int)n_vocab);
    enum lg_status st = lg_sample_params_check(p, err);
    if (st != LG_OK)
        return st;
    struct lg_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->cand2 = malloc((size_t)n_vocab * sizeof *s->cand2);
    s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    s->mask_bits = malloc(((size_t)n_vocab + 31) / 32 * sizeof *s->mask_bits);
    if (!s->work || !s->cand || !s->cand2 || !s->counts || !s->mask_bits) {
        lg_sampler_destroy(s);
        return lg_err_set(err, LG_ERR_NOMEM, "sampler: out of memory for %d-token scratch",
                          (int)n_vocab);
    }
    st = lg_sampler_set_params(s, p, err);
    if (st != LG_OK) {
        lg_sampler_destroy(s);
        return st;
    }
    *out = s;
    return LG_OK;
}

void lg_sampler_destroy(struct lg_sampler *s)
{
    if (!s)
        return;
    free(s->work);
    free(s->cand);
    free(s->cand2);
    free(s->counts);
    free(s->mask_bits);
    free(s->hist);
    free(s);
}

enum lg_status lg_sampler_set_params(struct lg_sampler *s, const struct lg_sample_params *p,
                                     struct lg_err *err)
{
    enum lg_status st = lg_sample_params_check(p, err);
    if (st != LG_OK)
        return st;
    if (p->penalty_last_n != s->hist_cap) {
        int32_t *h = NULL;
        if (p->penalty_last_n > 0) {
            h = malloc((size_t)p->penalty_last_n * sizeof *h);
            if (!h)
                return lg_err_set(err, LG_ERR_NOMEM, "sampler: out of memory");
        }
        free(s->hist);
        s->hist = h;
        s->hist_cap = p->penalty_last_n;
    }
    s->p = *p;
    s->hist_n = s->hist_head = 0;
    s->n_bias = 0;
    s->mask_fn = NULL;
    s->mask_user = NULL;
    lg_sampler_seed(s, p->seed);
    return LG_OK;
}

void lg_sampler_reset(struct lg_sampler *s)
{
    s->hist_n = s->hist_head = 0;
}

void lg_sampler_seed(struct lg_sampler *s, uint64_t seed)
{
    lg_rng_seed(&s->rng, seed == LG_SAMPLE_SEED_RANDOM ? random_seed() : seed);
}

enum lg_status lg_sampler_set_logit_bias(struct lg_sampler *s, const struct lg_logit_bias *b,
                                         size_t n, struct lg_err *err)
{
    if (n > LG_SAMPLE_MAX_BIAS)
        return lg_err_set(err, LG_ERR_RANGE, "logit_bias: %zu entries (max %d)", n,
                          LG_SAMPLE_MAX_BIAS);
    for (size_t i = 0; i < n; i++) {
        if (b[i].token < 0 || b[i].token >= s->n_vocab)
            return lg_err_set(err, LG_ERR_RANGE, "logit_bias: token %d outside [0, %d)",
                              (int)b[i].token, (int)s->n_vocab);
        if (isnan(b[i].bias) || b[i].bias == INFINITY)
            return lg_err_set(err, LG_ERR_RANGE, "logit_bias: token %d: bias must be finite "
                              "or -inf", (int)b[i].token);
    }
    if (n)
        memcpy(s->bias, b, n * sizeof *b);
    s->n_bias = n;
    return LG_OK;
}

void lg_sampler_set_mask(struct lg_sampler *s, lg_sample_mask_fn fn, void *user)
{
    s->mask_fn = fn;
    s->mask_user = user;
}

void lg_sampler_accept(struct lg_sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab || s->hist_cap == 0)
        return;
    s->hist[s->hist_head] = token;
    s->hist_head = (s->hist_head + 1) % s->hist_cap;
    if (s->hist_n < s->hist_cap)
        s->hist_n++;
}

/* ---- selection helpers ------------------------------------------------------------------- */

/* The total order: higher logit first, then lower id. */
static inline bool cand_better(struct cand a, struct cand b)
{
    return a.l > b.l || (a.l == b.l && a.id < b.id);
}

static inline void cand_swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

static void sift_down(struct cand *c, int32_t n, int32_t i)
{
    for (;;) {
        int32_t w = i, l = 2 * i + 1, r = l + 1;
        /* a min-heap in the order (worst at the root) so the sort ends best-first */
        if (l < n && cand_better(c[w], c[l]))
            w = l;
        if (r < n && cand_better(c[w], c[r]))
            w = r;
        if (w == i)
            return;
        cand_swap(&c[i], &c[w]);
        i = w;
    }
}

/* Sorts c[0..n) best first. Heapsort: no allocation, O(n log n). */
static void sort_best_first(struct cand *c, int32_t n)
{
    for (int32_t i = n / 2 - 1; i >= 0; i--)
        sift_down(c, n, i);
    for (int32_t end = n - 1; end > 0; end--) {
        cand_swap(&c[0], &c[end]);
        sift_down(c, end, 0);
    }
}

/* (d / T) for a logit difference d <= 0; -inf stays -inf, tiny T saturates, never NaN. */
static inline float scaled(float d, float inv_t)
{
    float v = d * inv_t;
    return isnan(v) ? 0.0f : v; /* inf - inf (two +inf logits) or 0 * inf: equal to the max */
}

/* Whether any of l[0..32) is above thr (NaN is not). Its own function, not inlined: the
 * compiler vectorises the loop with 256-bit registers and clears their upper halves on return
 * (vzeroupper); inlined into the sampler, the dirty upper state slowed libm's exp() in a
 * later path of the same call twentyfold. */
static __attribute__((noinline)) bool any_above(const float *restrict l, float thr)
{
    int hit = 0;
    for (int32_t j = 0; j < 32; j++)
        hit |= l[j] > thr;
    return hit != 0;
}

/* Puts the best k finite entries of l[0..n) into out (heap order) and returns how many.
 * A min-heap of size k (worst at the root) rejects most entries with one comparison:
 * O(n + k log k log n) on logit-like data, O(n log k) at worst; no allocation. */
static int32_t heap_top(const float *restrict l, int32_t n, int32_t k,
                        struct cand *restrict out)
{
    int32_t cnt = 0, i = 0;
    for (; i < n && cnt < k; i++) {
        struct cand c = {l[i], i};
        if (!(c.l > -INFINITY))
            continue;
        int32_t j = cnt++;
        while (j > 0) { /* sift up: a parent is never better than its children */
            int32_t parent = (j - 1) / 2;
            if (!cand_better(out[parent], c))
                break;
            out[j] = out[parent];
            j = parent;
        }
        out[j] = c;
    }
    if (cnt == 0)
        return 0;
    /* ids only grow from here, so a tie with the root never wins: compare logits alone */
    float thr = out[0].l;
    for (; i < n; i++) {
        /* blocks of 32 where nothing beats the root are skipped (the common case); the test
         * is a compare-and-or the compiler vectorises, and NaN never beats anything */
        if ((i & 31) == 0 && i + 32 <= n) {
            if (!any_above(l + i, thr)) {
                i += 31;
                continue;
            }
        }
        if (l[i] > thr) {
            out[0].l = l[i];
            out[0].id = i;
            sift_down(out, cnt, 0);
            thr = out[0].l;
        }
    }
    return cnt;
}

/* The sort key of a logit: unsigned order = (logit desc); -0 and +0 share one key (they tie
 * under cand_better). Only finite or infinite logits get here, never NaN. */
static inline uint32_t desc_key(float f)
{
    uint32_t u;
    if (f == 0.0f)
        f = 0.0f;
    memcpy(&u, &f, sizeof u);
    u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* ascending in f */
    return ~u;
}

/* Sorts c[0..n) best first: an LSD radix sort on desc_key (3 passes of 11 bits), stable, so
 * candidates in id order keep ties by lower id first (only for input in id order). tmp holds
 * n entries, cnt RADIX_N. */
static void radix_best_first(struct cand *c, struct cand *tmp, int32_t *cnt, int32_t n)
{
    enum { NB = RADIX_N };
    struct cand *src = c, *dst = tmp;
    for (int pass = 0; pass < 3; pass++) {
        int shift = pass * RADIX_BITS;
        memset(cnt, 0, NB * sizeof *cnt);
        for (int32_t i = 0; i < n; i++)
            cnt[(desc_key(src[i].l) >> shift) & (NB - 1)]++;
        int32_t sum = 0;
        for (int b = 0; b < NB; b++) {
            int32_t k = cnt[b];
            cnt[b] = sum;
            sum += k;
        }
        for (int32_t i = 0; i < n; i++)
            dst[cnt[(desc_key(src[i].l) >> shift) & (NB - 1)]++] = src[i];
        struct cand *t = src;
        src = dst;
        dst = t;
    }
    if (src != c) /* an odd number of passes: the result is in tmp */
        memcpy(c, src, (size_t)n * sizeof *c);
}

/* Sorts candidates gathered in id order best first: heapsort when few, else radix. */
static void sort_gathered(struct lg_sampler *s, struct cand *c, int32_t n)
{
    if (n > 4096)
        radix_best_first(c, s->cand2, s->radix_cnt, n);
    else
        sort_best_first(c, n);
}

/* On candidates sorted best first: the shortest prefix whose softmax mass (at 1/inv_t) is at
 * least top_p of the whole set. */
static int32_t top_p_cut(const struct cand *c, int32_t n, float inv_t, float top_p)
{
    if (top_p >= 1.0f || n <= 1)
        return n;
    float m = c[0].l;
    double z = 0.0;
    for (int32_t i = 0; i < n; i++)
        z += (double)expf(scaled(c[i].l - m, inv_t));
    double cum = 0.0, target = (double)top_p * z;
    for (int32_t i = 0; i < n; i++) {
        cum += (double)expf(scaled(c[i].l - m, inv_t));
        if (cum >= target)
            return i + 1;
    }
    return n;
}

/* ---- the chain --------------------------------------------------------------------------- */

static void apply_penalties(struct lg_sampler *s)
{
    const struct lg_sample_params *p = &s->p;
    if (s->hist_n == 0 ||
        (p->repeat_penalty == 1.0f && p->presence_penalty == 0.0f &&
         p->frequency_penalty == 0.0f))
        return;
    for (int32_t i = 0; i < s->hist_n; i++)
        s->counts[s->hist[i]]++;
    for (int32_t i = 0; i < s->hist_n; i++) {
        int32_t t = s->hist[i];
        int32_t n = s->counts[t];
        if (n == 0)
            continue; /* already applied for this token */
        float l = s->work[t];
        if (p->repeat_penalty != 1.0f)
            l = l > 0.0f ? l / p->repeat_penalty : l * p->repeat_penalty;
        l -= p->presence_penalty + (float)n * p->frequency_penalty;
        s->work[t] = l;
        s->counts[t] = 0;
    }
}

static enum lg_status apply_mask(struct lg_sampler *s, struct lg_err *err)
{
    size_t n_words = ((size_t)s->n_vocab + 31) / 32;
    memset(s->mask_bits, 0, n_words * sizeof *s->mask_bits);
    enum lg_status st = s->mask_fn(s->mask_user, s->mask_bits, s->n_vocab, err);
    if (st != LG_OK)
        return st;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (!((s->mask_bits[i >> 5] >> (i & 31)) & 1u))
            s->work[i] = -INFINITY;
    return LG_OK;
}

static void fill_info(const struct lg_sampler *s, const float *logits, int32_t token,
                      struct lg_sample_info *info)
{
    float m = -INFINITY;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (logits[i] > m)
            m = logits[i];
    double z = 0.0;
    for (int32_t i = 0; i < s->n_vocab; i++)
        if (logits[i] > -INFINITY)
            z += exp((double)logits[i] - (double)m);
    double lse = (double)m + log(z);
    float lt = logits[token];
    info->logprob = lt > -INFINITY ? (float)((double)lt - lse) : -INFINITY;
    /* top-N by insertion into a short sorted list */
    int32_t n_want = s->p.n_logprobs, n = 0;
    struct cand top[LG_SAMPLE_MAX_LOGPROBS];
    for (int32_t i = 0; i < s->n_vocab && n_want > 0; i++) {
        struct cand c = {logits[i], i};
        if (!(c.l > -INFINITY))
            continue;
        if (n == n_want && !cand_better(c, top[n - 1]))
            continue;
        int32_t j = n < n_want ? n++ : n - 1;
        while (j > 0 && cand_better(c, top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = c;
    }
    info->n_top = n;
    for (int32_t i = 0; i < n; i++) {
        info->top[i].token = top[i].id;
        info->top[i].logprob = (float)((double)top[i].l - lse);
    }
}

static inline int32_t nuc_bucket(float l, float m, float inv_t)
{
    float d = -scaled(l - m, inv_t) * (float)NUC_SCALE; /* >= 0, monotone in l */
    return d < (float)NUC_BUCKETS ? (int32_t)d : NUC_BUCKETS;
}

/* Top-p without top-k: the shortest best-first prefix of the vocabulary whose mass is at least
 * top_p, sorted best first into c; returns its length (all finite entries when rounding
 * keeps the sum below top_p; 0 when none is finite). The same set and order as a full sort:
 * the buckets (monotone in the logit) taken are a best prefix of the order holding at least
 * top_p of the mass with a margin for summation order, and the cut inside them is made over
 * the sorted entries exactly as over a full sort. */
static int32_t nucleus(struct lg_sampler *s, const float *l, float inv_t, struct cand *c)
{
    const int32_t nv = s->n_vocab;
    double *mass = s->nuc_mass;
    float m = -INFINITY;
    for (int32_t i = 0; i < nv; i++)
        if (l[i] > m)
            m = l[i];
    if (!(m > -INFINITY))
        return 0;
    memset(mass, 0, sizeof s->nuc_mass);
    double z = 0.0;
    for (int32_t i = 0; i < nv; i++)
        if (l[i] > -INFINITY) {
            float w = expf(scaled(l[i] - m, inv_t));
            z += (double)w;
            mass[nuc_bucket(l[i], m, inv_t)] += (double)w;
        }
    const double target = (double)s->p.top_p * z;
    /* the last bucket needed, with a relative margin far above the rounding of two orders
     * of summation; NUC_BUCKETS (everything) when the margin is not reached before it */
    int32_t last = NUC_BUCKETS;
    double cum_b = 0.0;
    for (int32_t b = 0; b < NUC_BUCKETS; b++) {
        cum_b += mass[b];
        if (cum_b >= target * (1.0 + 1e-9) + 1e-300) {
            last = b;
            break;
        }
    }
    for (int pass = 0; pass < 2; pass++) {
        int32_t n = 0;
        for (int32_t i = 0; i < nv; i++)
            if (l[i] > -INFINITY && nuc_bucket(l[i], m, inv_t) <= last) {
                c[n].l = l[i];
                c[n].id = i;
                n++;
            }
        sort_gathered(s, c, n);
        double cum = 0.0;
        for (int32_t i = 0; i < n; i++) {
            cum += (double)expf(scaled(c[i].l - m, inv_t));
            if (cum >= target)
                return i + 1;
        }
        if (last == NUC_BUCKETS)
            return n; /* rounding kept the whole sum below top_p: everything */
        last = NUC_BUCKETS; /* cannot happen with the margin; stay exact anyway */
    }
    return 0;
}

/* The first index of the largest value (NaN never counts), or -1 when none beats -inf.
 * The max runs on 8 independent lanes so the compiler can vectorise it. */
static int32_t argmax_first(const float *l, int32_t n)
{
    float lane[8];
    for (int j = 0; j < 8; j++)
        lane[j] = -INFINITY;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            lane[j] = l[i + j] > lane[j] ? l[i + j] : lane[j];
    float best = -INFINITY;
    for (int j = 0; j < 8; j++)
        best = lane[j] > best ? lane[j] : best;
    for (; i < n; i++)
        best = l[i] > best ? l[i] : best;
    if (!(best > -INFINITY))
        return -1;
    for (i = 0; i < n; i++)
        if (l[i] == best)
            return i;
    return -1;
}

enum lg_status lg_sampler_sample(struct lg_sampler *s, const float *logits, int32_t *token,
                                 struct lg_sample_info *info, struct lg_err *err)
{
    const struct lg_sample_params *p = &s->p;
    const int32_t nv = s->n_vocab;
    /* The chain reads `l`: the caller's logits when nothing edits them, else s->work. Every
     * test below is written so that NaN compares false, i.e. counts as -inf. */
    const float *l = logits;
    const bool penalise = s->hist_n > 0 && (p->repeat_penalty != 1.0f ||
                                            p->presence_penalty != 0.0f ||
                                            p->frequency_penalty != 0.0f);
    if (penalise || s->n_bias || s->mask_fn) {
        float *restrict work = s->work;
        for (int32_t i = 0; i < nv; i++) {
            float v = logits[i];
            work[i] = v != v ? -INFINITY : v;
        }
        apply_penalties(s);
        for (size_t i = 0; i < s->n_bias; i++)
            work[s->bias[i].token] += s->bias[i].bias;
        if (s->mask_fn) {
            enum lg_status st = apply_mask(s, err);
            if (st != LG_OK)
                return st;
        }
        l = work;
    }

    int32_t chosen = -1;
    if (p->temperature <= 0.0f) {
        chosen = argmax_first(l, nv); /* ties keep the lower id */
    } else {
        const float inv_t = 1.0f / p->temperature;
        struct cand *c = s->cand;
        int32_t n;
        if (p->top_k > 0) {
            n = heap_top(l, nv, p->top_k, c);
            sort_best_first(c, n);
            n = top_p_cut(c, n, inv_t, p->top_p);
        } else if (p->top_p < 1.0f) {
            n = nucleus(s, l, inv_t, c);
        } else {
            n = 0;
            for (int32_t i = 0; i < nv; i++)
                if (l[i] > -INFINITY) {
                    c[n].l = l[i];
                    c[n].id = i;
                    n++;
                }
        }
        if (n > 0) {
            /* candidates hold unscaled logits; the top one (max) may sit anywhere */
            float m = -INFINITY;
            for (int32_t i = 0; i < n; i++)
                if (c[i].l > m)
                    m = c[i].l;
            if (p->min_p > 0.0f) {
                /* p_i >= min_p * p_max  <=>  (l_i - m) / T >= log(min_p); the max stays */
                float thr = logf(p->min_p);
                int32_t w = 0;
                for (int32_t i = 0; i < n; i++)
                    if (scaled(c[i].l - m, inv_t) >= thr)
                        c[w++] = c[i];
                n = w;
            }
            double z = 0.0;
            for (int32_t i = 0; i < n; i++)
                z += (double)expf(scaled(c[i].l - m, inv_t));
            double u = lg_rng_uniform(&s->rng) * z, cum = 0.0;
            chosen = c[n - 1].id;
            for (int32_t i = 0; i < n; i++) {
                cum += (double)expf(scaled(c[i].l - m, inv_t));
                if (u < cum) {
                    chosen = c[i].id;
                    break;
                }
            }
        }
    }
    if (chosen < 0)
        return lg_err_set(err, LG_ERR_RANGE, "sampler: no token left to sample (all banned "
                          "or masked)");
    *token = chosen;
    if (info)
        fill_info(s, logits, chosen, info);
    return LG_OK;
}
