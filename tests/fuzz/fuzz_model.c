/* fuzz_model.c: libFuzzer target for model loading (GGUF metadata -> layer table -> tensor
 * binding) and a two-token forward pass over whatever was accepted. Seeds are the tiny
 * reference models. The loader must refuse bad hparams and shapes with an error, never
 * crash; an accepted model must run. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "gguf/gguf.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lg_gguf *g = NULL;
    struct lg_model *m = NULL;
    struct lg_model_state *s = NULL;
    struct lg_err err = {0};
    if (lg_gguf_open_buffer(data, size, &g, &err) != LG_OK)
        return 0;
    if (lg_model_from_gguf(g, &m, &err) != LG_OK)
        goto done;
    /* Keep the work bounded: skip huge (but valid) configurations. */
    if ((int64_t)m->cfg.n_vocab * m->cfg.n_embd > ((int64_t)1 << 24) || m->cfg.n_layer > 64)
        goto done;
    if (lg_model_state_create(m, 4, 2, &s, &err) != LG_OK)
        goto done;
    int32_t tok[2] = {0, m->cfg.n_vocab - 1};
    float *logits = malloc((size_t)m->cfg.n_vocab * sizeof(float));
    if (logits)
        (void)lg_model_forward(m, s, tok, 2, LG_LOGITS_LAST, logits, &err);
    free(logits);
done:
    lg_model_state_destroy(s);
    lg_model_close(m);
    lg_gguf_close(g);
    return 0;
}
