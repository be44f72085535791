/* cmd_serve.c: `localgemma serve` — parses and range-checks every flag, opens the model
 * store, starts the HTTP server and waits for SIGINT/SIGTERM (then stops accepting, drains
 * in-flight requests and exits 0).
 *
 * The inference engine (src/engine/engine.c) is created from the parsed flags and plugged
 * into the server through cfg.engine / cfg.engine_self; it is destroyed after the server
 * stopped (which ends or cancels every in-flight request first).
 *
 * Guardrails (src/guard): the server always runs with a guard opened on the localgemma home
 * — API keys from `localgemma keys` (with none, loopback only, anonymous), rate limits, the
 * policy (--policy FILE, else built-in PII redaction unless --no-redact) and the audit log
 * (no prompt/answer text unless --audit-content). The guard outlives the engine: a late
 * engine event may still write an audit record. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "engine/engine.h"
#include "guard/guard.h"
#include "kv/kv.h"
#include "quant/quant.h"
#include "server/server.h"
#include "store/store.h"

#define SERVE_USAGE                                                                            \
    "usage: localgemma serve [--host H] [--port P] [--model NAME_OR_PATH]... [--parallel N]\n" \
    "                        [--ctx N] [--max-queue N] [--keep-alive DUR]\n"                  \
    "                        [--cors-origin ORIGIN]... [--allow-host NAME]...\n"               \
    "                        [--max-body BYTES] [--max-connections N] [--timeout SECONDS]\n"  \
    "                        [--header-timeout SECONDS]\n"                                 \
    "                        [--log-requests] [--reasoning-key reasoning_content|reasoning]\n" \
    "                        [--reasoning-budget N] [--policy FILE] [--no-redact]\n"          \
    "                        [--audit-content] [--no-auth] [--tls-cert FILE --tls-key FILE]\n" \
    "                        [--batch N] [--kv-type T] [--kv-type-k T] [--kv-type-v T]\n"     \
    "                        [--max-models N]\n"                                            \
    "  --host H            bind address (default 127.0.0.1; a non-loopback address needs\n"  \
    "                      an API key: `localgemma keys add NAME`)\n"                       \
    "  --port P            TCP port (default 11434; 0 picks a free one)\n"                   \
    "  --model M           a store name or GGUF path to serve (repeatable)\n"                \
    "  --parallel N        sequences decoded together (1..64, default 1)\n"                  \
    "  --ctx N             context length per sequence (0 = model default, else 256..2097152)\n" \
    "  --max-queue N       waiting requests before 503 (1..65536, default 512)\n"            \
    "  --batch N           prompt tokens evaluated per engine step (16..4096, default 256)\n"  \
    "  --kv-type T         KV-cache storage for K and V: f16 (default), q8_0, q4_0, f32\n"   \
    "  --kv-type-k T, --kv-type-v T   the same for K or V alone\n"                           \
    "  --keep-alive DUR    unload a model after DUR idle (5m default, -1 forever)\n"         \
    "  --max-models N      models loaded at once, memory permitting (1..8, default 8)\n"     \
    "  --cors-origin O     allow cross-origin requests from O (repeatable; default none)\n"  \
    "  --allow-host NAME   accept this Host header besides localhost/127.0.0.1/::1\n"       \
    "  --max-body BYTES    request body limit (1024..1073741824, default 8388608)\n"         \
    "  --max-connections N open connections (1..65536, default 1024)\n"                      \
    "  --timeout SECONDS   idle connection timeout (1..3600, default 30)\n"                  \
    "  --header-timeout S  a request (headers and body) must arrive within S seconds, else 408\n" \
    "                      (1..3600, default 10)\n"                                        \
    "  --log-requests      one stderr line per request (method, path, status, time)\n"      \
    "  --reasoning-key K   OpenAI routes send thinking as K (default reasoning_content)\n"  \
    "  --reasoning-budget N  close the thought channel after N tokens (default -1: no limit)\n" \
    "  --policy FILE       policy (JSON, see `localgemma policy test`): input/output deny\n"  \
    "                      patterns, PII redaction, tool allow-lists, refusal message\n"    \
    "  --no-redact         without --policy: no built-in PII redaction of answers\n"       \
    "  --audit-content     keep prompt and answer text in the audit log (default: counts\n" \
    "                      and decisions only)\n"                                          \
    "  --no-auth           serve without API keys even if keys exist (loopback only)\n"     \
    "  --tls-cert FILE     HTTPS: certificate chain (PEM); needs --tls-key\n"              \
    "  --tls-key FILE      HTTPS: private key (PEM)\n"

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

/* A whole PEM file (at most 1 MiB) as a NUL-terminated string, or NULL with a message. */
static char *read_pem(const char *flag, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "localgemma serve: %s %s: %s\n", flag, path, strerror(errno));
        return NULL;
    }
    enum { PEM_MAX = 1 << 20 };
    char *buf = malloc(PEM_MAX + 1);
    size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf || bad || n == 0 || n > PEM_MAX || !strstr(buf, "-----BEGIN ")) {
        if (buf)
            buf[n > PEM_MAX ? PEM_MAX : n] = '\0';
        fprintf(stderr, "localgemma serve: %s %s: %s\n", flag, path,
                !buf ? "out of memory" : bad ? "read error"
                : n > PEM_MAX ? "larger than 1 MiB" : "not a PEM file");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int lg_cmd_serve(int argc, char **argv)
{
    struct lg_server_config cfg;
    lg_server_config_default(&cfg);
    const char *models[LG_SERVER_MAX_MODELS], *cors[LG_SERVER_MAX_LIST],
        *hosts[LG_SERVER_MAX_LIST];
    size_t n_models = 0, n_cors = 0, n_hosts = 0;
    const char *policy_path = NULL, *tls_cert = NULL, *tls_key = NULL;
    int32_t n_batch = 0;                             /* 0: the engine's default */
    int32_t max_models = 0;                          /* 0: the engine's default */
    uint32_t kv_k = LG_QTYPE_F16, kv_v = LG_QTYPE_F16; /* lg_kv_type_parse */
    bool no_redact = false;
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
        if (!strcmp(arg, "--audit-content")) {
            cfg.audit_content = true;
            continue;
        }
        if (!strcmp(arg, "--no-auth")) {
            cfg.no_auth = true;
            continue;
        }
        if (!strcmp(arg, "--no-redact")) {
            no_redact = true;
            continue;
        }
        if (!strncmp(arg, "--api-key-file", 14) && (arg[14] == '\0' || arg[14] == '='))
            return usage_error("--api-key-file was removed: API keys live in the key store "
                               "now; run `localgemma keys add NAME` (keys are hashed, scoped "
                               "and rate-limited)%s%s", "", "");
        static const char *const known[] = {
            "--host", "--port", "--model", "--parallel", "--ctx", "--max-queue",
            "--keep-alive", "--cors-origin", "--allow-host", "--max-body",
            "--max-connections", "--timeout", "--header-timeout", "--reasoning-key",
            "--reasoning-budget",
            "--policy", "--tls-cert", "--tls-key", "--batch", "--kv-type", "--kv-type-k",
            "--kv-type-v", "--max-models"};
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
        } else if (!strcmp(name, "--batch")) {
            if (!parse_int(val, 16, 4096, &v))
                return usage_error("--batch '%s': expected 16..4096%s", val, "");
            n_batch = (int32_t)v;
        } else if (!strcmp(name, "--kv-type") || !strcmp(name, "--kv-type-k") ||
                   !strcmp(name, "--kv-type-v")) {
            struct lg_err e = {0};
            uint32_t t;
            if (lg_kv_type_parse(val, &t, &e) != LG_OK)
                return usage_error("%s: %s", name, e.msg);
            if (strcmp(name, "--kv-type-v") != 0)
                kv_k = t;
            if (strcmp(name, "--kv-type-k") != 0)
                kv_v = t;
        } else if (!strcmp(name, "--max-models")) {
            if (!parse_int(val, 1, LG_ENGINE_MAX_MODELS, &v))
                return usage_error("--max-models '%s': expected 1..8%s", val, "");
            max_models = (int32_t)v;
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
        } else if (!strcmp(name, "--policy")) {
            if (!*val)
                return usage_error("--policy needs a file%s%s", "", "");
            policy_path = val;
        } else if (!strcmp(name, "--tls-cert")) {
            tls_cert = val;
        } else if (!strcmp(name, "--tls-key")) {
            tls_key = val;
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
        } else if (!strcmp(name, "--header-timeout")) {
            if (!parse_int(val, 1, 3600, &v))
                return usage_error("--header-timeout '%s': expected 1..3600%s", val, "");
            cfg.header_timeout_s = (unsigned)v;
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

    if ((tls_cert != NULL) != (tls_key != NULL))
        return usage_error("%s needs %s as well", tls_cert ? "--tls-cert" : "--tls-key",
                           tls_cert ? "--tls-key" : "--tls-cert");
    if (policy_path && no_redact)
        return usage_error("--no-redact applies to the built-in policy only; with --policy, "
                           "set \"builtin_redact\": [] in the file%s%s", "", "");
    if (tls_cert && !lg_server_tls_supported()) {
        fprintf(stderr, "localgemma serve: --tls-cert/--tls-key: this libmicrohttpd was built "
                "without TLS (GnuTLS) support, so HTTPS is not available\n");
        return 1;
    }
    char *cert_pem = NULL, *key_pem = NULL;
    if (tls_cert) {
        if (!(cert_pem = read_pem("--tls-cert", tls_cert)) ||
            !(key_pem = read_pem("--tls-key", tls_key))) {
            free(cert_pem);
            return 1;
        }
        cfg.tls_cert_pem = cert_pem;
        cfg.tls_key_pem = key_pem;
    }

    struct lg_err err = {0};
    struct lg_guard *guard = NULL;
    struct lg_guard_config gcfg = {.home = NULL, .policy_path = policy_path,
                                   .audit_content = cfg.audit_content, .no_redact = no_redact};
    if (lg_guard_open(&gcfg, &guard, &err) != LG_OK) {
        fprintf(stderr, "localgemma serve: %s%s\n", policy_path ? "--policy: " : "", err.msg);
        free(cert_pem);
        free(key_pem);
        return 1;
    }
    cfg.guard = guard;
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
    ep.n_chunk = n_batch;
    ep.type_k = kv_k;
    ep.type_v = kv_v;
    ep.keep_alive_ms = cfg.keep_alive_ms;
    ep.reasoning_budget = reasoning_budget;
    ep.store = store;
    ep.models = models;
    ep.n_models = n_models;
    ep.max_models = max_models;
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
    int64_t n_keys = lg_guard_n_keys(guard);
    fprintf(stderr, "localgemma serve: listening on %s://%s%s%s:%u (%s)\n",
            cert_pem ? "https" : "http", v6 ? "[" : "", cfg.host, v6 ? "]" : "",
            (unsigned)lg_server_port(srv),
            cfg.no_auth ? "no authentication (--no-auth)"
            : n_keys > 0 ? "API keys required" : "no API key defined: open to local clients");
    int sig = 0;
    sigwait(&stop, &sig);
    fprintf(stderr, "localgemma serve: %s received, stopping\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM");
    lg_server_stop(srv, 10000);
    rc = 0;
out:
    lg_engine_destroy(engine);
    lg_guard_close(guard); /* after the engine: its last events write audit records */
    lg_store_close(store);
    free(cert_pem);
    free(key_pem);
    return rc;
}
