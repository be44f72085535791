/* cmd_keys.c: `localgemma keys add|list|revoke` — API keys in $LOCALGEMMA_HOME/guard.db.
 * The secret is printed once by `add` and never again (only its salted hash is stored). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "guard/guard.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: localgemma keys add NAME [--scope generate|admin] [--rpm N] [--tpm N]\n"
               "                       [--tpd N] [--max-concurrent N] [--models M,...]\n"
               "       localgemma keys list\n"
               "       localgemma keys revoke NAME\n"
               "  Keys live in $LOCALGEMMA_HOME/guard.db (default ~/.localgemma), hashed.\n"
               "  Limits: 0 or absent = unlimited. Scope generate (default) cannot use\n"
               "  admin routes (pull, delete, keys).\n");
}

static int cmd_add(int argc, char **argv)
{
    struct lg_key_info ki;
    memset(&ki, 0, sizeof ki);
    ki.scope = LG_SCOPE_GENERATE;
    const char *name = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        int64_t *lim = NULL;
        if (!strcmp(a, "--rpm"))
            lim = &ki.limits.rpm;
        else if (!strcmp(a, "--tpm"))
            lim = &ki.limits.tpm;
        else if (!strcmp(a, "--tpd"))
            lim = &ki.limits.tpd;
        else if (!strcmp(a, "--max-concurrent"))
            lim = &ki.limits.max_concurrent;
        if (lim) {
            if (!(v = lg_arg_value("keys", argc, argv, &i)) ||
                !lg_arg_i64("keys", a, v, 0, (int64_t)1 << 40, lim))
                return 2;
        } else if (!strcmp(a, "--scope")) {
            if (!(v = lg_arg_value("keys", argc, argv, &i)))
                return 2;
            if (!strcmp(v, "generate"))
                ki.scope = LG_SCOPE_GENERATE;
            else if (!strcmp(v, "admin"))
                ki.scope = LG_SCOPE_ADMIN;
            else {
                fprintf(stderr, "localgemma keys: --scope must be generate or admin\n");
                return 2;
            }
        } else if (!strcmp(a, "--models")) {
            if (!(v = lg_arg_value("keys", argc, argv, &i)))
                return 2;
            if (strlen(v) > LG_KEY_MODELS_MAX) {
                fprintf(stderr, "localgemma keys: --models: longer than %d bytes\n",
                        LG_KEY_MODELS_MAX);
                return 2;
            }
            snprintf(ki.models, sizeof ki.models, "%s", v);
        } else if (a[0] == '-') {
            fprintf(stderr, "localgemma keys: unknown option %s\n", a);
            return 2;
        } else if (!name) {
            name = a;
        } else {
            fprintf(stderr, "localgemma keys: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "localgemma keys: add needs a NAME\n");
        return 2;
    }
    if (strlen(name) > LG_KEY_NAME_MAX) {
        fprintf(stderr, "localgemma keys: name longer than %d bytes\n", LG_KEY_NAME_MAX);
        return 2;
    }
    snprintf(ki.name, sizeof ki.name, "%s", name);
    struct lg_err err = {0};
    struct lg_keys *k = NULL;
    char secret[LG_KEY_SECRET_LEN + 1];
    if (lg_keys_open(NULL, &k, &err) != LG_OK || lg_keys_add(k, &ki, secret, &err) != LG_OK) {
        fprintf(stderr, "localgemma keys: %s\n", err.msg);
        lg_keys_close(k);
        return 1;
    }
    lg_keys_close(k);
    fprintf(stderr, "created key '%s' (%s); it is shown only once:\n", ki.name,
            ki.scope == LG_SCOPE_ADMIN ? "admin" : "generate");
    printf("%s\n", secret);
    memset(secret, 0, sizeof secret);
    return 0;
}

static void fmt_lim(char *out, size_t cap, int64_t v)
{
    if (v <= 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%lld", (long long)v);
}

static int cmd_list(void)
{
    struct lg_err err = {0};
    struct lg_keys *k = NULL;
    struct lg_key_info *v = NULL;
    size_t n = 0;
    if (lg_keys_open(NULL, &k, &err) != LG_OK || lg_keys_list(k, &v, &n, &err) != LG_OK) {
        fprintf(stderr, "localgemma keys: %s\n", err.msg);
        lg_keys_close(k);
        return 1;
    }
    lg_keys_close(k);
    printf("%-20s %-8s %-7s %8s %10s %12s %6s %-20s %s\n", "NAME", "SCOPE", "STATUS", "RPM", "TPM",
           "TPD", "CONC", "CREATED", "MODELS");
    for (size_t i = 0; i < n; i++) {
        char rpm[24], tpm[24], tpd[24], conc[24], when[32];
        fmt_lim(rpm, sizeof rpm, v[i].limits.rpm);
        fmt_lim(tpm, sizeof tpm, v[i].limits.tpm);
        fmt_lim(tpd, sizeof tpd, v[i].limits.tpd);
        fmt_lim(conc, sizeof conc, v[i].limits.max_concurrent);
        time_t t = (time_t)v[i].created;
        struct tm tmv;
        gmtime_r(&t, &tmv);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tmv);
        printf("%-20s %-8s %-7s %8s %10s %12s %6s %-20s %s\n", v[i].name,
               v[i].scope == LG_SCOPE_ADMIN ? "admin" : "generate",
               v[i].revoked ? "revoked" : "active", rpm, tpm, tpd, conc, when,
               v[i].models[0] ? v[i].models : "*");
    }
    free(v);
    return 0;
}

static int cmd_revoke(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "localgemma keys: usage: localgemma keys revoke NAME\n");
        return 2;
    }
    struct lg_err err = {0};
    struct lg_keys *k = NULL;
    if (lg_keys_open(NULL, &k, &err) != LG_OK || lg_keys_revoke(k, argv[2], &err) != LG_OK) {
        fprintf(stderr, "localgemma keys: %s\n", err.msg);
        lg_keys_close(k);
        return 1;
    }
    lg_keys_close(k);
    printf("revoked key '%s'\n", argv[2]);
    return 0;
}

int lg_cmd_keys(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(sub, "add"))
        return cmd_add(argc, argv);
    if (!strcmp(sub, "list") || !strcmp(sub, "ls")) {
        if (argc != 2) {
            fprintf(stderr, "localgemma keys: list takes no arguments\n");
            return 2;
        }
        return cmd_list();
    }
    if (!strcmp(sub, "revoke") || !strcmp(sub, "rm"))
        return cmd_revoke(argc, argv);
    fprintf(stderr, "localgemma keys: unknown subcommand '%s' (add, list, revoke)\n", sub);
    return 2;
}
