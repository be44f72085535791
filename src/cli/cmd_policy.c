/* cmd_policy.c: `localgemma policy test FILE TEXT` — loads a policy file (errors name the
 * field or pattern) and shows what it decides for TEXT: the input check, the output check and
 * the redacted text. `policy check FILE` only validates the file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "guard/guard.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: localgemma policy test FILE TEXT    (FILE '-' = built-in policy)\n"
               "       localgemma policy check FILE\n"
               "  Prints the input decision, the output decision and the redacted text.\n"
               "  Format: src/guard/POLICY.md.\n");
}

int lg_cmd_policy(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "-h") || !strcmp(sub, "--help")) {
        usage(stdout);
        return 0;
    }
    bool test = !strcmp(sub, "test");
    if (!(test && argc == 4) && !(!strcmp(sub, "check") && argc == 3)) {
        usage(stderr);
        return 2;
    }
    struct lg_err err = {0};
    struct lg_policy *p = NULL;
    enum lg_status st =
        strcmp(argv[2], "-") ? lg_policy_load(argv[2], &p, &err) : lg_policy_default(&p, &err);
    if (st != LG_OK) {
        fprintf(stderr, "localgemma policy: %s\n", err.msg);
        return 1;
    }
    if (!test) {
        printf("OK: policy valid (hold-back %zu bytes)\n", lg_policy_holdback(p));
        lg_policy_free(p);
        return 0;
    }
    const char *text = argv[3];
    size_t n = strlen(text);
    struct lg_decision din, dout;
    char *red = NULL;
    size_t red_n = 0;
    if (lg_policy_check_input(p, text, n, &din, &err) != LG_OK ||
        lg_policy_redact(p, text, n, &red, &red_n, &dout, &err) != LG_OK) {
        fprintf(stderr, "localgemma policy: %s\n", err.msg);
        lg_policy_free(p);
        return 1;
    }
    if (din.denied)
        printf("input: deny (rule %s): %s\n", din.rule, din.message);
    else
        printf("input: allow\n");
    if (dout.denied)
        printf("output: deny (rule %s): %s\n", dout.rule, dout.message);
    else
        printf("output: allow\n");
    /* per-rule redaction counts */
    struct lg_redactor *r = lg_redactor_create(p);
    char summary[512] = "";
    if (r) {
        const char *o;
        size_t on;
        if (lg_redactor_feed(r, text, n, &o, &on, &err) == LG_OK &&
            lg_redactor_finish(r, &o, &on, &err) == LG_OK)
            lg_redactor_summary(r, summary, sizeof summary);
        lg_redactor_destroy(r);
    }
    printf("redactions: %s\n", summary[0] ? summary : "none");
    printf("redacted: %.*s\n", (int)red_n, red);
    free(red);
    lg_policy_free(p);
    return 0;
}
