/* session.c: one model, one sequence: prefix-reusing prompt evaluation and the streaming
 * generation loop. Invariant: cache_ids[0..n_cache) are exactly the tokens in the KV cache,
 * and s->logits holds the logits after cache_ids[n_cache-1] whenever n_cache > 0. */
#include "engine/session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "kv/kv.h"
#include "model/model.h"
#include "tok/tok.h"

enum { SESSION_DEFAULT_CTX = 4096 };

struct lg_session {
    struct lg_gguf *gguf;
    struct lg_model *model;
    struct lg_vocab *vocab;
    struct lg_model_state *state;
    enum lg_chat_flavour flavour;
    int64_t n_ctx;
    int32_t n_vocab;
    int32_t *cache_ids;   /* [n_ctx] */
    int64_t n_cache;
    float *logits;        /* [n_vocab] after the last cached token */
    int32_t *out_ids;     /* [n_ctx] generated ids of the last generate call */
    struct lg_sample_params sample_defaults;
};

int64_t lg_session_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

enum lg_status lg_session_open(const char *path, const struct lg_session_opts *opts,
                               struct lg_session **out, struct lg_err *err)
{
    *out = NULL;
    struct lg_session *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    enum lg_status st = lg_gguf_open(path, &s->gguf, err);
    if (st != LG_OK)
        goto fail;
    st = lg_chat_flavour_from_gguf(s->gguf, &s->flavour, err);
    if (st != LG_OK)
        goto fail;
    st = lg_vocab_load(s->gguf, &s->vocab, err);
    if (st != LG_OK)
        goto fail;
    st = lg_model_from_gguf(s->gguf, &s->model, err);
    if (st != LG_OK)
        goto fail;
    s->n_vocab = s->model->cfg.n_vocab;
    if ((int64_t)s->vocab->n_tokens > s->n_vocab) {
        st = lg_err_set(err, LG_ERR_FORMAT, "%s: vocab has %u tokens but the embedding only %d rows",
                        path, s->vocab->n_tokens, s->n_vocab);
        goto fail;
    }
    int64_t n_ctx = opts && opts->n_ctx > 0 ? opts->n_ctx : SESSION_DEFAULT_CTX;
    if (s->model->cfg.n_ctx_train > 0 && n_ctx > s->model->cfg.n_ctx_train) {
        if (opts && opts->n_ctx > 0) {
            st = lg_err_set(err, LG_ERR_RANGE, "context %lld exceeds the model's trained context %lld",
                            (long long)n_ctx, (long long)s->model->cfg.n_ctx_train);
            goto fail;
        }
        n_ctx = s->model->cfg.n_ctx_train;
    }
    s->n_ctx = n_ctx;
    struct lg_state_opts so;
    lg_state_opts_default(&so);
    so.n_ctx = n_ctx;
    if (opts && opts->kv_type_k && (st = lg_kv_type_parse(opts->kv_type_k, &so.type_k, err)))
        goto fail;
    if (opts && opts->kv_type_v && (st = lg_kv_type_parse(opts->kv_type_v, &so.type_v, err)))
        goto fail;
    st = lg_model_state_create_opts(s->model, &so, &s->state, err);
    if (st != LG_OK)
        goto fail;
    s->cache_ids = malloc((size_t)n_ctx * sizeof *s->cache_ids);
    s->out_ids = malloc((size_t)n_ctx * sizeof *s->out_ids);
    s->logits = malloc((size_t)s->n_vocab * sizeof *s->logits);
    if (!s->cache_ids || !s->out_ids || !s->logits) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory for a %lld-token context", (long long)n_ctx);
        goto fail;
    }
    lg_sample_params_default(&s->sample_defaults);
    struct lg_err ignored;
    (void)lg_sample_params_from_gguf(&s->sample_defaults, s->gguf, &ignored);
    *out = s;
    return LG_OK;
fail:
    lg_session_close(s);
    return st;
}

void lg_session_close(struct lg_session *s)
{
    if (!s)
        return;
    lg_model_state_destroy(s->state);
    lg_model_close(s->model);
    lg_vocab_free(s->vocab);
    lg_gguf_close(s->gguf);
    free(s->cache_ids);
    free(s->out_ids);
    free(s->logits);
    free(s);
}

const struct lg_vocab *lg_session_vocab(const struct lg_session *s) { return s->vocab; }
const struct lg_model *lg_session_model(const struct lg_session *s) { return s->model; }
const struct lg_gguf *lg_session_gguf(const struct lg_session *s) { return s->gguf; }
enum lg_chat_flavour lg_session_flavour(const struct lg_session *s) { return s->flavour; }
int64_t lg_session_n_ctx(const struct lg_session *s) { return s->n_ctx; }
int32_t lg_session_n_vocab(const struct lg_session *s) { return s->n_vocab; }
const float *lg_session_logits(const struct lg_session *s) { return s->logits; }

void lg_session_sample_defaults(const struct lg_session *s, struct lg_sample_params *p)
{
    *p = s->sample_defaults;
}

void lg_session_reset(struct lg_session *s)
{
    struct lg_err ignored;
    (void)lg_kv_rewind(lg_model_state_kv(s->state), 0, &ignored);
    s->n_cache = 0;
}

/* Appends ids to the cache; logits of the last one into s->logits. */
static enum lg_status session_append(struct lg_session *s, const int32_t *ids, int64_t n,
                                     struct lg_err *err)
{
    if (n <= 0)
        return LG_OK;
    if (s->n_cache + n > s->n_ctx)
        return lg_err_set(err, LG_ERR_CONTEXT, "%lld tokens do not fit the %lld-token context",
                          (long long)(s->n_cache + n), (long long)s->n_ctx);
    enum lg_status st = lg_model_forward(s->model, s->state, ids, n, LG_LOGITS_LAST, s->logits, err);
    if (st != LG_OK) {
        lg_session_reset(s); /* the cache may hold part of the batch: start clean */
        return st;
    }
    memcpy(s->cache_ids + s->n_cache, ids, (size_t)n * sizeof *ids);
    s->n_cache += n;
    return LG_OK;
}

enum lg_status lg_session_append_all(struct lg_session *s, const int32_t *ids, int64_t n,
                                     float *out, struct lg_err *err)
{
    if (s->n_cache + n > s->n_ctx)
        return lg_err_set(err, LG_ERR_CONTEXT, "%lld tokens do not fit the %lld-token context",
                          (long long)(s->n_cache + n), (long long)s->n_ctx);
    enum lg_status st = lg_model_forward(s->model, s->state, ids, n, LG_LOGITS_ALL, out, err);
    if (st != LG_OK) {
        lg_session_reset(s);
        return st;
    }
    memcpy(s->cache_ids + s->n_cache, ids, (size_t)n * sizeof *ids);
    memcpy(s->logits, out + (size_t)(n - 1) * (size_t)s->n_vocab, (size_t)s->n_vocab * sizeof(float));
    s->n_cache += n;
    return LG_OK;
}

enum lg_status lg_session_eval(struct lg_session *s, const int32_t *ids, int64_t n,
                               int64_t *n_eval, struct lg_err *err)
{
    if (n_eval)
        *n_eval = 0;
    if (n <= 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "empty prompt");
    if (n > s->n_ctx)
        return lg_err_set(err, LG_ERR_CONTEXT, "the prompt is %lld tokens but the context is %lld",
                          (long long)n, (long long)s->n_ctx);
    int64_t lcp = 0;
    while (lcp < s->n_cache && lcp < n && s->cache_ids[lcp] == ids[lcp])
        lcp++;
    if (lcp == n) /* everything cached: recompute the last token to get its logits */
        lcp = n - 1;
    if (lcp < s->n_cache) {
        struct lg_err rw;
        if (lg_kv_rewind(lg_model_state_kv(s->state), lcp, &rw) == LG_OK) {
            s->n_cache = lcp;
        } else {
            lg_session_reset(s);
            lcp = 0;
        }
    }
    enum lg_status st = session_append(s, ids + lcp, n - lcp, err);
    if (st == LG_OK && n_eval)
        *n_eval = n - lcp;
    return st;
}

/* ---- generation ---------------------------------------------------------------------------- */

struct gen_ctx {
    lg_session_emit_fn emit;
    void *user;
    struct lg_chat_parser *parser;
    bool aborted;
};

static void gen_emit(struct gen_ctx *c, enum lg_chat_event_type type, const char *text,
                     size_t len, const char *name)
{
    if (c->aborted || (len == 0 && type != LG_CHAT_EV_TOOL_CALL))
        return;
    if (!c->emit(c->user, type, text, len, name))
        c->aborted = true;
}

static enum lg_status gen_drain(struct gen_ctx *c)
{
    struct lg_chat_event ev;
    while (lg_chat_parser_next(c->parser, &ev)) {
        gen_emit(c, ev.type, ev.text, ev.len, ev.name);
        lg_chat_event_free(&ev);
    }
    return LG_OK;
}

/* Passes raw output text to the chat parser (or straight out). */
static enum lg_status gen_text(struct gen_ctx *c, const char *text, size_t len)
{
    if (len == 0)
        return LG_OK;
    if (!c->parser) {
        gen_emit(c, LG_CHAT_EV_CONTENT, text, len, NULL);
        return LG_OK;
    }
    enum lg_status st = lg_chat_parser_feed(c->parser, text, len, false);
    if (st != LG_OK)
        return st;
    return gen_drain(c);
}

enum lg_status lg_session_generate(struct lg_session *s, const int32_t *ids, int64_t n,
                                   const struct lg_session_gen *g, lg_session_emit_fn emit,
                                   void *user, struct lg_session_stats *stats,
                                   struct lg_err *err)
{
    memset(stats, 0, sizeof *stats);
    stats->out_ids = s->out_ids;
    if (n >= s->n_ctx)
        return lg_err_set(err, LG_ERR_CONTEXT,
                          "the prompt is %lld tokens and leaves no room in the %lld-token context "
                          "(use a larger --ctx or a shorter prompt)",
                          (long long)n, (long long)s->n_ctx);
    struct lg_sampler *smp = NULL;
    struct lg_stop *stop = NULL;
    struct lg_detok *detok = NULL;
    struct gen_ctx c = {emit, user, NULL, false};
    enum lg_status st = lg_sampler_create(&g->sample, s->n_vocab, &smp, err);
    if (st != LG_OK)
        return st;
    st = lg_stop_create(g->stops, g->n_stops, &stop, err);
    if (st != LG_OK)
        goto done;
    detok = lg_detok_create(s->vocab, 0);
    if (!detok) {
        st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (g->parse_chat) {
        c.parser = lg_chat_parser_create(s->flavour, (const json_t *)g->tools);
        if (!c.parser) {
            st = lg_err_set(err, LG_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (g->prompt_in_reasoning)
            lg_chat_parser_begin_in_reasoning(c.parser);
    }

    int64_t t0 = lg_session_now_ns();
    st = lg_session_eval(s, ids, n, &stats->n_prompt_eval, err);
    if (st != LG_OK)
        goto done;
    stats->n_prompt = n;
    stats->t_prompt_ns = lg_session_now_ns() - t0;
    /* penalties look at the prompt too, as llama.cpp's do */
    for (int64_t i = n > 64 ? n - 64 : 0; i < n; i++)
        lg_sampler_accept(smp, ids[i]);

    int64_t t_first = 0;
    bool stop_hit = false;
    stats->finish = LG_SESSION_FINISH_LENGTH;
    for (;;) {
        if (g->max_tokens >= 0 && stats->n_gen >= g->max_tokens) {
            stats->finish = LG_SESSION_FINISH_LENGTH;
            break;
        }
        int32_t tok;
        st = lg_sampler_sample(smp, s->logits, &tok, NULL, err);
        if (st != LG_OK)
            goto done;
        if (stats->n_gen == 0) {
            t_first = lg_session_now_ns();
            stats->t_first_ns = t_first - t0;
        }
        lg_sampler_accept(smp, tok);
        s->out_ids[stats->n_gen++] = tok;
        if (lg_tok_is_eog(s->vocab, tok)) {
            stats->finish = LG_SESSION_FINISH_STOP;
            break;
        }
        const char *text;
        size_t len;
        st = lg_detok_feed(detok, tok, &text, &len, err);
        if (st != LG_OK)
            goto done;
        struct lg_stop_result r;
        st = lg_stop_feed(stop, text, len, &r, err);
        if (st != LG_OK)
            goto done;
        st = gen_text(&c, r.text, r.n_text);
        if (st != LG_OK)
            goto done;
        if (r.stopped) {
            stats->finish = LG_SESSION_FINISH_STOP;
            stop_hit = true;
            break;
        }
        if (c.aborted) {
            stats->finish = LG_SESSION_FINISH_ABORT;
            break;
        }
        if (s->n_cache >= s->n_ctx) {
            stats->finish = LG_SESSION_FINISH_CONTEXT;
            break;
        }
        st = session_append(s, &tok, 1, err);
        if (st != LG_OK)
            goto done;
    }
    if (!stop_hit && !c.aborted) { /* release held-back bytes; after a stop string, drop them */
        const char *text;
        size_t len;
        lg_detok_flush(detok, &text, &len);
        struct lg_stop_result r;
        if (len && lg_stop_feed(stop, text, len, &r, err) == LG_OK && !r.stopped)
            (void)gen_text(&c, r.text, r.n_text);
        lg_stop_flush(stop, &r);
        (void)gen_text(&c, r.text, r.n_text);
    }
    if (c.parser) {
        st = lg_chat_parser_finish(c.parser);
        if (st != LG_OK)
            goto done;
        gen_drain(&c);
    }
    stats->t_gen_ns = t_first ? lg_session_now_ns() - t_first : 0;
    st = LG_OK;
done:
    lg_chat_parser_destroy(c.parser);
    lg_detok_destroy(detok);
    lg_stop_destroy(stop);
    lg_sampler_destroy(smp);
    return st;
}
