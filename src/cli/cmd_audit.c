/* cmd_audit.c: `localgemma audit verify` checks the audit log's hash chain and reports the
 * first bad record; `localgemma audit export [--since T]` prints records as JSON lines. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "guard/guard.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: localgemma audit verify\n"
               "       localgemma audit export [--since T]\n"
               "  T is unix seconds or UTC YYYY-MM-DD[THH:MM:SS[Z]].\n"
               "  The log is in $LOCALGEMMA_HOME/guard.db (default ~/.localgemma).\n");
}

/* unix seconds or an ISO-8601 UTC date/time → ms; false when unparseable */
static bool parse_since(const char *s, int64_t *ms)
{
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (*s && end && !*end && v >= 0 && v < (1LL << 40)) {
        *ms = (int64_t)v * 1000;
        return true;
    }
    struct tm tmv;
    memset(&tmv, 0, sizeof tmv);
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tmv);
    if (!e) {
        memset(&tmv, 0, sizeof tmv);
        e = strptime(s, "%Y-%m-%d", &tmv);
    }
    if (!e || (*e && strcmp(e, "Z")))
        return false;
    time_t t = timegm(&tmv);
    if (t < 0)
        return false;
    *ms = (int64_t)t * 1000;
    return true;
}

int lg_cmd_audit(int argc, char **argv)
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
    int64_t since = 0;
    if (!strcmp(sub, "export")) {
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--since")) {
                const char *v = lg_arg_value("audit", argc, argv, &i);
                if (!v)
                    return 2;
                if (!parse_since(v, &since)) {
                    fprintf(stderr, "localgemma audit: --since: '%s' is not a time\n", v);
                    return 2;
                }
            } else {
                fprintf(stderr, "localgemma audit: unknown argument %s\n", argv[i]);
                return 2;
            }
        }
    } else if (!strcmp(sub, "verify")) {
        if (argc != 2) {
            fprintf(stderr, "localgemma audit: verify takes no arguments\n");
            return 2;
        }
    } else {
        fprintf(stderr, "localgemma audit: unknown subcommand '%s' (verify, export)\n", sub);
        return 2;
    }
    struct lg_err err = {0};
    struct lg_audit *a = NULL;
    if (lg_audit_open(NULL, false, &a, &err) != LG_OK) {
        fprintf(stderr, "localgemma audit: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (!strcmp(sub, "export")) {
        if (lg_audit_export(a, since, stdout, &err) != LG_OK) {
            fprintf(stderr, "localgemma audit: %s\n", err.msg);
            rc = 1;
        }
    } else {
        int64_t n = 0, bad = 0;
        char why[256];
        if (lg_audit_verify(a, &n, &bad, why, sizeof why, &err) != LG_OK) {
            fprintf(stderr, "localgemma audit: %s\n", err.msg);
            rc = 1;
        } else if (bad) {
            fprintf(stderr, "localgemma audit: chain broken at record %lld: %s\n", (long long)bad,
                    why);
            printf("FAILED: %lld records, first bad record %lld\n", (long long)n, (long long)bad);
            rc = 1;
        } else {
            printf("OK: %lld records, chain intact\n", (long long)n);
        }
    }
    lg_audit_close(a);
    return rc;
}
