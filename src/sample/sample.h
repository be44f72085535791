/* sample.h: the sampler chain and the stop-string matcher.
 *
 * Chain, in this order (the order Hugging Face's generate() uses for Gemma's
 * generation_config): repetition/presence/frequency penalties over a window of recent tokens
 * -> logit bias -> grammar mask -> greedy (temperature <= 0) or temperature -> top-k -> top-p
 * -> min-p -> draw with a seeded xoshiro256** generator.
 *
 * Ownership: a struct lg_sampler owns scratch sized to n_vocab at create time; sampling a
 * token allocates nothing and never modifies the caller's logits. Ties are broken by the
 * lower token id everywhere (greedy, top-k boundary), so results are deterministic for a seed.
 * Thread-safety: one sampler per sequence, used by one thread (the engine thread).
 */
#ifndef LG_SAMPLE_H
#define LG_SAMPLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

struct lg_gguf;

enum {
    LG_SAMPLE_MAX_LOGPROBS = 20,     /* top alternatives reported (OpenAI's cap) */
    LG_SAMPLE_MAX_PENALTY_N = 65536, /* longest penalty window */
    LG_SAMPLE_MAX_BIAS = 1024        /* logit_bias entries per request */
};

/* Seed value meaning "pick a random seed" (getrandom). */
#define LG_SAMPLE_SEED_RANDOM UINT64_MAX

struct lg_sample_params {
    float temperature;       /* <= 0: greedy. Default 1.0 (Gemma) */
    int32_t top_k;           /* <= 0: off. Default 64 */
    float top_p;             /* >= 1: off. Default 0.95 */
    float min_p;             /* <= 0: off. Default 0 */
    float repeat_penalty;    /* 1: off. >1 divides positive / multiplies negative logits */
    float presence_penalty;  /* 0: off. subtracted once from every token in the window */
    float frequency_penalty; /* 0: off. subtracted count times */
    int32_t penalty_last_n;  /* window of recent tokens; 0: off. Default 64 */
    uint64_t seed;           /* LG_SAMPLE_SEED_RANDOM: random */
    int32_t n_logprobs;      /* top alternatives to report in lg_sample_info, 0..20 */
};

/* Gemma's recommended defaults: temp 1.0, top_k 64, top_p 0.95, no min-p, no penalties
 * (window 64 ready for when the user sets one), random seed, no logprobs. */
void lg_sample_params_default(struct lg_sample_params *p);

/* Overrides p from the GGUF's general.sampling.* keys when present: temp, top_k, top_p,
 * min_p, penalty_last_n, penalty_repeat. Every valid key is applied; a key with a wrong type
 * or an out-of-range value is skipped and reported (LG_ERR_RANGE / LG_ERR_FORMAT naming it,
 * after applying the others). LG_OK when none was bad. */
enum lg_status lg_sample_params_from_gguf(struct lg_sample_params *p, const struct lg_gguf *g,
                                          struct lg_err *err);

/* Checks ranges (temperature 0..100, top_k >= 0, top_p/min_p in [0,1], penalties finite,
 * repeat_penalty in (0,10], window 0..LG_SAMPLE_MAX_PENALTY_N, n_logprobs 0..20).
 * LG_ERR_RANGE naming the field. */
enum lg_status lg_sample_params_check(const struct lg_sample_params *p, struct lg_err *err);

/* Grammar hook: fill allowed[] (n_vocab bits, word i bit b = token 32*i+b; the array is
 * zeroed before the call) with the tokens the grammar allows now. Return LG_OK, or an error
 * that lg_sampler_sample passes on. */
typedef enum lg_status (*lg_sample_mask_fn)(void *user, uint32_t *allowed, int32_t n_vocab,
                                            struct lg_err *err);

struct lg_logit_bias {
    int32_t token;
    float bias; /* added to the logit; -INFINITY bans the token */
};

struct lg_token_logprob {
    int32_t token;
    float logprob;
};

/* Filled by lg_sampler_sample when asked: log-softmax of the caller's raw logits (the model's
 * own distribution, before penalties/bias/temperature), for the chosen token and the top
 * n_logprobs alternatives (highest first, ties by lower id). */
struct lg_sample_info {
    float logprob;
    int32_t n_top;
    struct lg_token_logprob top[LG_SAMPLE_MAX_LOGPROBS];
};

struct lg_sampler;

/* n_vocab >= 1. Params are checked (lg_sample_params_check). */
enum lg_status lg_sampler_create(const struct lg_sample_params *p, int32_t n_vocab,
                                 struct lg_sampler **out, struct lg_err *err);
void lg_sampler_destroy(struct lg_sampler *s);

/* New params for the next request (may reallocate the penalty window: not per token).
 * Re-seeds the generator from p->seed and clears the history, bias and mask. */
enum lg_status lg_sampler_set_params(struct lg_sampler *s, const struct lg_sample_params *p,
                                     struct lg_err *err);
/* Clears the penalty history (keeps params, bias, mask and generator state). */
void lg_sampler_reset(struct lg_sampler *s);
void lg_sampler_seed(struct lg_sampler *s, uint64_t seed);

/* Replaces the bias list (copied). Tokens outside [0, n_vocab), NaN or +inf biases, or more
 * than LG_SAMPLE_MAX_BIAS entries → LG_ERR_RANGE, and the old list is kept. */
enum lg_status lg_sampler_set_logit_bias(struct lg_sampler *s, const struct lg_logit_bias *b,
                                         size_t n, struct lg_err *err);
/* Installs (fn != NULL) or removes the grammar mask hook. */
void lg_sampler_set_mask(struct lg_sampler *s, lg_sample_mask_fn fn, void *user);

/* Appends a token (prompt or generated) to the penalty window. Ids out of range are ignored. */
void lg_sampler_accept(struct lg_sampler *s, int32_t token);

/* Picks the next token from logits[n_vocab] (not modified). info may be NULL. NaN logits
 * count as -inf. LG_ERR_RANGE when no token is left (everything banned or masked).
 * Allocation-free. */
enum lg_status lg_sampler_sample(struct lg_sampler *s, const float *logits, int32_t *token,
                                 struct lg_sample_info *info, struct lg_err *err);

/* The generator itself (documented so tests and tools can reproduce draws): xoshiro256**
 * (Blackman & Vigna, 2018) seeded through splitmix64(seed). */
struct lg_rng {
    uint64_t s[4];
};
void lg_rng_seed(struct lg_rng *r, uint64_t seed);
uint64_t lg_rng_next(struct lg_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double lg_rng_uniform(struct lg_rng *r);

/* ---- stop strings (stop.c) ----------------------------------------------------------------
 * Incremental matching over streamed text. Text is fed in arbitrary chunks; the matcher holds
 * back the longest tail that could still become a stop string and releases the rest. When a
 * stop string completes, everything before it is released and the stream is over: the stop
 * string itself and anything after it are never released (if several could match, the one
 * that completes first in the stream wins, then the longer). Text released is always a prefix
 * of the stream, so a caller that prints every release prints exactly the answer.
 * One matcher per stream; not thread-safe. */
enum {
    LG_STOP_MAX_STRINGS = 16,
    LG_STOP_MAX_LEN = 1024
};

struct lg_stop;

struct lg_stop_result {
    const char *text;   /* bytes safe to emit now; valid until the next call */
    size_t n_text;
    bool stopped;       /* a stop string completed (or was already complete) */
    int32_t which;      /* index of the stop string, -1 when not stopped */
    uint64_t cut;       /* when stopped: byte offset in the whole stream where it starts */
};

/* Copies the strings. Empty strings, more than LG_STOP_MAX_STRINGS, or one longer than
 * LG_STOP_MAX_LEN → LG_ERR_INVALID_ARG/LG_ERR_RANGE. n may be 0 (then all text passes). */
enum lg_status lg_stop_create(const char *const *stops, size_t n, struct lg_stop **out,
                              struct lg_err *err);
void lg_stop_destroy(struct lg_stop *m);
/* Starts a new stream with the same strings. */
void lg_stop_reset(struct lg_stop *m);
/* Feeds len bytes. After a stop every further feed releases nothing. LG_ERR_NOMEM only when a
 * chunk needs a bigger buffer and the allocation fails. */
enum lg_status lg_stop_feed(struct lg_stop *m, const char *text, size_t len,
                            struct lg_stop_result *r, struct lg_err *err);
/* End of stream without a stop: releases the held-back tail. */
void lg_stop_flush(struct lg_stop *m, struct lg_stop_result *r);

#endif
