/* stop.c: incremental stop-string matching over streamed text.
 *
 * Invariant between calls: m->held holds the longest tail of the stream that is a proper
 * prefix of some stop string (so < LG_STOP_MAX_LEN bytes), and everything before it has been
 * released. A stop string can therefore never start inside released text: if it did, the
 * tail from its start would have been a prefix of it and would still be held.
 */
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "sample/sample.h"

struct lg_stop {
    char *stops[LG_STOP_MAX_STRINGS];
    size_t lens[LG_STOP_MAX_STRINGS];
    size_t n_stops;
    char *held;          /* [cap] pending text: the held tail, then the new chunk */
    size_t n_held, cap;
    char *out;           /* [cap] released text of the last call */
    uint64_t n_released; /* bytes released so far in this stream */
    bool stopped;
    int32_t which;
    uint64_t cut;
};

enum lg_status lg_stop_create(const char *const *stops, size_t n, struct lg_stop **out,
                              struct lg_err *err)
{
    *out = NULL;
    if (n > LG_STOP_MAX_STRINGS)
        return lg_err_set(err, LG_ERR_RANGE, "stop: %zu strings (max %d)", n,
                          LG_STOP_MAX_STRINGS);
    for (size_t i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0)
            return lg_err_set(err, LG_ERR_INVALID_ARG, "stop: string %zu is empty", i);
        if (len > LG_STOP_MAX_LEN)
            return lg_err_set(err, LG_ERR_RANGE, "stop: string %zu is %zu bytes (max %d)", i,
                              len, LG_STOP_MAX_LEN);
    }
    struct lg_stop *m = calloc(1, sizeof *m);
    if (!m)
        return lg_err_set(err, LG_ERR_NOMEM, "stop: out of memory");
    m->cap = 2 * LG_STOP_MAX_LEN + 256;
    m->held = malloc(m->cap);
    m->out = malloc(m->cap);
    if (!m->held || !m->out) {
        lg_stop_destroy(m);
        return lg_err_set(err, LG_ERR_NOMEM, "stop: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        m->lens[i] = strlen(stops[i]);
        m->stops[i] = malloc(m->lens[i] + 1);
        if (!m->stops[i]) {
            lg_stop_destroy(m);
            return lg_err_set(err, LG_ERR_NOMEM, "stop: out of memory");
        }
        memcpy(m->stops[i], stops[i], m->lens[i] + 1);
        m->n_stops++;
    }
    lg_stop_reset(m);
    *out = m;
    return LG_OK;
}

void lg_stop_destroy(struct lg_stop *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_stops; i++)
        free(m->stops[i]);
    free(m->held);
    free(m->out);
    free(m);
}

void lg_stop_reset(struct lg_stop *m)
{
    m->n_held = 0;
    m->n_released = 0;
    m->stopped = false;
    m->which = -1;
    m->cut = 0;
}

static void result_set(const struct lg_stop *m, struct lg_stop_result *r, const char *text,
                       size_t n)
{
    r->text = text;
    r->n_text = n;
    r->stopped = m->stopped;
    r->which = m->which;
    r->cut = m->cut;
}

/* The stop that completes first in the stream: smallest end offset, then the earliest
 * start (the longer string). This makes the result independent of how text is chunked.
 * Returns its start in held, or -1. */
static long find_stop(const struct lg_stop *m, int32_t *which)
{
    long best = -1;
    size_t best_end = 0;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t len = m->lens[k];
        if (len > m->n_held)
            continue;
        const char *h = memmem(m->held, m->n_held, m->stops[k], len);
        if (!h)
            continue;
        size_t at = (size_t)(h - m->held), end = at + len;
        if (best < 0 || end < best_end || (end == best_end && (long)at < best)) {
            best = (long)at;
            best_end = end;
            *which = (int32_t)k;
        }
    }
    return best;
}

/* Length of the longest tail of held that is a proper prefix of some stop string. */
static size_t held_tail(const struct lg_stop *m)
{
    size_t best = 0;
    for (size_t k = 0; k < m->n_stops; k++) {
        size_t max = m->lens[k] - 1 < m->n_held ? m->lens[k] - 1 : m->n_held;
        for (size_t t = max; t > best; t--)
            if (memcmp(m->held + m->n_held - t, m->stops[k], t) == 0) {
                best = t;
                break;
            }
    }
    return best;
}

enum lg_status lg_stop_feed(struct lg_stop *m, const char *text, size_t len,
                            struct lg_stop_result *r, struct lg_err *err)
{
    if (m->stopped) {
        result_set(m, r, m->out, 0);
        return LG_OK;
    }
    if (len > m->cap - m->n_held) {
        size_t cap = m->n_held + len;
        char *h = realloc(m->held, cap);
        if (!h) {
            result_set(m, r, m->out, 0);
            return lg_err_set(err, LG_ERR_NOMEM, "stop: out of memory");
        }
        m->held = h;
        char *o = realloc(m->out, cap);
        if (!o) {
            result_set(m, r, m->out, 0);
            return lg_err_set(err, LG_ERR_NOMEM, "stop: out of memory");
        }
        m->out = o;
        m->cap = cap;
    }
    if (len)
        memcpy(m->held + m->n_held, text, len);
    m->n_held += len;
    int32_t which = -1;
    long at = find_stop(m, &which);
    size_t n_out;
    if (at >= 0) {
        n_out = (size_t)at;
        m->stopped = true;
        m->which = which;
        m->cut = m->n_released + (uint64_t)at;
    } else {
        n_out = m->n_held - held_tail(m);
    }
    memcpy(m->out, m->held, n_out);
    memmove(m->held, m->held + n_out, m->n_held - n_out);
    m->n_held = m->stopped ? 0 : m->n_held - n_out;
    m->n_released += n_out;
    result_set(m, r, m->out, n_out);
    return LG_OK;
}

void lg_stop_flush(struct lg_stop *m, struct lg_stop_result *r)
{
    size_t n = m->stopped ? 0 : m->n_held;
    memcpy(m->out, m->held, n);
    m->n_released += n;
    m->n_held = 0;
    result_set(m, r, m->out, n);
}
