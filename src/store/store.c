/* store.c: model store names, paths, atomic writes, manifests, listing, removal, resolution.
 *
 * Names and digests are validated by exactly one function each (lg_store_parse_name,
 * lg_store_parse_digest) and every path is built from their output, so no user text ever
 * reaches open() unchecked. Mutations that must not interleave with another process (publish,
 * remove, copy) run under flock() on <root>/.lock; long copies and downloads run outside it,
 * in tmp/, and only the final renames are serialised.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"

struct lg_store {
    char root[LG_STORE_PATH_MAX];
    char blobs[LG_STORE_PATH_MAX];
    char manifests[LG_STORE_PATH_MAX];
    char tmp[LG_STORE_PATH_MAX];
    struct timespec t_open; /* partials older than this and unlocked are orphans */
};

enum {
    MANIFEST_MAX_BYTES = 64 * 1024,
    SIDECAR_MAX_AGE_S = 7 * 24 * 3600 /* an unresumed download is dropped after a week */
};

/* ---- names ------------------------------------------------------------------------------ */

static bool name_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static enum lg_status name_part(const char *p, size_t len, const char *what, char *out,
                                const char *whole, struct lg_err *err)
{
    if (len == 0)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model name '%.200s': empty %s", whole, what);
    if (len > LG_STORE_PART_MAX)
        return lg_err_set(err, LG_ERR_INVALID_ARG,
                          "model name '%.200s': %s longer than %d characters", whole, what,
                          LG_STORE_PART_MAX);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!name_char_ok(c))
            return lg_err_set(err, LG_ERR_INVALID_ARG,
                              "model name '%.200s': character 0x%02x not allowed in %s (use "
                              "a-z 0-9 . - _)",
                              whole, (unsigned)(unsigned char)p[i], what);
        if (i == 0 && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            return lg_err_set(err, LG_ERR_INVALID_ARG,
                              "model name '%.200s': %s must start with a letter or digit",
                              whole, what);
        if (c == '.' && i + 1 < len && p[i + 1] == '.')
            return lg_err_set(err, LG_ERR_INVALID_ARG, "model name '%.200s': '..' not allowed",
                              whole);
        out[i] = (char)c;
    }
    out[len] = '\0';
    return LG_OK;
}

enum lg_status lg_store_parse_name(const char *s, size_t len, struct lg_store_name *out,
                                   struct lg_err *err)
{
    if (!s || !out)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model name: NULL");
    if (len > LG_STORE_NAME_MAX)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model name too long (%zu bytes, max %d)",
                          len, LG_STORE_NAME_MAX);
    if (memchr(s, '\0', len))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model name contains a NUL byte");
    char whole[LG_STORE_NAME_MAX + 1];
    memcpy(whole, s, len);
    whole[len] = '\0';
    const char *colon = memchr(s, ':', len);
    size_t fam_len = colon ? (size_t)(colon - s) : len;
    if (colon && memchr(colon + 1, ':', len - fam_len - 1))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "model name '%s': more than one ':'", whole);
    enum lg_status st = name_part(s, fam_len, "name", out->family, whole, err);
    if (st != LG_OK)
        return st;
    if (colon)
        return name_part(colon + 1, len - fam_len - 1, "tag", out->tag, whole, err);
    strcpy(out->tag, "latest");
    return LG_OK;
}

void lg_store_format_name(const struct lg_store_name *n, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s:%s", n->family, n->tag);
}

bool lg_store_sanitize_part(const char *s, char out[LG_STORE_PART_MAX + 1])
{
    size_t n = 0;
    for (; s && *s && n < LG_STORE_PART_MAX; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char)(c - 'A' + 'a');
        if (!name_char_ok(c))
            c = '-';
        if (n == 0 && !((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            continue; /* drop leading punctuation */
        if (c == '.' && n > 0 && out[n - 1] == '.')
            continue;
        if (c == '-' && n > 0 && out[n - 1] == '-')
            continue;
        out[n++] = (char)c;
    }
    while (n > 0 && (out[n - 1] == '-' || out[n - 1] == '.' || out[n - 1] == '_'))
        n--;
    out[n] = '\0';
    return n > 0;
}

enum lg_status lg_store_parse_digest(const char *s, char hex[LG_SHA256_HEX_LEN + 1],
                                     struct lg_err *err)
{
    if (!s || strlen(s) != LG_STORE_DIGEST_LEN ||
        (strncmp(s, "sha256:", 7) != 0 && strncmp(s, "sha256-", 7) != 0))
        return lg_err_set(err, LG_ERR_FORMAT, "digest must be sha256:<64 hex digits>");
    for (int i = 0; i < LG_SHA256_HEX_LEN; i++) {
        char c = s[7 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return lg_err_set(err, LG_ERR_FORMAT,
                              "digest must be sha256:<64 lower-case hex digits>");
        hex[i] = c;
    }
    hex[LG_SHA256_HEX_LEN] = '\0';
    return LG_OK;
}

static bool hex64_ok(const char *hex)
{
    char tmp[LG_STORE_DIGEST_LEN + 1];
    if (!hex || strlen(hex) != LG_SHA256_HEX_LEN)
        return false;
    char h[LG_SHA256_HEX_LEN + 1];
    snprintf(tmp, sizeof tmp, "sha256:%s", hex);
    return lg_store_parse_digest(tmp, h, NULL) == LG_OK;
}

/* ---- paths and files -------------------------------------------------------------------- */

static enum lg_status path_join(char *out, size_t cap, struct lg_err *err, const char *fmt,
                                const char *a, const char *b, const char *c)
{
    int n = snprintf(out, cap, fmt, a, b, c);
    if (n < 0 || (size_t)n >= cap)
        return lg_err_set(err, LG_ERR_RANGE, "path too long under %.200s", a);
    return LG_OK;
}

enum lg_status lg_store_blob_path(const struct lg_store *s, const char *hex, char *out,
                                  size_t cap, struct lg_err *err)
{
    if (!hex64_ok(hex))
        return lg_err_set(err, LG_ERR_FORMAT, "bad blob digest");
    return path_join(out, cap, err, "%s/sha256-%s%s", s->blobs, hex, "");
}

enum lg_status lg_store_manifest_path(const struct lg_store *s, const struct lg_store_name *n,
                                      char *out, size_t cap, struct lg_err *err)
{
    /* The family directory must be a real directory: a symlink planted in manifests/ would
     * otherwise carry reads, writes and unlinks outside the store (hardening.md G18). A
     * missing one is fine (manifest_write creates it; mkdir never follows a symlink). */
    enum lg_status st = path_join(out, cap, err, "%s/%s%s", s->manifests, n->family, "");
    struct stat sb;
    if (st == LG_OK && lstat(out, &sb) == 0 && !S_ISDIR(sb.st_mode))
        return lg_err_set(err, LG_ERR_FORMAT, "model store: manifests/%s is %s, not a "
                          "directory; not followed", n->family,
                          S_ISLNK(sb.st_mode) ? "a symbolic link" : "a file");
    if (st != LG_OK)
        return st;
    return path_join(out, cap, err, "%s/%s/%s", s->manifests, n->family, n->tag);
}

/* mkdir -p that touches only missing components: existing parents are never mkdir'ed (so a
 * trace of the store shows no write attempt outside the root). */
static enum lg_status mkdir_p(const char *path, struct lg_err *err)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return lg_err_set(err, LG_ERR_IO, "%s is not a directory", path);
        return LG_OK;
    }
    char parent[LG_STORE_PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof parent)
        return lg_err_set(err, LG_ERR_RANGE, "store path too long");
    memcpy(parent, path, n + 1);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        enum lg_status r = mkdir_p(parent, err);
        if (r != LG_OK)
            return r;
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return lg_err_set(err, LG_ERR_IO, "mkdir %s: %s", path, strerror(errno));
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return lg_err_set(err, LG_ERR_IO, "%s is not a directory", path);
    return LG_OK;
}

enum lg_status lg_store_fsync_dir(const char *dir, struct lg_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return lg_err_set(err, LG_ERR_IO, "open dir %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0 && e != EINVAL) /* some filesystems refuse fsync on dirs */
        return lg_err_set(err, LG_ERR_IO, "fsync dir %s: %s", dir, strerror(e));
    return LG_OK;
}

static void random_hex16(char out[17])
{
    uint8_t b[8];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        uint64_t x = (uint64_t)t.tv_nsec * 0x9e3779b97f4a7c15u ^ (uint64_t)getpid() << 32 ^
                     (uint64_t)(uintptr_t)out;
        memcpy(b, &x, sizeof b);
    }
    static const char d[] = "0123456789abcdef";
    for (int i = 0; i < 8; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[16] = '\0';
}

static void dir_of(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "%s", path);
    char *slash = strrchr(out, '/');
    if (slash == out)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(out, cap, ".");
}

static enum lg_status write_all(int fd, const void *data, size_t n, const char *path,
                                struct lg_err *err)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return lg_err_set(err, LG_ERR_IO, "write %s: %s%s", path, strerror(errno),
                              errno == ENOSPC ? " (disk full)" : "");
        p += w;
        n -= (size_t)w;
    }
    return LG_OK;
}

enum lg_status lg_store_write_atomic(const char *path, const void *data, size_t n,
                                     struct lg_err *err)
{
    char dir[LG_STORE_PATH_MAX], tmp[LG_STORE_PATH_MAX], rnd[17];
    dir_of(path, dir, sizeof dir);
    random_hex16(rnd);
    enum lg_status st = path_join(tmp, sizeof tmp, err, "%s.%s%s", path, rnd, ".partial");
    if (st != LG_OK)
        return st;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return lg_err_set(err, LG_ERR_IO, "create %s: %s", tmp, strerror(errno));
    st = write_all(fd, data, n, tmp, err);
    if (st == LG_OK && fsync(fd) != 0)
        st = lg_err_set(err, LG_ERR_IO, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == LG_OK)
        st = lg_err_set(err, LG_ERR_IO, "close %s: %s", tmp, strerror(errno));
    if (st == LG_OK && rename(tmp, path) != 0)
        st = lg_err_set(err, LG_ERR_IO, "rename %s: %s", path, strerror(errno));
    if (st != LG_OK) {
        unlink(tmp);
        return st;
    }
    return lg_store_fsync_dir(dir, err);
}

enum lg_status lg_store_tmp_create(struct lg_store *s, int *fd_out, char *out, size_t cap,
                                   struct lg_err *err)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        char rnd[17];
        random_hex16(rnd);
        enum lg_status st = path_join(out, cap, err, "%s/%s%s", s->tmp, rnd, ".partial");
        if (st != LG_OK)
            return st;
        int fd = open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0)
            return lg_err_set(err, LG_ERR_IO, "create %s: %s", out, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            unlink(out);
            return lg_err_set(err, LG_ERR_IO, "lock %s: %s", out, strerror(errno));
        }
        *fd_out = fd;
        return LG_OK;
    }
    return lg_err_set(err, LG_ERR_IO, "could not create a unique file in %s", s->tmp);
}

/* The store-wide lock for short mutations. Returns an fd (close to unlock) or -1. */
static int store_lock(const struct lg_store *s, struct lg_err *err)
{
    char p[LG_STORE_PATH_MAX];
    if (path_join(p, sizeof p, err, "%s/%s%s", s->root, ".lock", "") != LG_OK)
        return -1;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        lg_err_set(err, LG_ERR_IO, "open %s: %s", p, strerror(errno));
        return -1;
    }
    while (flock(fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            lg_err_set(err, LG_ERR_IO, "lock %s: %s", p, strerror(errno));
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* ---- open and scan ---------------------------------------------------------------------- */

enum lg_status lg_store_open(const char *root, struct lg_store **out, struct lg_err *err)
{
    *out = NULL;
    struct lg_store *s = calloc(1, sizeof *s);
    if (!s)
        return lg_err_set(err, LG_ERR_NOMEM, "store: out of memory");
    enum lg_status st;
    const char *env = getenv("LOCALGEMMA_HOME");
    if (root && *root) {
        st = path_join(s->root, sizeof s->root, err, "%s%s%s", root, "", "");
    } else if (env && *env) {
        st = path_join(s->root, sizeof s->root, err, "%s%s%s", env, "", "");
    } else {
        const char *home = getenv("HOME");
        if (!home || !*home) {
            struct passwd *pw = getpwuid(getuid());
            home = pw ? pw->pw_dir : NULL;
        }
        if (!home) {
            free(s);
            return lg_err_set(err, LG_ERR_NOT_FOUND,
                              "no home directory: set LOCALGEMMA_HOME");
        }
        st = path_join(s->root, sizeof s->root, err, "%s/%s%s", home, ".localgemma", "");
    }
    size_t rl = strlen(s->root);
    while (st == LG_OK && rl > 1 && s->root[rl - 1] == '/')
        s->root[--rl] = '\0';
    if (st == LG_OK)
        st = path_join(s->blobs, sizeof s->blobs, err, "%s/%s%s", s->root, "blobs", "");
    if (st == LG_OK)
        st = path_join(s->manifests, sizeof s->manifests, err, "%s/%s%s", s->root,
                       "manifests", "");
    if (st == LG_OK)
        st = path_join(s->tmp, sizeof s->tmp, err, "%s/%s%s", s->root, "tmp", "");
    if (st == LG_OK)
        st = mkdir_p(s->blobs, err);
    if (st == LG_OK)
        st = mkdir_p(s->manifests, err);
    if (st == LG_OK)
        st = mkdir_p(s->tmp, err);
    if (st != LG_OK) {
        free(s);
        return st;
    }
    /* the coarse clock is the one file timestamps come from: a file made after this line
     * never looks older than the handle */
    clock_gettime(CLOCK_REALTIME_COARSE, &s->t_open);
    st = lg_store_scan_tmp(s, NULL, err);
    if (st != LG_OK) {
        free(s);
        return st;
    }
    *out = s;
    return LG_OK;
}

void lg_store_close(struct lg_store *s)
{
    free(s);
}

const char *lg_store_root(const struct lg_store *s)
{
    return s->root;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool ts_before(struct timespec a, struct timespec b)
{
    return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

enum lg_status lg_store_scan_tmp(struct lg_store *s, int *n_removed, struct lg_err *err)
{
    int removed = 0;
    DIR *d = opendir(s->tmp);
    if (!d)
        return lg_err_set(err, LG_ERR_IO, "open %s: %s", s->tmp, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char p[LG_STORE_PATH_MAX], side[LG_STORE_PATH_MAX];
        if (e->d_name[0] == '.')
            continue;
        bool is_side = ends_with(e->d_name, ".partial.json");
        if (!is_side && !ends_with(e->d_name, ".partial"))
            continue;
        if (path_join(p, sizeof p, NULL, "%s/%s%s", s->tmp, e->d_name, "") != LG_OK)
            continue;
        struct stat sb;
        if (lstat(p, &sb) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (is_side) {
            /* a sidecar whose partial is gone is useless */
            char part[LG_STORE_PATH_MAX];
            snprintf(part, sizeof part, "%.*s", (int)(strlen(p) - 5), p);
            if (access(part, F_OK) != 0 && errno == ENOENT && unlink(p) == 0)
                removed++;
            continue;
        }
        struct stat ss;
        if (path_join(side, sizeof side, NULL, "%s%s%s", p, ".json", "") == LG_OK &&
            lstat(side, &ss) == 0) {
            /* resumable download: keep, unless nobody resumed it for a week */
            if (ss.st_mtim.tv_sec + SIDECAR_MAX_AGE_S >= s->t_open.tv_sec)
                continue;
            int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(p) == 0) {
                unlink(side);
                removed += 2;
            }
            if (fd >= 0)
                close(fd);
            continue;
        }
        /* newest of mtime/ctime: a fresh hard link has an old mtime but a new ctime */
        struct timespec t = ts_before(sb.st_mtim, sb.st_ctim) ? sb.st_ctim : sb.st_mtim;
        if (!ts_before(t, s->t_open))
            continue;
        int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(p) == 0)
            removed++; /* nobody is writing it */
        close(fd);
    }
    closedir(d);
    if (removed)
        lg_store_fsync_dir(s->tmp, NULL);
    if (n_removed)
        *n_removed = removed;
    return LG_OK;
}

/* ---- manifests -------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

static char *manifest_to_json(const struct lg_store_manifest *m)
{
    char name[LG_STORE_NAME_MAX + 1], digest[LG_STORE_DIGEST_LEN + 1], when[32];
    lg_store_format_name(&m->name, name, sizeof name);
    snprintf(digest, sizeof digest, "sha256:%s", m->hex);
    time_t t = (time_t)m->created;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *g = json_object();
    json_t *o = json_object();
    if (!g || !o) {
        json_decref(g);
        json_decref(o);
        return NULL;
    }
    if (m->gguf.architecture[0])
        json_object_set_new(g, "architecture", json_string(m->gguf.architecture));
    if (m->gguf.basename[0])
        json_object_set_new(g, "basename", json_string(m->gguf.basename));
    if (m->gguf.size_label[0])
        json_object_set_new(g, "size_label", json_string(m->gguf.size_label));
    if (m->gguf.file_type)
        json_object_set_new(g, "file_type", json_integer(m->gguf.file_type));
    if (m->gguf.context_length)
        json_object_set_new(g, "context_length", json_integer((json_int_t)m->gguf.context_length));
    if (m->gguf.n_tensors)
        json_object_set_new(g, "n_tensors", json_integer((json_int_t)m->gguf.n_tensors));
    json_object_set_new(o, "schema", json_integer(1));
    json_object_set_new(o, "name", json_string(name));
    json_object_set_new(o, "digest", json_string(digest));
    json_object_set_new(o, "size", json_integer((json_int_t)m->size));
    json_object_set_new(o, "format", json_string(m->format[0] ? m->format : "gguf"));
    json_object_set_new(o, "created", json_integer((json_int_t)m->created));
    json_object_set_new(o, "created_at", json_string(when));
    /* json_string refuses invalid UTF-8: fall back to a marker rather than drop the field */
    json_t *src = json_string(m->source);
    json_object_set_new(o, "source", src ? src : json_string("(not UTF-8)"));
    json_object_set_new(o, "gguf", g);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

enum lg_status lg_store_manifest_write(struct lg_store *s, const struct lg_store_manifest *m,
                                       struct lg_err *err)
{
    char dir[LG_STORE_PATH_MAX], path[LG_STORE_PATH_MAX];
    if (!hex64_ok(m->hex))
        return lg_err_set(err, LG_ERR_INVALID_ARG, "manifest: bad digest");
    enum lg_status st = path_join(dir, sizeof dir, err, "%s/%s%s", s->manifests,
                                  m->name.family, "");
    if (st == LG_OK)
        st = lg_store_manifest_path(s, &m->name, path, sizeof path, err);
    if (st != LG_OK)
        return st;
    bool fresh_dir = access(dir, F_OK) != 0;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return lg_err_set(err, LG_ERR_IO, "mkdir %s: %s", dir, strerror(errno));
    if (fresh_dir && (st = lg_store_fsync_dir(s->manifests, err)) != LG_OK)
        return st;
    char *text = manifest_to_json(m);
    if (!text)
        return lg_err_set(err, LG_ERR_NOMEM, "manifest: out of memory");
    size_t n = strlen(text);
    text[n] = '\0';
    st = lg_store_write_atomic(path, text, n, err);
    free(text);
    return st;
}

static enum lg_status read_small_file(const char *path, char **out, size_t *n_out,
                                      size_t max, struct lg_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return lg_err_set(err, LG_ERR_NOT_FOUND, "%s: not found", path);
        return lg_err_set(err, LG_ERR_IO, "open %s: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > max) {
        close(fd);
        return lg_err_set(err, LG_ERR_FORMAT, "%s: not a regular file of at most %zu bytes",
                          path, max);
    }
    size_t n = (size_t)sb.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return lg_err_set(err, LG_ERR_NOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) {
        free(buf);
        return lg_err_set(err, LG_ERR_IO, "%s: short read", path);
    }
    buf[n] = '\0';
    *out = buf;
    *n_out = n;
    return LG_OK;
}

static const char *json_str_or(json_t *o, const char *key, const char *dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

static uint64_t json_u64_or0(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

enum lg_status lg_store_manifest_read(const struct lg_store *s, const struct lg_store_name *n,
                                      struct lg_store_manifest *m, struct lg_err *err)
{
    char path[LG_STORE_PATH_MAX], name[LG_STORE_NAME_MAX + 1];
    lg_store_format_name(n, name, sizeof name);
    enum lg_status st = lg_store_manifest_path(s, n, path, sizeof path, err);
    if (st != LG_OK)
        return st;
    char *text = NULL;
    size_t len = 0;
    st = read_small_file(path, &text, &len, MANIFEST_MAX_BYTES, err);
    if (st == LG_ERR_NOT_FOUND)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found (see 'localgemma list')",
                          name);
    if (st != LG_OK)
        return st;
    json_error_t je;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!json_is_object(o)) {
        json_decref(o);
        return lg_err_set(err, LG_ERR_FORMAT, "manifest of %s: bad JSON", name);
    }
    memset(m, 0, sizeof *m);
    m->name = *n;
    const char *digest = json_str_or(o, "digest", NULL);
    const char *stored_name = json_str_or(o, "name", "");
    json_t *size = json_object_get(o, "size");
    if (!digest || lg_store_parse_digest(digest, m->hex, NULL) != LG_OK) {
        json_decref(o);
        return lg_err_set(err, LG_ERR_FORMAT, "manifest of %s: missing or bad digest", name);
    }
    if (!json_is_integer(size) || json_integer_value(size) < 0) {
        json_decref(o);
        return lg_err_set(err, LG_ERR_FORMAT, "manifest of %s: missing or bad size", name);
    }
    if (strcmp(stored_name, name) != 0) {
        json_decref(o);
        return lg_err_set(err, LG_ERR_FORMAT, "manifest of %s names '%.100s'", name,
                          stored_name);
    }
    m->size = (uint64_t)json_integer_value(size);
    copy_str(m->format, sizeof m->format, json_str_or(o, "format", "gguf"));
    json_t *created = json_object_get(o, "created");
    m->created = json_is_integer(created) ? (int64_t)json_integer_value(created) : 0;
    copy_str(m->source, sizeof m->source, json_str_or(o, "source", ""));
    json_t *g = json_object_get(o, "gguf");
    if (json_is_object(g)) {
        copy_str(m->gguf.architecture, sizeof m->gguf.architecture,
                 json_str_or(g, "architecture", ""));
        copy_str(m->gguf.basename, sizeof m->gguf.basename, json_str_or(g, "basename", ""));
        copy_str(m->gguf.size_label, sizeof m->gguf.size_label,
                 json_str_or(g, "size_label", ""));
        m->gguf.file_type = (uint32_t)json_u64_or0(g, "file_type");
        m->gguf.context_length = json_u64_or0(g, "context_length");
        m->gguf.n_tensors = json_u64_or0(g, "n_tensors");
    }
    json_decref(o);
    return LG_OK;
}

static int manifest_cmp(const void *a, const void *b)
{
    const struct lg_store_manifest *x = a, *y = b;
    if (x->created != y->created)
        return x->created > y->created ? -1 : 1;
    int c = strcmp(x->name.family, y->name.family);
    return c ? c : strcmp(x->name.tag, y->name.tag);
}

enum lg_status lg_store_list(const struct lg_store *s, struct lg_store_manifest **out,
                             size_t *n_out, size_t *n_bad, struct lg_err *err)
{
    *out = NULL;
    *n_out = 0;
    size_t bad = 0, n = 0, cap = 0;
    struct lg_store_manifest *v = NULL;
    DIR *d = opendir(s->manifests);
    if (!d)
        return lg_err_set(err, LG_ERR_IO, "open %s: %s", s->manifests, strerror(errno));
    struct dirent *fe;
    enum lg_status st = LG_OK;
    while (st == LG_OK && (fe = readdir(d)) != NULL) {
        if (fe->d_name[0] == '.')
            continue;
        struct lg_store_name probe;
        if (lg_store_parse_name(fe->d_name, strlen(fe->d_name), &probe, NULL) != LG_OK ||
            strcmp(probe.family, fe->d_name) != 0) {
            bad++;
            continue;
        }
        char fam_dir[LG_STORE_PATH_MAX];
        if (path_join(fam_dir, sizeof fam_dir, NULL, "%s/%s%s", s->manifests, fe->d_name, "") !=
            LG_OK)
            continue;
        struct stat sb;
        if (lstat(fam_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            bad++;
            continue;
        }
        DIR *td = opendir(fam_dir);
        if (!td)
            continue;
        struct dirent *te;
        while ((te = readdir(td)) != NULL) {
            if (te->d_name[0] == '.' || ends_with(te->d_name, ".partial"))
                continue;
            char full[LG_STORE_NAME_MAX + 2];
            struct lg_store_name nm;
            int k = snprintf(full, sizeof full, "%s:%s", fe->d_name, te->d_name);
            if (k < 0 || (size_t)k >= sizeof full ||
                lg_store_parse_name(full, strlen(full), &nm, NULL) != LG_OK ||
                strcmp(nm.tag, te->d_name) != 0) {
                bad++;
                continue;
            }
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                struct lg_store_manifest *nv = realloc(v, ncap * sizeof *v);
                if (!nv) {
                    st = lg_err_set(err, LG_ERR_NOMEM, "list: out of memory");
                    break;
                }
                v = nv;
                cap = ncap;
            }
            if (lg_store_manifest_read(s, &nm, &v[n], NULL) == LG_OK)
                n++;
            else
                bad++;
        }
        closedir(td);
    }
    closedir(d);
    if (st != LG_OK) {
        free(v);
        return st;
    }
    if (n > 1)
        qsort(v, n, sizeof *v, manifest_cmp);
    *out = v;
    *n_out = n;
    if (n_bad)
        *n_bad = bad;
    return LG_OK;
}

/* True when some manifest other than `except` (may be NULL) names blob hex. On a listing
 * error the answer is "yes": never delete a blob we are unsure about. */
static bool blob_referenced(const struct lg_store *s, const char *hex,
                            const struct lg_store_name *except)
{
    struct lg_store_manifest *v = NULL;
    size_t n = 0;
    if (lg_store_list(s, &v, &n, NULL, NULL) != LG_OK)
        return true;
    bool used = false;
    for (size_t i = 0; i < n && !used; i++) {
        if (except && !strcmp(v[i].name.family, except->family) &&
            !strcmp(v[i].name.tag, except->tag))
            continue;
        used = strcmp(v[i].hex, hex) == 0;
    }
    free(v);
    return used;
}

static bool drop_blob_if_unused(struct lg_store *s, const char *hex)
{
    char p[LG_STORE_PATH_MAX];
    if (blob_referenced(s, hex, NULL) ||
        lg_store_blob_path(s, hex, p, sizeof p, NULL) != LG_OK || unlink(p) != 0)
        return false;
    lg_store_fsync_dir(s->blobs, NULL);
    return true;
}

/* Writes m and drops the blob the name pointed to before, if now unused. Lock held. */
static enum lg_status commit_locked(struct lg_store *s, const struct lg_store_manifest *m,
                                    struct lg_err *err)
{
    struct lg_store_manifest old;
    bool had_old = lg_store_manifest_read(s, &m->name, &old, NULL) == LG_OK;
    enum lg_status st = lg_store_manifest_write(s, m, err);
    if (st == LG_OK && had_old && strcmp(old.hex, m->hex) != 0)
        drop_blob_if_unused(s, old.hex);
    if (st != LG_OK) {
        /* The rename may have happened before the failing fsync of the directory: undo it,
         * so that a failed command leaves the name as it was (best effort). */
        char path[LG_STORE_PATH_MAX];
        if (had_old)
            lg_store_manifest_write(s, &old, NULL);
        else if (lg_store_manifest_path(s, &m->name, path, sizeof path, NULL) == LG_OK)
            unlink(path);
    }
    return st;
}

static enum lg_status publish_blob_locked(struct lg_store *s, int fd, const char *tmp_path,
                                          const char *hex, struct lg_err *err)
{
    char blob[LG_STORE_PATH_MAX];
    enum lg_status st = lg_store_blob_path(s, hex, blob, sizeof blob, err);
    if (st != LG_OK)
        return st;
    struct stat tb, bb;
    if (stat(tmp_path, &tb) != 0)
        return lg_err_set(err, LG_ERR_IO, "%s: %s", tmp_path, strerror(errno));
    if (lstat(blob, &bb) == 0 && S_ISREG(bb.st_mode) && bb.st_size == tb.st_size) {
        /* same content already stored (names are hashes): keep the existing blob */
        unlink(tmp_path);
        lg_store_fsync_dir(s->tmp, NULL);
        return LG_OK;
    }
    if (fd >= 0 && fsync(fd) != 0)
        return lg_err_set(err, LG_ERR_IO, "fsync %s: %s", tmp_path, strerror(errno));
    if (rename(tmp_path, blob) != 0)
        return lg_err_set(err, LG_ERR_IO, "rename into %s: %s", blob, strerror(errno));
    return lg_store_fsync_dir(s->blobs, err);
}

enum lg_status lg_store_publish_blob(struct lg_store *s, int fd, const char *tmp_path,
                                     const char *hex, struct lg_err *err)
{
    int lk = store_lock(s, err);
    if (lk < 0)
        return err ? err->code : LG_ERR_IO;
    enum lg_status st = publish_blob_locked(s, fd, tmp_path, hex, err);
    close(lk);
    return st;
}

enum lg_status lg_store_publish(struct lg_store *s, int fd, const char *tmp_path,
                                const struct lg_store_manifest *m, struct lg_err *err)
{
    int lk = store_lock(s, err);
    if (lk < 0)
        return err ? err->code : LG_ERR_IO;
    enum lg_status st = publish_blob_locked(s, fd, tmp_path, m->hex, err);
    if (st == LG_OK)
        st = commit_locked(s, m, err);
    if (st != LG_OK)
        drop_blob_if_unused(s, m->hex); /* renamed in, but no manifest names it */
    close(lk);
    return st;
}

enum lg_status lg_store_gc(struct lg_store *s, int *n_removed, struct lg_err *err)
{
    int removed = 0;
    int lk = store_lock(s, err);
    if (lk < 0)
        return err ? err->code : LG_ERR_IO;
    struct lg_store_manifest *v = NULL;
    size_t n = 0;
    enum lg_status st = lg_store_list(s, &v, &n, NULL, err);
    DIR *d = st == LG_OK ? opendir(s->blobs) : NULL;
    if (st == LG_OK && !d)
        st = lg_err_set(err, LG_ERR_IO, "open %s: %s", s->blobs, strerror(errno));
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char hex[LG_SHA256_HEX_LEN + 1], p[LG_STORE_PATH_MAX];
        if (lg_store_parse_digest(e->d_name, hex, NULL) != LG_OK)
            continue; /* not ours: leave it */
        bool used = false;
        for (size_t i = 0; i < n && !used; i++)
            used = strcmp(v[i].hex, hex) == 0;
        if (!used && lg_store_blob_path(s, hex, p, sizeof p, NULL) == LG_OK && unlink(p) == 0)
            removed++;
    }
    if (d)
        closedir(d);
    if (removed)
        lg_store_fsync_dir(s->blobs, NULL);
    free(v);
    close(lk);
    if (n_removed)
        *n_removed = removed;
    return st;
}

enum lg_status lg_store_remove(struct lg_store *s, const struct lg_store_name *n,
                               bool *blob_removed, struct lg_err *err)
{
    if (blob_removed)
        *blob_removed = false;
    int lk = store_lock(s, err);
    if (lk < 0)
        return err ? err->code : LG_ERR_IO;
    char path[LG_STORE_PATH_MAX], dir[LG_STORE_PATH_MAX];
    struct lg_store_manifest m;
    bool have = lg_store_manifest_read(s, n, &m, NULL) == LG_OK;
    enum lg_status st = lg_store_manifest_path(s, n, path, sizeof path, err);
    if (st == LG_OK && unlink(path) != 0) {
        char name[LG_STORE_NAME_MAX + 1];
        lg_store_format_name(n, name, sizeof name);
        st = errno == ENOENT ? lg_err_set(err, LG_ERR_NOT_FOUND, "model '%s' not found", name)
                             : lg_err_set(err, LG_ERR_IO, "remove %s: %s", path,
                                          strerror(errno));
    }
    if (st == LG_OK) {
        dir_of(path, dir, sizeof dir);
        lg_store_fsync_dir(dir, NULL);
        if (rmdir(dir) == 0)
            lg_store_fsync_dir(s->manifests, NULL);
        /* a corrupt manifest had no readable digest: its blob is left for a later rm */
        if (have && drop_blob_if_unused(s, m.hex) && blob_removed)
            *blob_removed = true;
    }
    close(lk);
    return st;
}

enum lg_status lg_store_copy(struct lg_store *s, const struct lg_store_name *src,
                             const struct lg_store_name *dst, struct lg_err *err)
{
    int lk = store_lock(s, err);
    if (lk < 0)
        return err ? err->code : LG_ERR_IO;
    struct lg_store_manifest m;
    enum lg_status st = lg_store_manifest_read(s, src, &m, err);
    if (st == LG_OK) {
        char blob[LG_STORE_PATH_MAX];
        struct stat sb;
        st = lg_store_blob_path(s, m.hex, blob, sizeof blob, err);
        if (st == LG_OK && (lstat(blob, &sb) != 0 || !S_ISREG(sb.st_mode)))
            st = lg_err_set(err, LG_ERR_NOT_FOUND, "blob of the source model is missing");
    }
    if (st == LG_OK) {
        m.name = *dst;
        st = commit_locked(s, &m, err);
    }
    close(lk);
    return st;
}

/* ---- resolution ------------------------------------------------------------------------- */

enum lg_status lg_store_resolve_name(const struct lg_store *s, const char *name,
                                     bool verify, char *out, size_t cap, struct lg_err *err)
{
    if (!name || !*name)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "empty model name");
    struct stat sb;
    struct lg_store_name n;
    struct lg_err nerr;
    if (lg_store_parse_name(name, strlen(name), &n, &nerr) != LG_OK)
        return lg_err_set(err, LG_ERR_NOT_FOUND, "no file or model named '%.200s' (%s)",
                          name, nerr.msg);
    if (!s)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "no store");
    struct lg_store_manifest m;
    enum lg_status st = lg_store_manifest_read(s, &n, &m, err);
    if (st == LG_ERR_NOT_FOUND)
        return lg_err_set(err, LG_ERR_NOT_FOUND,
                          "no file or model named '%.200s' in %s (see 'localgemma list')",
                          name, s->root);
    if (st != LG_OK)
        return st;
    char blob[LG_STORE_PATH_MAX];
    if ((st = lg_store_blob_path(s, m.hex, blob, sizeof blob, err)) != LG_OK)
        return st;
    if (lstat(blob, &sb) != 0 || !S_ISREG(sb.st_mode))
        return lg_err_set(err, LG_ERR_NOT_FOUND, "model '%.200s': blob sha256-%.12s is missing",
                          name, m.hex);
    if ((uint64_t)sb.st_size != m.size)
        return lg_err_set(err, LG_ERR_FORMAT,
                          "model '%.200s': blob has %llu bytes, manifest says %llu",
                          name, (unsigned long long)sb.st_size,
                          (unsigned long long)m.size);
    if (verify) {
        char hex[LG_SHA256_HEX_LEN + 1];
        if ((st = lg_sha256_file(blob, hex, NULL, err)) != LG_OK)
            return st;
        if (strcmp(hex, m.hex) != 0)
            return lg_err_set(err, LG_ERR_FORMAT,
                              "model '%.200s': blob is corrupt (sha256 %.12s, expected %.12s)",
                              name, hex, m.hex);
    }
    return path_join(out, cap, err, "%s%s%s", blob, "", "");
}

enum lg_status lg_store_resolve(const struct lg_store *s, const char *name_or_path,
                                bool verify, char *out, size_t cap, struct lg_err *err)
{
    if (!name_or_path || !*name_or_path)
        return lg_err_set(err, LG_ERR_INVALID_ARG, "empty model name");
    struct stat sb;
    if (stat(name_or_path, &sb) == 0 && S_ISREG(sb.st_mode))
        return path_join(out, cap, err, "%s%s%s", name_or_path, "", "");
    return lg_store_resolve_name(s, name_or_path, verify, out, cap, err);
}

enum lg_status lg_store_resolve_default(const char *name_or_path, bool verify, char *out,
                                        size_t cap, struct lg_err *err)
{
    struct stat sb;
    if (name_or_path && stat(name_or_path, &sb) == 0 && S_ISREG(sb.st_mode))
        return lg_store_resolve(NULL, name_or_path, verify, out, cap, err);
    struct lg_store *s = NULL;
    enum lg_status st = lg_store_open(NULL, &s, err);
    if (st != LG_OK)
        return st;
    st = lg_store_resolve(s, name_or_path, verify, out, cap, err);
    lg_store_close(s);
    return st;
}
