/* cmd_serve.c: `localgemma serve` — parses and range-checks every flag, opens the model
 * store, starts the HTTP server and waits for SIGINT/SIGTERM (then stops accepting, drains
 * in-flight requests and exits 0).
 *
 * The inference engine (src/engine/engine.c) is created from the parsed flags and plugged
 * into the server through cfg.engine / cfg.engine_self; it is destroyed after the server
 * stopped (which ends or cancels every in-flight request first). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sha256.h"
#include "cli/cli.h"
#include "engine/engine.h"
#include "server/server.h"
#include "store/store.h"

#define SERVE_USAGE                                                                            \
    "usage: localgemma serve [--host H] [--port P] [--model NAME_OR_PATH]... [--parallel N]\n" \
    "                        [--ctx N] [--max-queue N] [--keep-alive DUR]\n"                  \
    "                        [--cors-origin ORIGIN]... [--allow-host NAME]...\n"               \
    "                        [--api-key-file FILE] [--max-body BYTES]\n"                      \
    "                        [--max-connections N] [--timeout SECONDS] [--log-requests]\n"    \
    "                        [--reasoning-key reasoning_content|reasoning]\n"                 \
    "                        [--reasoning-budget N]\n"                                         \
    "  --host H            bind address (default 127.0.0.1; any non-loopback address\n"      \
    "                      needs --api-key-file)\n"                                         \
    "  --port P            TCP port (default 11434; 0 picks a free one)\n"                   \
    "  --model M           a store name or GGUF path to serve (repeatable)\n"                \
    "  --parallel N        sequences decoded together (1..64, default 1)\n"                  \
    "  --ctx N             context length per sequence (0 = model default, else 256..2097152)\n" \
    "  --max-queue N       waiting requests before 503 (1..65536, default 512)\n"            \
    "  --keep-alive DUR    unload a model after DUR idle (5m default, -1 forever)\n"         \
    "  --cors-origin O     allow cross-origin requests from O (repeatable; default none)\n"  \
    "  --allow-host NAME   accept this Host header besides localhost/127.0.0.1/::1\n"       \
    "  --api-key-file F    accepted API keys, one per line (Authorization: Bearer KEY)\n"    \
    "  --max-body BYTES    request body limit (1024..1073741824, default 8388608)\n"         \
    "  --max-connections N open connections (1..65536, default 1024)\n"                      \
    "  --timeout SECONDS   idle connection timeout (1..3600, default 30)\n"                  \
    "  --log-requests      one stderr line per request (method, path, status, time)\n"      \
    "  --reasoning-key K   OpenAI routes send thinking as K (default reasoning_content)\n"  \
    "  --reasoning-budget N  close the thought channel after N tokens (default -1: no limit)\n"

static int usage_error(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "localgemma serve: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see 'localgemma serve --help')\n");
    return 2;
}

/* Whole-string integer in [lo, hi]. */
static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Keys file: one key per line; blank lines and lines starting with # are skipped. Only the
 * SHA-256 of each key is kept in memory. */
static int load_keys(const char *path, uint8_t (**digests)[32], size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "localgemma serve: cannot open --api-key-file %s: %s\n", path,
                strerror(errno));
        return 1;
    }
    char line[1024];
    size_t cap = 0;
    *digests = NULL;
    *n = 0;
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        char *k = line;
        while (*k == ' ' || *k == '\t')
            k++;
        if (!*k || *k == '#')
            continue;
        if (strlen(k) < 16) {
            fprintf(stderr, "localgemma serve: %s line %d: key shorter than 16 characters\n",
                    path, lineno);
            fclose(f);
            free(*digests);
            return 1;
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            uint8_t(*d)[32] = realloc(*digests, cap * sizeof *d);
            if (!d) {
                fclose(f);
                free(*digests);
                return 1;
            }
            *digests = d;
        }
        lg_sha256(k, strlen(k), (*digests)[(*n)++]);
    }
    fclose(f);
    if (*n == 0) {
        fprintf(stderr, "localgemma serve: --api-key-file %s holds no key\n", path);
        return 1;
    }
    return 0;
}

int lg_cmd_serve(int argc, char **argv)
{
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    const char *models[LG_SERVER_MAX_MODELS], *cors[LG_SERVER_MAX_LIST],
        *hosts[LG_SERVER_MAX_LIST];
    size_t n_models = 0, n_cors = 0, n_hosts = 0;
    const char *key_file = NULL;
    int32_t reasoning_budget = -1;
    long long v;
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = NULL;
        char name[64];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            printf("%s", SERVE_USAGE);
            return 0;
        }
        if (!strcmp(arg, "--log-requests")) {
            cfg.log_requests = true;
            continue;
        }
        static const char *const known[] = {
            "--host", "--port", "--model", "--parallel", "--ctx", "--max-queue",
            "--keep-alive", "--cors-origin", "--allow-host", "--api-key-file", "--max-body",
            "--max-connections", "--timeout", "--reasoning-key", "--reasoning-budget"};
        size_t name_len = strcspn(arg, "=");
        bool is_known = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            is_known |= strlen(known[k]) == name_len && !strncmp(arg, known[k], name_len);
        if (!is_known)
            return usage_error(strncmp(arg, "--", 2) ? "unexpected argument '%s'%s"
                                                     : "unknown option '%s'%s", arg, "");
        /* --flag=value or --flag value */
        char *eq = strchr(arg, '=');
        if (eq && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = '\0';
            val = eq + 1;
        } else {
            snprintf(name, sizeof name, "%s", arg);
            if (strncmp(arg, "--", 2) != 0)
                return usage_error("unexpected argument '%s'%s", arg, "");
            if (i + 1 >= argc)
                return usage_error("%s needs a value%s", arg, "");
            val = argv[++i];
        }
        if (!strcmp(name, "--host")) {
            if (!*val)
                return usage_error("--host needs an address%s%s", "", "");
            cfg.host = val;
        } else if (!strcmp(name, "--port")) {
            if (!parse_int(val, 0, 65535, &v))
                return usage_error("--port '%s': expected 0..65535%s", val, "");
            cfg.port = (uint16_t)v;
        } else if (!strcmp(name, "--model")) {
            if (n_models == LG_SERVER_MAX_MODELS)
                return usage_error("too many --model flags (at most 32)%s%s", "", "");
            if (!*val)
                return usage_error("--model needs a name or a path%s%s", "", "");
            models[n_models++] = val;
        } else if (!strcmp(name, "--parallel")) {
            if (!parse_int(val, 1, 64, &v))
                return usage_error("--parallel '%s': expected 1..64%s", val, "");
            cfg.n_parallel = (int32_t)v;
        } else if (!strcmp(name, "--ctx")) {
            if (!parse_int(val, 0, SRV_MAX_CTX, &v) || (v != 0 && v < 256))
                return usage_error("--ctx '%s': expected 0 or 256..2097152%s", val, "");
            cfg.default_ctx = (int32_t)v;
        } else if (!strcmp(name, "--max-queue")) {
            if (!parse_int(val, 1, 65536, &v))
                return usage_error("--max-queue '%s': expected 1..65536%s", val, "");
            cfg.max_queue = (int32_t)v;
        } else if (!strcmp(name, "--keep-alive")) {
            struct lg_err e = {0};
            if (lg_parse_duration_ms(val, &cfg.keep_alive_ms, &e) != LG_OK)
                return usage_error("--keep-alive: %s%s", e.msg, "");
        } else if (!strcmp(name, "--cors-origin")) {
            if (n_cors == LG_SERVER_MAX_LIST || !*val)
                return usage_error("--cors-origin '%s': empty or too many (at most 32)%s", val,
                                   "");
            cors[n_cors++] = val;
        } else if (!strcmp(name, "--allow-host")) {
            if (n_hosts == LG_SERVER_MAX_LIST || !*val)
                return usage_error("--allow-host '%s': empty or too many (at most 32)%s", val,
                                   "");
            hosts[n_hosts++] = val;
        } else if (!strcmp(name, "--api-key-file")) {
            key_file = val;
        } else if (!strcmp(name, "--max-body")) {
            if (!parse_int(val, 1024, 1LL << 30, &v))
                return usage_error("--max-body '%s': expected 1024..1073741824%s", val, "");
            cfg.max_body_bytes = (size_t)v;
        } else if (!strcmp(name, "--max-connections")) {
            if (!parse_int(val, 1, 65536, &v))
                return usage_error("--max-connections '%s': expected 1..65536%s", val, "");
            cfg.max_connections = (unsigned)v;
        } else if (!strcmp(name, "--reasoning-key")) {
            if (!strcmp(val, "reasoning"))
                cfg.reasoning_key_reasoning = true;
            else if (strcmp(val, "reasoning_content") != 0)
                return usage_error("--reasoning-key '%s': expected reasoning_content or "
                                   "reasoning%s", val, "");
        } else if (!strcmp(name, "--reasoning-budget")) {
            if (!parse_int(val, -1, 1 << 20, &v))
                return usage_error("--reasoning-budget '%s': expected -1..1048576%s", val, "");
            reasoning_budget = (int32_t)v;
        } else if (!strcmp(name, "--timeout")) {
            if (!parse_int(val, 1, 3600, &v))
                return usage_error("--timeout '%s': expected 1..3600%s", val, "");
            cfg.idle_timeout_s = (unsigned)v;
        } else {
            return usage_error("unknown option '%s'%s", name, "");
        }
    }
    cfg.models = models;
    cfg.n_models = n_models;
    cfg.cors_origins = cors;
    cfg.n_cors_origins = n_cors;
    cfg.allow_hosts = hosts;
    cfg.n_allow_hosts = n_hosts;

    uint8_t(*digests)[32] = NULL;
    if (key_file) {
        size_t n_keys;
        if (load_keys(key_file, &digests, &n_keys) != 0)
            return 1;
        cfg.key_digests = (const uint8_t(*)[32])digests;
        cfg.n_keys = n_keys;
    }

    struct lg_err err = {0};
    struct lg_store *store = NULL;
    if (lg_store_open(NULL, &store, &err) != LG_OK) {
        fprintf(stderr, "localgemma serve: warning: no model store (%s); serving --model "
                "paths only\n", err.msg);
        store = NULL;
    }
    cfg.store = store;
    int rc = 1;
    struct lg_engine *engine = NULL;
    for (size_t i = 0; i < n_models; i++) {
        char path[LG_STORE_PATH_MAX];
        enum lg_status st = store ? lg_store_resolve(store, models[i], false, path,
                                                     sizeof path, &err)
                                  : lg_store_resolve_default(models[i], false, path,
                                                             sizeof path, &err);
        if (st != LG_OK) {
            fprintf(stderr, "localgemma serve: --model %s: %s\n", models[i], err.msg);
            goto out;
        }
    }

    /* Block the stop signals before any thread starts, so only sigwait() sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct lg_engine_params ep;
    lg_engine_params_default(&ep);
    ep.n_parallel = cfg.n_parallel;
    ep.max_queue = cfg.max_queue;
    ep.n_ctx = cfg.default_ctx;
    ep.keep_alive_ms = cfg.keep_alive_ms;
    ep.reasoning_budget = reasoning_budget;
    ep.store = store;
    ep.models = models;
    ep.n_models = n_models;
    if (lg_engine_create(&ep, &engine, &err) != LG_OK) {
        fprintf(stderr, "localgemma serve: %s\n", err.msg);
        goto out;
    }
    cfg.engine = &lg_engine_ops_real;
    cfg.engine_self = engine;

    struct lg_server *srv;
    if (lg_server_start(&cfg, &srv, &err) != LG_OK) {
        fprintf(stderr, "localgemma serve: %s\n", err.msg);
        goto out;
    }
    bool v6 = strchr(cfg.host, ':') != NULL;
    fprintf(stderr, "localgemma serve: listening on http://%s%s%s:%u\n", v6 ? "[" : "",
            cfg.host, v6 ? "]" : "", (unsigned)lg_server_port(srv));
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "localgemma serve: %s received, stopping\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    lg_server_stop(srv, 10000);
    rc = 0;
out:
    lg_engine_destroy(engine);
    lg_store_close(store);
    free(digests);
    return rc;
}
