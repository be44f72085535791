/* cmd_tokenize.c: `localgemma tokenize MODEL [--text T | --file F] [--no-bos] [--special]
 * [--json]` prints the token ids of a text (comma-separated, ready for `detokenize --ids`), or
 * with --json one object per token with its id and stored piece. Text comes from --text,
 * --file, or standard input. MODEL is what lg_store_resolve_default() accepts (a GGUF path or
 * a store name); lg_cli_open_vocab() (cli/open.c) turns it into a vocabulary. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "cli/cli.h"
#include "cli/open.h"
#include "gguf/gguf.h"
#include "tok/tok.h"

static int tok_usage(FILE *f)
{
    fprintf(f, "usage: localgemma tokenize MODEL [--text T | --file F] [--no-bos] [--special] "
               "[--json]\n"
               "  MODEL      a .gguf path or a model name in the store\n"
               "  --text T   the text (default: --file, else standard input)\n"
               "  --file F   read the text from file F\n"
               "  --no-bos   do not add the BOS token\n"
               "  --special  parse control-token text such as <start_of_turn> as tokens\n"
               "  --json     print [{\"id\":N,\"piece\":\"...\"},...]\n");
    return 2;
}

/* Reads a whole stream (at most LG_TOK_MAX_TEXT_BYTES). */
static char *read_all(FILE *f, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0)
            break;
        if (n == cap) {
            if (cap > LG_TOK_MAX_TEXT_BYTES) {
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (buf && ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Writes s as a JSON string; bytes that are not valid UTF-8 become \ufffd. */
static void put_json_str(FILE *f, const char *s, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fprintf(f, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            size_t l = 0;
            unsigned need = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            if (need && need <= n - i) {
                l = need;
                for (size_t k = 1; k < need; k++)
                    if (((unsigned char)s[i + k] & 0xC0) != 0x80)
                        l = 0;
            }
            if (l) {
                fwrite(s + i, 1, l, f);
                i += l;
            } else {
                fputs("\\ufffd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

int lg_cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *text = NULL, *file = NULL;
    bool json = false;
    unsigned flags = LG_TOK_ADD_BOS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--text") == 0 && i + 1 < argc) {
            text = argv[++i];
        } else if (strcmp(a, "--file") == 0 && i + 1 < argc) {
            file = argv[++i];
        } else if (strcmp(a, "--no-bos") == 0) {
            flags &= ~(unsigned)LG_TOK_ADD_BOS;
        } else if (strcmp(a, "--special") == 0) {
            flags |= LG_TOK_PARSE_SPECIAL;
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            tok_usage(stdout);
            return 0;
        } else if (a[0] == '-' || model) {
            fprintf(stderr, "localgemma tokenize: unexpected argument '%s'\n", a);
            return tok_usage(stderr);
        } else {
            model = a;
        }
    }
    if (!model || (text && file))
        return tok_usage(stderr);

    char *buf = NULL;
    size_t len = 0;
    if (text) {
        len = strlen(text);
    } else {
        FILE *f = file ? fopen(file, "rb") : stdin;
        if (!f) {
            fprintf(stderr, "localgemma tokenize: cannot open %s\n", file);
            return 1;
        }
        buf = read_all(f, &len);
        if (file)
            fclose(f);
        if (!buf) {
            fprintf(stderr, "localgemma tokenize: cannot read %s (or larger than %u bytes)\n",
                    file ? file : "standard input", (unsigned)LG_TOK_MAX_TEXT_BYTES);
            return 1;
        }
        text = buf;
    }

    struct lg_gguf *g;
    struct lg_vocab *v;
    if (lg_cli_open_vocab("tokenize", model, &g, &v)) {
        free(buf);
        return 1;
    }
    struct lg_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    if (lg_tok_encode_alloc(v, text, len, flags, &ids, &n, &err) != LG_OK) {
        fprintf(stderr, "localgemma tokenize: %s\n", err.msg);
        rc = 1;
    } else if (json) {
        fputc('[', stdout);
        for (size_t i = 0; i < n; i++) {
            struct lg_str p = lg_tok_piece(v, ids[i]);
            fprintf(stdout, "%s{\"id\":%ld,\"piece\":", i ? "," : "", (long)ids[i]);
            put_json_str(stdout, p.ptr, (size_t)p.len);
            fputc('}', stdout);
        }
        fputs("]\n", stdout);
    } else {
        for (size_t i = 0; i < n; i++)
            fprintf(stdout, "%s%ld", i ? "," : "", (long)ids[i]);
        fputc('\n', stdout);
    }
    if (fflush(stdout) != 0)
        rc = 1;
    free(ids);
    free(buf);
    lg_vocab_free(v);
    lg_gguf_close(g);
    return rc;
}
