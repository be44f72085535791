/* convert.h: Hugging Face Gemma 4 / Gemma 3 checkpoint -> GGUF with llama.cpp's names and keys.
 *
 * Reads DIR/config.json (text-only `gemma4_text`/`gemma3_text`, or multimodal `gemma4`/`gemma3`
 * with a text_config; only the text decoder is converted) and the safetensors weights, and
 * writes OUT atomically. Tensor types follow llama.cpp's converter: F32 for 1-D tensors,
 * norms, the MoE router and non-".weight" tensors; the requested type otherwise, with F16
 * where a Q8_0 row would not be a whole number of blocks. Gemma 3 norms get +1 baked in;
 * rope_freqs is generated for proportional RoPE; KV-shared layers' unused K/V weights are
 * dropped. Vocabulary: Gemma 4 tokenizer.json (BPE) -> tokenizer.* keys as llama.cpp writes
 * them; Gemma 3's SentencePiece tokenizer.model is not converted yet (no tokenizer.* keys).
 * The chat template comes from chat_template.jinja or tokenizer_config.json.
 * Not thread-safe with respect to OUT; otherwise reentrant.
 */
#ifndef LG_MODEL_CONVERT_H
#define LG_MODEL_CONVERT_H

#include <stdint.h>

#include "localgemma.h"

/* out_type: LG_QTYPE_F32, _F16, _BF16 or _Q8_0. Errors name the config field or tensor. */
enum lg_status lg_convert_hf(const char *dir, const char *out_path, uint32_t out_type,
                             struct lg_err *err);

#endif
