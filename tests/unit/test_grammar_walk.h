/* test_grammar_walk.h: random walks through a grammar, shared by the grammar tests.
 *
 * A byte walk picks a random allowed byte each step; a token walk computes the real token mask
 * over a vocabulary each step and picks a random allowed token. Both stop at random once the
 * grammar is complete, and after a soft cap switch to "closing" choices (quotes, brackets,
 * short tokens, EOG) so that they end. Every step is checked: the chosen byte/token must be
 * accepted, and in token walks a few random tokens' mask bits are compared with what
 * lg_grammar_accept_token says on a copy of the state, and EOG must be allowed exactly when the
 * state is complete. Walk failures are reported through *bad (message in why). */
#ifndef LG_TEST_GRAMMAR_WALK_H
#define LG_TEST_GRAMMAR_WALK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grammar/grammar.h"
#include "sample/sample.h"
#include "tok/tok.h"

struct walk_buf {
    char *p;
    size_t n, cap;
};

static inline void wb_put(struct walk_buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static inline int byte_class(uint8_t b)
{
    if (b == '"' || b == '}' || b == ']' || b == '>' || b == '<')
        return 0;
    if (b >= 0x20 && b < 0x7f && b != '\\' && b != '{' && b != '[')
        return 1;
    return 2;
}

/* Byte walk: returns true when it ended complete; output in out. */
static inline bool walk_bytes(const struct lg_grammar *g, struct lg_rng *r, size_t soft_cap,
                       struct walk_buf *out, char *why, size_t why_len)
{
    struct lg_err err = {0};
    struct lg_grammar_state *s;
    out->n = 0;
    wb_put(out, "", 0);
    if (lg_grammar_state_create(g, &s, &err) != LG_OK) {
        snprintf(why, why_len, "state: %.200s", err.msg);
        return false;
    }
    bool ok = false;
    for (size_t step = 0; step < 20000; step++) {
        bool closing = out->n >= soft_cap;
        if (lg_grammar_is_complete(s) && (closing || lg_rng_uniform(r) < 0.15)) {
            ok = true;
            break;
        }
        bool allowed[256];
        lg_grammar_next_bytes(s, allowed);
        int cand[256], n_cand = 0, best = 99;
        for (int b = 0; b < 256; b++) {
            if (!allowed[b])
                continue;
            int cl = closing ? byte_class((uint8_t)b) : 0;
            if (cl < best) {
                best = cl;
                n_cand = 0;
            }
            if (cl == best)
                cand[n_cand++] = b;
        }
        if (n_cand == 0) {
            ok = lg_grammar_is_complete(s);
            if (!ok)
                snprintf(why, why_len, "dead end after %zu bytes", out->n);
            break;
        }
        uint8_t b = (uint8_t)cand[lg_rng_next(r) % (uint64_t)n_cand];
        if (lg_grammar_accept_bytes(s, &b, 1, &err) != LG_OK) {
            /* A byte edge can lead past the call-depth bound; that is allowed to fail. */
            if (err.code != LG_ERR_RANGE) {
                snprintf(why, why_len, "accept: %.200s", err.msg);
                break;
            }
            continue;
        }
        wb_put(out, &b, 1);
    }
    if (!ok && !why[0])
        snprintf(why, why_len, "did not terminate (%zu bytes)", out->n);
    lg_grammar_state_destroy(s);
    return ok;
}

struct walk_stats {
    double mask_ms_total, mask_ms_max;
    long n_masks;
    long n_consistency_checks;
};

static inline double walk_cpu_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline bool mask_bit(const uint32_t *m, int32_t id)
{
    return (m[id >> 5] >> (id & 31)) & 1u;
}

/* Token walk over the real vocabulary. */
static inline bool walk_tokens(const struct lg_grammar *g, const struct lg_vocab *v,
                        const struct lg_grammar_vocab *gv, struct lg_rng *r, size_t soft_tokens,
                        struct walk_buf *out, struct walk_stats *st, char *why, size_t why_len)
{
    struct lg_err err = {0};
    struct lg_grammar_state *s = NULL, *probe = NULL;
    uint32_t n_tok = lg_grammar_vocab_n_tokens(gv), n_words = (n_tok + 31) / 32;
    uint32_t *mask = malloc(n_words * sizeof *mask);
    int32_t *cand = malloc(n_tok * sizeof *cand);
    out->n = 0;
    wb_put(out, "", 0);
    bool ok = false;
    if (!mask || !cand || lg_grammar_state_create(g, &s, &err) != LG_OK ||
        !(probe = lg_grammar_state_clone(s))) {
        snprintf(why, why_len, "setup failed: %.200s", err.msg);
        goto done;
    }
    for (size_t step = 0; step < 3000; step++) {
        bool closing = step >= soft_tokens || out->n > 8 * soft_tokens;
        memset(mask, 0, n_words * sizeof *mask);
        double t0 = walk_cpu_ms();
        if (lg_grammar_mask(s, gv, mask, &err) != LG_OK) {
            snprintf(why, why_len, "mask: %.200s", err.msg);
            goto done;
        }
        double dt = walk_cpu_ms() - t0;
        st->mask_ms_total += dt;
        if (dt > st->mask_ms_max)
            st->mask_ms_max = dt;
        st->n_masks++;
        /* EOG exactly when complete. */
        if (v->eos_id >= 0 && mask_bit(mask, v->eos_id) != lg_grammar_is_complete(s)) {
            snprintf(why, why_len, "EOG bit %d but complete %d", mask_bit(mask, v->eos_id),
                     lg_grammar_is_complete(s));
            goto done;
        }
        /* Mask bits agree with acceptance for random tokens (and some allowed ones). */
        for (int k = 0; k < 6; k++) {
            int32_t id = (int32_t)(lg_rng_next(r) % n_tok);
            lg_grammar_state_copy(probe, s, &err);
            bool acc = lg_grammar_accept_token(probe, gv, id, &err) == LG_OK;
            st->n_consistency_checks++;
            if (acc != mask_bit(mask, id)) {
                snprintf(why, why_len, "token %d: mask %d but accept %d", (int)id,
                         mask_bit(mask, id), acc);
                goto done;
            }
        }
        int32_t n_cand = 0, best = 99;
        bool stop = lg_grammar_is_complete(s) && !closing && lg_rng_uniform(r) < 0.15;
        for (uint32_t w = 0; w < n_words; w++) {
            uint32_t bits = mask[w];
            while (bits) {
                int b = __builtin_ctz(bits);
                bits &= bits - 1;
                int32_t id = (int32_t)(w * 32 + (uint32_t)b);
                int cl = 0;
                if (closing) {
                    size_t len;
                    const uint8_t *bytes = lg_grammar_vocab_bytes(gv, id, &len);
                    cl = lg_tok_is_eog(v, id) ? 0 : len == 1 ? 1 + byte_class(bytes[0]) : 9;
                } else if (lg_tok_is_eog(v, id) != stop) {
                    cl = 9; /* EOG only when stopping, and then nothing else */
                }
                if (cl < best) {
                    best = cl;
                    n_cand = 0;
                }
                if (cl == best)
                    cand[n_cand++] = id;
            }
        }
        if (n_cand == 0) {
            snprintf(why, why_len, "empty mask after %zu bytes (complete %d)", out->n,
                     lg_grammar_is_complete(s));
            goto done;
        }
        int32_t id = cand[lg_rng_next(r) % (uint64_t)n_cand];
        if (lg_grammar_accept_token(s, gv, id, &err) != LG_OK) {
            snprintf(why, why_len, "allowed token %d rejected: %.200s", (int)id, err.msg);
            goto done;
        }
        if (lg_tok_is_eog(v, id)) {
            ok = true;
            goto done;
        }
        size_t len;
        const uint8_t *bytes = lg_grammar_vocab_bytes(gv, id, &len);
        wb_put(out, bytes, len);
    }
    snprintf(why, why_len, "did not terminate (%zu bytes)", out->n);
done:
    lg_grammar_state_destroy(probe);
    lg_grammar_state_destroy(s);
    free(mask);
    free(cand);
    return ok;
}

#endif
