/* convert.h: Hugging Face Gemma 4 / Gemma 3 checkpoint -> GGUF with llama.cpp's names and keys.
 *
 * Reads DIR/config.json (text-only `gemma4_text`/`gemma3_text`, or multimodal `gemma4`/`gemma3`
 * with a text_config; only the text decoder is converted) and the safetensors weights, and
 * writes OUT atomically. Tensor types follow llama.cpp's converter: F32 for 1-D tensors,
 * norms, the MoE router and non-".weight" tensors; the requested type otherwise, with F16
 * where a Q8_0 row would not be a whole number of blocks. Gemma 3 norms get +1 baked in;
 * rope_freqs is generated for proportional RoPE; KV-shared layers' unused K/V weights are
 * dropped. Vocabulary: Gemma 4 tokenizer.json (BPE) and Gemma 3 SentencePiece tokenizer.model
 * -> tokenizer.* keys as llama.cpp writes them (Gemma 3: also added_tokens.json,
 * tokenizer_config.json's added_tokens_decoder, special ids and add_* flags from
 * tokenizer_config.json / tokenizer.json / config.json as gguf-py's SpecialVocab finds them;
 * token_embd is cut to the vocabulary size). The chat template comes from
 * chat_template.jinja or tokenizer_config.json.
 * Not thread-safe with respect to OUT; otherwise reentrant.
 */
#ifndef LG_MODEL_CONVERT_H
#define LG_MODEL_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

/* out_type: LG_QTYPE_F32, _F16, _BF16 or _Q8_0. Errors name the config field or tensor. */
enum lg_status lg_convert_hf(const char *dir, const char *out_path, uint32_t out_type,
                             struct lg_err *err);

/* ---- SentencePiece model (spm_proto.c) --------------------------------------------------
 * tokenizer.model is a protobuf sentencepiece.ModelProto. The reader is strict: every length
 * is checked against the buffer, varints are at most 10 bytes, wire types must match the
 * field, groups are refused, nested trainer/normalizer specs must be well formed, pieces must
 * be non-empty valid UTF-8 without NUL, and the model must pass sentencepiece's own load
 * checks (one UNKNOWN piece, no duplicate piece within the normal/reserved classes, BYTE
 * pieces spelled <0xHH> and all 256 present when trainer_spec.byte_fallback is set). */
enum lg_spm_type {
    LG_SPM_NORMAL = 1,
    LG_SPM_UNKNOWN = 2,
    LG_SPM_CONTROL = 3,
    LG_SPM_USER_DEFINED = 4,
    LG_SPM_UNUSED = 5,
    LG_SPM_BYTE = 6,
};

enum {
    LG_SPM_MAX_FILE_BYTES = 256 << 20, /* lg_spm_load refuses larger files */
    LG_SPM_MAX_PIECES = 1 << 24,
};

struct lg_spm_piece {
    const char *text; /* NUL-terminated, valid UTF-8; owned by the model */
    uint32_t len;
    float score;
    int32_t type; /* enum lg_spm_type */
};

struct lg_spm_model {
    struct lg_spm_piece *pieces; /* [n_pieces], in id order */
    int32_t n_pieces;
    int32_t model_type;     /* trainer_spec.model_type (1 unigram, 2 bpe, ...); 1 if absent */
    bool byte_fallback;     /* trainer_spec.byte_fallback */
    bool add_dummy_prefix;  /* normalizer_spec.add_dummy_prefix (default true) */
    char *text_buf;         /* backing store of the piece texts */
};

/* Parses buf[n] (not retained). LG_ERR_FORMAT with the offset and field for malformed input,
 * LG_ERR_RANGE past LG_SPM_MAX_PIECES, LG_ERR_NOMEM. *out is NULL on error. Any thread. */
enum lg_status lg_spm_parse(const uint8_t *buf, size_t n, struct lg_spm_model **out,
                            struct lg_err *err);
/* Reads and parses a file; LG_ERR_IO when it cannot be read. */
enum lg_status lg_spm_load(const char *path, struct lg_spm_model **out, struct lg_err *err);
void lg_spm_destroy(struct lg_spm_model *m);

/* ---- Vocabulary metadata (convert_vocab.c; used by lg_convert_hf) ---------------------- */
struct lg_gguf_writer;

/* Gemma 3: DIR/tokenizer.model (+ added_tokens.json, tokenizer_config.json) -> the
 * tokenizer.ggml.* keys llama.cpp writes (model "llama", pre "default", tokens, scores,
 * token_type, special ids and add_* flags via lg_convert_special_vocab, add_space_prefix
 * false, chat template). *n_vocab gets the number of tokens written (config vocab_size).
 * LG_ERR_NOT_FOUND (nothing written) when DIR has no tokenizer.model. */
enum lg_status lg_convert_spm_vocab(struct lg_gguf_writer *w, const char *dir, int64_t *n_vocab,
                                    struct lg_err *err);

/* gguf-py SpecialVocab: special token ids (< n_vocab), add_bos/eos/sep, normalizer flags and
 * tokenizer.chat_template[s] from DIR's tokenizer.json / tokenizer_config.json / config.json /
 * chat_template.jinja / chat_template.json. */
enum lg_status lg_convert_special_vocab(struct lg_gguf_writer *w, const char *dir,
                                        int64_t n_vocab, struct lg_err *err);

#endif
