/* cmd_cp.c: `localgemma cp SRC DST` — a second name for the same blob (no data copied). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "store/store.h"

int lg_cmd_cp(int argc, char **argv)
{
    if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: localgemma cp SRC DST\n  Gives model SRC the additional name DST "
               "(replacing DST if it exists).\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "localgemma cp: usage: localgemma cp SRC DST\n");
        return 2;
    }
    struct lg_err err = {0};
    struct lg_store_name src, dst;
    if (lg_store_parse_name(argv[1], strlen(argv[1]), &src, &err) != LG_OK ||
        lg_store_parse_name(argv[2], strlen(argv[2]), &dst, &err) != LG_OK) {
        fprintf(stderr, "localgemma cp: %s\n", err.msg);
        return 1;
    }
    struct lg_store *s = NULL;
    if (lg_store_open(NULL, &s, &err) != LG_OK) {
        fprintf(stderr, "localgemma cp: %s\n", err.msg);
        return 1;
    }
    enum lg_status st = lg_store_copy(s, &src, &dst, &err);
    lg_store_close(s);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma cp: %s\n", err.msg);
        return 1;
    }
    char a[LG_STORE_NAME_MAX + 1], b[LG_STORE_NAME_MAX + 1];
    lg_store_format_name(&src, a, sizeof a);
    lg_store_format_name(&dst, b, sizeof b);
    printf("copied '%s' to '%s'\n", a, b);
    return 0;
}
