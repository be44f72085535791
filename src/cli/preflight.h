/* preflight.h: the memory plan as the CLI commands use it: the KV-cache type flags shared by
 * run/chat/bench/estimate, and the check before loading that refuses with the planner's
 * explanation instead of letting the OOM killer end the process (issue #9). */
#ifndef LG_CLI_PREFLIGHT_H
#define LG_CLI_PREFLIGHT_H

#include <stdint.h>

struct lg_cli_kv {
    const char *k;        /* --kv-type-k (or --kv-type), NULL: default f16 */
    const char *v;        /* --kv-type-v (or --kv-type) */
    uint32_t type_k;      /* parsed (enum lg_qtype), valid after lg_cli_kv_finish */
    uint32_t type_v;
};

/* When argv[*i] is --kv-type, --kv-type-k or --kv-type-v: takes its value (advancing *i),
 * validates it with lg_kv_type_parse and returns 1; 0 when argv[*i] is another argument;
 * -1 after printing "localgemma CMD: ..." for a missing or unknown value. */
int lg_cli_kv_flag(const char *cmd, int argc, char **argv, int *i, struct lg_cli_kv *kv);
/* Fills type_k / type_v (f16 where not given). */
void lg_cli_kv_finish(struct lg_cli_kv *kv);

/* Plans the GGUF at path for n_ctx positions (0: the planner's choice, the largest context that
 * fits capped at min(trained, 8192)) and n_parallel sequences. Returns 0 and the context to use
 * in *n_ctx_out when it fits; otherwise prints "localgemma CMD: MODEL does not fit in memory:
 * <explanation>" and returns 1 (also for a file the planner cannot read). */
int lg_cli_preflight(const char *cmd, const char *path, int64_t n_ctx, int n_parallel,
                     const struct lg_cli_kv *kv, int64_t *n_ctx_out);

#endif
