/* test_alloc_fail.c: allocation-failure injection (hardening.md G21; SQLite's countdown
 * allocator).
 *
 * The binary replaces malloc / calloc / realloc / free / memalign / posix_memalign /
 * aligned_alloc / valloc / pvalloc (glibc supports replacing them; its own strdup, fopen,
 * pthread_create ... and Jansson's allocations then go through these too) with versions that
 * forward to glibc's __libc_* entry points, count live blocks (atomics: the thread pool
 * allocates too) and, once armed with N, fail the Nth allocation call and only that one.
 * A whole Jansson parse counts as one allocation call (see json_loadb below: Jansson 2.14
 * crashes when an allocation inside its lexer fails).
 *
 * For each path below and N = 1, 2, ... until a run finishes without reaching its Nth
 * allocation, a forked child runs the path with the Nth allocation failing and must
 *  - not crash or abort (the parent sees a normal exit; a crash prints both stacks),
 *  - either succeed (the code recovered) or fail with LG_ERR_NOMEM and a message (an
 *    out-of-memory condition reported as, say, LG_ERR_FORMAT would answer a client 400 for a
 *    server fault),
 *  - after all cleanup (thread pools joined), leave the live-block count exactly where it was
 *    before the run (0 leaks: the allocator's count of blocks, not a heuristic).
 * A failure prints the stack of the failed allocation (addr2line -e the binary resolves it).
 * Paths: (a) model load (lg_model_open on three tiny fixtures: GGUF parse, binding, repack),
 * state create (F32 / F16 KV cache) with a 2-thread pool, a 5-token forward, close;
 * (b) one request: an OpenAI chat-completions body through srv_parse_openai_chat, the chat
 * template render of its messages + tools, vocab load (the Gemma 4 mini vocab), tokenize,
 * detokenize, and the output parser over a reply with a tool call; (c) an Ollama chat body
 * (options, format schema, tool calls) and an OpenAI completions body through their parsers.
 * (d) the response writers (NDJSON and SSE streams, both non-streamed bodies) on a fixed
 * answer with logprobs, a tool call and a validation report.
 * For (b), (c) and (d) a run that recovers must also have produced exactly what the unarmed
 * run did (check_same_text): a field Jansson dropped on a failed allocation is a failure.
 *
 * Under AddressSanitizer malloc belongs to ASan's interceptors, so the ASan build skips (and
 * says so); the optimised build runs everything. LG_ALLOC_FAIL_VERBOSE=1 prints each N.
 */
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test.h"

#if defined(__SANITIZE_ADDRESS__)
#define LG_AF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LG_AF_ASAN 1
#endif
#endif

#ifdef LG_AF_ASAN

int main(void)
{
    printf("test_alloc_fail: skipped under AddressSanitizer (it owns malloc); the optimised "
           "build runs the allocation-failure sweep\n");
    return lg_test_done("test_alloc_fail");
}

#else

#include <jansson.h>

#include "base/err.h"
#include "chat/chat.h"
#include "gguf/gguf.h"
#include "json/json.h"
#include "model/model.h"
#include "quant/quant.h"
#include "server/server.h"
#include "tok/tok.h"

/* ---- the countdown allocator ------------------------------------------------------------- */

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t sz);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static atomic_long af_live;      /* blocks allocated and not yet freed */
static atomic_long af_calls;     /* allocation calls since arming */
static atomic_long af_fail_at;   /* 0: disarmed; else the call number that fails */
static atomic_bool af_hit;       /* the armed failure happened */
static void *af_where[24];       /* the call stack of the failed call (diagnostics) */
static int af_n_where;

/* > 0 while this thread is inside Jansson's parser (see json_loadb below); allocations there
 * are failed only with LG_ALLOC_FAIL_JANSSON=1 (reproduces the Jansson bug described there). */
static bool af_fail_in_jansson;
static _Thread_local int af_in_jansson_parse;

/* True when this allocation call must fail. */
static bool af_should_fail(void)
{
    long at = atomic_load_explicit(&af_fail_at, memory_order_relaxed);
    if (at <= 0 || (af_in_jansson_parse > 0 && !af_fail_in_jansson))
        return false;
    long k = atomic_fetch_add(&af_calls, 1) + 1;
    if (k != at)
        return false;
    atomic_store(&af_hit, true);
    af_n_where = backtrace(af_where, 24); /* preloaded by main: does not allocate */
    return true;
}

static void *af_note(void *p)
{
    if (p)
        atomic_fetch_add_explicit(&af_live, 1, memory_order_relaxed);
    return p;
}

void *malloc(size_t n)
{
    if (af_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return af_note(__libc_malloc(n));
}

void *calloc(size_t n, size_t sz)
{
    if (af_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return af_note(__libc_calloc(n, sz));
}

void free(void *p)
{
    if (!p)
        return;
    atomic_fetch_sub_explicit(&af_live, 1, memory_order_relaxed);
    __libc_free(p);
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (n == 0) { /* glibc: frees p, returns NULL */
        free(p);
        return NULL;
    }
    if (af_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return __libc_realloc(p, n); /* on failure p stays allocated: the count is unchanged */
}

void *memalign(size_t align, size_t n);
void *memalign(size_t align, size_t n)
{
    if (af_should_fail()) {
        errno = ENOMEM;
        return NULL;
    }
    return af_note(__libc_memalign(align, n));
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    if (af_should_fail())
        return ENOMEM;
    void *p = af_note(__libc_memalign(align, n));
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *valloc(size_t n);
void *valloc(size_t n)
{
    return memalign((size_t)sysconf(_SC_PAGESIZE), n);
}

void *pvalloc(size_t n);
void *pvalloc(size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return memalign(pg, (n + pg - 1) / pg * pg);
}

/* Jansson 2.14 does not survive an allocation failure inside its lexer: lex_save() drops the
 * failure of strbuffer_append_byte(), and the lexer then asserts or walks past its buffer
 * (akheron/jansson#362, fix proposed in #747, not released; seen here as "free(): invalid
 * pointer"). That is not our code, so the sweep treats each Jansson parse as one allocation:
 * the Nth call may be a whole json_loadb / json_loads that fails as out of memory, and the
 * allocations inside a parse are not failed (LG_ALLOC_FAIL_JANSSON=1 fails them too). */
typedef json_t *(*loadb_fn)(const char *, size_t, size_t, json_error_t *);
typedef json_t *(*loads_fn)(const char *, size_t, json_error_t *);

static json_t *af_parse_oom(json_error_t *je)
{
    if (je) {
        memset(je, 0, sizeof *je);
        je->line = je->column = -1;
        je->position = 0;
        snprintf(je->text, sizeof je->text, "out of memory");
        je->text[JSON_ERROR_TEXT_LENGTH - 1] = (char)json_error_out_of_memory;
    }
    return NULL;
}

json_t *json_loadb(const char *buf, size_t n, size_t flags, json_error_t *je)
{
    static loadb_fn real;
    if (!real) { /* ISO C has no object-to-function pointer cast: copy the bytes */
        void *sym = dlsym(RTLD_NEXT, "json_loadb");
        memcpy(&real, &sym, sizeof real);
    }
    if (af_should_fail())
        return af_parse_oom(je);
    af_in_jansson_parse++;
    json_t *v = real(buf, n, flags, je);
    af_in_jansson_parse--;
    return v;
}

json_t *json_loads(const char *s, size_t flags, json_error_t *je)
{
    static loads_fn real;
    if (!real) { /* ISO C has no object-to-function pointer cast: copy the bytes */
        void *sym = dlsym(RTLD_NEXT, "json_loads");
        memcpy(&real, &sym, sizeof real);
    }
    if (af_should_fail())
        return af_parse_oom(je);
    af_in_jansson_parse++;
    json_t *v = real(s, flags, je);
    af_in_jansson_parse--;
    return v;
}

static void af_arm(long n)
{
    atomic_store(&af_calls, 0);
    atomic_store(&af_hit, false);
    atomic_store(&af_fail_at, n);
}

static void af_disarm(void)
{
    atomic_store(&af_fail_at, 0);
}

/* ---- the paths --------------------------------------------------------------------------- */

static char g_model_path[512], g_vocab_path[512];
static uint32_t g_kv_type = LG_QTYPE_F32;
static bool g_verbose;

/* Each path returns its status and fills err; every object it made is freed before it
 * returns, whatever happened. */
typedef enum lg_status (*path_fn)(struct lg_err *err);

static enum lg_status path_model(struct lg_err *err)
{
    struct lg_model *m = NULL;
    struct lg_model_state *s = NULL;
    float *logits = NULL;
    enum lg_status st = lg_model_open(g_model_path, &m, err);
    if (st != LG_OK)
        goto out;
    struct lg_state_opts o;
    lg_state_opts_default(&o);
    o.n_ctx = 16;
    o.n_chunk = 4;
    o.type_k = g_kv_type; /* also exercises the quantised KV cache */
    o.type_v = g_kv_type;
    st = lg_model_state_create_opts(m, &o, &s, err);
    if (st != LG_OK)
        goto out;
    st = lg_model_state_set_threads(s, 2, err);
    if (st != LG_OK)
        goto out;
    logits = malloc(sizeof(float) * (size_t)m->cfg.n_vocab);
    if (!logits) {
        st = lg_err_set(err, LG_ERR_NOMEM, "test: logits");
        goto out;
    }
    const int32_t toks[5] = {2, 7, 11, 5, 3};
    st = lg_model_forward(m, s, toks, 5, LG_LOGITS_LAST, logits, err);
out:
    free(logits);
    lg_model_state_destroy(s);
    lg_model_close(m);
    return st;
}

/* Text built for the fingerprint below; the first failed append sticks. */
struct fp_buf {
    char *p;
    size_t n, cap;
    bool oom;
};

static int fp_put(const char *s, size_t n, void *data)
{
    struct fp_buf *b = data;
    if (b->oom)
        return -1;
    if (n >= b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap - b->n <= n)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

/* The parsed request as text: canonical messages, tools and schema as sorted JSON, then
 * prompt, system and the stop strings; NULL on allocation failure. Not json_dumps or
 * json_pack: under a failed allocation Jansson 2.14's json_dumps can return a key cut short
 * (it does not check that write) and json_pack's "s?" turns a string it cannot allocate into
 * null, so the fingerprint itself would differ. */
static char *req_fingerprint(const struct lg_gen_req *r)
{
    struct fp_buf b = {0};
    const json_t *parts[3] = {r->messages, r->tools, r->schema};
    for (int i = 0; i < 3; i++) {
        if (parts[i]) {
            if (json_dump_callback(parts[i], fp_put, &b, JSON_SORT_KEYS | JSON_COMPACT) != 0)
                b.oom = true;
        } else {
            fp_put("(none)", 6, &b);
        }
        fp_put("\n", 1, &b);
    }
    const char *strs[2 + LG_GEN_MAX_STOP] = {r->prompt, r->system};
    int n_strs = 2;
    for (int i = 0; i < r->n_stop; i++)
        strs[n_strs++] = r->stop[i];
    for (int i = 0; i < n_strs; i++) {
        const char *t = strs[i] ? strs[i] : "(none)";
        fp_put(t, strlen(t), &b);
        fp_put("\n", 1, &b);
    }
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* A run that recovers from a failed allocation must parse exactly what the unarmed run did:
 * Jansson's setters drop a field when its value cannot be allocated (json_object_set_new with
 * a NULL json_string() returns -1), and such a request must fail with LG_ERR_NOMEM instead of
 * running without the field. The first call (sweep's unarmed warm-up, in the parent) records
 * *expect; later calls compare with it. */
static enum lg_status check_same_text(char **expect, char *text_owned, const char *what,
                                      struct lg_err *err)
{
    if (!text_owned)
        return lg_err_set(err, LG_ERR_NOMEM, "test: %s fingerprint", what);
    if (!*expect) {
        *expect = text_owned;
        return LG_OK;
    }
    bool same = strcmp(text_owned, *expect) == 0;
    free(text_owned);
    if (!same)
        return lg_err_set(err, LG_ERR_INTERNAL, "the %s differs from the unarmed run's (a "
                          "field lost to a failed allocation)", what);
    return LG_OK;
}

static enum lg_status check_same_request(char **expect, const struct lg_gen_req *r,
                                         struct lg_err *err)
{
    return check_same_text(expect, req_fingerprint(r), "parsed request", err);
}
static char *g_expect_chat, *g_expect_ollama, *g_expect_compl, *g_expect_writers;

static const char REQ_BODY[] =
    "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
    "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Weather in \"},"
    "{\"type\":\"text\",\"text\":\"Paris? \\u00e9t\\u00e9 \\ud83d\\ude00\"}]},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\","
    "\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":[1,2]}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny, 25C\"},"
    "{\"role\":\"user\",\"content\":\"And tomorrow?\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
    "\"description\":\"Weather by city\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"integer\"}}},\"required\":[\"city\"]}}}],"
    "\"temperature\":0.7,\"top_p\":0.9,\"max_tokens\":32,\"stop\":[\"END\",\"STOP\"],"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

/* What the model "answered" (fed to the output parser piece by piece). */
static const struct {
    const char *text;
    bool special;
} REPLY[] = {
    {"Let me check. ", false},
    {"<|tool_call>", true},
    {"call:get_weather{city:<|\"|>Paris<|\"|>,days:[2]}", false},
    {"<tool_call|>", true},
};

static enum lg_status path_request(struct lg_err *err)
{
    struct srv_parsed p;
    struct lg_gguf *g = NULL;
    struct lg_vocab *v = NULL;
    struct lg_chat_parser *cp = NULL;
    json_t *body = NULL;
    char *prompt = NULL, *text = NULL;
    int32_t *ids = NULL;
    size_t n_prompt = 0, n_ids = 0, n_text = 0;
    enum lg_status st = srv_parse_openai_chat(REQ_BODY, sizeof REQ_BODY - 1, LG_JSON_MAX_BODY,
                                              &p, err);
    if (st != LG_OK)
        goto out;
    if ((st = check_same_request(&g_expect_chat, &p.req, err)) != LG_OK)
        goto out;
    /* the template takes OpenAI-shaped messages and tools (the engine converts the canonical
     * form back, engine_job.c): render those of the body itself */
    body = json_loads(REQ_BODY, 0, NULL);
    if (!body) {
        st = lg_err_set(err, LG_ERR_NOMEM, "test: body");
        goto out;
    }
    const json_t *tools = json_object_get(body, "tools");
    struct lg_chat_opts o = lg_chat_opts_default();
    st = lg_chat_render(json_object_get(body, "messages"), tools, &o, &prompt, &n_prompt, err);
    if (st != LG_OK)
        goto out;
    st = lg_gguf_open(g_vocab_path, &g, err);
    if (st != LG_OK)
        goto out;
    st = lg_vocab_load(g, &v, err);
    if (st != LG_OK)
        goto out;
    st = lg_tok_encode_alloc(v, prompt, n_prompt, LG_TOK_PARSE_SPECIAL, &ids, &n_ids, err);
    if (st != LG_OK)
        goto out;
    st = lg_tok_decode_alloc(v, ids, n_ids, LG_DETOK_SHOW_SPECIAL, &text, &n_text, err);
    if (st != LG_OK)
        goto out;
    cp = lg_chat_parser_create(LG_CHAT_GEMMA4_SMALL, tools);
    if (!cp) {
        st = lg_err_set(err, LG_ERR_NOMEM, "chat parser");
        goto out;
    }
    for (size_t i = 0; i < sizeof REPLY / sizeof REPLY[0] && st == LG_OK; i++) {
        st = lg_chat_parser_feed(cp, REPLY[i].text, strlen(REPLY[i].text), REPLY[i].special);
        if (st != LG_OK)
            lg_err_set(err, st, "chat parser feed");
    }
    if (st == LG_OK) {
        st = lg_chat_parser_finish(cp);
        if (st != LG_OK)
            lg_err_set(err, st, "chat parser finish");
    }
    struct lg_chat_event ev;
    while (lg_chat_parser_next(cp, &ev))
        lg_chat_event_free(&ev);
out:
    lg_chat_parser_destroy(cp);
    free(text);
    free(ids);
    free(prompt);
    lg_vocab_free(v);
    lg_gguf_close(g);
    json_decref(body);
    srv_parsed_free(&p);
    return st;
}

/* The other request shapes: Ollama chat (options, format schema, images refused later) and
 * OpenAI completions. */
static const char OLLAMA_BODY[] =
    "{\"model\":\"tiny\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},"
    "{\"role\":\"user\",\"content\":\"Give JSON\"},{\"role\":\"assistant\","
    "\"content\":\"\",\"thinking\":\"hmm\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
    "\"arguments\":{\"a\":[1,{\"b\":null}]}}}]},{\"role\":\"tool\",\"content\":\"ok\","
    "\"tool_name\":\"f\"}],"
    "\"format\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}}},"
    "\"options\":{\"temperature\":0.2,\"num_ctx\":2048,\"stop\":[\"a\",\"b\"],"
    "\"repeat_penalty\":1.1},\"keep_alive\":\"5m\",\"think\":true,\"stream\":false}";
static const char COMPL_BODY[] =
    "{\"model\":\"tiny\",\"prompt\":\"Once upon\",\"max_tokens\":8,\"stop\":\"\\n\","
    "\"logprobs\":2,\"seed\":5,\"stream\":true}";

static enum lg_status path_request_other(struct lg_err *err)
{
    struct srv_parsed p;
    enum lg_status st = srv_parse_ollama_chat(OLLAMA_BODY, sizeof OLLAMA_BODY - 1,
                                              LG_JSON_MAX_BODY, &p, err);
    if (st == LG_OK)
        st = check_same_request(&g_expect_ollama, &p.req, err);
    srv_parsed_free(&p);
    if (st != LG_OK)
        return st;
    st = srv_parse_openai_completions(COMPL_BODY, sizeof COMPL_BODY - 1, LG_JSON_MAX_BODY, &p,
                                      err);
    if (st == LG_OK)
        st = check_same_request(&g_expect_compl, &p.req, err);
    srv_parsed_free(&p);
    return st;
}

/* (d) The response writers (ndjson.c, sse.c): one fixed answer (a thought, content with
 * logprobs, a tool call in two fragments, DONE with a validation report) through the Ollama
 * chat NDJSON stream, the OpenAI chat SSE stream (usage chunk on) and the accumulator, then
 * the non-streamed bodies of both built from it. A failed allocation must fail the output
 * (the stream's buffer marked, the accumulator failed, or a NULL body); whatever succeeds
 * must be byte for byte the unarmed output. */
static int64_t fixed_clock(void)
{
    return 1700000000123456789LL;
}

static enum lg_status path_writers(struct lg_err *err)
{
    static const struct lg_gen_top_logprob top[2] = {{"Hel", 3, -0.25f}, {"Hi", 2, -1.5f}};
    static const struct lg_gen_logprob lp[1] = {{"Hel", 3, -0.25f, top, 2}};
    struct lg_gen_event ev[5];
    memset(ev, 0, sizeof ev);
    ev[0].kind = LG_GEN_EV_REASONING;
    ev[0].text = "hmm";
    ev[0].n_text = 3;
    ev[1].kind = LG_GEN_EV_CONTENT;
    ev[1].text = "Hello";
    ev[1].n_text = 5;
    ev[1].logprobs = lp;
    ev[1].n_logprobs = 1;
    ev[2].kind = LG_GEN_EV_TOOL_CALL;
    ev[2].tool_id = "call_1";
    ev[2].tool_name = "get_weather";
    ev[2].text = "{\"city\":";
    ev[2].n_text = strlen(ev[2].text);
    ev[3].kind = LG_GEN_EV_TOOL_CALL;
    ev[3].text = "\"Paris\"}";
    ev[3].n_text = strlen(ev[3].text);
    ev[4].kind = LG_GEN_EV_DONE;
    ev[4].finish = LG_FINISH_TOOL_CALLS;
    ev[4].usage = (struct lg_gen_usage){12, 4, 9};
    ev[4].timings = (struct lg_gen_timings){1000, 0, 2000000, 3000000, 6000000, 8};
    ev[4].validation = "{\"valid\":true,\"errors\":[]}";

    struct srv_buf nd = {0}, sse = {0};
    struct srv_ndjson w;
    srv_ndjson_init(&w, true, "tiny", fixed_clock);
    struct srv_sse sw;
    srv_sse_init(&sw, true, "chatcmpl-1", 1700000000, "tiny", true, false);
    struct srv_accum acc;
    memset(&acc, 0, sizeof acc);
    srv_sse_begin(&sw, &sse);
    for (size_t i = 0; i < sizeof ev / sizeof ev[0]; i++) {
        srv_ndjson_event(&w, &ev[i], &nd);
        srv_sse_event(&sw, &ev[i], &sse);
        srv_accum_event(&acc, &ev[i]);
    }
    json_t *ob = acc.failed ? NULL : srv_ollama_body(&w, &acc);
    json_t *ab = acc.failed ? NULL : srv_openai_body(&sw, &acc);
    enum lg_status st;
    if (nd.oom || sse.oom || acc.failed || !ob || !ab) {
        st = lg_err_set(err, LG_ERR_NOMEM, "writers: out of memory");
    } else {
        struct fp_buf b = {0};
        fp_put(nd.p, nd.n, &b);
        fp_put(sse.p, sse.n, &b);
        if (json_dump_callback(ob, fp_put, &b, JSON_SORT_KEYS | JSON_COMPACT) != 0 ||
            json_dump_callback(ab, fp_put, &b, JSON_SORT_KEYS | JSON_COMPACT) != 0)
            b.oom = true;
        if (b.oom) {
            free(b.p);
            b.p = NULL;
        }
        st = check_same_text(&g_expect_writers, b.p, "writers' output", err);
    }
    json_decref(ob);
    json_decref(ab);
    srv_accum_free(&acc);
    srv_ndjson_free(&w);
    srv_buf_free(&nd);
    srv_buf_free(&sse);
    return st;
}

/* ---- the sweep --------------------------------------------------------------------------- */

enum {
    CHILD_DONE = 0,     /* the run never reached its Nth allocation: the sweep is complete */
    CHILD_HIT_OK = 1,   /* the Nth allocation failed; LG_ERR_NOMEM with a message, no leak */
    CHILD_LEAK = 2,     /* live blocks after the run != before */
    CHILD_NO_MSG = 3,   /* failed without an error message */
    CHILD_BAD_BASE = 4, /* the unarmed run failed */
    CHILD_NOT_NOMEM = 5, /* the failed allocation was reported as another error (a 400 for an
                          * out-of-memory condition) */
    CHILD_RECOVERED = 6  /* the Nth allocation failed and the run still succeeded */
};

/* In a child that crashes: where the allocation failed and where it crashed, then the signal
 * (async-signal-safe: backtrace was preloaded, backtrace_symbols_fd does not allocate). */
static void crash_handler(int sig)
{
    static const char a[] = "crash: the failed allocation was at:\n", b[] = "crash site:\n";
    ssize_t w = write(2, a, sizeof a - 1);
    backtrace_symbols_fd(af_where, af_n_where, 2);
    w = write(2, b, sizeof b - 1);
    (void)w;
    void *here[32];
    backtrace_symbols_fd(here, backtrace(here, 32), 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Runs fn once with allocation n failing (0: none); exits with a CHILD_* code. */
static int child_run(path_fn fn, long n, const char *name)
{
    struct lg_err err = {0};
    long before = atomic_load(&af_live);
    af_arm(n > 0 ? n : LONG_MAX); /* 0: count the calls, fail none */
    enum lg_status st = fn(&err);
    af_disarm();
    long after = atomic_load(&af_live);
    bool hit = atomic_load(&af_hit);
    long calls = atomic_load(&af_calls);
    if (n == 0 && st != LG_OK) {
        fprintf(stderr, "%s: unarmed run failed: %d %s\n", name, (int)st, err.msg);
        return CHILD_BAD_BASE;
    }
    if (after != before) {
        fprintf(stderr, "%s: N=%ld: %ld block(s) leaked (status %d \"%s\"); failed call at:\n",
                name, n, after - before, (int)st, err.msg);
        backtrace_symbols_fd(af_where, af_n_where, 2);
        return CHILD_LEAK;
    }
    if (st != LG_OK && err.msg[0] == '\0') {
        fprintf(stderr, "%s: N=%ld: status %d without a message; failed call at:\n", name, n,
                (int)st);
        backtrace_symbols_fd(af_where, af_n_where, 2);
        return CHILD_NO_MSG;
    }
    if (hit && st != LG_OK && st != LG_ERR_NOMEM) {
        fprintf(stderr, "%s: N=%ld: out of memory reported as status %d \"%s\"; failed call "
                "at:\n", name, n, (int)st, err.msg);
        backtrace_symbols_fd(af_where, af_n_where, 2);
        return CHILD_NOT_NOMEM;
    }
    if (g_verbose) {
        fprintf(stderr, "%s: N=%ld: %s, status %d \"%s\"\n", name, n,
                hit ? "failed allocation" : "not reached", (int)st, err.msg);
        if (hit)
            backtrace_symbols_fd(af_where, af_n_where, 2);
    }
    if (n == 0)
        printf("%s: %ld allocation calls in an unarmed run\n", name, calls);
    if (!hit)
        return CHILD_DONE;
    return st == LG_OK ? CHILD_RECOVERED : CHILD_HIT_OK;
}

static int fork_run(path_fn fn, long n, const char *name)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return -1;
    }
    if (pid == 0) {
        signal(SIGSEGV, crash_handler);
        signal(SIGABRT, crash_handler);
        signal(SIGBUS, crash_handler);
        int rc = child_run(fn, n, name);
        fflush(stdout);
        fflush(stderr);
        _exit(rc);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFSIGNALED(ws)) {
        fprintf(stderr, "%s: N=%ld: killed by signal %d\n", name, n, WTERMSIG(ws));
        return -2;
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

/* The sweep over one path; max_n guards against a path that never ends. */
static void sweep(path_fn fn, const char *name, long max_n)
{
    /* warm-up in this process: one-time initialisation (kernel tables, stdio buffers, locale,
     * ...) happens here, unarmed, so the children start with it done */
    struct lg_err err = {0};
    enum lg_status st = fn(&err);
    CHECK_MSG(st == LG_OK, "%s: warm-up run: %s", name, err.msg);
    if (st != LG_OK)
        return;
    int rc = fork_run(fn, 0, name);
    CHECK_MSG(rc == CHILD_DONE, "%s: unarmed run: code %d", name, rc);
    long n = 1, n_hit = 0, n_rec = 0, n_bad = 0;
    for (; n <= max_n; n++) {
        rc = fork_run(fn, n, name);
        if (rc == CHILD_DONE)
            break;
        if (rc == CHILD_HIT_OK || rc == CHILD_RECOVERED) {
            n_hit++;
            n_rec += rc == CHILD_RECOVERED;
            continue;
        }
        n_bad++;
        CHECK_MSG(0, "%s: N=%ld: child code %d (2 leak, 3 no message, 5 not LG_ERR_NOMEM, "
                  "<0 crash)", name, n, rc);
        if (n_bad >= 20) {
            fprintf(stderr, "%s: too many failures, stopping the sweep at N=%ld\n", name, n);
            return;
        }
    }
    CHECK_MSG(n <= max_n, "%s: still allocating after %ld calls", name, max_n);
    CHECK_MSG(n_hit > 0, "%s: no allocation was ever failed", name);
    printf("%s: failed allocation N = 1..%ld: %ld clean (%ld LG_ERR_NOMEM, %ld recovered and "
           "succeeded), %ld bad\n", name, n - 1, n_hit, n_hit - n_rec, n_rec, n_bad);
    if (n_bad == 0)
        lg_test_passed++;
}

/* The allocator itself: counting, failing exactly once, realloc keeping the block. */
static void test_allocator(void)
{
    long base = atomic_load(&af_live);
    af_arm(2);
    void *a = malloc(8);
    void *b = malloc(8); /* the 2nd call fails */
    void *c = calloc(2, 8);
    af_disarm();
    CHECK(a != NULL);
    CHECK(b == NULL);
    CHECK(c != NULL);
    CHECK(atomic_load(&af_hit));
    CHECK_EQ_INT(atomic_load(&af_live) - base, 2);
    af_arm(1);
    void *r = realloc(a, 4096);
    af_disarm();
    CHECK(r == NULL); /* a is still ours */
    if (!r)
        free(a);
    else
        free(r);
    free(c);
    void *al = NULL;
    CHECK_EQ_INT(posix_memalign(&al, 64, 100), 0);
    CHECK(al && ((uintptr_t)al & 63) == 0);
    free(al);
    CHECK_EQ_INT(atomic_load(&af_live) - base, 0);
}

int main(void)
{
    const char *v = getenv("LG_ALLOC_FAIL_VERBOSE");
    g_verbose = v && v[0] == '1';
    const char *j = getenv("LG_ALLOC_FAIL_JANSSON");
    af_fail_in_jansson = j && j[0] == '1';
    snprintf(g_vocab_path, sizeof g_vocab_path, "%s/golden/tok/gemma4-mini-vocab.gguf",
             lg_test_data_dir());
    void *bt[4];
    backtrace(bt, 4); /* loads libgcc's unwinder now, so the failing call's backtrace() later
                       * does not allocate */
    test_allocator();
    /* model load: Gemma 4 E2B (per-layer embeddings) and 26B (MoE) Q8_0 with an F16 KV cache,
     * Gemma 3 F32 with F32 KV (the fixtures' head size 16 rules out a Q8_0 / Q4_0 cache) */
    static const struct {
        const char *file;
        uint32_t kv;
    } MODELS[] = {{"gemma4_e2b.q8_0.gguf", LG_QTYPE_F16},
                  {"gemma4_26b.q8_0.gguf", LG_QTYPE_F16},
                  {"gemma3.f32.gguf", LG_QTYPE_F32}};
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        snprintf(g_model_path, sizeof g_model_path, "%s/golden/model/%s", lg_test_data_dir(),
                 MODELS[i].file);
        g_kv_type = MODELS[i].kv;
        char name[64];
        snprintf(name, sizeof name, "model %s", MODELS[i].file);
        sweep(path_model, name, 20000);
    }
    sweep(path_request, "request", 200000);
    sweep(path_request_other, "request ollama+completions", 200000);
    sweep(path_writers, "response writers", 200000);
    free(g_expect_chat);
    free(g_expect_ollama);
    free(g_expect_compl);
    free(g_expect_writers);
    return lg_test_done("test_alloc_fail");
}

#endif
