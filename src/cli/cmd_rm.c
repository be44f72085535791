/* cmd_rm.c: `localgemma rm NAME...` — removes manifests; a blob goes only when no other
 * name refers to it. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/store.h"

int lg_cmd_rm(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "localgemma rm: usage: localgemma rm NAME...\n");
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        printf("usage: localgemma rm NAME...\n  Removes models from the store; a file shared "
               "with another name is kept.\n");
        return 0;
    }
    struct lg_err err = {0};
    struct lg_store *s = NULL;
    if (lg_store_open(NULL, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma rm: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        struct lg_store_name n;
        bool blob_gone = false;
        char shown[LG_STORE_NAME_MAX + 1];
        if (lg_store_parse_name(argv[i], strlen(argv[i]), &n, &err) != LG_OK ||
            lg_store_remove(s, &n, &blob_gone, &err) != LG_OK) {
            fprintf(stderr, "localgemma rm: %s\n", err.msg);
            rc = 1;
            continue;
        }
        lg_store_format_name(&n, shown, sizeof shown);
        printf("deleted '%s'%s\n", shown, blob_gone ? "" : " (file kept: used by another name)");
    }
    /* also collect blobs orphaned by an earlier crash or I/O error */
    int n_gc = 0;
    if (lg_store_gc(s, &n_gc, &err) == LG_OK && n_gc > 0)
        printf("removed %d unreferenced file%s\n", n_gc, n_gc == 1 ? "" : "s");
    lg_store_close(s);
    return rc;
}
