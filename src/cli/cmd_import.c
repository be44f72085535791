/* cmd_import.c: `localgemma import FILE.gguf [NAME] [--copy]` — add a local GGUF to the store.
 *
 * The file is opened with the full GGUF reader first (a file we could not load is refused
 * before anything is copied); a few facts go into the manifest, and the default name comes
 * from general.basename + general.size_label, else the file stem. The first gemma4 file
 * imported also gets the alias `gemma4` (issue #5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "store/store.h"

static void str_to_buf(struct lg_str s, char *buf, size_t cap)
{
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = '\0';
}

static void read_facts(const struct lg_gguf *g, struct lg_store_gguf_facts *f)
{
    struct lg_str s;
    memset(f, 0, sizeof *f);
    if (lg_gguf_get_str(g, "general.architecture", &s, NULL) == LG_OK)
        str_to_buf(s, f->architecture, sizeof f->architecture);
    if (lg_gguf_get_str(g, "general.basename", &s, NULL) == LG_OK)
        str_to_buf(s, f->basename, sizeof f->basename);
    if (lg_gguf_get_str(g, "general.size_label", &s, NULL) == LG_OK)
        str_to_buf(s, f->size_label, sizeof f->size_label);
    uint32_t u;
    if (lg_gguf_get_u32(g, "general.file_type", &u, NULL) == LG_OK)
        f->file_type = u;
    if (f->architecture[0]) {
        char key[128];
        int64_t v;
        snprintf(key, sizeof key, "%s.context_length", f->architecture);
        if (lg_gguf_get_i64(g, key, &v, NULL) == LG_OK && v > 0)
            f->context_length = (uint64_t)v;
    }
    f->n_tensors = g->n_tensors;
}

/* general.basename[:size_label], else the file stem with tag "latest". */
static bool default_name(const char *path, const struct lg_store_gguf_facts *f,
                         struct lg_store_name *out)
{
    if (lg_store_sanitize_part(f->basename, out->family)) {
        if (!lg_store_sanitize_part(f->size_label, out->tag))
            strcpy(out->tag, "latest");
        return true;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char stem[256];
    snprintf(stem, sizeof stem, "%s", base);
    size_t n = strlen(stem);
    if (n > 5 && !strcmp(stem + n - 5, ".gguf"))
        stem[n - 5] = '\0';
    strcpy(out->tag, "latest");
    return lg_store_sanitize_part(stem, out->family);
}

int lg_cmd_import(int argc, char **argv)
{
    const char *file = NULL, *name = NULL;
    bool allow_link = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: localgemma import FILE.gguf [NAME] [--copy]\n"
                   "  Adds FILE to the model store ($LOCALGEMMA_HOME, default ~/.localgemma)\n"
                   "  as NAME (family[:tag], default from the GGUF's general.basename and\n"
                   "  general.size_label). A hard link is used on the same filesystem,\n"
                   "  else the file is copied; --copy always copies.\n");
            return 0;
        } else if (!strcmp(argv[i], "--copy")) {
            allow_link = false;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "localgemma import: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!file) {
            file = argv[i];
        } else if (!name) {
            name = argv[i];
        } else {
            fprintf(stderr, "localgemma import: too many arguments\n");
            return 2;
        }
    }
    if (!file) {
        fprintf(stderr, "localgemma import: usage: localgemma import FILE.gguf [NAME] [--copy]\n");
        return 2;
    }
    struct lg_err err = {0};
    struct lg_store_manifest m;
    memset(&m, 0, sizeof m);
    if (name && lg_store_parse_name(name, strlen(name), &m.name, &err) != LG_OK) {
        fprintf(stderr, "localgemma import: %s\n", err.msg);
        return 1;
    }
    struct lg_gguf *g = NULL;
    if (lg_gguf_open(file, &g, &err) != LG_OK) {
        fprintf(stderr, "localgemma import: %s: %s\n", file, err.msg);
        return 1;
    }
    read_facts(g, &m.gguf);
    lg_gguf_close(g);
    if (!name && !default_name(file, &m.gguf, &m.name)) {
        fprintf(stderr, "localgemma import: cannot derive a model name from %s; give NAME\n",
                file);
        return 1;
    }
    struct lg_store *s = NULL;
    if (lg_store_open(NULL, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma import: %s\n", err.msg);
        return 1;
    }
    char shown[LG_STORE_NAME_MAX + 1];
    lg_store_format_name(&m.name, shown, sizeof shown);
    struct lg_progress p;
    lg_progress_init(&p, "importing");
    bool linked = false;
    enum lg_status st = lg_store_import(s, file, &m, allow_link, lg_progress_cb, &p, &linked,
                                        &err);
    lg_progress_finish(&p);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma import: %s\n", err.msg);
        lg_store_close(s);
        return 1;
    }
    char size[32];
    lg_store_format_size(m.size, size, sizeof size);
    printf("imported %s (ID %.12s, %s, %s)\n", shown, m.hex, size,
           linked ? "hard link" : "copied");
    if (!strcmp(m.gguf.architecture, "gemma4")) {
        struct lg_store_name alias;
        struct lg_store_manifest existing;
        lg_store_parse_name("gemma4", 6, &alias, NULL);
        if (strcmp(m.name.family, "gemma4") != 0 &&
            lg_store_manifest_read(s, &alias, &existing, NULL) == LG_ERR_NOT_FOUND &&
            lg_store_copy(s, &m.name, &alias, &err) == LG_OK)
            printf("also available as gemma4\n");
    }
    lg_store_close(s);
    return 0;
}
