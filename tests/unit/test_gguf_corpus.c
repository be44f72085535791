/* test_gguf_corpus.c: every file of the malformed-GGUF corpus fails the way it should.
 *
 * tests/golden/gguf/corpus_expect.tsv (written by tools/make-gguf-corpus.py with the files)
 * lists each file of tests/corpus/gguf/ with its expected status and a substring of the
 * message. For each file: lg_gguf_open fails with that status, the message is one line that
 * starts with "gguf: ", names a byte offset and contains the substring, and the open takes
 * less than 100 ms. Every message is distinct from every other one, every corpus file is in
 * the list and every listed file exists. The valid fuzz seeds must open.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf/gguf.h"
#include "test.h"

enum { MAX_FILES = 1024 };

struct entry {
    char name[256];
    char status[32];
    char want[768];
    char msg[512];
    int seen;
};

static struct entry g_e[MAX_FILES];
static int g_n;

static enum lg_status status_of(const char *s)
{
    static const struct {
        const char *name;
        enum lg_status st;
    } map[] = {
        {"FORMAT", LG_ERR_FORMAT}, {"VERSION", LG_ERR_VERSION}, {"UNSUPPORTED", LG_ERR_UNSUPPORTED},
        {"NOMEM", LG_ERR_NOMEM},   {"IO", LG_ERR_IO},           {"RANGE", LG_ERR_RANGE}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(s, map[i].name))
            return map[i].st;
    return LG_OK; /* unknown name: the check below fails */
}

/* True when msg contains one of the '|'-separated alternatives of want. */
static int matches(const char *msg, const char *want)
{
    char buf[768];
    snprintf(buf, sizeof buf, "%s", want);
    for (char *save = NULL, *tok = strtok_r(buf, "|", &save); tok; tok = strtok_r(NULL, "|", &save))
        if (strstr(msg, tok))
            return 1;
    return 0;
}

static int load_manifest(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[2048];
    while (fgets(line, sizeof line, f) && g_n < MAX_FILES) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        line[strcspn(line, "\n")] = '\0';
        char *t1 = strchr(line, '\t');
        char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t1 || !t2)
            continue;
        *t1 = *t2 = '\0';
        struct entry *e = &g_e[g_n++];
        snprintf(e->name, sizeof e->name, "%.255s", line);
        snprintf(e->status, sizeof e->status, "%.31s", t1 + 1);
        snprintf(e->want, sizeof e->want, "%.767s", t2 + 1);
    }
    fclose(f);
    return 0;
}

static void check_file(struct entry *e, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%.500s/%.255s", dir, e->name);
    struct lg_gguf *g = NULL;
    struct lg_err err = {0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    enum lg_status st = lg_gguf_open(path, &g, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    snprintf(e->msg, sizeof e->msg, "%s", err.msg);
    CHECK_MSG(st != LG_OK && g == NULL, "%s: opened", e->name);
    lg_gguf_close(g);
    CHECK_MSG(st == status_of(e->status), "%s: status %d (%s), want %s: %s", e->name, (int)st,
              lg_status_str(st), e->status, err.msg);
    CHECK_MSG(!strncmp(err.msg, "gguf: ", 6) && !strchr(err.msg, '\n') &&
                  strstr(err.msg, " at byte ") != NULL,
              "%s: not a one-line 'gguf: ... at byte N: ...' message: %s", e->name, err.msg);
    CHECK_MSG(matches(err.msg, e->want), "%s: message '%s' lacks '%s'", e->name, err.msg, e->want);
    CHECK_MSG(ms < 100.0, "%s: open took %.1f ms", e->name, ms);
    if (getenv("LG_GGUF_CORPUS_VERBOSE"))
        printf("%s\t%s\n", e->name, err.msg);
}

int main(void)
{
    char dir[512], manifest[512], seeds[512];
    snprintf(dir, sizeof dir, "%s/corpus/gguf", lg_test_data_dir());
    snprintf(manifest, sizeof manifest, "%s/golden/gguf/corpus_expect.tsv", lg_test_data_dir());
    snprintf(seeds, sizeof seeds, "%s/fuzz/corpus/gguf", lg_test_data_dir());
    CHECK_MSG(load_manifest(manifest) == 0, "cannot read %s", manifest);
    CHECK_MSG(g_n >= 60, "only %d corpus files listed", g_n);

    for (int i = 0; i < g_n; i++)
        check_file(&g_e[i], dir);

    /* every message distinct: each file exercises its own check or its own field/offset */
    int n_distinct = 0;
    for (int i = 0; i < g_n; i++) {
        int dup = -1;
        for (int j = 0; j < i && dup < 0; j++)
            if (!strcmp(g_e[i].msg, g_e[j].msg))
                dup = j;
        CHECK_MSG(dup < 0, "%s and %s give the same message: %s", g_e[i].name,
                  dup >= 0 ? g_e[dup].name : "", g_e[i].msg);
        n_distinct += dup < 0;
    }

    /* the directory and the list agree */
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    int n_dir = 0;
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n_dir++;
        int found = 0;
        for (int i = 0; i < g_n && !found; i++)
            if (!strcmp(g_e[i].name, de->d_name))
                found = 1;
        CHECK_MSG(found, "%s is not listed in corpus_expect.tsv", de->d_name);
    }
    if (d)
        closedir(d);
    CHECK_EQ_INT(n_dir, g_n);

    /* the fuzz seeds are valid files */
    d = opendir(seeds);
    CHECK_MSG(d != NULL, "cannot open %s", seeds);
    int n_seeds = 0;
    while (d && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "valid_", 6) != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%.500s/%.255s", seeds, de->d_name);
        struct lg_gguf *g = NULL;
        struct lg_err err = {0};
        CHECK_MSG(lg_gguf_open(path, &g, &err) == LG_OK, "seed %s: %s", de->d_name, err.msg);
        lg_gguf_close(g);
        n_seeds++;
    }
    if (d)
        closedir(d);
    CHECK(n_seeds >= 3);
    printf("gguf corpus: %d files, %d distinct messages, %d valid seeds\n", g_n, n_distinct,
           n_seeds);
    return lg_test_done("test_gguf_corpus");
}
