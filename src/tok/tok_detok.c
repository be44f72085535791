/* tok_detok.c: token ids -> UTF-8 text, incrementally.
 *
 * Byte tokens can split one character over several ids, so bytes are held in `pend` until
 * they form a complete character; only complete, valid UTF-8 leaves the object (invalid
 * bytes become U+FFFD unless LG_DETOK_RAW_BYTES). Invariant between calls: pend holds at most
 * 3 bytes, and they are a valid but unfinished prefix of one character.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "tok/tok_priv.h"

struct lg_detok {
    const struct lg_vocab *v;
    unsigned flags;
    unsigned char pend[4];
    size_t n_pend;
    char *out;      /* text returned by the last call */
    size_t n_out, cap_out;
    unsigned char *in; /* pend + the new piece */
    size_t cap_in;
};

struct lg_detok *lg_detok_create(const struct lg_vocab *v, unsigned flags)
{
    if (!v)
        return NULL;
    struct lg_detok *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->v = v;
    d->flags = flags;
    /* A piece is at most max_token_bytes, and U+2581 (3 bytes) -> ' ' only shrinks it; an
     * invalid byte grows to 3 (U+FFFD). */
    d->cap_in = (size_t)v->max_token_bytes + 8;
    d->cap_out = 3 * d->cap_in + 8;
    d->in = malloc(d->cap_in);
    d->out = malloc(d->cap_out);
    if (!d->in || !d->out) {
        lg_detok_destroy(d);
        return NULL;
    }
    return d;
}

void lg_detok_destroy(struct lg_detok *d)
{
    if (!d)
        return;
    free(d->in);
    free(d->out);
    free(d);
}

void lg_detok_reset(struct lg_detok *d)
{
    if (d)
        d->n_pend = 0;
}

/* Appends the bytes id contributes to the stream into d->in (after pend). */
static size_t piece_bytes(struct lg_detok *d, int32_t id, unsigned char *dst)
{
    const struct lg_vocab *v = d->v;
    uint8_t type = v->types[id];
    if (type == LG_TOK_TYPE_BYTE) {
        dst[0] = v->priv->byte_val[id];
        return 1;
    }
    size_t n;
    const char *t = lg_tok_text(v, id, &n);
    if (type == LG_TOK_TYPE_CONTROL || type == LG_TOK_TYPE_UNKNOWN ||
        type == LG_TOK_TYPE_UNUSED) {
        if (!(d->flags & LG_DETOK_SHOW_SPECIAL))
            return 0;
        memcpy(dst, t, n);
        return n;
    }
    if (type == LG_TOK_TYPE_USER_DEFINED) {
        memcpy(dst, t, n); /* rendered verbatim, like llama.cpp and HF added tokens */
        return n;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i + 2 < n && (unsigned char)t[i] == 0xE2 && (unsigned char)t[i + 1] == 0x96 &&
            (unsigned char)t[i + 2] == 0x81) {
            dst[k++] = ' ';
            i += 2;
        } else {
            dst[k++] = (unsigned char)t[i];
        }
    }
    return k;
}

/* Moves every complete character of in[0..n) to out; keeps a valid unfinished tail in pend
 * unless final, in which case it is replaced too. */
static void drain(struct lg_detok *d, const unsigned char *in, size_t n, bool final)
{
    bool raw = (d->flags & LG_DETOK_RAW_BYTES) != 0;
    size_t i = 0;
    while (i < n) {
        if (in[i] < 0x80) {
            d->out[d->n_out++] = (char)in[i++];
            continue;
        }
        bool inc;
        size_t l = lg_tok_utf8_valid(in + i, n - i, &inc);
        if (l > 0) {
            memcpy(d->out + d->n_out, in + i, l);
            d->n_out += l;
            i += l;
        } else if (inc && !final) {
            memcpy(d->pend, in + i, n - i); /* < 4 bytes: a prefix shorter than its char */
            d->n_pend = n - i;
            return;
        } else if (raw) {
            d->out[d->n_out++] = (char)in[i++];
        } else {
            memcpy(d->out + d->n_out, "\xEF\xBF\xBD", 3);
            d->n_out += 3;
            i++;
        }
    }
}

enum lg_status lg_detok_feed(struct lg_detok *d, int32_t id, const char **text, size_t *len,
                             struct lg_err *err)
{
    *text = "";
    *len = 0;
    if (!d)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "detokenize: no detokenizer");
    d->n_out = 0;
    if (id < 0 || (uint32_t)id >= d->v->n_tokens)
        return lg_err_set(err, LG_ERR_RANGE, "detokenize: token id %ld is outside the vocab "
                          "(%u tokens)", (long)id, d->v->n_tokens);
    memcpy(d->in, d->pend, d->n_pend);
    size_t n = d->n_pend + piece_bytes(d, id, d->in + d->n_pend);
    d->n_pend = 0;
    drain(d, d->in, n, false);
    d->out[d->n_out] = '\0';
    *text = d->out;
    *len = d->n_out;
    return LG_OK;
}

void lg_detok_flush(struct lg_detok *d, const char **text, size_t *len)
{
    *text = "";
    *len = 0;
    if (!d)
        return;
    d->n_out = 0;
    unsigned char tmp[4];
    size_t n = d->n_pend;
    memcpy(tmp, d->pend, n);
    d->n_pend = 0;
    drain(d, tmp, n, true);
    d->out[d->n_out] = '\0';
    *text = d->out;
    *len = d->n_out;
}

enum lg_status lg_tok_decode_alloc(const struct lg_vocab *v, const int32_t *ids, size_t n,
                                   unsigned flags, char **text, size_t *len,
                                   struct lg_err *err)
{
    *text = NULL;
    *len = 0;
    struct lg_detok *d = lg_detok_create(v, flags);
    size_t cap = 256, k = 0;
    char *s = malloc(cap);
    enum lg_status st = LG_OK;
    if (!d || !s) {
        st = lg_err_set(err, LG_ERR_NOMEM, "detokenize: out of memory");
        goto fail;
    }
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t pn;
        if (i < n) {
            if ((st = lg_detok_feed(d, ids[i], &piece, &pn, err)))
                goto fail;
        } else {
            lg_detok_flush(d, &piece, &pn);
        }
        if (k + pn + 1 > cap) {
            while (k + pn + 1 > cap)
                cap *= 2;
            char *ns = realloc(s, cap);
            if (!ns) {
                st = lg_err_set(err, LG_ERR_NOMEM, "detokenize: out of memory");
                goto fail;
            }
            s = ns;
        }
        memcpy(s + k, piece, pn);
        k += pn;
    }
    s[k] = '\0';
    lg_detok_destroy(d);
    *text = s;
    *len = k;
    return LG_OK;
fail:
    lg_detok_destroy(d);
    free(s);
    return st;
}
