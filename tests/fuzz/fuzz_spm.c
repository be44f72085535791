/* fuzz_spm.c: libFuzzer target for the SentencePiece tokenizer.model reader used by `convert`
 * (src/model/spm_proto.c). Accepted models are walked: every piece's text must be as long as
 * it says and NUL-terminated, its type 1..6, and exactly one piece UNKNOWN. A crash, sanitizer
 * report, leak or a broken promise (abort) is a finding. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/convert.h"

static volatile uint32_t fz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lg_spm_model *m = NULL;
    struct lg_err err = {0};
    if (lg_spm_parse(data, size, &m, &err) != LG_OK) {
        if (m || !err.msg[0])
            abort(); /* an error leaves no model and always says why */
        return 0;
    }
    int n_unk = 0;
    for (int32_t i = 0; i < m->n_pieces; i++) {
        const struct lg_spm_piece *p = &m->pieces[i];
        if (p->len == 0 || strlen(p->text) != p->len || p->type < LG_SPM_NORMAL ||
            p->type > LG_SPM_BYTE)
            abort();
        n_unk += p->type == LG_SPM_UNKNOWN;
        fz_sink += (uint32_t)(uint8_t)p->text[p->len - 1] + (uint32_t)p->type;
    }
    if (n_unk != 1)
        abort();
    lg_spm_destroy(m);
    return 0;
}
