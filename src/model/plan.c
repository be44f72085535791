/* plan.c: the memory planner (plan.h). Every figure mirrors the code that allocates it:
 * lg_model_state_bytes() (state.c, kv.c) for a sequence's state, model.c for which tensors are
 * read and which small vectors are copied, tok_vocab.c for the tokenizer tables, gguf.c for the
 * parsed metadata, session.c for the per-sequence token arrays. When one of those changes, the
 * matching function here must change with it (tests/unit/test_plan.c checks the state part
 * against a real allocation). */
#include "model/plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kern/kern.h"
#include "kern/qdot.h"
#include "kv/kv.h"
#include "model/model.h"
#include "model/state_priv.h"
#include "quant/quant.h"

enum {
    PAGE = 4096,
    FAULT_AROUND = 64 * 1024,
    VOCAB_FILTER_BYTES = (1 << 21) / 8,
    ARENA_BLOCK = 1 << 20
};

static uint64_t page_up(uint64_t x)
{
    return (x + PAGE - 1) / PAGE * PAGE;
}

static uint64_t pow2_at_least(uint64_t x)
{
    uint64_t c = 1;
    while (c < x)
        c <<= 1;
    return c;
}

void lg_plan_opts_default(struct lg_plan_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_parallel = 1;
    o->type_k = LG_QTYPE_F16;
    o->type_v = LG_QTYPE_F16;
}

/* ---- available memory --------------------------------------------------------------------- */

static bool read_u64_file(const char *path, uint64_t *out)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char buf[64];
    bool ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || !strncmp(buf, "max", 3))
        return false;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf)
        return false;
    *out = (uint64_t)v;
    return true;
}

/* "123", "512M", "4G", "1.5GiB"... -> bytes; false when malformed. */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v >= 0) || v > 1e18)
        return false;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end)
        return false;
    *out = (uint64_t)(v * mul);
    return true;
}

uint64_t lg_plan_mem_available(char *src, size_t n_src)
{
    uint64_t avail = 0;
    const char *from = "none";
    const char *env = getenv("LG_MEM_AVAILABLE");
    if (env && env[0] && parse_size(env, &avail)) {
        if (src && n_src)
            snprintf(src, n_src, "LG_MEM_AVAILABLE");
        return avail;
    }
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            avail = (uint64_t)kb * 1024;
            from = "MemAvailable";
            break;
        }
    }
    if (f)
        fclose(f);
    /* A cgroup limit (containers, systemd slices) binds before the machine's memory does. The
     * limit is the nearest one; "max" (v2) or a huge v1 value means none. */
    uint64_t lim, cur;
    if (read_u64_file("/sys/fs/cgroup/memory.max", &lim) &&
        read_u64_file("/sys/fs/cgroup/memory.current", &cur)) {
        uint64_t left = lim > cur ? lim - cur : 0;
        if (!avail || left < avail) {
            avail = left;
            from = "cgroup memory.max";
        }
    } else if (read_u64_file("/sys/fs/cgroup/memory/memory.limit_in_bytes", &lim) &&
               lim < ((uint64_t)1 << 60) &&
               read_u64_file("/sys/fs/cgroup/memory/memory.usage_in_bytes", &cur)) {
        uint64_t left = lim > cur ? lim - cur : 0;
        if (!avail || left < avail) {
            avail = left;
            from = "cgroup memory.limit_in_bytes";
        }
    }
    if (src && n_src)
        snprintf(src, n_src, "%s", from);
    return avail;
}

/* ---- fixed parts -------------------------------------------------------------------------- */

/* Tokenizer tables as tok_vocab.c builds them: token texts, offsets, scores, types, byte
 * values, the token hash (8-byte slots, power of two >= 3n), the 256 KB filter, the merge
 * table (16 bytes a slot, power of two >= 2m) and the special-token trie (~32 B a byte). */
static uint64_t vocab_bytes(const struct lg_gguf *g)
{
    const struct lg_gguf_kv *tk = lg_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!tk || tk->val.type != LG_GGUF_TYPE_ARRAY || tk->val.v.arr.elem_type != LG_GGUF_TYPE_STRING)
        return 0;
    uint64_t n = tk->val.v.arr.n, text = 0, special = 0;
    const struct lg_gguf_kv *tt = lg_gguf_find_kv(g, "tokenizer.ggml.token_type");
    bool types = tt && tt->val.type == LG_GGUF_TYPE_ARRAY && tt->val.v.arr.n == n &&
                 tt->val.v.arr.elem_type <= LG_GGUF_TYPE_INT32 &&
                 tt->val.v.arr.elem_type != LG_GGUF_TYPE_FLOAT32;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = tk->val.v.arr.strs[i].len;
        text += len;
        if (types) {
            int64_t t = lg_gguf_arr_i64(&tt->val, i);
            if (t == 2 || t == 3 || t == 4) /* unknown, control, user-defined */
                special += len;
        }
    }
    uint64_t b = text + 4 * (n + 1) + 4 * n + 2 * n + 8 * pow2_at_least(3 * n) +
                 VOCAB_FILTER_BYTES + 32 * special;
    const struct lg_gguf_kv *mk = lg_gguf_find_kv(g, "tokenizer.ggml.merges");
    if (mk && mk->val.type == LG_GGUF_TYPE_ARRAY && mk->val.v.arr.n > 0)
        b += 16 * pow2_at_least(2 * mk->val.v.arr.n);
    return b;
}

/* The reader's parsed metadata (gguf.c): a struct lg_str per string-array element, the key
 * and tensor tables and their indexes. */
static uint64_t gguf_heap_bytes(const struct lg_gguf *g)
{
    uint64_t b = g->n_kv * sizeof(struct lg_gguf_kv) +
                 g->n_tensors * sizeof(struct lg_gguf_tensor) +
                 4 * pow2_at_least(2 * (g->n_kv + 1)) + 4 * pow2_at_least(2 * (g->n_tensors + 1));
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct lg_gguf_value *v = &g->kv[i].val;
        if (v->type == LG_GGUF_TYPE_ARRAY && v->v.arr.elem_type == LG_GGUF_TYPE_STRING)
            b += v->v.arr.n * sizeof(struct lg_str);
    }
    return b;
}

/* True for the tensors of a KV-shared layer that model.c never binds (attn_k, attn_v,
 * attn_k_norm of layers whose kv_src is another layer). */
static bool unused_tensor(const struct lg_model_cfg *c, const struct lg_str name)
{
    char buf[96];
    if (name.len >= sizeof buf || name.len < 5 || memcmp(name.ptr, "blk.", 4) != 0)
        return false;
    memcpy(buf, name.ptr, name.len);
    buf[name.len] = '\0';
    char *end;
    long il = strtol(buf + 4, &end, 10);
    if (end == buf + 4 || *end != '.' || il < 0 || il >= c->n_layer)
        return false;
    if (c->layers[il].kv_src == il)
        return false;
    return !strncmp(end, ".attn_k.", 8) || !strncmp(end, ".attn_v.", 8) ||
           !strncmp(end, ".attn_k_norm.", 13);
}

/* The widest matrix input, as model.c's binder records it (m->max_cols). */
static size_t max_cols_of(const struct lg_model_cfg *c)
{
    int64_t mc = c->n_embd;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        if ((int64_t)c->n_head * lc->head_dim > mc)
            mc = (int64_t)c->n_head * lc->head_dim;
        if (lc->n_ff > mc)
            mc = lc->n_ff;
    }
    if (c->n_embd_per_layer > 0 && (int64_t)c->n_layer * c->n_embd_per_layer > mc)
        mc = (int64_t)c->n_layer * c->n_embd_per_layer;
    if (c->n_ff_exp > mc)
        mc = c->n_ff_exp;
    return (size_t)mc;
}

/* ---- per sequence ------------------------------------------------------------------------- */

struct plan_ctx {
    const struct lg_model_cfg *cfg;
    size_t max_cols;
    int64_t n_chunk;
    int64_t n_chunk_first;
    bool kv_only_rest;
    uint32_t type_k, type_v;
    int32_t n_vocab;
    uint64_t fixed;      /* everything that does not depend on n_ctx */
};

static uint64_t seq_state_bytes(const struct plan_ctx *pc, int64_t n_ctx, int64_t n_chunk,
                                bool kv_only)
{
    struct lg_state_opts so;
    lg_state_opts_default(&so);
    so.n_ctx = n_ctx;
    so.n_chunk = n_chunk;
    so.kv_only = kv_only;
    so.type_k = pc->type_k;
    so.type_v = pc->type_v;
    return lg_model_state_bytes(pc->cfg, pc->max_cols, &so);
}

/* session.c: cache_ids and out_ids [n_ctx] int32, logits [n_vocab] f32. */
static uint64_t seq_session_bytes(const struct plan_ctx *pc, int64_t n_ctx)
{
    return 8 * (uint64_t)n_ctx + 4 * (uint64_t)pc->n_vocab;
}

static uint64_t total_for(const struct plan_ctx *pc, int64_t n_ctx, int32_t n_par)
{
    uint64_t st = seq_state_bytes(pc, n_ctx, pc->n_chunk, pc->kv_only_rest);
    uint64_t st0 = seq_state_bytes(pc, n_ctx, pc->n_chunk_first, false);
    if (!st || !st0)
        return UINT64_MAX;
    return pc->fixed + st0 + (uint64_t)(n_par - 1) * st +
           (uint64_t)n_par * seq_session_bytes(pc, n_ctx);
}

static void kv_groups(const struct plan_ctx *pc, int64_t n_ctx, struct lg_plan *p)
{
    const struct lg_model_cfg *c = pc->cfg;
    int64_t chunk = pc->n_chunk > 0 ? pc->n_chunk : LG_STATE_DEFAULT_CHUNK;
    if (chunk > n_ctx)
        chunk = n_ctx;
    memset(&p->kv_sliding, 0, sizeof p->kv_sliding);
    memset(&p->kv_global, 0, sizeof p->kv_global);
    p->n_kv_eq_v = p->n_kv_shared = 0;
    for (int32_t il = 0; il < c->n_layer; il++) {
        const struct lg_layer_cfg *lc = &c->layers[il];
        if (lc->kv_src != il) {
            p->n_kv_shared++;
            continue;
        }
        int64_t w = lc->sliding ? c->sliding_window : 0;
        int64_t ns = n_ctx;
        if (w > 0 && w < n_ctx && w + chunk < n_ctx)
            ns = w + chunk;
        uint64_t rk = 0, rv = 0, width = (uint64_t)lc->n_head_kv * (uint64_t)lc->head_dim;
        lg_qtype_row_bytes(pc->type_k, width, &rk);
        lg_qtype_row_bytes(pc->type_v, width, &rv);
        struct lg_plan_kv *g = lc->sliding ? &p->kv_sliding : &p->kv_global;
        g->n_layers++;
        if (ns > g->n_slots)
            g->n_slots = ns;
        g->bytes += (uint64_t)ns * (rk + rv);
    }
}

/* Whether repack.c gives matrix t an R8 copy (a type R8 covers, rows % 8 == 0, no padded
 * rows). ne[2] > 1: experts, each its own rows x cols matrix. */
static bool repackable(const struct lg_gguf_tensor *t)
{
    if (t->n_dims < 2 || !lg_repack_r8_ok(t->type, t->ne[1], t->ne[0]))
        return false;
    uint64_t mats = t->n_dims > 2 ? t->ne[2] : 1;
    size_t gb = lg_repack_r8_group_bytes(t->type, t->ne[0]);
    return mats && gb * (uint64_t)(t->ne[1] / 8) * mats == t->nbytes;
}

/* RSS that the repack adds on top of the mapped weights (repack.c). A repacked matrix's whole
 * source pages are dropped, so its copy replaces them, except the partial pages at its ends
 * (a page per matrix). A tied output matrix (no output.weight: token_embd is the output) gets
 * its own copy while token_embd stays mapped (the embedding reads its rows), and the copy
 * read every page of it: the whole copy is extra. */
static uint64_t repack_extra_bytes(const struct lg_gguf *g, const struct lg_model_cfg *c,
                                   bool tied)
{
    if (!lg_model_repack_wanted())
        return 0;
    uint64_t b = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        bool embd = lg_str_eq(t->name, "token_embd.weight");
        if (lg_str_eq(t->name, "per_layer_token_embd.weight") || unused_tensor(c, t->name) ||
            (embd && !tied) || !repackable(t))
            continue;
        b += embd ? t->nbytes : PAGE;
    }
    return b;
}

/* K=V layers: gemma4 full layers without attn_v (model.c binds V as optional there). */
static int32_t count_kv_eq_v(const struct lg_gguf *g, const struct lg_model_cfg *c)
{
    if (!c->v_norm)
        return 0;
    int32_t n = 0;
    char name[64];
    for (int32_t il = 0; il < c->n_layer; il++) {
        if (c->layers[il].kv_src != il)
            continue;
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", (int)il);
        if (!lg_gguf_find_tensor(g, name))
            n++;
    }
    return n;
}

enum lg_status lg_plan_compute(const struct lg_gguf *g, const struct lg_plan_opts *o,
                               struct lg_plan *p, struct lg_err *err)
{
    enum lg_status st;
    memset(p, 0, sizeof *p);
    struct lg_model_cfg *c = malloc(sizeof *c);
    if (!c)
        return lg_err_set(err, LG_ERR_NOMEM, "plan: out of memory");
    if ((st = lg_model_cfg_read(g, c, err)))
        goto done;
    int32_t n_par = o->n_parallel > 0 ? o->n_parallel : 1;
    if (n_par > 256 || o->n_ctx < 0 || o->n_ctx > ((int64_t)1 << 30) || o->n_chunk < 0 ||
        o->n_chunk_first < 0) {
        st = lg_err_set(err, LG_ERR_INVALID_ARG, "plan: n_ctx %lld / n_parallel %d / n_chunk "
                        "%lld out of range", (long long)o->n_ctx, (int)n_par,
                        (long long)o->n_chunk);
        goto done;
    }
    /* The KV types are checked against the real layout by a 1-position kv size. */
    {
        struct lg_kv_layer_layout *lay = calloc((size_t)c->n_layer, sizeof *lay);
        if (!lay) {
            st = lg_err_set(err, LG_ERR_NOMEM, "plan: out of memory");
            goto done;
        }
        for (int32_t il = 0; il < c->n_layer; il++) {
            lay[il].src = c->layers[il].kv_src;
            lay[il].window = c->layers[il].sliding ? c->sliding_window : 0;
            lay[il].n_head_kv = c->layers[il].n_head_kv;
            lay[il].head_dim = c->layers[il].head_dim;
        }
        struct lg_kv_layout layout = {c->n_layer, lay, o->type_k, o->type_v};
        size_t kb;
        st = lg_kv_size(&layout, 1, 1, &kb, err);
        free(lay);
        if (st) {
            st = LG_ERR_INVALID_ARG;
            goto done;
        }
    }

    const struct lg_gguf_tensor *te = lg_gguf_find_tensor(g, "token_embd.weight");
    if (!te) {
        st = lg_err_set(err, LG_ERR_NOT_FOUND, "missing tensor token_embd.weight");
        goto done;
    }
    bool tied = lg_gguf_find_tensor(g, "output.weight") == NULL;
    struct plan_ctx pc = {c, max_cols_of(c), o->n_chunk,
                          o->n_chunk_first ? o->n_chunk_first : o->n_chunk, o->kv_only_rest,
                          o->type_k, o->type_v, (int32_t)te->ne[1], 0};

    /* The mapping: header pages, tensors read every pass, tensors read a row per token. */
    p->file_bytes = g->size;
    p->meta_bytes = page_up(g->data_offset);
    uint64_t vec_bytes = 0, paged_row = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct lg_gguf_tensor *t = &g->tensors[i];
        bool row_read = lg_str_eq(t->name, "per_layer_token_embd.weight") ||
                        (!tied && lg_str_eq(t->name, "token_embd.weight"));
        if (row_read) {
            p->paged_total_bytes += t->nbytes;
            /* A fault on a file page that is in the page cache maps the whole aligned
             * 64 KiB around it (the kernel's fault-around), so a row costs its 64 KiB
             * windows plus, on average, the row again for straddling one. */
            if (t->ne[1] > 0) {
                uint64_t row = t->nbytes / t->ne[1];
                paged_row += (row + FAULT_AROUND - 1) / FAULT_AROUND * FAULT_AROUND + row;
            }
        } else if (!unused_tensor(c, t->name)) {
            p->weights_bytes += t->nbytes;
        }
        if (t->n_dims == 1)
            vec_bytes += (t->ne[0] * 4 + 63) / 64 * 64;
    }
    p->weights_bytes = page_up(p->weights_bytes);
    p->repack_bytes = repack_extra_bytes(g, c, tied);
    p->vocab_bytes = vocab_bytes(g);
    p->model_heap_bytes = (vec_bytes + ARENA_BLOCK - 1) / ARENA_BLOCK * ARENA_BLOCK +
                          gguf_heap_bytes(g) + (uint64_t)c->n_layer * sizeof(struct lg_layer_w) +
                          sizeof(struct lg_model);
    p->baseline_bytes = LG_PLAN_BASELINE_BYTES;
    pc.fixed = p->meta_bytes + p->weights_bytes + p->repack_bytes + p->vocab_bytes +
               p->model_heap_bytes + p->baseline_bytes;

    if (o->mem_available) {
        p->available_bytes = o->mem_available;
        snprintf(p->available_src, sizeof p->available_src, "given");
    } else {
        p->available_bytes = lg_plan_mem_available(p->available_src, sizeof p->available_src);
    }
    /* No figure at all (no /proc): nothing to check against, everything "fits". */
    uint64_t budget = !p->available_bytes ? UINT64_MAX - 1
                      : p->available_bytes > LG_PLAN_HEADROOM_BYTES
                          ? p->available_bytes - LG_PLAN_HEADROOM_BYTES : 0;

    /* Largest context that fits: the total grows with n_ctx, so bisect over [MIN, trained]. */
    int64_t hi_ctx = c->n_ctx_train > 0 ? c->n_ctx_train : ((int64_t)1 << 20);
    p->n_ctx_max = 0;
    if (total_for(&pc, LG_PLAN_MIN_CTX < hi_ctx ? LG_PLAN_MIN_CTX : hi_ctx, n_par) <= budget) {
        int64_t lo = LG_PLAN_MIN_CTX < hi_ctx ? LG_PLAN_MIN_CTX : hi_ctx, hi = hi_ctx;
        while (lo < hi) {
            int64_t mid = lo + (hi - lo + 1) / 2;
            if (total_for(&pc, mid, n_par) <= budget)
                lo = mid;
            else
                hi = mid - 1;
        }
        p->n_ctx_max = lo;
    }
    int64_t n_ctx = o->n_ctx;
    if (n_ctx == 0) {
        int64_t cap = LG_PLAN_DEFAULT_CTX_CAP < hi_ctx ? LG_PLAN_DEFAULT_CTX_CAP : hi_ctx;
        n_ctx = p->n_ctx_max > 0 && p->n_ctx_max < cap ? p->n_ctx_max : cap;
    }

    p->n_ctx = n_ctx;
    p->n_ctx_train = c->n_ctx_train;
    p->n_parallel = n_par;
    p->kv_only_rest = o->kv_only_rest;
    p->type_k = o->type_k;
    p->type_v = o->type_v;
    p->state_bytes = seq_state_bytes(&pc, n_ctx, pc.n_chunk, pc.kv_only_rest);
    p->state_first_bytes = seq_state_bytes(&pc, n_ctx, pc.n_chunk_first, false);
    if (!p->state_bytes || !p->state_first_bytes) {
        st = lg_err_set(err, LG_ERR_INVALID_ARG, "plan: cannot size a state for context %lld",
                        (long long)n_ctx);
        goto done;
    }
    kv_groups(&pc, n_ctx, p);
    p->n_kv_eq_v = count_kv_eq_v(g, c);
    p->kv_bytes = p->kv_sliding.bytes + p->kv_global.bytes;
    {
        uint64_t full = o->kv_only_rest ? p->state_first_bytes : p->state_bytes;
        p->act_bytes = full > p->kv_bytes ? full - p->kv_bytes : 0;
    }
    p->session_bytes = seq_session_bytes(&pc, n_ctx);
    uint64_t rows = (uint64_t)n_ctx < (uint64_t)pc.n_vocab ? (uint64_t)n_ctx : (uint64_t)pc.n_vocab;
    p->paged_bytes = rows * paged_row;
    if (p->paged_bytes > p->paged_total_bytes)
        p->paged_bytes = p->paged_total_bytes;
    p->total_bytes = total_for(&pc, n_ctx, n_par);
    p->fits = p->total_bytes <= budget && n_ctx >= 1;
    st = LG_OK;
done:
    free(c);
    return st;
}

static double gib(uint64_t b)
{
    return (double)b / (double)((uint64_t)1 << 30);
}

const char *lg_plan_explain(const struct lg_plan *p, char *buf, size_t n)
{
    int k = snprintf(buf, n,
                     "needs %.2f GiB (weights %.2f GiB, KV cache %.2f GiB and activations %.2f "
                     "GiB for %d x %lld positions, vocabulary and overhead %.2f GiB) but %.2f "
                     "GiB %s available (%s, keeping %.2f GiB free)",
                     gib(p->total_bytes), gib(p->weights_bytes + p->meta_bytes + p->repack_bytes),
                     gib(p->kv_bytes * (uint64_t)p->n_parallel),
                     gib(p->act_bytes * (p->kv_only_rest ? 1 : (uint64_t)p->n_parallel)),
                     (int)p->n_parallel,
                     (long long)p->n_ctx,
                     gib(p->vocab_bytes + p->model_heap_bytes + p->baseline_bytes +
                         p->session_bytes * (uint64_t)p->n_parallel),
                     gib(p->available_bytes), p->available_bytes == 1 ? "is" : "are",
                     p->available_src, gib(LG_PLAN_HEADROOM_BYTES));
    if (k < 0 || (size_t)k >= n)
        return buf;
    if (p->n_ctx_max > 0 && p->n_ctx_max < p->n_ctx)
        snprintf(buf + k, n - (size_t)k, "; the largest context that fits is %lld (--ctx %lld)%s",
                 (long long)p->n_ctx_max, (long long)p->n_ctx_max,
                 p->type_k == LG_QTYPE_Q4_0 && p->type_v == LG_QTYPE_Q4_0
                     ? "" : ", or a smaller KV cache type (--kv-type q8_0 or q4_0)");
    else if (p->n_ctx_max == 0)
        snprintf(buf + k, n - (size_t)k, "; not even a %d-token context fits: free memory or "
                 "use a smaller model or quantization", (int)LG_PLAN_MIN_CTX);
    return buf;
}
