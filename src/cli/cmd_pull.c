/* cmd_pull.c: `localgemma pull URL [NAME] [--sha256 HEX]` — download a GGUF over HTTP(S)
 * into the store (resumable, verified; see store_pull.c).
 *
 * SIGINT / SIGTERM / SIGHUP stop the pull through lg_store_pull's cancel hook (polled many
 * times a second while bytes flow, about once a second while none do): nothing is published,
 * the partial and its sidecar stay for a resume when the origin gave a strong ETag, and the
 * exit status is 128 + the signal. The handler is one-shot (SA_RESETHAND): a second Ctrl-C
 * kills at once, which is still safe (a killed pull resumes like an interrupted one). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "store/store.h"

static volatile sig_atomic_t g_stop_sig; /* the signal that asked us to stop, or 0 */

static void on_stop_signal(int sig)
{
    g_stop_sig = sig;
}

static bool pull_cancelled(void *user)
{
    (void)user;
    return g_stop_sig != 0;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

struct pull_ctx {
    const char *url;
    bool have_name;
};

/* Runs on the finished download: the full GGUF reader must accept it; facts and, when no
 * NAME was given, the default name come from it. */
static enum lg_status pull_inspect(void *user, const char *path, struct lg_store_manifest *m,
                                   struct lg_err *err)
{
    struct pull_ctx *c = user;
    enum lg_status st = lg_store_gguf_facts(path, &m->gguf, err);
    if (st != LG_OK)
        return st;
    if (!c->have_name && !lg_store_default_name(c->url, &m->gguf, &m->name))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "cannot derive a model name from %s; "
                          "give NAME", c->url);
    return LG_OK;
}

static int usage(FILE *f)
{
    fprintf(f, "usage: localgemma pull URL [NAME] [--sha256 HEX]\n"
               "  Downloads a GGUF file over HTTP(S) into the store as NAME (default from the\n"
               "  file's general.basename/size_label, else the URL's file name). An interrupted\n"
               "  download resumes when the same URL is pulled again. --sha256 pins the\n"
               "  expected digest; a mismatch deletes the download.\n");
    return f == stdout ? 0 : 2;
}

int lg_cmd_pull(int argc, char **argv)
{
    const char *url = NULL, *name = NULL, *sha = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return usage(stdout);
        if (!strcmp(argv[i], "--sha256")) {
            if (++i >= argc) {
                fprintf(stderr, "localgemma pull: --sha256 needs a value\n");
                return 2;
            }
            sha = argv[i];
        } else if (!strncmp(argv[i], "--sha256=", 9)) {
            sha = argv[i] + 9;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "localgemma pull: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!url) {
            url = argv[i];
        } else if (!name) {
            name = argv[i];
        } else {
            fprintf(stderr, "localgemma pull: too many arguments\n");
            return 2;
        }
    }
    if (!url)
        return usage(stderr);
    struct lg_err err = {0};
    struct lg_store_manifest m;
    memset(&m, 0, sizeof m);
    if (name && lg_store_parse_name(name, strlen(name), &m.name, &err) != LG_OK) {
        fprintf(stderr, "localgemma pull: %s\n", err.msg);
        return 1;
    }
    struct lg_store *s = NULL;
    if (lg_store_open(NULL, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma pull: %s\n", err.msg);
        return 1;
    }
    struct pull_ctx ctx = {url, name != NULL};
    struct lg_progress p;
    lg_progress_init(&p, "pulling");
    struct lg_store_pull_opts o;
    memset(&o, 0, sizeof o);
    o.url = url;
    o.sha256 = sha;
    o.progress = lg_progress_cb;
    o.user = &p;
    o.inspect = pull_inspect;
    o.inspect_user = &ctx;
    o.cancel = pull_cancelled;
    catch_stop_signals();
    const char *lst = getenv("LG_PULL_LOW_SPEED_TIME"); /* tests shorten the stall timeout */
    if (lst)
        o.low_speed_time_s = atol(lst);
    uint64_t resumed = 0;
    enum lg_status st = lg_store_pull(s, &o, &m, &resumed, &err);
    lg_progress_finish(&p);
    lg_store_close(s);
    if (st == LG_ERR_CANCELLED && g_stop_sig) {
        fprintf(stderr, "localgemma pull: interrupted by %s: %s\n",
                g_stop_sig == SIGINT ? "SIGINT" : g_stop_sig == SIGTERM ? "SIGTERM" : "SIGHUP",
                err.msg);
        return 128 + (int)g_stop_sig;
    }
    if (st != LG_OK) {
        fprintf(stderr, "localgemma pull: %s\n", err.msg);
        return 1;
    }
    char shown[LG_STORE_NAME_MAX + 1], size[32];
    lg_store_format_name(&m.name, shown, sizeof shown);
    lg_store_format_size(m.size, size, sizeof size);
    if (resumed)
        printf("resumed at byte %llu\n", (unsigned long long)resumed);
    printf("pulled %s (ID %.12s, %s, sha256 %s)\n", shown, m.hex, size,
           sha ? "verified" : "computed");
    return 0;
}
