/* kv.c: per-layer K/V stores in F32, F16, Q8_0 or Q4_0. Invariants: position pos of layer il
 * is in slot pos % n_slots(il), a slot row is n_head_kv heads converted as one row (blocks
 * never straddle heads: head_dim % 32 == 0 for block types); shared layers alias their donor's
 * stores and allocate nothing. lg_kv_size() and lg_kv_create() share kv_check_layer(), so the
 * planned size is the allocated size by construction (test_kv_types checks it). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/err.h"
#include "kern/kern.h"
#include "kv/kv.h"
#include "quant/quant.h"

struct kv_layer {
    int32_t src;
    int64_t window;
    int64_t n_slots;
    int64_t width;       /* n_head_kv * head_dim elements per slot row */
    size_t row_k, row_v; /* bytes per slot row */
    uint8_t *k;          /* [n_slots][row_k]; NULL when shared */
    uint8_t *v;          /* [n_slots][row_v] */
};

struct lg_kv {
    int32_t n_layer;
    uint32_t type_k, type_v;
    int64_t n_ctx;
    int64_t n_chunk;
    int64_t n_pos;
    size_t bytes;            /* K/V stores */
    struct kv_layer *layers; /* [n_layer] */
    bool f16c;               /* F16 rows through lg_kv_f16_row_avx2 */
    void (*act_quantize)(uint32_t w, const float *x, void *dst, int64_t n); /* Q8_0 rows */
};

static bool kv_type_ok(uint32_t t)
{
    return t == LG_QTYPE_F32 || t == LG_QTYPE_F16 || t == LG_QTYPE_Q8_0 || t == LG_QTYPE_Q4_0;
}

/* Validates layer il of the layout and gives its slot count and row sizes (0 when shared). */
static enum lg_status kv_check_layer(const struct lg_kv_layout *layout, int32_t il,
                                     int64_t n_ctx, int64_t n_chunk, int64_t *n_slots,
                                     size_t *row_k, size_t *row_v, struct lg_err *err)
{
    const struct lg_kv_layer_layout *L = &layout->layers[il];
    if (L->src < 0 || L->src > il || L->n_head_kv <= 0 || L->head_dim <= 0 || L->window < 0 ||
        L->n_head_kv > 4096 || L->head_dim > 65536)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "kv: layer %d: bad layout", (int)il);
    *row_k = *row_v = 0;
    if (L->src != il) {
        const struct lg_kv_layer_layout *D = &layout->layers[L->src];
        if (D->src != L->src || D->n_head_kv * D->head_dim != L->n_head_kv * L->head_dim ||
            D->head_dim != L->head_dim || D->window != L->window)
            return lg_err_set(err, LG_ERR_INVALID_ARG,
                              "kv: layer %d shares layer %d's cache, which does not match",
                              (int)il, (int)L->src);
        /* the donor was checked first (src < il) */
        int64_t ns = n_ctx;
        if (D->window > 0 && D->window < n_ctx && D->window + n_chunk < n_ctx)
            ns = D->window + n_chunk;
        *n_slots = ns;
        return LG_OK;
    }
    const uint32_t types[2] = {layout->type_k, layout->type_v};
    size_t *rows[2] = {row_k, row_v};
    for (int i = 0; i < 2; i++) {
        const struct lg_qtype_info *ti = lg_qtype_get(types[i]);
        if (!kv_type_ok(types[i]) || !ti)
            return lg_err_set(err, LG_ERR_UNSUPPORTED,
                              "kv: %s cache type %u is not f32, f16, q8_0 or q4_0",
                              i ? "V" : "K", (unsigned)types[i]);
        if (L->head_dim % ti->block_size != 0)
            return lg_err_set(err, LG_ERR_UNSUPPORTED,
                              "kv: layer %d: head size %lld is not a multiple of %u, which a "
                              "%s cache needs", (int)il, (long long)L->head_dim,
                              ti->block_size, lg_kv_type_name(types[i]));
        uint64_t rb;
        if (lg_qtype_row_bytes(types[i], (uint64_t)(L->n_head_kv * L->head_dim), &rb) != LG_OK)
            return lg_err_set(err, LG_ERR_RANGE, "kv: layer %d: row size overflow", (int)il);
        *rows[i] = (size_t)rb;
    }
    int64_t ns = n_ctx;
    if (L->window > 0 && L->window < n_ctx && L->window + n_chunk < n_ctx)
        ns = L->window + n_chunk;
    if ((uint64_t)ns > (uint64_t)(SIZE_MAX / 4) / (*row_k + *row_v))
        return lg_err_set(err, LG_ERR_RANGE, "kv: layer %d: size overflow", (int)il);
    *n_slots = ns;
    return LG_OK;
}

static enum lg_status kv_check_args(const struct lg_kv_layout *layout, int64_t n_ctx,
                                    int64_t n_chunk, struct lg_err *err)
{
    if (!layout || layout->n_layer <= 0 || !layout->layers || n_ctx <= 0 || n_chunk <= 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "kv: bad layout or size");
    if (n_ctx > ((int64_t)1 << 31))
        return lg_err_set(err, LG_ERR_RANGE, "kv: context %lld too large", (long long)n_ctx);
    return LG_OK;
}

enum lg_status lg_kv_size(const struct lg_kv_layout *layout, int64_t n_ctx, int64_t n_chunk,
                          size_t *bytes, struct lg_err *err)
{
    enum lg_status st;
    *bytes = 0;
    if ((st = kv_check_args(layout, n_ctx, n_chunk, err)))
        return st;
    if (n_chunk > n_ctx)
        n_chunk = n_ctx;
    size_t total = sizeof(struct lg_kv) + (size_t)layout->n_layer * sizeof(struct kv_layer);
    for (int32_t il = 0; il < layout->n_layer; il++) {
        int64_t ns;
        size_t rk, rv;
        if ((st = kv_check_layer(layout, il, n_ctx, n_chunk, &ns, &rk, &rv, err)))
            return st;
        size_t b = (size_t)ns * (rk + rv);
        if (total > SIZE_MAX / 2 - b)
            return lg_err_set(err, LG_ERR_RANGE, "kv: size overflow");
        total += b;
    }
    *bytes = total;
    return LG_OK;
}

void lg_kv_destroy(struct lg_kv *kv)
{
    if (!kv)
        return;
    if (kv->layers) {
        for (int32_t il = 0; il < kv->n_layer; il++) {
            free(kv->layers[il].k);
            free(kv->layers[il].v);
        }
    }
    free(kv->layers);
    free(kv);
}

enum lg_status lg_kv_create(const struct lg_kv_layout *layout, int64_t n_ctx, int64_t n_chunk,
                            struct lg_kv **out, struct lg_err *err)
{
    enum lg_status st = LG_OK;
    *out = NULL;
    if ((st = kv_check_args(layout, n_ctx, n_chunk, err)))
        return st;
    struct lg_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return lg_err_set(err, LG_ERR_NOMEM, "kv: out of memory");
    kv->n_layer = layout->n_layer;
    kv->type_k = layout->type_k;
    kv->type_v = layout->type_v;
    kv->n_ctx = n_ctx;
    kv->n_chunk = n_chunk < n_ctx ? n_chunk : n_ctx;
    kv->layers = calloc((size_t)layout->n_layer, sizeof *kv->layers);
    if (!kv->layers) {
        st = lg_err_set(err, LG_ERR_NOMEM, "kv: out of memory");
        goto fail;
    }
    for (int32_t il = 0; il < layout->n_layer; il++) {
        const struct lg_kv_layer_layout *L = &layout->layers[il];
        struct kv_layer *K = &kv->layers[il];
        if ((st = kv_check_layer(layout, il, n_ctx, kv->n_chunk, &K->n_slots, &K->row_k,
                                 &K->row_v, err)))
            goto fail;
        K->src = L->src;
        K->window = L->window;
        K->width = L->n_head_kv * L->head_dim;
        if (L->src != il) {
            K->row_k = kv->layers[L->src].row_k;
            K->row_v = kv->layers[L->src].row_v;
            continue;
        }
        K->k = calloc((size_t)K->n_slots, K->row_k);
        K->v = calloc((size_t)K->n_slots, K->row_v);
        size_t b = (size_t)K->n_slots * (K->row_k + K->row_v);
        if (!K->k || !K->v) {
            st = lg_err_set(err, LG_ERR_NOMEM, "kv: layer %d: cannot allocate %zu bytes",
                            (int)il, b);
            goto fail;
        }
        kv->bytes += b;
    }
    lg_kv_set_kern(kv, NULL);
    *out = kv;
    return LG_OK;
fail:
    lg_kv_destroy(kv);
    return st;
}

void *lg_kv_k(struct lg_kv *kv, int32_t il)
{
    return kv->layers[kv->layers[il].src].k;
}

void *lg_kv_v(struct lg_kv *kv, int32_t il)
{
    return kv->layers[kv->layers[il].src].v;
}

uint32_t lg_kv_type_k(const struct lg_kv *kv)
{
    return kv->type_k;
}

uint32_t lg_kv_type_v(const struct lg_kv *kv)
{
    return kv->type_v;
}

size_t lg_kv_row_bytes_k(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].row_k;
}

size_t lg_kv_row_bytes_v(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].row_v;
}

int64_t lg_kv_n_slots(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].n_slots;
}

bool lg_kv_owns(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].src == il;
}

bool lg_kv_f16c_ok(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

void lg_kv_set_kern(struct lg_kv *kv, const struct lg_kern *k)
{
    if (!k)
        k = lg_kern_get();
    kv->f16c = strcmp(k->isa, "ref") != 0 && lg_kv_f16c_ok();
    /* every table's act_quantize writes lg_quant_q8_0's bytes for Q8_0 weights (kern.h) */
    kv->act_quantize = k->act_quantize;
}

static void kv_put(const struct lg_kv *kv, uint32_t type, const float *src, uint8_t *dst,
                   int64_t n)
{
    if (type == LG_QTYPE_F32)
        memcpy(dst, src, (size_t)n * sizeof(float));
    else if (type == LG_QTYPE_F16 && kv->f16c)
        lg_kv_f16_row_avx2(src, dst, n);
    else if (type == LG_QTYPE_Q8_0 && kv->act_quantize)
        kv->act_quantize(LG_QTYPE_Q8_0, src, dst, n); /* activation type of Q8_0 is Q8_0 */
    else /* F16: round to nearest even; Q8_0 / Q4_0: ggml's reference quantizers */
        lg_quant_row((enum lg_qtype)type, src, dst, n);
}

void lg_kv_store(struct lg_kv *kv, int32_t il, int64_t pos, const float *k, const float *v)
{
    struct kv_layer *K = &kv->layers[il];
    int64_t slot = pos % K->n_slots;
    kv_put(kv, kv->type_k, k, K->k + (size_t)slot * K->row_k, K->width);
    kv_put(kv, kv->type_v, v, K->v + (size_t)slot * K->row_v, K->width);
}

void lg_kv_load(struct lg_kv *kv, int32_t il, int64_t pos, float *k, float *v)
{
    const struct kv_layer *K = &kv->layers[il];
    const struct kv_layer *S = &kv->layers[K->src];
    int64_t slot = pos % K->n_slots;
    if (k)
        lg_dequant_row((enum lg_qtype)kv->type_k, S->k + (size_t)slot * S->row_k, k, K->width);
    if (v)
        lg_dequant_row((enum lg_qtype)kv->type_v, S->v + (size_t)slot * S->row_v, v, K->width);
}

int64_t lg_kv_n_ctx(const struct lg_kv *kv)
{
    return kv->n_ctx;
}

int64_t lg_kv_n_chunk(const struct lg_kv *kv)
{
    return kv->n_chunk;
}

int64_t lg_kv_n_pos(const struct lg_kv *kv)
{
    return kv->n_pos;
}

void lg_kv_advance(struct lg_kv *kv, int64_t n)
{
    kv->n_pos += n;
}

enum lg_status lg_kv_rewind(struct lg_kv *kv, int64_t pos, struct lg_err *err)
{
    if (pos < 0 || pos > kv->n_pos)
        return lg_err_set(err, LG_ERR_RANGE, "kv: cannot rewind to %lld (have %lld)",
                          (long long)pos, (long long)kv->n_pos);
    for (int32_t il = 0; il < kv->n_layer; il++) {
        const struct kv_layer *K = &kv->layers[il];
        if (K->src != il || K->n_slots >= kv->n_ctx)
            continue;
        /* The ring holds positions [n_pos - n_slots, n_pos); the next chunk needs
         * [pos - window + 1, pos). */
        int64_t lo = pos - K->window + 1 > 0 ? pos - K->window + 1 : 0;
        if (pos > 0 && lo < kv->n_pos - K->n_slots)
            return lg_err_set(err, LG_ERR_RANGE,
                              "kv: layer %d: window before position %lld was overwritten",
                              (int)il, (long long)pos);
    }
    kv->n_pos = pos;
    return LG_OK;
}

size_t lg_kv_bytes(const struct lg_kv *kv)
{
    return kv->bytes;
}

size_t lg_kv_footprint(const struct lg_kv *kv)
{
    return sizeof *kv + (size_t)kv->n_layer * sizeof *kv->layers + kv->bytes;
}

static const struct {
    const char *name;
    uint32_t type;
} kv_type_names[] = {{"f32", LG_QTYPE_F32},
                     {"f16", LG_QTYPE_F16},
                     {"q8_0", LG_QTYPE_Q8_0},
                     {"q4_0", LG_QTYPE_Q4_0}};

enum lg_status lg_kv_type_parse(const char *name, uint32_t *out, struct lg_err *err)
{
    for (size_t i = 0; name && i < sizeof kv_type_names / sizeof kv_type_names[0]; i++) {
        if (strcasecmp(name, kv_type_names[i].name) == 0) {
            *out = kv_type_names[i].type;
            return LG_OK;
        }
    }
    return lg_err_set(err, LG_ERR_INVALID_ARG,
                      "unknown KV cache type '%s' (expected f32, f16, q8_0 or q4_0)",
                      name ? name : "(null)");
}

const char *lg_kv_type_name(uint32_t type)
{
    for (size_t i = 0; i < sizeof kv_type_names / sizeof kv_type_names[0]; i++)
        if (kv_type_names[i].type == type)
            return kv_type_names[i].name;
    return "?";
}

/* ---- snapshots -------------------------------------------------------------------------- */

/* The layers a snapshot copies: rings that own their KV and wrap inside the context. */
static bool kv_is_ring(const struct lg_kv *kv, int32_t il)
{
    const struct kv_layer *K = &kv->layers[il];
    return K->src == il && K->n_slots < kv->n_ctx;
}

size_t lg_kv_snapshot_bytes(const struct lg_kv *kv)
{
    size_t n = 0;
    for (int32_t il = 0; il < kv->n_layer; il++)
        if (kv_is_ring(kv, il))
            n += (size_t)kv->layers[il].n_slots * (kv->layers[il].row_k + kv->layers[il].row_v);
    return n;
}

int64_t lg_kv_snapshot_save(const struct lg_kv *kv, void *buf)
{
    uint8_t *p = buf;
    for (int32_t il = 0; il < kv->n_layer; il++) {
        if (!kv_is_ring(kv, il))
            continue;
        const struct kv_layer *K = &kv->layers[il];
        memcpy(p, K->k, (size_t)K->n_slots * K->row_k);
        p += (size_t)K->n_slots * K->row_k;
        memcpy(p, K->v, (size_t)K->n_slots * K->row_v);
        p += (size_t)K->n_slots * K->row_v;
    }
    return kv->n_pos;
}

enum lg_status lg_kv_snapshot_restore(struct lg_kv *kv, const void *buf, int64_t snap_pos,
                                      struct lg_err *err)
{
    if (snap_pos < 0 || snap_pos > kv->n_pos)
        return lg_err_set(err, LG_ERR_RANGE, "kv: snapshot at %lld is beyond the cache (%lld)",
                          (long long)snap_pos, (long long)kv->n_pos);
    const uint8_t *p = buf;
    for (int32_t il = 0; il < kv->n_layer; il++) {
        if (!kv_is_ring(kv, il))
            continue;
        struct kv_layer *K = &kv->layers[il];
        memcpy(K->k, p, (size_t)K->n_slots * K->row_k);
        p += (size_t)K->n_slots * K->row_k;
        memcpy(K->v, p, (size_t)K->n_slots * K->row_v);
        p += (size_t)K->n_slots * K->row_v;
    }
    kv->n_pos = snap_pos;
    return LG_OK;
}
