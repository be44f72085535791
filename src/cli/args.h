/* args.h: strict parsing of numeric command-line values (whole string, range-checked). */
#ifndef LG_CLI_ARGS_H
#define LG_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* Parse s as an integer / finite double within [lo, hi]; on failure print
 * "localgemma CMD: FLAG: ..." to stderr and return false. */
bool lg_arg_i64(const char *cmd, const char *flag, const char *s, int64_t lo, int64_t hi,
                int64_t *out);
bool lg_arg_f64(const char *cmd, const char *flag, const char *s, double lo, double hi,
                double *out);
/* The value after a flag: argv[*i + 1], advancing *i; prints an error when missing. */
const char *lg_arg_value(const char *cmd, int argc, char **argv, int *i);

#endif
