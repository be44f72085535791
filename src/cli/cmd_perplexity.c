/* cmd_perplexity.c: `localgemma perplexity MODEL -f FILE [--ctx N] [--batch N]
 * [--kv-type T | --kv-type-k T --kv-type-v T]` (KV-cache storage: f32, f16 (default), q8_0,
 * q4_0).
 *
 * Computed the way llama.cpp's perplexity tool does, so the figures compare: the whole text
 * is tokenized with BOS; it is cut into n_chunk = n_tokens / n_ctx chunks of n_ctx tokens;
 * each chunk is evaluated from an empty cache with its first token replaced by BOS; only the
 * second half of each chunk is scored (positions n_ctx/2 .. n_ctx-2 each predict the next
 * token), so every scored token has at least n_ctx/2 tokens of context. Prints the running
 * estimate per chunk and a final line `PPL = x.xxxx`. With --top1 FILE it also writes the
 * argmax id at every scored position (int32 LE), for teacher-forced agreement checks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "engine/session.h"
#include "kv/kv.h"
#include "store/store.h"
#include "tok/tok.h"

static void ppl_usage(FILE *f)
{
    fprintf(f, "usage: localgemma perplexity MODEL -f FILE [--ctx N] [--batch N] [--chunks N] "
               "[--top1 OUT] [--kv-type T]\n"
               "  --ctx N     tokens per chunk (default 512, as llama.cpp's -c)\n"
               "  --batch N   tokens per forward call (default 64)\n"
               "  --chunks N  score at most N chunks\n"
               "  --kv-type T KV-cache storage of K and V: f32, f16 (default), q8_0, q4_0\n"
               "  --kv-type-k T, --kv-type-v T  the same for K or V alone\n");
}

static char *ppl_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) {
            char *p = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

int lg_cmd_perplexity(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *top1_path = NULL;
    const char *kv_k = NULL, *kv_v = NULL;
    int64_t n_ctx = 512, n_batch = 64, max_chunks = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            ppl_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!(file = lg_arg_value("perplexity", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--top1")) {
            if (!(top1_path = lg_arg_value("perplexity", argc, argv, &i)))
                return 2;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            if (!(v = lg_arg_value("perplexity", argc, argv, &i)) ||
                !lg_arg_i64("perplexity", a, v, 8, 1 << 20, &n_ctx))
                return 2;
        } else if (!strcmp(a, "--batch") || !strcmp(a, "-b")) {
            if (!(v = lg_arg_value("perplexity", argc, argv, &i)) ||
                !lg_arg_i64("perplexity", a, v, 1, 4096, &n_batch))
                return 2;
        } else if (!strcmp(a, "--kv-type") || !strcmp(a, "--kv-type-k") ||
                   !strcmp(a, "--kv-type-v")) {
            uint32_t t;
            struct lg_err e = {0};
            if (!(v = lg_arg_value("perplexity", argc, argv, &i)))
                return 2;
            if (lg_kv_type_parse(v, &t, &e) != LG_OK) {
                fprintf(stderr, "localgemma perplexity: %s: %s\n", a, e.msg);
                return 2;
            }
            if (strcmp(a, "--kv-type-v"))
                kv_k = v;
            if (strcmp(a, "--kv-type-k"))
                kv_v = v;
        } else if (!strcmp(a, "--chunks")) {
            if (!(v = lg_arg_value("perplexity", argc, argv, &i)) ||
                !lg_arg_i64("perplexity", a, v, 1, 1 << 30, &max_chunks))
                return 2;
        } else if (a[0] == '-') {
            fprintf(stderr, "localgemma perplexity: unknown option %s\n", a);
            return 2;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "localgemma perplexity: unexpected argument %s\n", a);
            return 2;
        }
    }
    if (!model || !file) {
        ppl_usage(stderr);
        return 2;
    }
    struct lg_err err = {0};
    char path[4096];
    if (lg_store_resolve_default(model, false, path, sizeof path, &err) != LG_OK) {
        fprintf(stderr, "localgemma perplexity: %s\n", err.msg);
        return 1;
    }
    size_t n_text = 0;
    char *text = ppl_read_file(file, &n_text);
    if (!text) {
        fprintf(stderr, "localgemma perplexity: cannot read %s\n", file);
        return 1;
    }
    struct lg_session_opts so = {.n_ctx = n_ctx, .kv_type_k = kv_k, .kv_type_v = kv_v};
    struct lg_session *s = NULL;
    int rc = 1;
    int32_t *ids = NULL;
    float *logits = NULL;
    FILE *top1_f = NULL;
    if (lg_session_open(path, &so, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma perplexity: %s\n", err.msg);
        goto out;
    }
    size_t n_ids = 0;
    if (lg_tok_encode_alloc(lg_session_vocab(s), text, n_text, LG_TOK_ADD_BOS, &ids, &n_ids,
                            &err) != LG_OK) {
        fprintf(stderr, "localgemma perplexity: %s\n", err.msg);
        goto out;
    }
    int64_t n_chunk = (int64_t)n_ids / n_ctx;
    if (n_chunk < 1 || (int64_t)n_ids < 2 * n_ctx) {
        fprintf(stderr,
                "localgemma perplexity: %s has %zu tokens; at least 2 x %lld are needed "
                "(use a longer file or a smaller --ctx)\n",
                file, n_ids, (long long)n_ctx);
        goto out;
    }
    if (max_chunks > 0 && n_chunk > max_chunks)
        n_chunk = max_chunks;
    int32_t n_vocab = lg_session_n_vocab(s);
    logits = malloc((size_t)n_batch * (size_t)n_vocab * sizeof *logits);
    if (!logits) {
        fprintf(stderr, "localgemma perplexity: out of memory\n");
        goto out;
    }
    if (top1_path && !(top1_f = fopen(top1_path, "wb"))) {
        fprintf(stderr, "localgemma perplexity: cannot write %s\n", top1_path);
        goto out;
    }
    const int64_t first = n_ctx / 2;
    const int32_t bos = lg_session_vocab(s)->bos_id;
    double nll = 0;
    int64_t count = 0;
    fprintf(stderr, "perplexity: %zu tokens, %lld chunks of %lld\n", n_ids, (long long)n_chunk,
            (long long)n_ctx);
    for (int64_t c = 0; c < n_chunk; c++) {
        const int32_t *chunk = ids + c * n_ctx;
        lg_session_reset(s);
        for (int64_t b = 0; b < n_ctx; b += n_batch) {
            int64_t nb = n_ctx - b < n_batch ? n_ctx - b : n_batch;
            int32_t saved = chunk[b];
            int32_t *batch = (int32_t *)chunk + b;
            if (b == 0 && bos >= 0)
                batch[0] = bos;
            enum lg_status st = lg_session_append_all(s, batch, nb, logits, &err);
            batch[0] = saved;
            if (st != LG_OK) {
                fprintf(stderr, "localgemma perplexity: %s\n", err.msg);
                goto out;
            }
            for (int64_t j = 0; j < nb; j++) {
                int64_t pos = b + j;
                if (pos < first || pos >= n_ctx - 1)
                    continue;
                const float *row = logits + (size_t)j * (size_t)n_vocab;
                int32_t target = chunk[pos + 1];
                float mx = row[0];
                int32_t arg = 0;
                for (int32_t t = 1; t < n_vocab; t++)
                    if (row[t] > mx) {
                        mx = row[t];
                        arg = t;
                    }
                double sum = 0;
                for (int32_t t = 0; t < n_vocab; t++)
                    sum += exp((double)row[t] - mx);
                nll += -((double)row[target] - mx - log(sum));
                count++;
                if (top1_f)
                    fwrite(&arg, sizeof arg, 1, top1_f);
            }
        }
        printf("[%lld]%.4f%s", (long long)(c + 1), exp(nll / (double)count),
               c + 1 < n_chunk ? "," : "\n");
        fflush(stdout);
    }
    printf("PPL = %.4f\n", exp(nll / (double)count));
    rc = 0;
out:
    if (top1_f && fclose(top1_f) != 0 && rc == 0) {
        fprintf(stderr, "localgemma perplexity: cannot write %s\n", top1_path);
        rc = 1;
    }
    free(logits);
    free(ids);
    free(text);
    lg_session_close(s);
    return rc;
}
