/* args.c: strict numeric flag parsing shared by the subcommands. */
#include "cli/args.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool lg_arg_i64(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!s[0] || errno || !end || *end) {
        fprintf(stderr, "localgemma %s: %s: '%s' is not an integer\n", cmd, flag, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "localgemma %s: %s: %lld is out of range [%lld, %lld]\n", cmd, flag, v,
                (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

bool lg_arg_f64(const char *cmd, const char *flag, const char *s, double lo, double hi,
                double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (!s[0] || errno || !end || *end || !isfinite(v)) {
        fprintf(stderr, "localgemma %s: %s: '%s' is not a number\n", cmd, flag, s);
        return false;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "localgemma %s: %s: %g is out of range [%g, %g]\n", cmd, flag, v, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

const char *lg_arg_value(const char *cmd, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "localgemma %s: %s needs a value\n", cmd, argv[*i]);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}
