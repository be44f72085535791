/* test_store.c: the model store below the CLI — the name validator against a traversal
 * corpus, digests, paths, atomic writes, the startup scan of tmp/, publish/list/copy/remove
 * with shared blobs, resolution (file, name, missing blob, size mismatch, sha256 verify), a
 * symlinked family directory never followed (hardening.md G18), and the display helpers.
 * Runs in a fresh temp directory. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store/store.h"
#include "test.h"

static char root[256];

static void test_names(void)
{
    struct lg_store_name n;
    struct lg_err err = {0};
    static const struct {
        const char *in, *family, *tag;
    } good[] = {
        {"gemma3", "gemma3", "latest"},
        {"gemma3:270m", "gemma3", "270m"},
        {"Gemma3:Latest", "gemma3", "latest"},
        {"a.b-c_d:e.f_g-h", "a.b-c_d", "e.f_g-h"},
        {"9b:1", "9b", "1"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK_EQ_INT(lg_store_parse_name(good[i].in, strlen(good[i].in), &n, &err), LG_OK);
        CHECK_EQ_STR(n.family, good[i].family);
        CHECK_EQ_STR(n.tag, good[i].tag);
    }
    char buf[LG_STORE_NAME_MAX + 1];
    lg_store_parse_name("x:y", 3, &n, &err);
    lg_store_format_name(&n, buf, sizeof buf);
    CHECK_EQ_STR(buf, "x:y");

    /* the traversal corpus (hardening.md §8 G18) and other junk */
    static const char *bad[] = {
        "", ":", "a:", ":b", "..", ".", "../x", "../../etc/passwd", "x/../../y", "a/b",
        "/etc/passwd", "/abs:tag", "a:b:c", "%2e%2e", "%2e%2e%2fetc", "..%2f", "a..b",
        "a:..", "a:.hidden", ".hidden", "-a", "a:-b", "_a", "a b", "a\\b", "a\tb", "a\nb",
        "\xc3\xa4", "a:\xff", "a\x01", "C:\\windows", "a:b/c", "~/x", "$HOME", "a*", "a?",
        "family:tag%00", "sha256:" /* a ':' then empty tag */,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum lg_status st = lg_store_parse_name(bad[i], strlen(bad[i]), &n, &err);
        CHECK_MSG(st == LG_ERR_INVALID_ARG, "accepted bad name '%s'", bad[i]);
    }
    /* NUL inside the given length, and overlong parts/names */
    CHECK_EQ_INT(lg_store_parse_name("ab\0cd", 5, &n, &err), LG_ERR_INVALID_ARG);
    CHECK(strstr(err.msg, "NUL") != NULL);
    char longp[200];
    memset(longp, 'a', sizeof longp);
    CHECK_EQ_INT(lg_store_parse_name(longp, 64, &n, &err), LG_OK);
    CHECK_EQ_INT(lg_store_parse_name(longp, 65, &n, &err), LG_ERR_INVALID_ARG);
    longp[64] = ':';
    CHECK_EQ_INT(lg_store_parse_name(longp, 129, &n, &err), LG_OK);
    CHECK_EQ_INT(lg_store_parse_name(longp, 130, &n, &err), LG_ERR_INVALID_ARG);
    CHECK_EQ_INT(lg_store_parse_name(longp, 200, &n, &err), LG_ERR_INVALID_ARG);

    char part[LG_STORE_PART_MAX + 1];
    CHECK(lg_store_sanitize_part("Gemma 3 (270M)!", part));
    CHECK_EQ_STR(part, "gemma-3-270m");
    CHECK(lg_store_sanitize_part("../../etc", part));
    CHECK_EQ_STR(part, "etc");
    CHECK(!lg_store_sanitize_part("../..", part));
    CHECK(!lg_store_sanitize_part("", part));
    CHECK(lg_store_parse_name(part, 0, &n, &err) != LG_OK);
    CHECK(lg_store_sanitize_part("gemma-3-270m-Q4_K_M", part));
    CHECK_EQ_INT(lg_store_parse_name(part, strlen(part), &n, &err), LG_OK);
}

static void test_digests(void)
{
    char hex[65];
    struct lg_err err = {0};
    const char *ok = "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
    CHECK_EQ_INT(lg_store_parse_digest(ok, hex, &err), LG_OK);
    CHECK_EQ_STR(hex, ok + 7);
    CHECK_EQ_INT(lg_store_parse_digest(
                     "sha256-a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                     hex, &err),
                 LG_OK);
    static const char *bad[] = {
        "sha256:A5FD3B62230AA5EC60212297DC9D20EAA70578AC519E00D93A17E44C087A6818",
        "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a681",
        "sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a68188",
        "sha256:../../../../../../../../../../../../../../../../../etc/passwd/x",
        "md5:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "", "sha256:",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(lg_store_parse_digest(bad[i], hex, &err) == LG_ERR_FORMAT, "accepted %s",
                  bad[i]);
}

static int count_dir(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -A %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1)
            n = -1;
        pclose(p);
    }
    return n;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_atomic(void)
{
    char dir[300], path[400];
    struct lg_err err = {0};
    snprintf(dir, sizeof dir, "%s/atomic", root);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/f.json", dir);
    CHECK_EQ_INT(lg_store_write_atomic(path, "one", 3, &err), LG_OK);
    CHECK_EQ_INT(lg_store_write_atomic(path, "second", 6, &err), LG_OK);
    char buf[16] = {0};
    FILE *f = fopen(path, "rb");
    CHECK(f && fread(buf, 1, sizeof buf, f) == 6);
    if (f)
        fclose(f);
    CHECK_EQ_STR(buf, "second");
    CHECK_EQ_INT(count_dir(dir), 1); /* no temp file left behind */
    /* into a directory that does not exist: error, nothing created */
    snprintf(path, sizeof path, "%s/missing/f", dir);
    CHECK_EQ_INT(lg_store_write_atomic(path, "x", 1, &err), LG_ERR_IO);
    CHECK_EQ_INT(lg_store_fsync_dir(dir, &err), LG_OK);
}

/* Makes tmp/<name> with an old mtime (an hour ago). */
static void old_partial(const char *store_root, const char *name)
{
    char p[512];
    snprintf(p, sizeof p, "%s/tmp/%s", store_root, name);
    write_file(p, "partial data");
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[0]);
    ts[0].tv_sec -= 3600;
    ts[1] = ts[0];
    utimensat(AT_FDCWD, p, ts, 0);
}

static void test_scan(void)
{
    char sroot[300], p[512];
    struct lg_err err = {0};
    struct lg_store *s = NULL;
    snprintf(sroot, sizeof sroot, "%s/scan", root);
    CHECK_EQ_INT(lg_store_open(sroot, &s, &err), LG_OK);
    lg_store_close(s);
    old_partial(sroot, "aaaa.partial");          /* orphan: removed */
    old_partial(sroot, "bbbb.partial");          /* resumable: kept */
    old_partial(sroot, "bbbb.partial.json");
    old_partial(sroot, "cccc.partial.json");     /* sidecar without partial: removed */
    old_partial(sroot, "dddd.partial");          /* locked by a live writer: kept */
    old_partial(sroot, "notes.txt");             /* not ours: kept */
    old_partial(sroot, "eeee.partial");          /* resumable but abandoned for 8 days */
    old_partial(sroot, "eeee.partial.json");
    snprintf(p, sizeof p, "%s/tmp/eeee.partial.json", sroot);
    {
        struct timespec ts[2];
        clock_gettime(CLOCK_REALTIME, &ts[0]);
        ts[0].tv_sec -= 8 * 86400;
        ts[1] = ts[0];
        utimensat(AT_FDCWD, p, ts, 0);
    }
    snprintf(p, sizeof p, "%s/tmp/dddd.partial", sroot);
    int lock_fd = open(p, O_RDONLY);
    CHECK(lock_fd >= 0 && flock(lock_fd, LOCK_EX) == 0);
    usleep(30000); /* file times tick coarsely: same-tick files count as "not older" */
    CHECK_EQ_INT(lg_store_open(sroot, &s, &err), LG_OK);
    snprintf(p, sizeof p, "%s/tmp/aaaa.partial", sroot);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/tmp/bbbb.partial", sroot);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/tmp/cccc.partial.json", sroot);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/tmp/dddd.partial", sroot);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/tmp/notes.txt", sroot);
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/tmp/eeee.partial", sroot);
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/tmp/eeee.partial.json", sroot);
    CHECK(access(p, F_OK) != 0);
    /* a partial newer than the handle is someone's work in progress: kept */
    int fd = -1;
    char fresh[LG_STORE_PATH_MAX];
    CHECK_EQ_INT(lg_store_tmp_create(s, &fd, fresh, sizeof fresh, &err), LG_OK);
    close(fd); /* unlocked now, but younger than the handle */
    int n_removed = -1;
    CHECK_EQ_INT(lg_store_scan_tmp(s, &n_removed, &err), LG_OK);
    CHECK_EQ_INT(n_removed, 0);
    CHECK(access(fresh, F_OK) == 0);
    lg_store_close(s);
    close(lock_fd); /* the writer died: the next open cleans its partial */
    usleep(30000);
    CHECK_EQ_INT(lg_store_open(sroot, &s, &err), LG_OK);
    snprintf(p, sizeof p, "%s/tmp/dddd.partial", sroot);
    CHECK(access(p, F_OK) != 0);
    CHECK(access(fresh, F_OK) != 0);
    snprintf(p, sizeof p, "%s/tmp/notes.txt", sroot);
    CHECK(access(p, F_OK) == 0);
    lg_store_close(s);
}

/* Publishes text as a blob under name through a tmp file, as import/pull do. */
static enum lg_status put(struct lg_store *s, const char *name, const char *text,
                          struct lg_store_manifest *m)
{
    struct lg_err err = {0};
    memset(m, 0, sizeof *m);
    if (lg_store_parse_name(name, strlen(name), &m->name, &err) != LG_OK)
        return err.code;
    int fd = -1;
    char tmp[LG_STORE_PATH_MAX];
    enum lg_status st = lg_store_tmp_create(s, &fd, tmp, sizeof tmp, &err);
    if (st != LG_OK)
        return st;
    size_t n = strlen(text);
    if (write(fd, text, n) != (ssize_t)n) {
        close(fd);
        return LG_ERR_IO;
    }
    uint8_t d[32];
    lg_sha256(text, n, d);
    lg_sha256_hex(d, m->hex);
    m->size = n;
    m->created = (int64_t)time(NULL);
    snprintf(m->format, sizeof m->format, "gguf");
    snprintf(m->source, sizeof m->source, "test:%s", name);
    snprintf(m->gguf.architecture, sizeof m->gguf.architecture, "gemma3");
    st = lg_store_publish(s, fd, tmp, m, &err);
    close(fd);
    if (st != LG_OK)
        fprintf(stderr, "publish: %s\n", err.msg);
    return st;
}

static bool blob_exists(struct lg_store *s, const char *hex)
{
    char p[LG_STORE_PATH_MAX];
    return lg_store_blob_path(s, hex, p, sizeof p, NULL) == LG_OK && access(p, F_OK) == 0;
}

static void test_store_ops(void)
{
    char sroot[300], out[LG_STORE_PATH_MAX], want[LG_STORE_PATH_MAX];
    struct lg_err err = {0};
    struct lg_store *s = NULL;
    snprintf(sroot, sizeof sroot, "%s/ops/", root); /* trailing slash is tolerated */
    CHECK_EQ_INT(lg_store_open(sroot, &s, &err), LG_OK);
    if (!s)
        return;
    struct lg_store_manifest a, b, c, r;
    CHECK_EQ_INT(put(s, "alpha:1", "GGUF alpha blob", &a), LG_OK);
    CHECK_EQ_INT(put(s, "beta", "GGUF beta blob", &b), LG_OK);
    CHECK_EQ_INT(put(s, "alpha:dup", "GGUF alpha blob", &c), LG_OK); /* dedup */
    CHECK_EQ_STR(a.hex, c.hex);
    snprintf(out, sizeof out, "%s/blobs", lg_store_root(s));
    CHECK_EQ_INT(count_dir(out), 2);
    snprintf(out, sizeof out, "%s/tmp", lg_store_root(s));
    CHECK_EQ_INT(count_dir(out), 0);

    struct lg_store_manifest *v = NULL;
    size_t n = 0, n_bad = 0;
    CHECK_EQ_INT(lg_store_list(s, &v, &n, &n_bad, &err), LG_OK);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_INT(n_bad, 0);
    free(v);

    CHECK_EQ_INT(lg_store_manifest_read(s, &a.name, &r, &err), LG_OK);
    CHECK_EQ_STR(r.hex, a.hex);
    CHECK_EQ_INT(r.size, strlen("GGUF alpha blob"));
    CHECK_EQ_STR(r.source, "test:alpha:1");
    CHECK_EQ_STR(r.gguf.architecture, "gemma3");

    /* resolve: name -> blob, path -> itself, unknown -> not found */
    CHECK_EQ_INT(lg_store_resolve(s, "alpha:1", true, out, sizeof out, &err), LG_OK);
    lg_store_blob_path(s, a.hex, want, sizeof want, &err);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(lg_store_resolve(s, want, false, out, sizeof out, &err), LG_OK);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(lg_store_resolve(s, "nothere", false, out, sizeof out, &err),
                 LG_ERR_NOT_FOUND);
    CHECK_EQ_INT(lg_store_resolve(s, "../../no/such/file", false, out, sizeof out, &err),
                 LG_ERR_NOT_FOUND);
    /* names only (for the server): an existing path is not a name */
    CHECK_EQ_INT(lg_store_resolve_name(s, "/etc/passwd", false, out, sizeof out, &err),
                 LG_ERR_NOT_FOUND);
    CHECK_EQ_INT(lg_store_resolve_name(s, "../../../../../etc/passwd", false, out, sizeof out,
                                       &err),
                 LG_ERR_NOT_FOUND);
    CHECK_EQ_INT(lg_store_resolve_name(s, "alpha:1", false, out, sizeof out, &err), LG_OK);
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(lg_store_resolve(s, "", false, out, sizeof out, &err), LG_ERR_INVALID_ARG);

    /* cp shares the blob; rm keeps a shared blob and drops an unshared one */
    struct lg_store_name gamma, missing;
    lg_store_parse_name("gamma:x", 7, &gamma, &err);
    lg_store_parse_name("missing", 7, &missing, &err);
    CHECK_EQ_INT(lg_store_copy(s, &b.name, &gamma, &err), LG_OK);
    CHECK_EQ_INT(lg_store_copy(s, &missing, &gamma, &err), LG_ERR_NOT_FOUND);
    bool gone = true;
    CHECK_EQ_INT(lg_store_remove(s, &b.name, &gone, &err), LG_OK);
    CHECK(!gone);
    CHECK(blob_exists(s, b.hex));
    CHECK_EQ_INT(lg_store_remove(s, &gamma, &gone, &err), LG_OK);
    CHECK(gone);
    CHECK(!blob_exists(s, b.hex));
    CHECK_EQ_INT(lg_store_remove(s, &gamma, &gone, &err), LG_ERR_NOT_FOUND);
    snprintf(out, sizeof out, "%s/manifests/gamma", lg_store_root(s));
    CHECK(access(out, F_OK) != 0); /* empty family directory removed */

    /* re-pointing a name drops its old blob when unused */
    CHECK_EQ_INT(lg_store_remove(s, &c.name, &gone, &err), LG_OK);
    CHECK(!gone);
    CHECK_EQ_INT(put(s, "alpha:1", "GGUF alpha v2", &c), LG_OK);
    CHECK(!blob_exists(s, a.hex));
    CHECK(blob_exists(s, c.hex));

    /* corruption: same size, other bytes -> only verify notices; other size -> always */
    char blob[LG_STORE_PATH_MAX];
    lg_store_blob_path(s, c.hex, blob, sizeof blob, &err);
    write_file(blob, "GGUF alpha v3");
    CHECK_EQ_INT(lg_store_resolve(s, "alpha:1", false, out, sizeof out, &err), LG_OK);
    CHECK_EQ_INT(lg_store_resolve(s, "alpha:1", true, out, sizeof out, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "corrupt") != NULL);
    write_file(blob, "GGUF");
    CHECK_EQ_INT(lg_store_resolve(s, "alpha:1", false, out, sizeof out, &err), LG_ERR_FORMAT);
    unlink(blob);
    CHECK_EQ_INT(lg_store_resolve(s, "alpha:1", false, out, sizeof out, &err),
                 LG_ERR_NOT_FOUND);

    /* hostile manifests are skipped by list and refused by read */
    char mp[LG_STORE_PATH_MAX];
    snprintf(mp, sizeof mp, "%s/manifests/evil", lg_store_root(s));
    mkdir(mp, 0755);
    snprintf(mp, sizeof mp, "%s/manifests/evil/latest", lg_store_root(s));
    write_file(mp, "{\"schema\":1,\"name\":\"evil:latest\",\"digest\":\"sha256:../../../etc/"
                   "passwd\",\"size\":1}");
    snprintf(mp, sizeof mp, "%s/manifests/evil/other", lg_store_root(s));
    write_file(mp, "not json");
    snprintf(mp, sizeof mp, "%s/manifests/evil/UPPER", lg_store_root(s));
    write_file(mp, "{}");
    struct lg_store_name evil;
    lg_store_parse_name("evil", 4, &evil, &err);
    CHECK_EQ_INT(lg_store_manifest_read(s, &evil, &r, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(lg_store_list(s, &v, &n, &n_bad, &err), LG_OK);
    CHECK_EQ_INT(n, 1); /* alpha:1 (its blob is gone, its manifest is still valid) */
    CHECK_EQ_INT(n_bad, 3);
    free(v);

    /* a family directory that is a symlink out of the store is never followed: read,
     * remove, copy onto it and write through it all fail, and nothing outside changes */
    char outside[LG_STORE_PATH_MAX], om[LG_STORE_PATH_MAX + 16];
    snprintf(outside, sizeof outside, "%s/outside-fam", root);
    mkdir(outside, 0755);
    snprintf(om, sizeof om, "%s/latest", outside);
    write_file(om, "{\"schema\":1,\"name\":\"lnk:latest\",\"digest\":\"sha256:"
                   "0000000000000000000000000000000000000000000000000000000000000000\","
                   "\"size\":1}");
    snprintf(mp, sizeof mp, "%s/manifests/lnk", lg_store_root(s));
    CHECK_EQ_INT(symlink(outside, mp), 0);
    struct lg_store_name lnk, lnk_new;
    lg_store_parse_name("lnk", 3, &lnk, &err);
    lg_store_parse_name("lnk:new", 7, &lnk_new, &err);
    CHECK_EQ_INT(lg_store_manifest_read(s, &lnk, &r, &err), LG_ERR_FORMAT);
    CHECK(strstr(err.msg, "symbolic link") != NULL);
    CHECK_EQ_INT(lg_store_remove(s, &lnk, &gone, &err), LG_ERR_FORMAT);
    CHECK(access(om, F_OK) == 0);
    struct lg_store_manifest d;
    CHECK_EQ_INT(put(s, "delta", "GGUF delta blob", &d), LG_OK);
    CHECK_EQ_INT(lg_store_copy(s, &d.name, &lnk_new, &err), LG_ERR_FORMAT);
    CHECK_EQ_INT(put(s, "lnk:new", "GGUF through a link", &r), LG_ERR_FORMAT);
    snprintf(om, sizeof om, "%s/new", outside);
    CHECK(access(om, F_OK) != 0);
    CHECK_EQ_INT(count_dir(outside), 1);
    CHECK_EQ_INT(lg_store_resolve(s, "lnk", false, out, sizeof out, &err), LG_ERR_FORMAT);
    unlink(mp);
    lg_store_close(s);

    /* an unusable root */
    snprintf(out, sizeof out, "%s/file-not-dir", root);
    write_file(out, "x");
    CHECK(lg_store_open(out, &s, &err) != LG_OK);
    CHECK(s == NULL);
}

static void test_helpers(void)
{
    char buf[64];
    lg_store_format_size(253113024, buf, sizeof buf);
    CHECK_EQ_STR(buf, "253 MB");
    lg_store_format_size(1600000000, buf, sizeof buf);
    CHECK_EQ_STR(buf, "1.6 GB");
    lg_store_format_size(999, buf, sizeof buf);
    CHECK_EQ_STR(buf, "999 B");
    lg_store_format_age(1000, 1000, buf, sizeof buf);
    CHECK_EQ_STR(buf, "Less than a second ago");
    lg_store_format_age(1000, 1000 + 300, buf, sizeof buf);
    CHECK_EQ_STR(buf, "5 minutes ago");
    lg_store_format_age(1000, 1000 + 3 * 86400, buf, sizeof buf);
    CHECK_EQ_STR(buf, "3 days ago");

    char path[300];
    struct lg_err err = {0};
    snprintf(path, sizeof path, "%s/hdr", root);
    write_file(path, "GGUF\x03");
    CHECK_EQ_INT(lg_store_check_gguf_header(path, &err), LG_ERR_FORMAT); /* too short */
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite("GGUF\x03\0\0\0rest", 1, 12, f);
        fclose(f);
    }
    CHECK_EQ_INT(lg_store_check_gguf_header(path, &err), LG_OK);
    f = fopen(path, "wb");
    if (f) {
        fwrite("GGUF\x09\0\0\0rest", 1, 12, f);
        fclose(f);
    }
    CHECK_EQ_INT(lg_store_check_gguf_header(path, &err), LG_ERR_VERSION);
    write_file(path, "PK\x03\x04 zip file");
    CHECK_EQ_INT(lg_store_check_gguf_header(path, &err), LG_ERR_FORMAT);
}

int main(void)
{
    snprintf(root, sizeof root, "/tmp/lg_test_store_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    test_names();
    test_digests();
    test_atomic();
    test_scan();
    test_store_ops();
    test_helpers();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
    return lg_test_done("test_store");
}
