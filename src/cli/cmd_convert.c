/* cmd_convert.c: `localgemma convert HF_DIR OUT.gguf [--type f32|f16|bf16|q8_0]`: a Hugging
 * Face Gemma 4 / Gemma 3 checkpoint to a GGUF with llama.cpp's names and keys (text decoder
 * and vocabulary: Gemma 4 tokenizer.json, Gemma 3 tokenizer.model). The result is verified by
 * loading it as a model. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "model/convert.h"
#include "model/model.h"
#include "quant/quant.h"

static int usage(void)
{
    fprintf(stderr, "usage: localgemma convert HF_DIR OUT.gguf [--type f32|f16|bf16|q8_0]\n");
    return 2;
}

int lg_cmd_convert(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *type = "f16";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--type") && i + 1 < argc)
            type = argv[++i];
        else if (argv[i][0] == '-')
            return usage();
        else if (!dir)
            dir = argv[i];
        else if (!out)
            out = argv[i];
        else
            return usage();
    }
    if (!dir || !out)
        return usage();
    uint32_t t;
    if (!strcmp(type, "f32"))
        t = LG_QTYPE_F32;
    else if (!strcmp(type, "f16"))
        t = LG_QTYPE_F16;
    else if (!strcmp(type, "bf16"))
        t = LG_QTYPE_BF16;
    else if (!strcmp(type, "q8_0"))
        t = LG_QTYPE_Q8_0;
    else
        return usage();
    struct lg_err err = {0};
    if (lg_convert_hf(dir, out, t, &err) != LG_OK) {
        fprintf(stderr, "localgemma convert: %s\n", err.msg);
        return 1;
    }
    struct lg_model *m = NULL;
    if (lg_model_open(out, &m, &err) != LG_OK) {
        fprintf(stderr, "localgemma convert: wrote %s but it does not load: %s\n", out, err.msg);
        return 1;
    }
    fprintf(stderr, "localgemma convert: wrote %s (%s, %d layers, %s)\n", out, m->cfg.arch,
            (int)m->cfg.n_layer, type);
    lg_model_close(m);
    return 0;
}
