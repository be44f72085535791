/* audit.c: the append-only, hash-chained audit log (table `audit` in HOME/guard.db).
 *
 * Record seq n carries hash_n = sha256(hash_{n-1} || canon(record n)), hash_0 = 32 zero bytes,
 * where canon() writes every field as "name=<len>:<bytes>\n" in a fixed order, seq included:
 * unambiguous, so no edit of any field, no deletion, insertion or reordering keeps the chain.
 * Table audit_head (one row) holds the last seq and hash, updated in the same transaction as
 * the insert, so deleting the newest rows is detected too (unless head is rewritten as well —
 * the chain protects against edits, not against someone who can recompute all hashes).
 *
 * Crash safety is SQLite's: each append is one transaction in WAL mode; a kill -9 leaves either
 * the record and its head update or neither. synchronous=FULL (fsync at commit) for security
 * records, NORMAL otherwise (durable against a process crash, may lose the newest commits on
 * power loss). Prompt/answer text is stored only when the log was opened with content on. */
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/err.h"
#include "base/sha256.h"
#include "guard/guard.h"

struct lg_audit {
    sqlite3 *db;
    bool content;
    int sync; /* current PRAGMA synchronous: 1 NORMAL, 2 FULL */
    pthread_mutex_t mu;
};

enum lg_status lg_audit_open(const char *home, bool content, struct lg_audit **out,
                             struct lg_err *err)
{
    *out = NULL;
    struct lg_audit *a = calloc(1, sizeof *a);
    if (!a)
        return lg_err_set(err, LG_ERR_NOMEM, "audit: out of memory");
    enum lg_status st = lg_guard_db_open(home, &a->db, err);
    if (st != LG_OK) {
        free(a);
        return st;
    }
    a->content = content;
    a->sync = 2;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return LG_OK;
}

void lg_audit_close(struct lg_audit *a)
{
    if (!a)
        return;
    sqlite3_close(a->db);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* a growable byte buffer for the canonical form */
struct cbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void cb_put(struct cbuf *b, const void *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void cb_field(struct cbuf *b, const char *name, const char *v, bool present)
{
    char hdr[96];
    size_t n = v ? strlen(v) : 0;
    int w = present && v ? snprintf(hdr, sizeof hdr, "%s=%zu:", name, n)
                         : snprintf(hdr, sizeof hdr, "%s=-", name);
    cb_put(b, hdr, (size_t)w);
    if (present && v)
        cb_put(b, v, n);
    cb_put(b, "\n", 1);
}

static void cb_int(struct cbuf *b, const char *name, int64_t v)
{
    char s[32];
    snprintf(s, sizeof s, "%" PRId64, v);
    cb_field(b, name, s, true);
}

/* the record as stored (NULL text = column NULL) */
struct row {
    int64_t seq, t_ms, status, n_prompt, n_completion, latency_ms;
    const char *key, *route, *model, *finish, *decisions, *client, *prompt, *answer;
};

static bool row_hash(const struct row *r, const uint8_t prev[32], uint8_t out[32])
{
    struct cbuf b = {0};
    cb_int(&b, "seq", r->seq);
    cb_int(&b, "t_ms", r->t_ms);
    cb_field(&b, "key", r->key, true);
    cb_field(&b, "route", r->route, true);
    cb_field(&b, "model", r->model, true);
    cb_int(&b, "status", r->status);
    cb_int(&b, "n_prompt", r->n_prompt);
    cb_int(&b, "n_completion", r->n_completion);
    cb_int(&b, "latency_ms", r->latency_ms);
    cb_field(&b, "finish", r->finish, true);
    cb_field(&b, "decisions", r->decisions, true);
    cb_field(&b, "client", r->client, true);
    cb_field(&b, "prompt", r->prompt, r->prompt != NULL);
    cb_field(&b, "answer", r->answer, r->answer != NULL);
    if (b.oom) {
        free(b.p);
        return false;
    }
    struct lg_sha256 c;
    lg_sha256_init(&c);
    lg_sha256_update(&c, prev, 32);
    lg_sha256_update(&c, b.p, b.n);
    lg_sha256_final(&c, out);
    free(b.p);
    return true;
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

enum lg_status lg_audit_append(struct lg_audit *a, const struct lg_audit_rec *rec, int64_t *seq,
                               struct lg_err *err)
{
    struct row r = {
        .t_ms = rec->t_ms ? rec->t_ms : now_ms(),
        .status = rec->status,
        .n_prompt = rec->n_prompt,
        .n_completion = rec->n_completion,
        .latency_ms = rec->latency_ms,
        .key = nz(rec->key),
        .route = nz(rec->route),
        .model = nz(rec->model),
        .finish = nz(rec->finish),
        .decisions = nz(rec->decisions),
        .client = nz(rec->client),
        /* the privacy rule: text reaches the database only with content on */
        .prompt = a->content ? rec->prompt_text : NULL,
        .answer = a->content ? rec->answer_text : NULL,
    };
    enum lg_status st = LG_OK;
    sqlite3_stmt *q = NULL;
    uint8_t prev[32] = {0}, h[32];
    pthread_mutex_lock(&a->mu);
    int want = rec->security ? 2 : 1;
    if (want != a->sync) {
        sqlite3_exec(a->db, want == 2 ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL);
        a->sync = want;
    }
    if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        st = lg_err_set(err, LG_ERR_IO, "audit: begin: %s", sqlite3_errmsg(a->db));
        pthread_mutex_unlock(&a->mu);
        return st;
    }
    int64_t last = 0;
    if (sqlite3_prepare_v2(a->db, "SELECT seq,hash FROM audit_head WHERE id=1", -1, &q, NULL) !=
        SQLITE_OK)
        goto dbfail;
    if (sqlite3_step(q) == SQLITE_ROW) {
        last = sqlite3_column_int64(q, 0);
        if (sqlite3_column_bytes(q, 1) == 32)
            memcpy(prev, sqlite3_column_blob(q, 1), 32);
    }
    sqlite3_finalize(q);
    q = NULL;
    r.seq = last + 1;
    if (!row_hash(&r, prev, h)) {
        st = lg_err_set(err, LG_ERR_NOMEM, "audit: out of memory");
        goto fail;
    }
    if (sqlite3_prepare_v2(a->db,
                           "INSERT INTO audit(seq,t_ms,key,route,model,status,n_prompt,"
                           "n_completion,latency_ms,finish,decisions,client,prompt_text,"
                           "answer_text,hash) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        goto dbfail;
    sqlite3_bind_int64(q, 1, r.seq);
    sqlite3_bind_int64(q, 2, r.t_ms);
    sqlite3_bind_text(q, 3, r.key, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, r.route, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, r.model, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 6, r.status);
    sqlite3_bind_int64(q, 7, r.n_prompt);
    sqlite3_bind_int64(q, 8, r.n_completion);
    sqlite3_bind_int64(q, 9, r.latency_ms);
    sqlite3_bind_text(q, 10, r.finish, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 11, r.decisions, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 12, r.client, -1, SQLITE_STATIC);
    if (r.prompt)
        sqlite3_bind_text(q, 13, r.prompt, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 13);
    if (r.answer)
        sqlite3_bind_text(q, 14, r.answer, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(q, 14);
    sqlite3_bind_blob(q, 15, h, 32, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
        goto dbfail;
    sqlite3_finalize(q);
    q = NULL;
    if (sqlite3_prepare_v2(a->db, "INSERT OR REPLACE INTO audit_head(id,seq,hash) VALUES(1,?,?)",
                           -1, &q, NULL) != SQLITE_OK)
        goto dbfail;
    sqlite3_bind_int64(q, 1, r.seq);
    sqlite3_bind_blob(q, 2, h, 32, SQLITE_STATIC);
    if (sqlite3_step(q) != SQLITE_DONE)
        goto dbfail;
    sqlite3_finalize(q);
    q = NULL;
    if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto dbfail;
    pthread_mutex_unlock(&a->mu);
    if (seq)
        *seq = r.seq;
    return LG_OK;
dbfail:
    st = lg_err_set(err, LG_ERR_IO, "audit: %s", sqlite3_errmsg(a->db));
fail:
    sqlite3_finalize(q);
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&a->mu);
    return st;
}

#define AUDIT_COLS                                                                                 \
    "seq,t_ms,key,route,model,status,n_prompt,n_completion,latency_ms,finish,decisions,"           \
    "client,prompt_text,answer_text,hash"

static const char *col_text(sqlite3_stmt *q, int i)
{
    if (sqlite3_column_type(q, i) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? (const char *)t : "";
}

static void read_row(sqlite3_stmt *q, struct row *r)
{
    r->seq = sqlite3_column_int64(q, 0);
    r->t_ms = sqlite3_column_int64(q, 1);
    r->key = nz(col_text(q, 2));
    r->route = nz(col_text(q, 3));
    r->model = nz(col_text(q, 4));
    r->status = sqlite3_column_int64(q, 5);
    r->n_prompt = sqlite3_column_int64(q, 6);
    r->n_completion = sqlite3_column_int64(q, 7);
    r->latency_ms = sqlite3_column_int64(q, 8);
    r->finish = nz(col_text(q, 9));
    r->decisions = nz(col_text(q, 10));
    r->client = nz(col_text(q, 11));
    r->prompt = col_text(q, 12);
    r->answer = col_text(q, 13);
}

enum lg_status lg_audit_verify(struct lg_audit *a, int64_t *n_rows, int64_t *first_bad, char *why,
                               size_t why_cap, struct lg_err *err)
{
    *n_rows = 0;
    *first_bad = 0;
    if (why_cap)
        why[0] = '\0';
    sqlite3_stmt *q = NULL;
    pthread_mutex_lock(&a->mu);
    /* one read transaction: a consistent snapshot even while the server appends */
    sqlite3_exec(a->db, "BEGIN", NULL, NULL, NULL);
    if (sqlite3_prepare_v2(a->db, "SELECT " AUDIT_COLS " FROM audit ORDER BY seq", -1, &q, NULL) !=
        SQLITE_OK) {
        enum lg_status st = lg_err_set(err, LG_ERR_IO, "audit: %s", sqlite3_errmsg(a->db));
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
        pthread_mutex_unlock(&a->mu);
        return st;
    }
    uint8_t prev[32] = {0}, h[32];
    int64_t expect = 1;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct row r;
        read_row(q, &r);
        (*n_rows)++;
        if (*first_bad)
            continue;
        if (r.seq != expect) {
            *first_bad = expect;
            snprintf(why, why_cap, "record %" PRId64 " missing (next is %" PRId64 ")", expect,
                     r.seq);
            continue;
        }
        const void *stored = sqlite3_column_blob(q, 14);
        int nb = sqlite3_column_bytes(q, 14);
        if (!row_hash(&r, prev, h) || nb != 32 || memcmp(stored, h, 32) != 0) {
            *first_bad = r.seq;
            snprintf(why, why_cap, "record %" PRId64 " does not match its hash chain", r.seq);
            continue;
        }
        memcpy(prev, h, 32);
        expect++;
    }
    sqlite3_finalize(q);
    q = NULL;
    if (rc == SQLITE_DONE && !*first_bad &&
        sqlite3_prepare_v2(a->db, "SELECT seq,hash FROM audit_head WHERE id=1", -1, &q, NULL) ==
            SQLITE_OK) {
        int64_t head_seq = 0;
        const void *hh = NULL;
        int hn = 0;
        if (sqlite3_step(q) == SQLITE_ROW) {
            head_seq = sqlite3_column_int64(q, 0);
            hh = sqlite3_column_blob(q, 1);
            hn = sqlite3_column_bytes(q, 1);
        }
        if (head_seq != expect - 1) {
            *first_bad = expect;
            snprintf(why, why_cap, "log ends at record %" PRId64 " but the head says %" PRId64,
                     expect - 1, head_seq);
        } else if (head_seq > 0 && (hn != 32 || memcmp(hh, prev, 32) != 0)) {
            *first_bad = head_seq;
            snprintf(why, why_cap, "head hash does not match record %" PRId64, head_seq);
        }
    }
    sqlite3_finalize(q);
    sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&a->mu);
    if (rc != SQLITE_DONE)
        return lg_err_set(err, LG_ERR_IO, "audit: %s", sqlite3_errmsg(a->db));
    return LG_OK;
}

enum lg_status lg_audit_export(struct lg_audit *a, int64_t since_ms, FILE *f, struct lg_err *err)
{
    sqlite3_stmt *q = NULL;
    pthread_mutex_lock(&a->mu);
    if (sqlite3_prepare_v2(a->db, "SELECT " AUDIT_COLS " FROM audit WHERE t_ms>=? ORDER BY seq", -1,
                           &q, NULL) != SQLITE_OK) {
        pthread_mutex_unlock(&a->mu);
        return lg_err_set(err, LG_ERR_IO, "audit: %s", sqlite3_errmsg(a->db));
    }
    sqlite3_bind_int64(q, 1, since_ms);
    int rc;
    enum lg_status st = LG_OK;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        struct row r;
        read_row(q, &r);
        char ts[40], hex[LG_SHA256_HEX_LEN + 1];
        time_t secs = (time_t)(r.t_ms / 1000);
        struct tm tmv;
        gmtime_r(&secs, &tmv);
        size_t w = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tmv);
        snprintf(ts + w, sizeof ts - w, ".%03dZ", (int)(r.t_ms % 1000));
        if (sqlite3_column_bytes(q, 14) == 32)
            lg_sha256_hex(sqlite3_column_blob(q, 14), hex);
        else
            hex[0] = '\0';
        json_t *o = json_pack(
            "{sI ss sI ss ss ss sI sI sI sI ss ss ss ss}", "seq", (json_int_t)r.seq, "time", ts,
            "t_ms", (json_int_t)r.t_ms, "key", r.key, "route", r.route, "model", r.model, "status",
            (json_int_t)r.status, "prompt_tokens", (json_int_t)r.n_prompt, "completion_tokens",
            (json_int_t)r.n_completion, "latency_ms", (json_int_t)r.latency_ms, "finish_reason",
            r.finish, "decisions", r.decisions, "client", r.client, "hash", hex);
        if (o && r.prompt)
            json_object_set_new(o, "prompt", json_string(r.prompt));
        if (o && r.answer)
            json_object_set_new(o, "answer", json_string(r.answer));
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!s) { /* invalid UTF-8 stored by hand: jansson refuses it */
            fprintf(f, "{\"seq\":%" PRId64 ",\"error\":\"record not representable\"}\n", r.seq);
            continue;
        }
        fprintf(f, "%s\n", s);
        free(s);
    }
    if (rc != SQLITE_DONE)
        st = lg_err_set(err, LG_ERR_IO, "audit: %s", sqlite3_errmsg(a->db));
    sqlite3_finalize(q);
    pthread_mutex_unlock(&a->mu);
    return st;
}
