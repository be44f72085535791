/* cmd_detokenize.c: `localgemma detokenize MODEL --ids 2,651,... [--special]` prints the text
 * of token ids (separated by commas and/or spaces). Control tokens are hidden unless
 * --special; bytes that do not form valid UTF-8 print as U+FFFD. MODEL as for tokenize;
 * lg_cli_open_vocab() (cli/open.c) is the one place that resolves it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "cli/open.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

static int detok_usage(FILE *f)
{
    fprintf(f, "usage: localgemma detokenize MODEL --ids ID,ID,... [--special]\n"
               "  MODEL      a .gguf path or a model name in the store\n"
               "  --ids      token ids separated by commas or spaces\n"
               "  --special  show control tokens such as <bos> as text\n");
    return 2;
}

/* Parses "2,651 7" into a malloc'ed array; prints the error itself. */
static int parse_ids(const char *s, int32_t **out, size_t *n_out)
{
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids)
        return 1;
    const char *p = s;
    for (;;) {
        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        if (*p < '0' || *p > '9') {
            fprintf(stderr, "localgemma detokenize: --ids: '%.20s' is not a token id\n", p);
            free(ids);
            return 1;
        }
        errno = 0;
        char *end;
        unsigned long long x = strtoull(p, &end, 10);
        if (errno || x > INT32_MAX) {
            fprintf(stderr, "localgemma detokenize: --ids: '%.20s' is out of range\n", p);
            free(ids);
            return 1;
        }
        if (n == cap) {
            int32_t *ni = realloc(ids, cap * 2 * sizeof *ids);
            if (!ni) {
                free(ids);
                return 1;
            }
            ids = ni;
            cap *= 2;
        }
        ids[n++] = (int32_t)x;
        p = end;
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int lg_cmd_detokenize(int argc, char **argv)
{
    const char *model = NULL, *ids_arg = NULL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--ids") == 0 && i + 1 < argc) {
            ids_arg = argv[++i];
        } else if (strcmp(a, "--special") == 0) {
            flags |= LG_DETOK_SHOW_SPECIAL;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            detok_usage(stdout);
            return 0;
        } else if (a[0] == '-' || model) {
            fprintf(stderr, "localgemma detokenize: unexpected argument '%s'\n", a);
            return detok_usage(stderr);
        } else {
            model = a;
        }
    }
    if (!model || !ids_arg)
        return detok_usage(stderr);
    int32_t *ids;
    size_t n;
    if (parse_ids(ids_arg, &ids, &n))
        return 1;
    struct lg_gguf *g;
    struct lg_vocab *v;
    if (lg_cli_open_vocab("detokenize", model, &g, &v)) {
        free(ids);
        return 1;
    }
    struct lg_err err = {0};
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    if (lg_tok_decode_alloc(v, ids, n, flags, &text, &len, &err) != LG_OK) {
        fprintf(stderr, "localgemma detokenize: %s\n", err.msg);
        rc = 1;
    } else {
        fwrite(text, 1, len, stdout);
        fputc('\n', stdout);
        if (fflush(stdout) != 0)
            rc = 1;
    }
    free(text);
    free(ids);
    lg_vocab_free(v);
    lg_gguf_close(g);
    return rc;
}
