/* cmd_import.c: `localgemma import FILE.gguf [NAME] [--copy]` — add a local GGUF to the store.
 *
 * The file is opened with the full GGUF reader first (a file we could not load is refused
 * before anything is copied); a few facts go into the manifest, and the default name comes
 * from general.basename + general.size_label, else the file stem (lg_store_default_name).
 * The first gemma4 file imported also gets the alias `gemma4` (issue #5). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "store/store.h"

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
    if (lg_store_gguf_facts(file, &m.gguf, &err) != LG_OK) {
        fprintf(stderr, "localgemma import: %s\n", err.msg);
        return 1;
    }
    if (!name && !lg_store_default_name(file, &m.gguf, &m.name)) {
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
