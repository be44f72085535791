/* test_sample_stop.c: incremental stop strings. Fixed cases (held-back partial matches, a
 * match across chunks, flush, several stops), then 20000 random streams where the released
 * text and cut point must equal a brute-force reference for every chunking. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sample.h"
#include "test.h"

/* Feeds text in chunks of the given sizes (cycled) and collects everything released. */
static void run(struct lg_stop *m, const char *text, size_t n, const size_t *chunks,
                size_t n_chunks, char *out, size_t *n_out, struct lg_stop_result *last)
{
    size_t pos = 0, k = 0;
    *n_out = 0;
    struct lg_err err = {0};
    lg_stop_reset(m);
    memset(last, 0, sizeof *last);
    while (pos < n) {
        size_t c = chunks[k++ % n_chunks];
        if (c > n - pos)
            c = n - pos;
        struct lg_stop_result r;
        lg_stop_feed(m, text + pos, c, &r, &err);
        memcpy(out + *n_out, r.text, r.n_text);
        *n_out += r.n_text;
        *last = r;
        pos += c;
    }
    struct lg_stop_result r;
    lg_stop_flush(m, &r);
    memcpy(out + *n_out, r.text, r.n_text);
    *n_out += r.n_text;
    if (!last->stopped)
        *last = r;
}

static struct lg_stop *mk(const char *const *stops, size_t n)
{
    struct lg_stop *m = NULL;
    struct lg_err err = {0};
    CHECK_EQ_INT(lg_stop_create(stops, n, &m, &err), LG_OK);
    return m;
}

/* Reference: the stop whose end comes first, then the earliest start. Returns the cut or -1. */
static long ref_cut(const char *t, size_t n, const char *const *stops, size_t ns, int *which)
{
    for (size_t end = 1; end <= n; end++) {
        long best = -1;
        for (size_t k = 0; k < ns; k++) {
            size_t len = strlen(stops[k]);
            if (len <= end && memcmp(t + end - len, stops[k], len) == 0 &&
                (best < 0 || (long)(end - len) < best)) {
                best = (long)(end - len);
                *which = (int)k;
            }
        }
        if (best >= 0)
            return best;
    }
    return -1;
}

static uint64_t rnd_state = 0x1234567;

static uint64_t RND(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

int main(void)
{
    char out[4096];
    size_t n_out;
    struct lg_stop_result r;
    struct lg_err err = {0};

    {
        const char *stops[] = {"\n\n"};
        struct lg_stop *m = mk(stops, 1);
        const size_t one[] = {1};
        run(m, "Hello\n\nWorld", 12, one, 1, out, &n_out, &r);
        CHECK_EQ_INT(n_out, 5);
        CHECK(memcmp(out, "Hello", 5) == 0);
        CHECK(r.stopped);
        CHECK_EQ_INT(r.cut, 5);
        CHECK_EQ_INT(r.which, 0);
        /* feeding after the stop releases nothing */
        lg_stop_feed(m, "more", 4, &r, &err);
        CHECK_EQ_INT(r.n_text, 0);
        CHECK(r.stopped);
        lg_stop_destroy(m);
    }
    {
        const char *stops[] = {"abc"};
        struct lg_stop *m = mk(stops, 1);
        lg_stop_reset(m);
        lg_stop_feed(m, "xxab", 4, &r, &err);
        CHECK_EQ_INT(r.n_text, 2); /* "ab" held back */
        CHECK(memcmp(r.text, "xx", 2) == 0);
        lg_stop_feed(m, "d", 1, &r, &err);
        CHECK_EQ_INT(r.n_text, 3); /* "abd" could not become "abc" */
        CHECK(memcmp(r.text, "abd", 3) == 0);
        lg_stop_feed(m, "a", 1, &r, &err);
        CHECK_EQ_INT(r.n_text, 0);
        lg_stop_flush(m, &r); /* end of stream: the held "a" is text after all */
        CHECK_EQ_INT(r.n_text, 1);
        CHECK(!r.stopped);
        CHECK_EQ_INT(r.which, -1);
        /* a match split over three chunks */
        lg_stop_reset(m);
        lg_stop_feed(m, "12a", 3, &r, &err);
        CHECK_EQ_INT(r.n_text, 2);
        lg_stop_feed(m, "b", 1, &r, &err);
        CHECK_EQ_INT(r.n_text, 0);
        lg_stop_feed(m, "cZZ", 3, &r, &err);
        CHECK_EQ_INT(r.n_text, 0);
        CHECK(r.stopped);
        CHECK_EQ_INT(r.cut, 2);
        lg_stop_destroy(m);
    }
    {
        /* the stop completing first wins, whatever the chunking */
        const char *stops[] = {"abcde", "bcd"};
        struct lg_stop *m = mk(stops, 2);
        const size_t whole[] = {100}, one[] = {1};
        run(m, "xabcdef", 7, whole, 1, out, &n_out, &r);
        CHECK_EQ_INT(r.cut, 2);
        CHECK_EQ_INT(r.which, 1);
        run(m, "xabcdef", 7, one, 1, out, &n_out, &r);
        CHECK_EQ_INT(r.cut, 2);
        CHECK_EQ_INT(n_out, 2);
        lg_stop_destroy(m);
    }
    {
        /* no stops: everything passes at once; multibyte UTF-8 stop */
        struct lg_stop *m = mk(NULL, 0);
        lg_stop_feed(m, "anything", 8, &r, &err);
        CHECK_EQ_INT(r.n_text, 8);
        lg_stop_destroy(m);
        const char *stops[] = {"<end_of_turn>", "\xc3\xa9t\xc3\xa9"};
        m = mk(stops, 2);
        const size_t three[] = {3};
        const char *t = "L'\xc3\xa9t\xc3\xa9<end_of_turn>";
        run(m, t, strlen(t), three, 1, out, &n_out, &r);
        CHECK_EQ_INT(n_out, 2);
        CHECK_EQ_INT(r.which, 1);
        lg_stop_destroy(m);
    }
    {
        /* bad arguments */
        struct lg_stop *m = NULL;
        const char *empty[] = {""};
        CHECK_EQ_INT(lg_stop_create(empty, 1, &m, &err), LG_ERR_INVALID_ARG);
        const char *many[LG_STOP_MAX_STRINGS + 1];
        for (int i = 0; i <= LG_STOP_MAX_STRINGS; i++)
            many[i] = "x";
        CHECK_EQ_INT(lg_stop_create(many, LG_STOP_MAX_STRINGS + 1, &m, &err), LG_ERR_RANGE);
        static char big[LG_STOP_MAX_LEN + 2];
        memset(big, 'q', LG_STOP_MAX_LEN + 1);
        const char *bigs[] = {big};
        CHECK_EQ_INT(lg_stop_create(bigs, 1, &m, &err), LG_ERR_RANGE);
        CHECK(m == NULL);
    }
    {
        /* a chunk much larger than the internal buffer */
        const char *stops[] = {"STOP"};
        struct lg_stop *m = mk(stops, 1);
        size_t n = 100000;
        char *t = malloc(n + 8);
        memset(t, 'a', n);
        memcpy(t + n, "STOPxx", 6);
        lg_stop_feed(m, t, n + 6, &r, &err);
        CHECK_EQ_INT(r.n_text, n);
        CHECK(r.stopped);
        CHECK_EQ_INT(r.cut, n);
        free(t);
        lg_stop_destroy(m);
    }
    {
        /* random streams over a tiny alphabet vs the reference */
        int bad = 0;
        for (int trial = 0; trial < 20000; trial++) {
            char sbuf[4][8];
            const char *stops[4];
            size_t ns = 1 + RND() % 4;
            for (size_t k = 0; k < ns; k++) {
                size_t len = 1 + RND() % 5;
                for (size_t i = 0; i < len; i++)
                    sbuf[k][i] = (char)('a' + RND() % 3);
                sbuf[k][len] = 0;
                stops[k] = sbuf[k];
            }
            char t[64];
            size_t n = RND() % 60;
            for (size_t i = 0; i < n; i++)
                t[i] = (char)('a' + RND() % 3);
            size_t chunks[3];
            chunks[0] = 1 + RND() % 7;
            chunks[1] = 1 + RND() % 3;
            chunks[2] = 1 + RND() % 11;
            struct lg_stop *m = NULL;
            if (lg_stop_create(stops, ns, &m, &err) != LG_OK) {
                bad++;
                continue;
            }
            run(m, t, n, chunks, 3, out, &n_out, &r);
            int which = -1;
            long cut = ref_cut(t, n, stops, ns, &which);
            size_t want = cut < 0 ? n : (size_t)cut;
            if (n_out != want || memcmp(out, t, want) != 0 || r.stopped != (cut >= 0) ||
                (cut >= 0 && (r.cut != (uint64_t)cut || r.which != which)))
                bad++;
            lg_stop_destroy(m);
        }
        CHECK_EQ_INT(bad, 0);
    }
    return lg_test_done("test_sample_stop");
}
