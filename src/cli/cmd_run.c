/* cmd_run.c: `localgemma run MODEL [PROMPT]` and `localgemma chat MODEL`.
 *
 * With a prompt: render it with the model's chat template, stream the answer, exit. Without:
 * an interactive chat (history, /bye, /clear, /set think on|off, /set system TEXT, multi-line
 * input between triple quotes), or, when stdin is not a terminal, stdin is the prompt.
 * The history is re-rendered every turn; the session reuses the cached prefix, so a turn
 * only computes its new tokens.
 *
 * Memory and context (issue #9): before loading, the memory plan (src/model/plan.h) must fit,
 * else the command refuses with the planner's explanation; --ctx defaults to the largest
 * context that fits, capped at min(trained context, 8192). A prompt that does not fit the
 * context is an error naming the token counts (--overflow error, the default), or, with
 * --overflow truncate-middle (--truncate), loses its middle: chat keeps the system prompt,
 * the first turn and the latest turns and drops whole turns in between (then tokens from the
 * middle when one turn alone is too long); a raw prompt keeps its start and its end. Either
 * way a note on stderr says how many tokens were dropped: never silently. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "chat/chat.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "cli/preflight.h"
#include "engine/session.h"
#include "model/model.h"
#include "store/store.h"
#include "tok/tok.h"

enum { RUN_MAX_STOPS = 16, RUN_RESERVE_MAX = 1024 };

enum run_overflow { RUN_OVERFLOW_ERROR = 0, RUN_OVERFLOW_TRUNCATE = 1 };

struct run_opts {
    const char *cmd;
    const char *model;
    char *prompt;          /* malloc'd, NULL for interactive */
    const char *system;
    bool think;
    bool hide_thinking;
    bool raw;
    bool verbose;
    int64_t n_ctx;
    int64_t threads;
    struct lg_cli_kv kv;
    enum run_overflow overflow;
    struct lg_session_gen gen;
    bool set_temp, set_top_k, set_top_p, set_min_p, set_seed, set_repeat;
    double temp, top_p, min_p, repeat;
    int64_t top_k, seed;
    const char *stops[RUN_MAX_STOPS];
};

/* Output state for one answer. */
struct run_out {
    const struct run_opts *o;
    int section;           /* 0 nothing yet, 1 in thinking, 2 in answer */
    char *answer;          /* the answer text (kept for the chat history) */
    size_t n_answer, cap_answer;
    bool tty;
};

static void run_usage(FILE *f, const char *cmd)
{
    fprintf(f,
            "usage: localgemma %s MODEL [PROMPT...] [options]\n"
            "  MODEL is a store name (gemma3:270m) or a path to a .gguf file.\n"
            "  Without PROMPT: interactive chat (or stdin as the prompt when it is not a terminal).\n"
            "options:\n"
            "  --system TEXT        system instruction\n"
            "  --think              enable the thinking mode (Gemma 4)\n"
            "  --hide-thinking      do not print the thinking\n"
            "  -n, --max-tokens N   stop after N generated tokens (default: until done)\n"
            "  --temp F  --top-k N  --top-p F  --min-p F  --repeat-penalty F  --seed N\n"
            "  --stop TEXT          stop at TEXT (repeatable)\n"
            "  --ctx N              context length (default: the largest that fits in memory,\n"
            "                       at most min(trained context, 8192))\n"
            "  --kv-type T          KV-cache storage for K and V: f16 (default), q8_0, q4_0, f32\n"
            "  --kv-type-k T  --kv-type-v T   the same for K or V alone\n"
            "  --overflow error|truncate-middle   a prompt longer than the context: fail with\n"
            "                       the token counts (default), or drop the middle (whole turns\n"
            "                       first; the system prompt, first and latest turns stay)\n"
            "  --truncate           same as --overflow truncate-middle\n"
            "  -t, --threads N      threads\n"
            "  --raw                no chat template: the prompt goes in as it is\n"
            "  --verbose            print load time, prompt and decode speed, TTFT\n",
            cmd);
}

static bool run_answer_put(struct run_out *r, const char *s, size_t n)
{
    if (r->n_answer + n + 1 > r->cap_answer) {
        size_t cap = (r->cap_answer ? r->cap_answer * 2 : 256) + n;
        char *p = realloc(r->answer, cap);
        if (!p)
            return false;
        r->answer = p;
        r->cap_answer = cap;
    }
    memcpy(r->answer + r->n_answer, s, n);
    r->n_answer += n;
    r->answer[r->n_answer] = '\0';
    return true;
}

static bool run_emit(void *user, enum lg_chat_event_type type, const char *text, size_t len,
                     const char *name)
{
    struct run_out *r = user;
    switch (type) {
    case LG_CHAT_EV_REASONING:
        if (r->o->hide_thinking)
            return true;
        if (r->section == 0) {
            fputs(r->tty ? "\x1b[2mThinking...\n" : "Thinking...\n", stdout);
            r->section = 1;
        }
        fwrite(text, 1, len, stdout);
        break;
    case LG_CHAT_EV_CONTENT:
        if (r->section == 1)
            fputs(r->tty ? "\n...done thinking.\x1b[0m\n\n" : "\n...done thinking.\n\n", stdout);
        if (r->section != 2 && r->n_answer == 0) {
            /* the template trims; skip the model's leading newlines */
            while (len && (text[0] == '\n' || text[0] == ' ')) {
                text++;
                len--;
            }
            if (!len)
                return true;
        }
        r->section = 2;
        fwrite(text, 1, len, stdout);
        if (!run_answer_put(r, text, len))
            return false;
        break;
    case LG_CHAT_EV_TOOL_CALL:
        printf("\n[tool call] %s(%.*s)\n", name ? name : "?", (int)len, text);
        break;
    case LG_CHAT_EV_ERROR:
        printf("\n[malformed tool call] %.*s\n", (int)len, text);
        break;
    }
    fflush(stdout);
    return true;
}

static const char *run_finish_name(enum lg_session_finish f)
{
    switch (f) {
    case LG_SESSION_FINISH_STOP: return "stop";
    case LG_SESSION_FINISH_LENGTH: return "length";
    case LG_SESSION_FINISH_CONTEXT: return "context full";
    case LG_SESSION_FINISH_ABORT: return "aborted";
    }
    return "?";
}

/* Renders messages (or takes the raw prompt) and tokenizes it into *ids (malloc'd). */
static int run_tokenize(struct lg_session *s, const struct run_opts *o, const json_t *messages,
                        const char *raw_prompt, int32_t **ids, size_t *n_ids)
{
    struct lg_err err = {0};
    char *text = NULL;
    size_t n_text = 0;
    unsigned flags = LG_TOK_ADD_BOS;
    *ids = NULL;
    *n_ids = 0;
    if (raw_prompt) {
        text = strdup(raw_prompt);
        n_text = strlen(raw_prompt);
        if (!text) {
            fprintf(stderr, "localgemma %s: out of memory\n", o->cmd);
            return 1;
        }
    } else {
        struct lg_chat_opts co = lg_chat_opts_default();
        co.flavour = lg_session_flavour(s);
        co.enable_thinking = o->think;
        if (lg_chat_render(messages, NULL, &co, &text, &n_text, &err) != LG_OK) {
            fprintf(stderr, "localgemma %s: %s\n", o->cmd, err.msg);
            return 1;
        }
        flags |= LG_TOK_PARSE_SPECIAL;
    }
    int rc = 0;
    if (lg_tok_encode_alloc(lg_session_vocab(s), text, n_text, flags, ids, n_ids, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s\n", o->cmd, err.msg);
        rc = 1;
    }
    free(text);
    return rc;
}

/* Tokens to leave free for the answer when truncating: -n when given, else a quarter of the
 * context up to RUN_RESERVE_MAX; never more than half the context. */
static int64_t run_reserve(const struct run_opts *o, int64_t n_ctx)
{
    int64_t r = o->gen.max_tokens > 0 ? o->gen.max_tokens : n_ctx / 4;
    if (r > RUN_RESERVE_MAX && o->gen.max_tokens <= 0)
        r = RUN_RESERVE_MAX;
    if (r > n_ctx / 2)
        r = n_ctx / 2;
    return r < 1 ? 1 : r;
}

/* Keeps the first keep/2 and the last keep - keep/2 tokens (the start holds <bos> and the
 * system prompt, the end the latest turn and the generation prompt). */
static void run_cut_middle(int32_t *ids, size_t *n_ids, size_t keep)
{
    size_t head = keep / 2, tail = keep - head;
    memmove(ids + head, ids + *n_ids - tail, tail * sizeof *ids);
    *n_ids = keep;
}

/* Makes the prompt fit o->overflow's way (see the file comment). *ids / *n_ids are the full
 * prompt on entry and what to run on success. Returns 1 after printing the error. */
static int run_fit_prompt(struct lg_session *s, const struct run_opts *o, const json_t *messages,
                          const char *raw_prompt, int32_t **ids, size_t *n_ids)
{
    const int64_t n_ctx = lg_session_n_ctx(s);
    const size_t n_orig = *n_ids;
    if (o->overflow == RUN_OVERFLOW_ERROR) {
        if ((int64_t)*n_ids < n_ctx)
            return 0;
        fprintf(stderr, "localgemma %s: the prompt is %zu tokens but the context holds %lld "
                "(--ctx %lld) and the answer needs at least 1 more: shorten the prompt, raise "
                "--ctx, or pass --overflow truncate-middle\n", o->cmd, *n_ids,
                (long long)n_ctx, (long long)n_ctx);
        return 1;
    }
    const size_t limit = (size_t)(n_ctx - run_reserve(o, n_ctx));
    if (*n_ids <= limit)
        return 0;
    size_t n_turns = 0;
    if (!raw_prompt && messages) {
        /* Drop whole user/assistant pairs after the protected head (system prompt and the
         * first turn), oldest first, keeping the latest user message. */
        json_t *m = json_deep_copy(messages);
        if (!m) {
            fprintf(stderr, "localgemma %s: out of memory\n", o->cmd);
            return 1;
        }
        size_t head = 0;
        json_t *first = json_array_get(m, 0);
        const char *role = first ? json_string_value(json_object_get(first, "role")) : NULL;
        if (role && !strcmp(role, "system"))
            head = 1;
        head += 2; /* the first user turn and its answer */
        while (*n_ids > limit && json_array_size(m) >= head + 3) {
            json_array_remove(m, head);
            json_array_remove(m, head);
            n_turns++;
            int32_t *nids;
            size_t nn;
            if (run_tokenize(s, o, m, NULL, &nids, &nn) != 0) {
                json_decref(m);
                return 1;
            }
            free(*ids);
            *ids = nids;
            *n_ids = nn;
        }
        json_decref(m);
    }
    if (*n_ids > limit)
        run_cut_middle(*ids, n_ids, limit);
    fprintf(stderr, "localgemma %s: note: the prompt (%zu tokens) did not fit the %lld-token "
            "context with room for the answer; dropped %zu tokens from the middle",
            o->cmd, n_orig, (long long)n_ctx, n_orig - *n_ids);
    if (n_turns)
        fprintf(stderr, " (%zu earlier turn%s)", n_turns, n_turns == 1 ? "" : "s");
    fprintf(stderr, " [--overflow truncate-middle]\n");
    return 0;
}

/* Renders messages (or takes the raw prompt), tokenizes, generates, prints. On success the
 * answer text is left in *answer (malloc'd) for the history. */
static int run_turn(struct lg_session *s, const struct run_opts *o, json_t *messages,
                    const char *raw_prompt, char **answer)
{
    struct lg_err err = {0};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    int rc = 1;
    *answer = NULL;
    if (run_tokenize(s, o, messages, raw_prompt, &ids, &n_ids) != 0 ||
        run_fit_prompt(s, o, messages, raw_prompt, &ids, &n_ids) != 0)
        goto out;
    struct lg_session_gen g = o->gen;
    g.parse_chat = !raw_prompt;
    struct run_out r = {o, 0, NULL, 0, 0, isatty(STDOUT_FILENO) != 0};
    struct lg_session_stats st;
    if (lg_session_generate(s, ids, (int64_t)n_ids, &g, run_emit, &r, &st, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s\n", o->cmd, err.msg);
        free(r.answer);
        goto out;
    }
    if (r.section == 1)
        fputs(r.tty ? "\n...done thinking.\x1b[0m\n" : "\n...done thinking.\n", stdout);
    fputc('\n', stdout);
    fflush(stdout);
    if (o->verbose) {
        double tp = st.t_prompt_ns / 1e9, tg = st.t_gen_ns / 1e9;
        int64_t n_dec = st.n_gen > 1 ? st.n_gen - 1 : 0;
        fprintf(stderr,
                "prompt tokens:      %lld (%lld computed, %lld from cache)\n"
                "prompt eval:        %.3f s, %.2f tokens/s\n"
                "time to 1st token:  %.3f s\n"
                "generated tokens:   %lld (finish: %s)\n"
                "decode:             %.3f s, %.2f tokens/s\n",
                (long long)st.n_prompt, (long long)st.n_prompt_eval,
                (long long)(st.n_prompt - st.n_prompt_eval), tp,
                tp > 0 ? st.n_prompt_eval / tp : 0.0, st.t_first_ns / 1e9, (long long)st.n_gen,
                run_finish_name(st.finish), tg, tg > 0 ? n_dec / tg : 0.0);
    }
    if (st.finish == LG_SESSION_FINISH_CONTEXT)
        fprintf(stderr, "localgemma %s: the context (%lld tokens) is full; use --ctx to enlarge it\n",
                o->cmd, (long long)lg_session_n_ctx(s));
    *answer = r.answer ? r.answer : strdup("");
    rc = 0;
out:
    free(ids);
    return rc;
}

static json_t *run_messages_new(const char *system)
{
    json_t *m = json_array();
    if (m && system && system[0])
        json_array_append_new(m, json_pack("{s:s,s:s}", "role", "system", "content", system));
    return m;
}

/* Reads one user message; """ starts/ends multi-line input. NULL at end of input. */
static char *run_read_input(bool tty)
{
    char *line = NULL, *acc = NULL;
    size_t cap = 0, n_acc = 0;
    bool multi = false;
    for (;;) {
        if (tty)
            fputs(multi ? "... " : ">>> ", stdout), fflush(stdout);
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) {
            free(line);
            if (acc && n_acc)
                return acc;
            free(acc);
            return NULL;
        }
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        const char *piece = line;
        bool end = !multi;
        if (!multi && strncmp(line, "\"\"\"", 3) == 0) {
            multi = true;
            piece = line + 3;
            end = false;
            size_t pl = strlen(piece);
            if (pl >= 3 && !strcmp(piece + pl - 3, "\"\"\"")) {
                line[3 + pl - 3] = '\0';
                end = true;
            }
        } else if (multi && n >= 3 && !strcmp(line + n - 3, "\"\"\"")) {
            line[n - 3] = '\0';
            end = true;
        }
        size_t pl = strlen(piece);
        char *p = realloc(acc, n_acc + pl + 2);
        if (!p) {
            free(acc);
            free(line);
            return NULL;
        }
        acc = p;
        if (n_acc)
            acc[n_acc++] = '\n';
        memcpy(acc + n_acc, piece, pl);
        n_acc += pl;
        acc[n_acc] = '\0';
        if (end) {
            free(line);
            return acc;
        }
    }
}

static int run_interactive(struct lg_session *s, struct run_opts *o)
{
    bool tty = isatty(STDIN_FILENO) != 0;
    char *system = o->system ? strdup(o->system) : NULL;
    json_t *msgs = run_messages_new(system);
    if (!msgs)
        return 1;
    if (tty)
        printf("Chatting with %s. /? for help, /bye to leave.\n", o->model);
    int rc = 0;
    char *in;
    while ((in = run_read_input(tty)) != NULL) {
        if (!strcmp(in, "/bye") || !strcmp(in, "/exit")) {
            free(in);
            break;
        }
        if (!strcmp(in, "/?") || !strcmp(in, "/help")) {
            printf("/bye                leave\n/clear              forget the conversation\n"
                   "/set think on|off   thinking mode\n/set system TEXT     system instruction\n"
                   "\"\"\"                 begin/end multi-line input\n");
        } else if (!strcmp(in, "/clear")) {
            json_decref(msgs);
            msgs = run_messages_new(system);
            printf("Cleared the conversation.\n");
        } else if (!strncmp(in, "/set think", 10)) {
            const char *v = in + 10;
            while (*v == ' ')
                v++;
            o->think = !(!strcmp(v, "off") || !strcmp(v, "false"));
            printf("Thinking %s.\n", o->think ? "on" : "off");
        } else if (!strcmp(in, "/set nothink")) {
            o->think = false;
            printf("Thinking off.\n");
        } else if (!strncmp(in, "/set system", 11)) {
            const char *v = in + 11;
            while (*v == ' ')
                v++;
            free(system);
            system = strdup(v);
            json_decref(msgs);
            msgs = run_messages_new(system);
            printf("Set the system instruction (conversation cleared).\n");
        } else if (in[0] == '/') {
            printf("Unknown command '%s'. Type /? for help.\n", in);
        } else if (in[0]) {
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", in));
            char *answer = NULL;
            if (run_turn(s, o, msgs, o->raw ? in : NULL, &answer) != 0) {
                /* keep the history consistent: drop the failed user turn */
                json_array_remove(msgs, json_array_size(msgs) - 1);
                rc = 1;
            } else {
                json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "assistant", "content",
                                                      answer));
                rc = 0;
            }
            free(answer);
            if (tty)
                fputc('\n', stdout);
        }
        free(in);
    }
    json_decref(msgs);
    free(system);
    return rc;
}

static char *run_read_all_stdin(void)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += k;
        if (cap - n < 2) {
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                return NULL;
            }
            buf = p;
            cap *= 2;
        }
    }
    buf[n] = '\0';
    return buf;
}

static int run_main(int argc, char **argv, bool force_interactive)
{
    struct run_opts o;
    memset(&o, 0, sizeof o);
    o.cmd = argv[0];
    o.gen.max_tokens = -1;
    size_t n_prompt = 0;
    int n_stops = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout, o.cmd);
            free(o.prompt);
            return 0;
        }
#define VAL()                                                                                  \
    do {                                                                                       \
        if (!(v = lg_arg_value(o.cmd, argc, argv, &i)))                                        \
            goto usage_err;                                                                    \
    } while (0)
        int kr = lg_cli_kv_flag(o.cmd, argc, argv, &i, &o.kv);
        if (kr < 0)
            goto usage_err;
        if (kr > 0)
            continue;
        if (!strcmp(a, "--system")) {
            VAL();
            o.system = v;
        } else if (!strcmp(a, "--think")) {
            o.think = true;
        } else if (!strcmp(a, "--hide-thinking")) {
            o.hide_thinking = true;
        } else if (!strcmp(a, "--raw")) {
            o.raw = true;
        } else if (!strcmp(a, "--truncate")) {
            o.overflow = RUN_OVERFLOW_TRUNCATE;
        } else if (!strcmp(a, "--overflow")) {
            VAL();
            if (!strcmp(v, "error")) {
                o.overflow = RUN_OVERFLOW_ERROR;
            } else if (!strcmp(v, "truncate-middle") || !strcmp(v, "truncate")) {
                o.overflow = RUN_OVERFLOW_TRUNCATE;
            } else {
                fprintf(stderr, "localgemma %s: --overflow: '%s' (expected error or "
                        "truncate-middle)\n", o.cmd, v);
                goto usage_err;
            }
        } else if (!strcmp(a, "--verbose")) {
            o.verbose = true;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
            int64_t x;
            VAL();
            if (!lg_arg_i64(o.cmd, a, v, -1, 1 << 24, &x))
                goto usage_err;
            o.gen.max_tokens = (int32_t)x;
        } else if (!strcmp(a, "--temp")) {
            VAL();
            if (!lg_arg_f64(o.cmd, a, v, 0, 100, &o.temp))
                goto usage_err;
            o.set_temp = true;
        } else if (!strcmp(a, "--top-k")) {
            VAL();
            if (!lg_arg_i64(o.cmd, a, v, 0, 1 << 30, &o.top_k))
                goto usage_err;
            o.set_top_k = true;
        } else if (!strcmp(a, "--top-p")) {
            VAL();
            if (!lg_arg_f64(o.cmd, a, v, 0, 1, &o.top_p))
                goto usage_err;
            o.set_top_p = true;
        } else if (!strcmp(a, "--min-p")) {
            VAL();
            if (!lg_arg_f64(o.cmd, a, v, 0, 1, &o.min_p))
                goto usage_err;
            o.set_min_p = true;
        } else if (!strcmp(a, "--repeat-penalty")) {
            VAL();
            if (!lg_arg_f64(o.cmd, a, v, 0.01, 10, &o.repeat))
                goto usage_err;
            o.set_repeat = true;
        } else if (!strcmp(a, "--seed")) {
            VAL();
            if (!lg_arg_i64(o.cmd, a, v, 0, INT64_MAX, &o.seed))
                goto usage_err;
            o.set_seed = true;
        } else if (!strcmp(a, "--stop")) {
            VAL();
            if (n_stops >= RUN_MAX_STOPS) {
                fprintf(stderr, "localgemma %s: at most %d --stop strings\n", o.cmd, RUN_MAX_STOPS);
                goto usage_err;
            }
            o.stops[n_stops++] = v;
        } else if (!strcmp(a, "--ctx")) {
            VAL();
            if (!lg_arg_i64(o.cmd, a, v, 16, 1 << 24, &o.n_ctx))
                goto usage_err;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            VAL();
            if (!lg_arg_i64(o.cmd, a, v, 1, 1024, &o.threads))
                goto usage_err;
        } else if (a[0] == '-' && a[1] && !o.prompt && !o.model) {
            fprintf(stderr, "localgemma %s: unknown option %s\n", o.cmd, a);
            goto usage_err;
        } else if (a[0] == '-' && a[1] == '-') {
            fprintf(stderr, "localgemma %s: unknown option %s\n", o.cmd, a);
            goto usage_err;
        } else if (!o.model) {
            o.model = a;
        } else if (force_interactive) {
            fprintf(stderr, "localgemma %s: takes no prompt (use 'run')\n", o.cmd);
            goto usage_err;
        } else {
            size_t al = strlen(a);
            char *p = realloc(o.prompt, n_prompt + al + 2);
            if (!p)
                goto usage_err;
            o.prompt = p;
            if (n_prompt)
                o.prompt[n_prompt++] = ' ';
            memcpy(o.prompt + n_prompt, a, al + 1);
            n_prompt += al;
        }
#undef VAL
    }
    if (!o.model) {
        run_usage(stderr, o.cmd);
        free(o.prompt);
        return 2;
    }
    o.gen.stops = o.stops;
    o.gen.n_stops = (size_t)n_stops;

    struct lg_err err = {0};
    char path[4096];
    if (lg_store_resolve_default(o.model, false, path, sizeof path, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s\n", o.cmd, err.msg);
        free(o.prompt);
        return 1;
    }
    int64_t n_ctx;
    if (lg_cli_preflight(o.cmd, path, o.n_ctx, 1, &o.kv, &n_ctx) != 0) {
        free(o.prompt);
        return 1;
    }
    int64_t t0 = lg_session_now_ns();
    struct lg_session_opts so = {.n_ctx = n_ctx, .n_threads = (int32_t)o.threads,
                                 .kv_type_k = o.kv.k, .kv_type_v = o.kv.v};
    struct lg_session *s = NULL;
    if (lg_session_open(path, &so, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s\n", o.cmd, err.msg);
        free(o.prompt);
        return 1;
    }
    if (o.verbose)
        fprintf(stderr, "load time:          %.3f s (%s, context %lld)\n",
                (lg_session_now_ns() - t0) / 1e9, path, (long long)lg_session_n_ctx(s));
    lg_session_sample_defaults(s, &o.gen.sample);
    if (o.set_temp)
        o.gen.sample.temperature = (float)o.temp;
    if (o.set_top_k)
        o.gen.sample.top_k = (int32_t)o.top_k;
    if (o.set_top_p)
        o.gen.sample.top_p = (float)o.top_p;
    if (o.set_min_p)
        o.gen.sample.min_p = (float)o.min_p;
    if (o.set_repeat)
        o.gen.sample.repeat_penalty = (float)o.repeat;
    if (o.set_seed)
        o.gen.sample.seed = (uint64_t)o.seed;
    if (lg_sample_params_check(&o.gen.sample, &err) != LG_OK) {
        fprintf(stderr, "localgemma %s: %s\n", o.cmd, err.msg);
        lg_session_close(s);
        free(o.prompt);
        return 2;
    }

    int rc;
    if (!o.prompt && !force_interactive && !isatty(STDIN_FILENO)) {
        o.prompt = run_read_all_stdin();
        if (!o.prompt) {
            fprintf(stderr, "localgemma %s: cannot read stdin\n", o.cmd);
            lg_session_close(s);
            return 1;
        }
    }
    if (o.prompt) {
        json_t *msgs = run_messages_new(o.system);
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", o.prompt));
        char *answer = NULL;
        rc = run_turn(s, &o, msgs, o.raw ? o.prompt : NULL, &answer);
        free(answer);
        json_decref(msgs);
    } else {
        rc = run_interactive(s, &o);
    }
    lg_session_close(s);
    free(o.prompt);
    return rc;
usage_err:
    free(o.prompt);
    return 2;
}

int lg_cmd_run(int argc, char **argv)
{
    return run_main(argc, argv, false);
}

int lg_cmd_chat(int argc, char **argv)
{
    return run_main(argc, argv, true);
}
