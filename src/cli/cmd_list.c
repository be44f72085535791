/* cmd_list.c: `localgemma list` — the models in the store, like `ollama list`:
 * NAME, ID (first 12 hex digits of the blob's sha256), SIZE, MODIFIED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "store/store.h"

int lg_cmd_list(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: localgemma list\n  Lists the models in the store "
                   "($LOCALGEMMA_HOME, default ~/.localgemma).\n");
            return 0;
        }
        fprintf(stderr, "localgemma list: unexpected argument '%s'\n", argv[i]);
        return 2;
    }
    struct lg_err err = {0};
    struct lg_store *s = NULL;
    if (lg_store_open(NULL, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma list: %s\n", err.msg);
        return 1;
    }
    struct lg_store_manifest *v = NULL;
    size_t n = 0, n_bad = 0;
    if (lg_store_list(s, &v, &n, &n_bad, &err) != LG_OK) {
        fprintf(stderr, "localgemma list: %s\n", err.msg);
        lg_store_close(s);
        return 1;
    }
    int w_name = 4;
    char name[LG_STORE_NAME_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        lg_store_format_name(&v[i].name, name, sizeof name);
        if ((int)strlen(name) > w_name)
            w_name = (int)strlen(name);
    }
    int64_t now = (int64_t)time(NULL);
    printf("%-*s    %-12s    %-8s    %s\n", w_name, "NAME", "ID", "SIZE", "MODIFIED");
    for (size_t i = 0; i < n; i++) {
        char size[32], age[64];
        lg_store_format_name(&v[i].name, name, sizeof name);
        lg_store_format_size(v[i].size, size, sizeof size);
        lg_store_format_age(v[i].created, now, age, sizeof age);
        printf("%-*s    %.12s    %-8s    %s\n", w_name, name, v[i].hex, size, age);
    }
    if (n_bad)
        fprintf(stderr, "localgemma list: skipped %zu unreadable manifest%s\n", n_bad,
                n_bad == 1 ? "" : "s");
    free(v);
    lg_store_close(s);
    return 0;
}
