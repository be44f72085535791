/* test_quant_file.c: lg_quant_file (the engine of `localgemma quantize`) end to end.
 *
 * A small Gemma-like GGUF (4 layers, GQA 4, tied embeddings, N(0,1) F32 weights, a 3-D expert
 * stack, two tensors whose rows are not a multiple of 256 or 32, a 1-D I32 table, split.* keys)
 * is written with the GGUF writer, then quantized to every ftype we offer. For each output:
 * general.file_type and general.quantization_version, metadata copied (split.* dropped),
 * tensors in llama.cpp's order, every tensor's type as llama.cpp's rules give it (written out
 * per ftype below), 1-D tensors copied byte for byte, and the dequantized values against the
 * F32 input within the per-type bound (relative RMSE on N(0,1) data; the figures measured by
 * test_quant_rt.c plus a margin for the smaller sample). Also: the bytes do not depend on the
 * thread count, requantizing a file to its own mix copies it unchanged, and the refusals
 * (output = input, a source type we cannot dequantize, bad options) leave no output and no
 * temporary file. Finally every file of the malformed-GGUF corpus is refused cleanly.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quant_mix.h"
#include "test.h"

static char g_dir[] = "/tmp/lg_test_quant_file.XXXXXX";

enum { N_LAYER = 4, MAX_T = 64 };

struct src_tensor {
    char name[64];
    uint32_t type, n_dims;
    uint64_t ne[4];
    void *data;
    uint64_t nbytes;
};

static struct src_tensor g_src[MAX_T];
static int g_n_src;

static void add_src(const char *name, uint32_t type, uint32_t n_dims, uint64_t ne0, uint64_t ne1,
                    uint64_t ne2)
{
    struct src_tensor *t = &g_src[g_n_src++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = type;
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = ne1;
    t->ne[2] = ne2;
    t->ne[3] = 1;
    uint64_t n = ne0 * ne1 * ne2, row = 0;
    lg_qtype_row_bytes(type, ne0, &row);
    t->nbytes = row * ne1 * ne2;
    t->data = malloc(t->nbytes);
    if (type == LG_QTYPE_F32) {
        float *f = t->data;
        for (uint64_t i = 0; i < n; i++)
            f[i] = lg_test_rand_gauss();
    } else {
        uint8_t *b = t->data;
        for (uint64_t i = 0; i < t->nbytes; i++)
            b[i] = (uint8_t)(lg_test_rand_u64() >> 56);
    }
}

static const struct src_tensor *src_by_name(const char *name)
{
    for (int i = 0; i < g_n_src; i++)
        if (strcmp(g_src[i].name, name) == 0)
            return &g_src[i];
    return NULL;
}

/* The model, deliberately not in llama.cpp's order (layers descending, names unsorted). */
static void make_model(void)
{
    char b[64];
    for (int il = N_LAYER - 1; il >= 0; il--) {
#define T(suffix, n_dims, a, c)                                                                \
    do {                                                                                       \
        snprintf(b, sizeof b, "blk.%d." suffix, il);                                           \
        add_src(b, LG_QTYPE_F32, n_dims, a, c, 1);                                             \
    } while (0)
        T("ffn_down.weight", 2, 768, 32);
        T("attn_q.weight", 2, 512, 32);
        T("attn_k.weight", 2, 512, 8);
        T("attn_v.weight", 2, 512, 8);
        T("attn_output.weight", 2, 512, 32);
        T("attn_norm.weight", 1, 512, 1);
        T("ffn_gate.weight", 2, 512, 48);
        T("ffn_up.weight", 2, 512, 48);
#undef T
    }
    add_src("blk.1.ffn_gate_exps.weight", LG_QTYPE_F32, 3, 512, 16, 2);
    add_src("blk.0.extra_proj.weight", LG_QTYPE_F32, 2, 96, 8, 1); /* 96: 32-blocks only */
    add_src("blk.0.tiny_proj.weight", LG_QTYPE_F32, 2, 48, 4, 1);  /* 48: no block fits */
    add_src("rope_ids", LG_QTYPE_I32, 1, 16, 1, 1);
    add_src("token_embd.weight", LG_QTYPE_F32, 2, 512, 64, 1);
    add_src("output_norm.weight", LG_QTYPE_F32, 1, 512, 1, 1);
}

static enum lg_status write_model(const char *path, int i_replace, uint32_t replace_type)
{
    struct lg_gguf_writer *w = lg_gguf_writer_create();
    struct lg_err err;
    const int32_t arr[3] = {7, -8, 9};
    enum lg_status st = LG_OK;
    st = st ? st : lg_gguf_writer_add_str(w, "general.architecture", "gemma3");
    st = st ? st : lg_gguf_writer_add_str(w, "general.name", "quant test model");
    st = st ? st : lg_gguf_writer_add_u32(w, "general.file_type", 0);
    st = st ? st : lg_gguf_writer_add_u32(w, "gemma3.block_count", N_LAYER);
    st = st ? st : lg_gguf_writer_add_u32(w, "gemma3.attention.head_count", 4);
    st = st ? st : lg_gguf_writer_add_u32(w, "gemma3.attention.head_count_kv", 1);
    st = st ? st : lg_gguf_writer_add_arr(w, "test.array", LG_GGUF_TYPE_INT32, arr, 3);
    st = st ? st : lg_gguf_writer_add_u32(w, "split.count", 1);
    for (int i = 0; i < g_n_src && st == LG_OK; i++) {
        const struct src_tensor *t = &g_src[i];
        if (i == i_replace) { /* same shape, another type, garbage bytes */
            uint64_t row = 0;
            lg_qtype_row_bytes(replace_type, t->ne[0], &row);
            static uint8_t junk[1 << 16];
            if (row * t->ne[1] * t->ne[2] > sizeof junk)
                return LG_ERR_INTERNAL;
            st = lg_gguf_writer_add_tensor(w, t->name, replace_type, t->n_dims, t->ne, junk, NULL,
                                           NULL);
        } else {
            st = lg_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, NULL,
                                           NULL);
        }
    }
    if (st == LG_OK)
        st = lg_gguf_writer_write(w, path, NULL, NULL, &err);
    lg_gguf_writer_destroy(w);
    return st;
}

static int count_tmp_files(void)
{
    int n = 0;
    DIR *d = opendir(g_dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".tmp.") != NULL;
    closedir(d);
    return n;
}

static bool file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Relative RMSE bound per type on N(0,1) data (test_quant_rt.c's measured figure + ~20%). */
static double bound_for(uint32_t type)
{
    switch (type) {
    case LG_QTYPE_F16: return 2.6e-4;
    case LG_QTYPE_BF16: return 2.0e-3;
    case LG_QTYPE_Q8_0: return 6.5e-3;
    case LG_QTYPE_Q6_K: return 2.15e-2;
    case LG_QTYPE_Q5_K: return 4.4e-2;
    case LG_QTYPE_Q5_1: return 4.6e-2;
    case LG_QTYPE_Q5_0: return 5.2e-2;
    case LG_QTYPE_Q4_K: return 8.6e-2;
    case LG_QTYPE_IQ4_NL: return 9.2e-2;
    case LG_QTYPE_IQ4_XS: return 9.2e-2;
    case LG_QTYPE_Q4_1: return 9.4e-2;
    case LG_QTYPE_Q4_0: return 1.03e-1;
    case LG_QTYPE_MXFP4: return 1.45e-1;
    case LG_QTYPE_Q3_K: return 1.8e-1;
    case LG_QTYPE_Q2_K: return 3.55e-1;
    default: return 0;
    }
}

static bool more_bits4(int il)
{
    return il >= 3 || il % 3 == 2; /* use_more_bits(il, 4): layers 2 and 3 */
}

/* llama.cpp's choice for our model, written out per ftype. */
static uint32_t expected_type(enum lg_ftype ft, uint32_t base, const struct src_tensor *t)
{
    const char *nm = t->name;
    int il = -1;
    sscanf(nm, "blk.%d.", &il);
    if (t->n_dims == 1)
        return t->type;
    if (base == LG_QTYPE_F32 || base == LG_QTYPE_F16 || base == LG_QTYPE_BF16)
        return base;
    if (strcmp(nm, "blk.0.tiny_proj.weight") == 0)
        return LG_QTYPE_F16;
    if (strcmp(nm, "token_embd.weight") == 0) /* tied: the output rule */
        return base == LG_QTYPE_Q8_0 || ft == LG_FTYPE_MXFP4_MOE ? LG_QTYPE_Q8_0 : LG_QTYPE_Q6_K;
    if (ft == LG_FTYPE_MXFP4_MOE)
        return strstr(nm, "_exps") ? LG_QTYPE_MXFP4 : LG_QTYPE_Q8_0;
    uint32_t t_ = base;
    bool v = strstr(nm, "attn_v.weight") != NULL, down = strstr(nm, "ffn_down") != NULL;
    bool out = strstr(nm, "attn_output.weight") != NULL;
    switch (ft) {
    case LG_FTYPE_Q2_K: /* GQA 4 */
        t_ = v ? LG_QTYPE_Q4_K : (down || out) ? LG_QTYPE_Q3_K : t_;
        break;
    case LG_FTYPE_Q3_K_M:
        t_ = v ? (il < 2 ? LG_QTYPE_Q5_K : LG_QTYPE_Q4_K) : (down || out) ? LG_QTYPE_Q4_K : t_;
        break;
    case LG_FTYPE_Q3_K_L:
        t_ = (v || down || out) ? LG_QTYPE_Q5_K : t_;
        break;
    case LG_FTYPE_Q4_K_M:
    case LG_FTYPE_Q5_K_M:
        t_ = (v || down) && more_bits4(il) ? LG_QTYPE_Q6_K : t_;
        break;
    case LG_FTYPE_Q4_K_S:
        t_ = v ? LG_QTYPE_Q5_K : t_; /* attn_v of the first 4 layers; ffn_down i < 4/8 none */
        break;
    case LG_FTYPE_IQ4_NL:
    case LG_FTYPE_IQ4_XS: /* GQA 4: attn_v Q5_K; ffn_down below n/8 (none) */
        t_ = v ? LG_QTYPE_Q5_K : t_;
        break;
    default:
        break;
    }
    if (strcmp(nm, "blk.0.extra_proj.weight") == 0 && 96 % lg_qtype_get(t_)->block_size != 0) {
        switch (t_) { /* llama.cpp's fallbacks for 96 columns */
        case LG_QTYPE_Q2_K:
        case LG_QTYPE_Q3_K: return LG_QTYPE_Q4_0;
        case LG_QTYPE_Q4_K: return LG_QTYPE_Q5_0;
        case LG_QTYPE_Q5_K: return LG_QTYPE_Q5_1;
        case LG_QTYPE_Q6_K: return LG_QTYPE_Q8_0;
        case LG_QTYPE_IQ4_XS: return LG_QTYPE_IQ4_NL;
        default: return 9999;
        }
    }
    return t_;
}

static const char *const g_ftypes[] = {"F32",    "F16",    "BF16",   "Q8_0",   "Q4_0",
                                       "Q4_1",   "Q5_0",   "Q5_1",   "Q6_K",   "IQ4_NL",
                                       "IQ4_XS", "Q2_K",   "Q3_K_S", "Q3_K_M", "Q3_K_L",
                                       "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "MXFP4_MOE"};

static enum lg_status run(const char *in, const char *out, const char *ftype_name, int threads,
                          struct lg_err *err)
{
    struct lg_quant_file_opts o = {0};
    if (!lg_ftype_from_name(ftype_name, &o.ftype, &o.base_type))
        return LG_ERR_INVALID_ARG;
    o.n_threads = threads;
    struct lg_quant_file_stats stats;
    return lg_quant_file(in, out, &o, &stats, err);
}

static double worst_ratio[LG_QTYPE_COUNT];
static double worst_err[LG_QTYPE_COUNT];

static void check_output(const char *path, const char *ftype_name)
{
    enum lg_ftype ft;
    uint32_t base;
    lg_ftype_from_name(ftype_name, &ft, &base);
    struct lg_gguf *g = NULL;
    struct lg_err err;
    enum lg_status st = lg_gguf_open(path, &g, &err);
    CHECK_MSG(st == LG_OK, "%s: open output: %s", ftype_name, err.msg);
    if (st != LG_OK)
        return;
    uint32_t u = 99;
    CHECK(lg_gguf_get_u32(g, "general.file_type", &u, &err) == LG_OK && u == (uint32_t)ft);
    CHECK(lg_gguf_get_u32(g, "general.quantization_version", &u, &err) == LG_OK && u == 2);
    CHECK(lg_gguf_find_kv(g, "split.count") == NULL);
    struct lg_str s;
    CHECK(lg_gguf_get_str(g, "general.name", &s, &err) == LG_OK && lg_str_eq(s, "quant test model"));
    const struct lg_gguf_value *arr = NULL;
    CHECK(lg_gguf_get_arr(g, "test.array", LG_GGUF_TYPE_INT32, &arr, &err) == LG_OK && arr &&
          arr->v.arr.n == 3 && lg_gguf_arr_i64(arr, 1) == -8);
    CHECK_EQ_INT(g->n_kv, 8); /* 8 written, split.count dropped, quantization_version added */
    CHECK_EQ_INT(g->n_tensors, g_n_src);
    int n_bad_type = 0, n_bad_err = 0, n_bad_order = 0, n_bad_copy = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        const struct src_tensor *src = src_by_name(name);
        CHECK_MSG(src != NULL, "%s: unexpected tensor %s", ftype_name, name);
        if (!src)
            continue;
        if (i > 0) { /* llama.cpp order: (layer, name) */
            const struct lg_gguf_tensor *p = &g->tensors[i - 1];
            char prev[64];
            snprintf(prev, sizeof prev, "%.*s", (int)p->name.len, p->name.ptr);
            int la = -1, lb = -1;
            sscanf(prev, "blk.%d.", &la);
            sscanf(name, "blk.%d.", &lb);
            n_bad_order += !(la < lb || (la == lb && strcmp(prev, name) < 0));
        }
        uint32_t want = expected_type(ft, base, src);
        if (t->type != want) {
            n_bad_type++;
            fprintf(stderr, "  %s: %s is %s, want %s\n", ftype_name, name,
                    lg_qtype_get(t->type) ? lg_qtype_get(t->type)->name : "?",
                    lg_qtype_get(want) ? lg_qtype_get(want)->name : "?");
            continue;
        }
        if (t->type == src->type) {
            n_bad_copy += t->nbytes != src->nbytes || memcmp(t->data, src->data, src->nbytes);
            continue;
        }
        /* dequantize the output and compare with the F32 input */
        uint64_t n = src->ne[0] * src->ne[1] * src->ne[2], row = 0;
        lg_qtype_row_bytes(t->type, t->ne[0], &row);
        float *y = malloc(n * sizeof *y);
        for (uint64_t r = 0; r < n / t->ne[0]; r++)
            lg_dequant_row((enum lg_qtype)t->type, (const uint8_t *)t->data + r * row,
                           y + r * t->ne[0], (int64_t)t->ne[0]);
        const float *x = src->data;
        double se = 0, ss = 0;
        for (uint64_t k = 0; k < n; k++) {
            se += ((double)y[k] - x[k]) * ((double)y[k] - x[k]);
            ss += (double)x[k] * x[k];
        }
        double rel = sqrt(se / ss), bound = bound_for(t->type);
        if (n >= 4096 && rel > worst_err[t->type])
            worst_err[t->type] = rel;
        if (bound > 0 && rel / bound > worst_ratio[t->type])
            worst_ratio[t->type] = rel / bound;
        if (!(bound > 0 && rel <= bound)) {
            n_bad_err++;
            fprintf(stderr, "  %s: %s (%s) rel RMSE %.5f > bound %.5f\n", ftype_name, name,
                    lg_qtype_get(t->type)->name, rel, bound);
        }
        free(y);
    }
    CHECK_MSG(n_bad_type == 0, "%s: %d tensors of the wrong type", ftype_name, n_bad_type);
    CHECK_MSG(n_bad_err == 0, "%s: %d tensors over the error bound", ftype_name, n_bad_err);
    CHECK_MSG(n_bad_order == 0, "%s: %d tensors out of llama.cpp order", ftype_name, n_bad_order);
    CHECK_MSG(n_bad_copy == 0, "%s: %d copied tensors differ", ftype_name, n_bad_copy);
    lg_gguf_close(g);
}

/* Every malformed corpus file is refused without output; the valid fuzz seeds quantize (or
 * fail cleanly). Under ASan this is the "bad input never crashes" check for lg_quant_file. */
static void test_corpus(const char *out)
{
    static const char *const dirs[] = {"corpus/gguf", "fuzz/corpus/gguf"};
    int n_files = 0;
    for (int d = 0; d < 2; d++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", lg_test_data_dir(), dirs[d]);
        DIR *dp = opendir(dir);
        CHECK_MSG(dp != NULL, "cannot open %s", dir);
        if (!dp)
            continue;
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            if (!strstr(e->d_name, ".gguf"))
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            struct lg_err err = {0};
            enum lg_status st = run(path, out, "Q4_K_M", 2, &err);
            n_files++;
            if (d == 0) {
                CHECK_MSG(st != LG_OK && err.msg[0] && !file_exists(out), "%s: status %d",
                          e->d_name, st);
            } else {
                CHECK_MSG(st == LG_OK ? file_exists(out) : !file_exists(out) && err.msg[0],
                          "%s: status %d", e->d_name, st);
            }
            unlink(out);
        }
        closedir(dp);
    }
    CHECK(n_files >= 60);
    CHECK_EQ_INT(count_tmp_files(), 0);
}

static bool same_bytes(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb)
            same = false;
        if (ca == EOF || cb == EOF)
            break;
    }
    if (fa)
        fclose(fa);
    if (fb)
        fclose(fb);
    return same;
}

int main(void)
{
    lg_test_rand_seed(6);
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char in[256], out[256], out2[256], link_path[256];
    snprintf(in, sizeof in, "%s/in.gguf", g_dir);
    snprintf(out, sizeof out, "%s/out.gguf", g_dir);
    snprintf(out2, sizeof out2, "%s/out2.gguf", g_dir);
    snprintf(link_path, sizeof link_path, "%s/link.gguf", g_dir);
    make_model();
    CHECK_EQ_INT(write_model(in, -1, 0), LG_OK);
    struct lg_err err;

    for (size_t i = 0; i < sizeof g_ftypes / sizeof g_ftypes[0]; i++) {
        memset(&err, 0, sizeof err);
        enum lg_status st = run(in, out, g_ftypes[i], 2, &err);
        CHECK_MSG(st == LG_OK, "%s: %s", g_ftypes[i], err.msg);
        if (st == LG_OK)
            check_output(out, g_ftypes[i]);
        unlink(out);
    }
    printf("  rel RMSE on N(0,1) (tensors >= 4096 values), worst per type:");
    for (int t = 0; t < LG_QTYPE_COUNT; t++)
        if (worst_err[t] > 0)
            printf(" %s %.4f", lg_qtype_get((uint32_t)t)->name, worst_err[t]);
    printf("\n");

    /* thread count does not change the bytes; requantizing to the same mix copies */
    CHECK_EQ_INT(run(in, out, "Q4_K_M", 1, &err), LG_OK);
    CHECK_EQ_INT(run(in, out2, "Q4_K_M", 3, &err), LG_OK);
    CHECK(same_bytes(out, out2));
    unlink(out2);
    CHECK_EQ_INT(run(out, out2, "Q4_K_M", 2, &err), LG_OK);
    CHECK(same_bytes(out, out2));
    /* requantize a quantized file: Q4_K_M -> Q8_0 (every source dequantized) */
    CHECK_EQ_INT(run(out, out2, "Q8_0", 2, &err), LG_OK);
    struct lg_gguf *g = NULL;
    if (lg_gguf_open(out2, &g, &err) == LG_OK) {
        const struct lg_gguf_tensor *t = lg_gguf_find_tensor(g, "blk.2.attn_v.weight");
        CHECK(t && t->type == LG_QTYPE_Q8_0);
        lg_gguf_close(g);
    } else {
        CHECK_MSG(false, "open requantized: %s", err.msg);
    }
    unlink(out2);

    /* refusals: nothing written, no temporary left */
    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(run(out, out, "Q8_0", 1, &err), LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "input") != NULL);
    CHECK_EQ_INT(symlink(out, link_path), 0);
    CHECK_EQ_INT(run(out, link_path, "Q8_0", 1, &err), LG_ERR_INVALID_ARG);
    unlink(link_path);
    CHECK_EQ_INT(run(in, out2, "Q8_0", 0, &err), LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(run(in, out2, "Q8_0", 65, &err), LG_ERR_INVALID_ARG);
    snprintf(out2, sizeof out2, "%s/missing.gguf", g_dir);
    CHECK(run(out2, out, "Q8_0", 1, &err) != LG_OK);
    snprintf(out2, sizeof out2, "%s/out2.gguf", g_dir);
    /* a source tensor of a type we cannot dequantize, that would need converting */
    int i_v = -1;
    for (int i = 0; i < g_n_src; i++)
        if (strcmp(g_src[i].name, "blk.1.attn_q.weight") == 0)
            i_v = i;
    char in_bad[256];
    snprintf(in_bad, sizeof in_bad, "%s/in_iq2.gguf", g_dir);
    CHECK_EQ_INT(write_model(in_bad, i_v, LG_QTYPE_IQ2_XXS), LG_OK);
    memset(&err, 0, sizeof err);
    CHECK_EQ_INT(run(in_bad, out2, "Q4_K_M", 2, &err), LG_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.msg, "blk.1.attn_q.weight") && strstr(err.msg, "IQ2_XXS"), "msg: %s",
              err.msg);
    CHECK(!file_exists(out2));
    /* ... but copying it unchanged is fine (F32 output keeps quantized tensors? no: F32 ftype
     * converts every matrix to F32, which needs the dequantizer too) */
    CHECK_EQ_INT(run(in_bad, out2, "F32", 1, &err), LG_ERR_UNSUPPORTED);
    CHECK(!file_exists(out2));
    CHECK_EQ_INT(count_tmp_files(), 0);

    test_corpus(out2);

    unlink(in_bad);
    unlink(out);
    unlink(in);
    rmdir(g_dir);
    for (int i = 0; i < g_n_src; i++)
        free(g_src[i].data);
    return lg_test_done("test_quant_file");
}
