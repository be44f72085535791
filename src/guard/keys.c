/* keys.c: API keys in SQLite (HOME/guard.db, mode 0600).
 *
 * A secret is "lg-" + base64url(32 bytes from getrandom). Only sha256(salt || secret) is
 * stored, with one random 32-byte salt per store (table meta). Lookup hashes the presented
 * secret and compares it with every active key's hash in constant time: no early exit and no
 * SQL query keyed by the secret, so neither the comparison nor an index walk leaks how much
 * of a guess was right (vLLM CVE-2025-59425). Invariant: at most one active key per name. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/sha256.h"
#include "guard/guard.h"

struct lg_keys {
    sqlite3 *db;
    uint8_t salt[32];
    pthread_mutex_t mu; /* one transaction at a time on the shared connection */
};

bool lg_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= (uint8_t)(x[i] ^ y[i]);
    return acc == 0;
}

enum lg_status lg_guard_home(char *out, size_t cap, bool create, struct lg_err *err)
{
    const char *env = getenv("LOCALGEMMA_HOME");
    int w;
    if (env && *env) {
        w = snprintf(out, cap, "%s", env);
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "no home directory: set LOCALGEMMA_HOME");
        w = snprintf(out, cap, "%s/.localgemma", home);
    }
    if (w < 0 || (size_t)w >= cap)
        return lg_err_set(err, LG_ERR_RANGE, "home path too long");
    if (create && mkdir(out, 0700) != 0 && errno != EEXIST)
        return lg_err_set(err, LG_ERR_IO, "%s: %s", out, strerror(errno));
    return LG_OK;
}

enum lg_status lg_guard_db_open(const char *home, sqlite3 **out, struct lg_err *err)
{
    char dir[4096], path[4200];
    *out = NULL;
    enum lg_status st;
    if (home && *home) {
        if (snprintf(dir, sizeof dir, "%s", home) >= (int)sizeof dir)
            return lg_err_set(err, LG_ERR_RANGE, "home path too long");
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return lg_err_set(err, LG_ERR_IO, "%s: %s", dir, strerror(errno));
    } else if ((st = lg_guard_home(dir, sizeof dir, true, err)) != LG_OK) {
        return st;
    }
    snprintf(path, sizeof path, "%s/guard.db", dir);
    /* create the file ourselves so it is 0600 from the first byte; SQLite gives the -wal and
     * -shm files the same mode. Only when it does not exist yet: closing any descriptor of
     * the file drops every POSIX lock this process holds on it, including those of a SQLite
     * connection already open here (the server opens guard.db twice: keys and audit). Other
     * processes would then think nobody uses the database and delete its WAL under us. */
    struct stat sb;
    if (stat(path, &sb) != 0) {
        int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            return lg_err_set(err, LG_ERR_IO, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
    } else if ((sb.st_mode & 077) != 0) {
        chmod(path, 0600);
    }
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
        st = lg_err_set(err, LG_ERR_IO, "%s: %s", path, db ? sqlite3_errmsg(db) : "open failed");
        sqlite3_close(db);
        return st;
    }
    sqlite3_busy_timeout(db, 10000);
    const char *schema =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA synchronous=FULL;"
        "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v BLOB NOT NULL);"
        "CREATE TABLE IF NOT EXISTS keys(id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " hash BLOB NOT NULL, scope INTEGER NOT NULL, rpm INTEGER NOT NULL,"
        " tpm INTEGER NOT NULL, tpd INTEGER NOT NULL, max_concurrent INTEGER NOT NULL,"
        " models TEXT NOT NULL, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL,"
        " key TEXT NOT NULL, route TEXT NOT NULL, model TEXT NOT NULL, status INTEGER NOT NULL,"
        " n_prompt INTEGER NOT NULL, n_completion INTEGER NOT NULL,"
        " latency_ms INTEGER NOT NULL, finish TEXT NOT NULL, decisions TEXT NOT NULL,"
        " client TEXT NOT NULL, prompt_text TEXT, answer_text TEXT, hash BLOB NOT NULL);"
        "CREATE TABLE IF NOT EXISTS audit_head(id INTEGER PRIMARY KEY CHECK (id = 1),"
        " seq INTEGER NOT NULL, hash BLOB NOT NULL);";
    char *msg = NULL;
    if (sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK) {
        st = lg_err_set(err, LG_ERR_IO, "%s: %s", path, msg ? msg : "schema failed");
        sqlite3_free(msg);
        sqlite3_close(db);
        return st;
    }
    *out = db;
    return LG_OK;
}

static enum lg_status db_fail(sqlite3 *db, struct lg_err *err, const char *what)
{
    return lg_err_set(err, LG_ERR_IO, "guard.db: %s: %s", what, sqlite3_errmsg(db));
}

static enum lg_status load_salt(struct lg_keys *k, struct lg_err *err)
{
    sqlite3_stmt *q = NULL;
    enum lg_status st = LG_OK;
    if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(k->db, err, "begin");
    if (sqlite3_prepare_v2(k->db, "SELECT v FROM meta WHERE k='salt'", -1, &q, NULL) != SQLITE_OK) {
        st = db_fail(k->db, err, "salt");
        goto fail;
    }
    if (sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32) {
        memcpy(k->salt, sqlite3_column_blob(q, 0), 32);
    } else {
        sqlite3_finalize(q);
        q = NULL;
        if (getrandom(k->salt, sizeof k->salt, 0) != (ssize_t)sizeof k->salt) {
            st = lg_err_set(err, LG_ERR_IO, "getrandom: %s", strerror(errno));
            goto fail;
        }
        if (sqlite3_prepare_v2(k->db, "INSERT OR REPLACE INTO meta(k,v) VALUES('salt',?)", -1, &q,
                               NULL) != SQLITE_OK) {
            st = db_fail(k->db, err, "salt");
            goto fail;
        }
        sqlite3_bind_blob(q, 1, k->salt, 32, SQLITE_STATIC);
        if (sqlite3_step(q) != SQLITE_DONE) {
            st = db_fail(k->db, err, "salt");
            goto fail;
        }
    }
    sqlite3_finalize(q);
    if (sqlite3_exec(k->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(k->db, err, "commit");
    return LG_OK;
fail:
    sqlite3_finalize(q);
    sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

enum lg_status lg_keys_open(const char *home, struct lg_keys **out, struct lg_err *err)
{
    *out = NULL;
    struct lg_keys *k = calloc(1, sizeof *k);
    if (!k)
        return lg_err_set(err, LG_ERR_NOMEM, "keys: out of memory");
    pthread_mutex_init(&k->mu, NULL);
    enum lg_status st = lg_guard_db_open(home, &k->db, err);
    if (st == LG_OK)
        st = load_salt(k, err);
    if (st != LG_OK) {
        lg_keys_close(k);
        return st;
    }
    *out = k;
    return LG_OK;
}

void lg_keys_close(struct lg_keys *k)
{
    if (!k)
        return;
    sqlite3_close(k->db);
    memset(k->salt, 0, sizeof k->salt);
    pthread_mutex_destroy(&k->mu);
    free(k);
}

static void hash_secret(const struct lg_keys *k, const char *secret, size_t n,
                        uint8_t out[LG_SHA256_BYTES])
{
    struct lg_sha256 c;
    lg_sha256_init(&c);
    lg_sha256_update(&c, k->salt, sizeof k->salt);
    lg_sha256_update(&c, secret, n);
    lg_sha256_final(&c, out);
}

static bool name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > LG_KEY_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool models_ok(const char *s)
{
    if (strlen(s) > LG_KEY_MODELS_MAX)
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\\')
            return false;
    return true;
}

bool lg_keys_model_allowed(const char *models, const char *model)
{
    if (!models || !*models)
        return true;
    if (!model)
        return false;
    size_t ml = strlen(model);
    const char *colon = strchr(model, ':');
    size_t base = colon ? (size_t)(colon - model) : ml;
    const char *p = models;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if ((n == ml && !memcmp(p, model, n)) || (n == base && !memcmp(p, model, n)) ||
            (n == 1 && *p == '*'))
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

static void b64url(const uint8_t *in, size_t n, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            out[o++] = t[(acc >> bits) & 63];
        }
    }
    if (bits > 0)
        out[o++] = t[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

static enum lg_status keys_add_locked(struct lg_keys *k, const struct lg_key_info *info,
                                      char secret[LG_KEY_SECRET_LEN + 1], struct lg_err *err)
{
    secret[0] = '\0';
    if (!name_ok(info->name))
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "key name must be 1-%d characters of A-Z a-z 0-9 . _ -", LG_KEY_NAME_MAX);
    if (!models_ok(info->models))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "bad models list");
    if (info->scope != LG_SCOPE_GENERATE && info->scope != LG_SCOPE_ADMIN)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "scope must be generate or admin");
    const struct lg_key_limits *l = &info->limits;
    if (l->rpm < 0 || l->tpm < 0 || l->tpd < 0 || l->max_concurrent < 0)
        return lg_err_set(err, LG_ERR_RANGE, "limits must be >= 0");

    uint8_t raw[32], h[LG_SHA256_BYTES];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return lg_err_set(err, LG_ERR_IO, "getrandom: %s", strerror(errno));
    char s[LG_KEY_SECRET_LEN + 1];
    memcpy(s, "lg-", 3);
    b64url(raw, sizeof raw, s + 3);
    memset(raw, 0, sizeof raw);
    hash_secret(k, s, strlen(s), h);

    enum lg_status st = LG_OK;
    sqlite3_stmt *q = NULL;
    if (sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(k->db, err, "begin");
    if (sqlite3_prepare_v2(k->db, "SELECT 1 FROM keys WHERE name=? AND revoked=0", -1, &q, NULL) !=
        SQLITE_OK) {
        st = db_fail(k->db, err, "query");
        goto fail;
    }
    sqlite3_bind_text(q, 1, info->name, -1, SQLITE_STATIC);
    if (sqlite3_step(q) == SQLITE_ROW) {
        st =
            lg_err_set(err, LG_ERR_EXISTS, "key '%s' already exists (revoke it first)", info->name);
        goto fail;
    }
    sqlite3_finalize(q);
    if (sqlite3_prepare_v2(k->db,
                           "INSERT INTO keys(name,hash,scope,rpm,tpm,tpd,max_concurrent,models,"
                           "created) VALUES(?,?,?,?,?,?,?,?,?)",
                           -1, &q, NULL) != SQLITE_OK) {
        st = db_fail(k->db, err, "insert");
        goto fail;
    }
    sqlite3_bind_text(q, 1, info->name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(q, 2, h, sizeof h, SQLITE_STATIC);
    sqlite3_bind_int(q, 3, (int)info->scope);
    sqlite3_bind_int64(q, 4, l->rpm);
    sqlite3_bind_int64(q, 5, l->tpm);
    sqlite3_bind_int64(q, 6, l->tpd);
    sqlite3_bind_int64(q, 7, l->max_concurrent);
    sqlite3_bind_text(q, 8, info->models, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 9, (int64_t)time(NULL));
    if (sqlite3_step(q) != SQLITE_DONE) {
        st = db_fail(k->db, err, "insert");
        goto fail;
    }
    sqlite3_finalize(q);
    if (sqlite3_exec(k->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        st = db_fail(k->db, err, "commit");
        sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
        memset(s, 0, sizeof s);
        return st;
    }
    memcpy(secret, s, sizeof s);
    memset(s, 0, sizeof s);
    return LG_OK;
fail:
    memset(s, 0, sizeof s);
    sqlite3_finalize(q);
    sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
    return st;
}

static enum lg_status keys_revoke_locked(struct lg_keys *k, const char *name, struct lg_err *err)
{
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(k->db, "UPDATE keys SET revoked=1 WHERE name=? AND revoked=0", -1, &q,
                           NULL) != SQLITE_OK)
        return db_fail(k->db, err, "revoke");
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(q);
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return db_fail(k->db, err, "revoke");
    if (sqlite3_changes(k->db) == 0)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "no active key named '%s'", name);
    return LG_OK;
}

static void row_info(sqlite3_stmt *q, int c0, struct lg_key_info *ki)
{
    memset(ki, 0, sizeof *ki);
    const unsigned char *nm = sqlite3_column_text(q, c0);
    snprintf(ki->name, sizeof ki->name, "%s", nm ? (const char *)nm : "");
    ki->scope =
        sqlite3_column_int(q, c0 + 1) == LG_SCOPE_ADMIN ? LG_SCOPE_ADMIN : LG_SCOPE_GENERATE;
    ki->limits.rpm = sqlite3_column_int64(q, c0 + 2);
    ki->limits.tpm = sqlite3_column_int64(q, c0 + 3);
    ki->limits.tpd = sqlite3_column_int64(q, c0 + 4);
    ki->limits.max_concurrent = sqlite3_column_int64(q, c0 + 5);
    const unsigned char *m = sqlite3_column_text(q, c0 + 6);
    snprintf(ki->models, sizeof ki->models, "%s", m ? (const char *)m : "");
    ki->created = sqlite3_column_int64(q, c0 + 7);
    ki->revoked = sqlite3_column_int(q, c0 + 8) != 0;
}

#define KEY_COLS "name,scope,rpm,tpm,tpd,max_concurrent,models,created,revoked"

static enum lg_status keys_list_locked(struct lg_keys *k, struct lg_key_info **out, size_t *n,
                                       struct lg_err *err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(k->db, "SELECT " KEY_COLS " FROM keys ORDER BY id", -1, &q, NULL) !=
        SQLITE_OK)
        return db_fail(k->db, err, "list");
    size_t cap = 0;
    struct lg_key_info *v = NULL;
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            struct lg_key_info *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                sqlite3_finalize(q);
                return lg_err_set(err, LG_ERR_NOMEM, "keys: out of memory");
            }
            v = nv;
        }
        row_info(q, 0, &v[(*n)++]);
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        free(v);
        *n = 0;
        return db_fail(k->db, err, "list");
    }
    *out = v;
    return LG_OK;
}

static int64_t keys_count_active_locked(struct lg_keys *k)
{
    sqlite3_stmt *q = NULL;
    int64_t n = -1;
    if (sqlite3_prepare_v2(k->db, "SELECT count(*) FROM keys WHERE revoked=0", -1, &q, NULL) ==
            SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

static enum lg_status keys_lookup_locked(struct lg_keys *k, const char *secret, size_t len,
                                         struct lg_key_info *info, struct lg_err *err)
{
    uint8_t h[LG_SHA256_BYTES];
    hash_secret(k, secret, len, h);
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(k->db, "SELECT hash," KEY_COLS " FROM keys WHERE revoked=0", -1, &q,
                           NULL) != SQLITE_OK)
        return db_fail(k->db, err, "lookup");
    bool found = false;
    int rc;
    /* every active row is compared, whatever matched before */
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const void *b = sqlite3_column_blob(q, 0);
        int nb = sqlite3_column_bytes(q, 0);
        bool eq = nb == LG_SHA256_BYTES && lg_ct_equal(b, h, LG_SHA256_BYTES);
        if (eq && !found) {
            row_info(q, 1, info);
            found = true;
        }
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE)
        return db_fail(k->db, err, "lookup");
    if (!found)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "invalid API key");
    return LG_OK;
}

/* ---- locked entry points ---------------------------------------------------------------- */

enum lg_status lg_keys_add(struct lg_keys *k, const struct lg_key_info *info,
                           char secret[LG_KEY_SECRET_LEN + 1], struct lg_err *err)
{
    pthread_mutex_lock(&k->mu);
    enum lg_status st = keys_add_locked(k, info, secret, err);
    pthread_mutex_unlock(&k->mu);
    return st;
}

enum lg_status lg_keys_revoke(struct lg_keys *k, const char *name, struct lg_err *err)
{
    pthread_mutex_lock(&k->mu);
    enum lg_status st = keys_revoke_locked(k, name, err);
    pthread_mutex_unlock(&k->mu);
    return st;
}

enum lg_status lg_keys_list(struct lg_keys *k, struct lg_key_info **out, size_t *n,
                            struct lg_err *err)
{
    pthread_mutex_lock(&k->mu);
    enum lg_status st = keys_list_locked(k, out, n, err);
    pthread_mutex_unlock(&k->mu);
    return st;
}

int64_t lg_keys_count_active(struct lg_keys *k)
{
    pthread_mutex_lock(&k->mu);
    int64_t n = keys_count_active_locked(k);
    pthread_mutex_unlock(&k->mu);
    return n;
}

enum lg_status lg_keys_lookup(struct lg_keys *k, const char *secret, size_t len,
                              struct lg_key_info *info, struct lg_err *err)
{
    pthread_mutex_lock(&k->mu);
    enum lg_status st = keys_lookup_locked(k, secret, len, info, err);
    pthread_mutex_unlock(&k->mu);
    return st;
}
