/* quant_file.c: quantizes a whole GGUF file: every metadata pair copied (general.file_type
 * and general.quantization_version set), each tensor's type chosen by quant_mix.c, tensor
 * data produced row by row at write time (dequantize the source row to f32, quantize to
 * the new type) by n_threads pthreads, and the file written atomically by the GGUF writer.
 *
 * Tensors are visited and written in llama.cpp's order (lg_quant_mix_order), so the per-layer
 * counters of the mix rules and the output layout match llama-quantize's.
 * Memory: the input is mmapped; besides the writer's per-tensor buffer, each thread holds
 * one f32 row. Rows are independent, so the bytes do not depend on the thread count.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/err.h"
#include "gguf/gguf.h"
#include "quant/quant.h"
#include "quant/quant_mix.h"

enum { LG_QUANTIZATION_VERSION = 2 }; /* GGML_QNT_VERSION, written as general.quantization_version */

/* The writer reports progress after each tensor; this wrapper remembers where it is so that
 * a long tensor can report its rows as they get done (from the calling thread only). */
struct qf_progress {
    void (*cb)(void *user, uint64_t done, uint64_t total);
    void *user;
    uint64_t done, total; /* as last reported by the writer */
};

static void qf_progress_cb(void *user, uint64_t done, uint64_t total)
{
    struct qf_progress *p = user;
    p->done = done;
    p->total = total;
    if (p->cb)
        p->cb(p->user, done, total);
}

struct qf_job {
    const struct lg_gguf_tensor *src;
    uint32_t dst_type;
    uint64_t n_per_row, n_rows;
    uint64_t src_row_bytes, dst_row_bytes;
    int32_t n_threads;
    struct qf_progress *prog;
};

struct qf_part {
    const struct qf_job *job;
    uint8_t *dst;
    uint64_t row0, row1;
    atomic_uint_fast64_t *rows_done; /* shared by the parts of one tensor */
    bool reporter;                   /* the calling thread's part: reports progress */
    enum lg_status status;
};

static void *qf_run(void *arg)
{
    struct qf_part *p = arg;
    const struct qf_job *j = p->job;
    float *row = malloc(j->n_per_row * sizeof *row);
    if (!row) {
        p->status = LG_ERR_NOMEM;
        return NULL;
    }
    const uint64_t step = j->n_rows / 200 + 1;
    for (uint64_t r = p->row0; r < p->row1; r++) {
        const uint8_t *src = (const uint8_t *)j->src->data + r * j->src_row_bytes;
        lg_dequant_row((enum lg_qtype)j->src->type, src, row, (int64_t)j->n_per_row);
        lg_quant_row((enum lg_qtype)j->dst_type, row, p->dst + r * j->dst_row_bytes,
                     (int64_t)j->n_per_row);
        uint64_t n_done = atomic_fetch_add(p->rows_done, 1) + 1;
        if (p->reporter && j->prog->cb && (r - p->row0) % step == step - 1) {
            uint64_t bytes = (uint64_t)((double)(j->n_rows * j->dst_row_bytes) *
                                        ((double)n_done / (double)j->n_rows));
            j->prog->cb(j->prog->user, j->prog->done + bytes, j->prog->total);
        }
    }
    free(row);
    p->status = LG_OK;
    return NULL;
}

/* lg_gguf_fill_fn: splits the rows over the threads; the calling thread takes part 0. */
static enum lg_status qf_fill(void *user, void *dst, uint64_t nbytes, struct lg_err *err)
{
    const struct qf_job *j = user;
    if (nbytes != j->n_rows * j->dst_row_bytes)
        return lg_err_set(err, LG_ERR_INTERNAL, "quantize: size mismatch for a tensor");
    if (j->n_rows == 0)
        return LG_OK;
    int32_t n = j->n_threads;
    if ((uint64_t)n > j->n_rows)
        n = (int32_t)j->n_rows;
    struct qf_part parts[64];
    pthread_t tids[64];
    bool started[64] = {false};
    atomic_uint_fast64_t rows_done;
    atomic_init(&rows_done, 0);
    if (n > 64)
        n = 64;
    for (int32_t i = 0; i < n; i++) {
        parts[i] = (struct qf_part){j,         dst,    j->n_rows * (uint64_t)i / (uint64_t)n,
                                    j->n_rows * (uint64_t)(i + 1) / (uint64_t)n,
                                    &rows_done, i == 0, LG_OK};
    }
    for (int32_t i = 1; i < n; i++)
        started[i] = pthread_create(&tids[i], NULL, qf_run, &parts[i]) == 0;
    qf_run(&parts[0]);
    for (int32_t i = 1; i < n; i++) {
        if (started[i])
            pthread_join(tids[i], NULL);
        else
            qf_run(&parts[i]); /* could not start a thread: do its share here */
    }
    for (int32_t i = 0; i < n; i++)
        if (parts[i].status != LG_OK)
            return lg_err_set(err, parts[i].status, "quantize: out of memory for a row buffer");
    return LG_OK;
}

static bool str_dup(struct lg_str s, char **out)
{
    *out = malloc(s.len + 1);
    if (!*out)
        return false;
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = '\0';
    return true;
}

/* <arch>.<suffix> as an integer: scalar, or the first element of a per-layer array. */
static int32_t arch_int(const struct lg_gguf *g, const char *arch, const char *suffix)
{
    char key[256];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const struct lg_gguf_kv *kv = lg_gguf_find_kv(g, key);
    if (!kv)
        return 0;
    const struct lg_gguf_value *v = &kv->val;
    int64_t x = 0;
    switch (v->type) {
    case LG_GGUF_TYPE_UINT8:
    case LG_GGUF_TYPE_UINT16:
    case LG_GGUF_TYPE_UINT32:
    case LG_GGUF_TYPE_UINT64:
        x = v->v.u64 > INT32_MAX ? 0 : (int64_t)v->v.u64;
        break;
    case LG_GGUF_TYPE_INT8:
    case LG_GGUF_TYPE_INT16:
    case LG_GGUF_TYPE_INT32:
    case LG_GGUF_TYPE_INT64:
        x = v->v.i64;
        break;
    case LG_GGUF_TYPE_ARRAY:
        if (v->v.arr.n > 0 && v->v.arr.elem_type != LG_GGUF_TYPE_STRING &&
            v->v.arr.elem_type != LG_GGUF_TYPE_ARRAY && v->v.arr.elem_type != LG_GGUF_TYPE_FLOAT32 &&
            v->v.arr.elem_type != LG_GGUF_TYPE_FLOAT64 && v->v.arr.elem_type != LG_GGUF_TYPE_BOOL)
            x = lg_gguf_arr_i64(v, 0);
        break;
    default:
        break;
    }
    return x < 0 || x > INT32_MAX ? 0 : (int32_t)x;
}

/* split.no / split.count / split.tensors.count: llama.cpp drops them from its output. */
static bool is_split_key(struct lg_str key)
{
    return lg_str_eq(key, "split.no") || lg_str_eq(key, "split.count") ||
           lg_str_eq(key, "split.tensors.count");
}

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (strcmp(a, b) == 0)
        return true;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

enum lg_status lg_quant_file(const char *in_path, const char *out_path,
                             const struct lg_quant_file_opts *opts,
                             struct lg_quant_file_stats *stats, struct lg_err *err)
{
    struct lg_quant_file_stats st0 = {0};
    struct lg_gguf *g = NULL;
    struct lg_gguf_writer *w = NULL;
    char **names = NULL;
    struct qf_job *jobs = NULL;
    uint64_t *order = NULL;
    char *arch = NULL;
    enum lg_status st = LG_OK;

    if (!in_path || !out_path || !opts || opts->n_threads < 1 || opts->n_threads > 64 ||
        !lg_qtype_get(opts->base_type))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "quantize: bad arguments");
    if (same_file(in_path, out_path))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "quantize: output is the input file");
    if ((st = lg_gguf_open(in_path, &g, err)) != LG_OK)
        return st;

    names = calloc(g->n_tensors + 1, sizeof *names);
    jobs = calloc(g->n_tensors + 1, sizeof *jobs);
    order = calloc(g->n_tensors + 1, sizeof *order);
    w = lg_gguf_writer_create();
    if (!names || !jobs || !order || !w) {
        st = lg_err_set(err, LG_ERR_NOMEM, "quantize: out of memory");
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        if (!str_dup(g->tensors[i].name, &names[i])) {
            st = lg_err_set(err, LG_ERR_NOMEM, "quantize: out of memory");
            goto fail;
        }
    }

    struct qf_progress prog = {opts->progress, opts->progress_user, 0, 0};
    struct lg_quant_mix mix;
    lg_quant_mix_init(&mix, opts->ftype, opts->base_type, opts->pure);
    struct lg_str arch_s;
    if (lg_gguf_get_str(g, "general.architecture", &arch_s, NULL) == LG_OK) {
        if (!str_dup(arch_s, &arch)) {
            st = lg_err_set(err, LG_ERR_NOMEM, "quantize: out of memory");
            goto fail;
        }
        mix.n_layer = arch_int(g, arch, "block_count");
        int32_t n_head = arch_int(g, arch, "attention.head_count");
        int32_t n_head_kv = arch_int(g, arch, "attention.head_count_kv");
        if (n_head > 0 && n_head_kv > 0)
            mix.n_gqa = n_head / n_head_kv;
        mix.n_expert = arch_int(g, arch, "expert_count");
        mix.is_falcon = strcmp(arch, "falcon") == 0;
        mix.is_70b = strcmp(arch, "llama") == 0 && mix.n_layer == 80 && n_head != n_head_kv;
    }
    lg_quant_mix_scan_names(&mix, (const char *const *)names, g->n_tensors);
    if (!lg_quant_mix_order((const char *const *)names, g->n_tensors, order)) {
        st = lg_err_set(err, LG_ERR_NOMEM, "quantize: out of memory");
        goto fail;
    }

    /* metadata: everything, then the two keys we own (replacing in place if present) */
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (is_split_key(g->kv[i].key))
            continue; /* the output is one file */
        if ((st = lg_gguf_writer_copy_kv(w, &g->kv[i])) != LG_OK) {
            st = lg_err_set(err, st, "quantize: cannot copy metadata key %.*s",
                            (int)(g->kv[i].key.len > 200 ? 200 : g->kv[i].key.len),
                            g->kv[i].key.ptr);
            goto fail;
        }
    }
    if ((st = lg_gguf_writer_add_u32(w, "general.quantization_version",
                                     LG_QUANTIZATION_VERSION)) != LG_OK ||
        (st = lg_gguf_writer_add_u32(w, "general.file_type", (uint32_t)opts->ftype)) != LG_OK) {
        st = lg_err_set(err, st, "quantize: cannot set general.file_type");
        goto fail;
    }

    for (uint64_t k = 0; k < g->n_tensors; k++) {
        const uint64_t i = order[k];
        const struct lg_gguf_tensor *t = &g->tensors[i];
        uint32_t dst = lg_quant_mix_choose(&mix, names[i], t->n_dims, t->ne, t->type);
        struct qf_job *j = &jobs[i];
        j->src = t;
        j->dst_type = dst;
        j->n_per_row = t->ne[0];
        j->n_threads = opts->n_threads;
        j->prog = &prog;
        j->n_rows = t->ne[0] ? t->ne[1] * t->ne[2] * t->ne[3] : 0;
        if (lg_qtype_row_bytes(t->type, j->n_per_row, &j->src_row_bytes) != LG_OK ||
            lg_qtype_row_bytes(dst, j->n_per_row, &j->dst_row_bytes) != LG_OK) {
            st = lg_err_set(err, LG_ERR_FORMAT, "quantize: tensor %s: bad row size", names[i]);
            goto fail;
        }
        if (opts->on_tensor)
            opts->on_tensor(opts->on_tensor_user, names[i], t->type, dst);
        st0.n_tensors++;
        st0.in_bytes += t->nbytes;
        st0.out_bytes += j->n_rows * j->dst_row_bytes;
        if (dst == t->type) {
            st0.n_copied++;
            st = lg_gguf_writer_add_tensor(w, names[i], t->type, t->n_dims, t->ne, t->data,
                                           t->data ? NULL : qf_fill, j);
        } else {
            const struct lg_qtype_info *src_info = lg_qtype_get(t->type);
            if (!src_info || !src_info->can_dequant) {
                st = lg_err_set(err, LG_ERR_UNSUPPORTED,
                                "quantize: tensor %s has type %s, which cannot be requantized",
                                names[i], src_info ? src_info->name : "unknown");
                goto fail;
            }
            if (!lg_qtype_get(dst)->can_quant) {
                st = lg_err_set(err, LG_ERR_UNSUPPORTED, "quantize: cannot produce type %s",
                                lg_qtype_get(dst)->name);
                goto fail;
            }
            st0.n_quantized++;
            st = lg_gguf_writer_add_tensor(w, names[i], dst, t->n_dims, t->ne, NULL, qf_fill, j);
        }
        if (st != LG_OK) {
            st = lg_err_set(err, st, "quantize: cannot add tensor %s", names[i]);
            goto fail;
        }
    }
    st0.n_fallback = (uint64_t)mix.n_fallback;
    st = lg_gguf_writer_write(w, out_path, qf_progress_cb, &prog, err);

fail:
    if (stats)
        *stats = st0;
    lg_gguf_writer_destroy(w);
    if (names)
        for (uint64_t i = 0; g && i < g->n_tensors; i++)
            free(names[i]);
    free(names);
    free(jobs);
    free(order);
    free(arch);
    lg_gguf_close(g);
    return st;
}
