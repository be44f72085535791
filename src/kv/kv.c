/* kv.c: per-layer K/V stores. Invariant: position pos of layer il is in slot
 * pos % n_slots(il); shared layers alias their donor's stores and allocate nothing. */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "kv/kv.h"

struct kv_layer {
    int32_t src;
    int64_t window;
    int64_t n_slots;
    int64_t width;  /* n_head_kv * head_dim */
    float *k;       /* [n_slots][width]; NULL when shared */
    float *v;
};

struct lg_kv {
    int32_t n_layer;
    int64_t n_ctx;
    int64_t n_chunk;
    int64_t n_pos;
    size_t bytes;
    struct kv_layer *layers; /* [n_layer] */
};

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
    if (!layout || layout->n_layer <= 0 || !layout->layers || n_ctx <= 0 || n_chunk <= 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "kv: bad layout or size");
    if (n_ctx > ((int64_t)1 << 31))
        return lg_err_set(err, LG_ERR_RANGE, "kv: context %lld too large", (long long)n_ctx);
    struct lg_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return lg_err_set(err, LG_ERR_NOMEM, "kv: out of memory");
    kv->n_layer = layout->n_layer;
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
        if (L->src < 0 || L->src > il || L->n_head_kv <= 0 || L->head_dim <= 0 ||
            L->window < 0 || L->n_head_kv > 4096 || L->head_dim > 65536) {
            st = lg_err_set(err, LG_ERR_INVALID_ARG, "kv: layer %d: bad layout", (int)il);
            goto fail;
        }
        K->src = L->src;
        K->window = L->window;
        K->width = L->n_head_kv * L->head_dim;
        if (L->src != il) {
            const struct kv_layer *D = &kv->layers[L->src];
            if (D->src != L->src || D->width != K->width || D->window != K->window) {
                st = lg_err_set(err, LG_ERR_INVALID_ARG,
                                "kv: layer %d shares layer %d's cache, which does not match",
                                (int)il, (int)L->src);
                goto fail;
            }
            K->n_slots = D->n_slots;
            continue;
        }
        int64_t n_slots = n_ctx;
        if (L->window > 0 && L->window < n_ctx && L->window + kv->n_chunk < n_ctx)
            n_slots = L->window + kv->n_chunk;
        K->n_slots = n_slots;
        size_t n = (size_t)n_slots * (size_t)K->width;
        if (n / (size_t)K->width != (size_t)n_slots || n > SIZE_MAX / sizeof(float) / 2) {
            st = lg_err_set(err, LG_ERR_RANGE, "kv: layer %d: size overflow", (int)il);
            goto fail;
        }
        K->k = calloc(n, sizeof(float));
        K->v = calloc(n, sizeof(float));
        if (!K->k || !K->v) {
            st = lg_err_set(err, LG_ERR_NOMEM, "kv: layer %d: cannot allocate %zu bytes",
                            (int)il, 2 * n * sizeof(float));
            goto fail;
        }
        kv->bytes += 2 * n * sizeof(float);
    }
    *out = kv;
    return LG_OK;
fail:
    lg_kv_destroy(kv);
    return st;
}

float *lg_kv_k(struct lg_kv *kv, int32_t il)
{
    return kv->layers[kv->layers[il].src].k;
}

float *lg_kv_v(struct lg_kv *kv, int32_t il)
{
    return kv->layers[kv->layers[il].src].v;
}

int64_t lg_kv_n_slots(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].n_slots;
}

bool lg_kv_owns(const struct lg_kv *kv, int32_t il)
{
    return kv->layers[il].src == il;
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
