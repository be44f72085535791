/* metrics.c: Prometheus text exposition (format 0.0.4) of request counts by route and status,
 * token counts, in-flight generations, engine queue depth, time-to-first-token and decode
 * speed histograms, and the C heap. Counters are process-wide atomics (one server per
 * process), updated from the MHD thread and the engine thread. Nothing here ever holds
 * request text.
 *
 * Heap gauges, because RSS is a poor leak signal under glibc: each thread allocates from
 * its own arena, and memory freed inside an arena (or above a raised dynamic mmap threshold)
 * stays resident until the arena's top can be trimmed. After a burst of requests RSS can
 * sit megabytes higher with nothing leaked. In-use bytes move only with live allocations;
 * free bytes are what the allocator holds for reuse (resident or not). The server's
 * watchdog trims the heap once generations stop (server.c); the trim gauges tell when. */
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/server.h"

enum { N_STATUS = 16 };
static const unsigned status_codes[N_STATUS] = {200, 204, 400, 401, 403, 404, 405, 413,
                                                421, 429, 431, 499, 500, 501, 503, 0};
static atomic_llong req_count[SRV_R_COUNT][N_STATUS];
static atomic_llong tokens_prompt, tokens_completion;
static atomic_int inflight;
static atomic_bool trim_pending;
static atomic_llong trims;
static atomic_int conns_open;
static atomic_llong conns_rejected, header_timeouts;

/* Histograms: cumulative buckets computed at render time from per-bucket counts. */
static const double ttft_le[] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const double tps_le[] = {1, 2, 5, 10, 20, 50, 100, 200, 500};
enum { N_BUCKETS = 9 };
struct hist {
    atomic_llong bucket[N_BUCKETS + 1]; /* last = +Inf only */
    atomic_llong count;
    atomic_llong sum_micro; /* sum in millionths */
};
static struct hist ttft_hist, tps_hist;

static const char *const route_names[SRV_R_COUNT] = {
    "/", "/health", "/api/version", "/metrics", "/v1/chat/completions", "/v1/completions",
    "/v1/models", "/api/generate", "/api/chat", "/api/tags", "/api/show", "/api/ps",
    "/api/delete", "/api/pull", "other"};

const char *srv_route_name(enum srv_route_id r)
{
    return r < SRV_R_COUNT ? route_names[r] : "other";
}

void srv_metrics_request(enum srv_route_id r, unsigned http_status)
{
    if (r >= SRV_R_COUNT)
        r = SRV_R_OTHER;
    int i = N_STATUS - 1;
    for (int k = 0; k < N_STATUS - 1; k++)
        if (status_codes[k] == http_status)
            i = k;
    atomic_fetch_add(&req_count[r][i], 1);
}

void srv_metrics_tokens(int64_t prompt, int64_t completion)
{
    if (prompt > 0)
        atomic_fetch_add(&tokens_prompt, prompt);
    if (completion > 0)
        atomic_fetch_add(&tokens_completion, completion);
}

static void hist_add(struct hist *h, const double *le, double v)
{
    if (!(v >= 0)) /* NaN or negative: a clock bug, not a sample */
        return;
    int i = 0;
    while (i < N_BUCKETS && v > le[i])
        i++;
    atomic_fetch_add(&h->bucket[i], 1);
    atomic_fetch_add(&h->count, 1);
    atomic_fetch_add(&h->sum_micro, (long long)(v * 1e6));
}

void srv_metrics_ttft(double seconds)
{
    hist_add(&ttft_hist, ttft_le, seconds);
}

void srv_metrics_tps(double tokens_per_second)
{
    hist_add(&tps_hist, tps_le, tokens_per_second);
}

void srv_metrics_inflight(int delta)
{
    atomic_fetch_add(&inflight, delta);
}

void srv_metrics_heap_trim(bool pending, bool trimmed)
{
    atomic_store(&trim_pending, pending);
    if (trimmed)
        atomic_fetch_add(&trims, 1);
}

void srv_metrics_conn_open(int delta)
{
    atomic_fetch_add(&conns_open, delta);
}

void srv_metrics_rejected_conn(void)
{
    atomic_fetch_add(&conns_rejected, 1);
}

void srv_metrics_header_timeout(void)
{
    atomic_fetch_add(&header_timeouts, 1);
}

void srv_metrics_reset(void)
{
    for (int r = 0; r < SRV_R_COUNT; r++)
        for (int i = 0; i < N_STATUS; i++)
            atomic_store(&req_count[r][i], 0);
    atomic_store(&tokens_prompt, 0);
    atomic_store(&tokens_completion, 0);
    atomic_store(&inflight, 0);
    atomic_store(&trim_pending, false);
    atomic_store(&trims, 0);
    atomic_store(&conns_open, 0);
    atomic_store(&conns_rejected, 0);
    atomic_store(&header_timeouts, 0);
    struct hist *hs[2] = {&ttft_hist, &tps_hist};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i <= N_BUCKETS; i++)
            atomic_store(&hs[k]->bucket[i], 0);
        atomic_store(&hs[k]->count, 0);
        atomic_store(&hs[k]->sum_micro, 0);
    }
}

static void putf(struct srv_buf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct srv_buf *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        srv_buf_put(o, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void render_hist(struct srv_buf *o, const char *name, const char *help,
                        struct hist *h, const double *le)
{
    putf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    long long cum = 0;
    for (int i = 0; i < N_BUCKETS; i++) {
        cum += atomic_load(&h->bucket[i]);
        putf(o, "%s_bucket{le=\"%g\"} %lld\n", name, le[i], cum);
    }
    cum += atomic_load(&h->bucket[N_BUCKETS]);
    putf(o, "%s_bucket{le=\"+Inf\"} %lld\n", name, cum);
    putf(o, "%s_sum %.6f\n", name, (double)atomic_load(&h->sum_micro) / 1e6);
    putf(o, "%s_count %lld\n", name, (long long)atomic_load(&h->count));
}

void srv_metrics_render(struct srv_buf *o, const struct lg_engine_stats *es)
{
    putf(o, "# HELP localgemma_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE localgemma_requests_total counter\n");
    for (int r = 0; r < SRV_R_COUNT; r++)
        for (int i = 0; i < N_STATUS; i++) {
            long long n = atomic_load(&req_count[r][i]);
            if (!n)
                continue;
            if (status_codes[i])
                putf(o, "localgemma_requests_total{route=\"%s\",status=\"%u\"} %lld\n",
                     route_names[r], status_codes[i], n);
            else
                putf(o, "localgemma_requests_total{route=\"%s\",status=\"other\"} %lld\n",
                     route_names[r], n);
        }
    putf(o, "# HELP localgemma_prompt_tokens_total Prompt tokens of finished requests.\n"
            "# TYPE localgemma_prompt_tokens_total counter\n"
            "localgemma_prompt_tokens_total %lld\n", (long long)atomic_load(&tokens_prompt));
    putf(o, "# HELP localgemma_completion_tokens_total Generated tokens of finished requests.\n"
            "# TYPE localgemma_completion_tokens_total counter\n"
            "localgemma_completion_tokens_total %lld\n",
         (long long)atomic_load(&tokens_completion));
    putf(o, "# HELP localgemma_requests_inflight Generation requests not yet finished.\n"
            "# TYPE localgemma_requests_inflight gauge\n"
            "localgemma_requests_inflight %d\n", atomic_load(&inflight));
    putf(o, "# HELP localgemma_queue_depth Requests waiting for the engine.\n"
            "# TYPE localgemma_queue_depth gauge\n"
            "localgemma_queue_depth %d\n", es ? (int)es->queue_depth : 0);
    if (es) {
        putf(o, "# HELP localgemma_sequences_active Sequences being prefilled or decoded.\n"
                "# TYPE localgemma_sequences_active gauge\n"
                "localgemma_sequences_active %d\n", (int)es->n_active);
        putf(o, "# HELP localgemma_kv_used_bytes KV cache bytes in use.\n"
                "# TYPE localgemma_kv_used_bytes gauge\n"
                "localgemma_kv_used_bytes %llu\n", (unsigned long long)es->kv_used_bytes);
        putf(o, "# HELP localgemma_kv_total_bytes KV cache bytes reserved.\n"
                "# TYPE localgemma_kv_total_bytes gauge\n"
                "localgemma_kv_total_bytes %llu\n", (unsigned long long)es->kv_total_bytes);
    }
    putf(o, "# HELP localgemma_connections_open TCP connections open now.\n"
            "# TYPE localgemma_connections_open gauge\n"
            "localgemma_connections_open %d\n", atomic_load(&conns_open));
    putf(o, "# HELP localgemma_connections_rejected_total Connections over --max-connections, "
            "answered 503 and closed.\n"
            "# TYPE localgemma_connections_rejected_total counter\n"
            "localgemma_connections_rejected_total %lld\n",
         (long long)atomic_load(&conns_rejected));
    putf(o, "# HELP localgemma_header_timeouts_total Connections closed because a request "
            "(line, headers and body) did not arrive in time (408).\n"
            "# TYPE localgemma_header_timeouts_total counter\n"
            "localgemma_header_timeouts_total %lld\n", (long long)atomic_load(&header_timeouts));
    struct mallinfo2 mi = mallinfo2(); /* all arenas, each locked in turn: a few µs */
    putf(o, "# HELP localgemma_heap_inuse_bytes C heap bytes allocated and not freed (malloc "
            "arenas and mmapped chunks).\n"
            "# TYPE localgemma_heap_inuse_bytes gauge\n"
            "localgemma_heap_inuse_bytes %zu\n", mi.uordblks + mi.hblkhd);
    putf(o, "# HELP localgemma_heap_free_bytes Freed C heap bytes the allocator keeps in its "
            "arenas for reuse (resident until trimmed).\n"
            "# TYPE localgemma_heap_free_bytes gauge\n"
            "localgemma_heap_free_bytes %zu\n", mi.fordblks);
    putf(o, "# HELP localgemma_heap_trims_total Idle trims: freed heap memory handed back to "
            "the system after generations.\n"
            "# TYPE localgemma_heap_trims_total counter\n"
            "localgemma_heap_trims_total %lld\n", (long long)atomic_load(&trims));
    putf(o, "# HELP localgemma_heap_trim_pending 1 while generations have run since the last "
            "idle trim.\n"
            "# TYPE localgemma_heap_trim_pending gauge\n"
            "localgemma_heap_trim_pending %d\n", atomic_load(&trim_pending) ? 1 : 0);
    render_hist(o, "localgemma_ttft_seconds", "Time from submit to the first generated token.",
                &ttft_hist, ttft_le);
    render_hist(o, "localgemma_decode_tokens_per_second", "Decode speed per request.",
                &tps_hist, tps_le);
}

int srv_route_metrics(struct srv_conn *c)
{
    void *self;
    const struct lg_engine_ops *eng = srv_conn_engine(c, &self);
    struct lg_engine_stats es = {0};
    if (eng)
        eng->stats(self, &es);
    struct srv_buf b = {0};
    srv_metrics_render(&b, eng ? &es : NULL);
    if (b.oom) {
        srv_buf_free(&b);
        return srv_reply_error(c, 503, "out of memory");
    }
    int r = srv_reply_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.p ? b.p : "",
                           b.n);
    srv_buf_free(&b);
    return r;
}
