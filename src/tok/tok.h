/* tok.h: the Gemma tokenizer, built from the vocabulary in a GGUF file.
 *
 * Two algorithms, chosen by `tokenizer.ggml.model` (spec gemma4.md §3.4, §4):
 *  - "llama"  (Gemma 3): SentencePiece-style BPE that merges the adjacent pair whose merged
 *                        text is the vocab token with the highest score; byte fallback <0xXX>.
 *  - "gemma4" (Gemma 4): BPE over `tokenizer.ggml.merges` by rank, newline runs split off
 *                        (a newline run that is itself a token is emitted whole); invalid
 *                        UTF-8 is replaced by U+FFFD first; byte fallback <0xXX>.
 * Both replace ' ' by U+2581 before merging, add no prefix space, and first split out special
 * tokens atomically: user-defined tokens always, control tokens only with
 * LG_TOK_PARSE_SPECIAL. src/tok/README.md records every place where we knowingly differ from
 * llama.cpp or Hugging Face tokenizers and why.
 *
 * Ownership: struct lg_vocab copies what it needs from the GGUF; the file may be closed after
 * lg_vocab_load(). Thread-safety: a loaded vocab is immutable, any thread may encode or
 * decode with it concurrently. A struct lg_detok belongs to one thread at a time.
 * Errors: functions that can fail return enum lg_status and write err; bad input text never
 * fails (every byte sequence tokenizes), bad vocabularies fail at load with the field named.
 */
#ifndef LG_TOK_H
#define LG_TOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "localgemma.h"

enum {
    LG_TOK_MAX_VOCAB = 1 << 22,      /* tokens in a vocab (Gemma: 262144) */
    LG_TOK_MAX_TOKEN_BYTES = 1024,   /* bytes in one token's text (Gemma: 48 / 93) */
    LG_TOK_MAX_MERGES = 1 << 24,     /* merges (Gemma 4: 514906) */
    LG_TOK_MAX_TEXT_BYTES = 1 << 25  /* one encode call (32 MiB; transient memory is
                                      * about 50 bytes per input byte at worst) */
};

/* Which algorithm the vocab uses. */
enum lg_tok_model {
    LG_TOK_MODEL_SPM = 0,    /* tokenizer.ggml.model = "llama" (Gemma 3) */
    LG_TOK_MODEL_GEMMA4 = 1  /* tokenizer.ggml.model = "gemma4" */
};

/* Token types as stored in tokenizer.ggml.token_type (SentencePiece numbering). */
enum lg_tok_type {
    LG_TOK_TYPE_NORMAL = 1,
    LG_TOK_TYPE_UNKNOWN = 2,
    LG_TOK_TYPE_CONTROL = 3,
    LG_TOK_TYPE_USER_DEFINED = 4,
    LG_TOK_TYPE_UNUSED = 5,
    LG_TOK_TYPE_BYTE = 6
};

/* Encode flags. */
enum lg_tok_flags {
    LG_TOK_ADD_BOS = 1u << 0,       /* start with BOS when the vocab asks for it (Gemma 4
                                     * always does); never twice: not added when the text
                                     * itself starts with parsed "<bos>" */
    LG_TOK_PARSE_SPECIAL = 1u << 1  /* match control-token text ("<start_of_turn>") too */
};

struct lg_vocab_priv;

/* Read-only after load. Arrays are [n_tokens] and owned by the vocab. */
struct lg_vocab {
    enum lg_tok_model model;
    uint32_t n_tokens;
    uint32_t n_merges;      /* Gemma 4 only; 0 for SPM */
    const float *scores;    /* [n_tokens] SPM merge priority (higher first); -1000 in Gemma 4 */
    const uint8_t *types;   /* [n_tokens] enum lg_tok_type */
    int32_t bos_id, eos_id, unk_id, pad_id, mask_id; /* -1 when absent */
    bool add_bos;           /* from the file; forced true for Gemma 4 (llama.cpp PR #21500) */
    uint32_t max_token_bytes;
    struct lg_vocab_priv *priv;
};

/* Builds the vocab from an open GGUF, validating its meaning: vocab size within
 * LG_TOK_MAX_VOCAB, arrays of equal length and the right element type, no empty token,
 * token types 1..6, every byte token spelled <0xHH> and all 256 present, special ids in
 * range, scores finite, merges "left right" whose parts and result are tokens.
 * LG_ERR_FORMAT / LG_ERR_RANGE / LG_ERR_UNSUPPORTED / LG_ERR_NOT_FOUND / LG_ERR_NOMEM. */
enum lg_status lg_vocab_load(const struct lg_gguf *g, struct lg_vocab **out, struct lg_err *err);

/* Frees. NULL is allowed. */
void lg_vocab_free(struct lg_vocab *v);

/* Tokenizes len bytes of text (any bytes; NUL is ordinary). Writes up to cap ids and sets
 * *n_ids to the number the full encoding has; returns LG_ERR_RANGE (nothing lost but the
 * tail) when cap < *n_ids, so a caller can retry with a bigger buffer. ids may be NULL when
 * cap is 0. LG_ERR_RANGE also when len > LG_TOK_MAX_TEXT_BYTES; LG_ERR_NOMEM. */
enum lg_status lg_tok_encode(const struct lg_vocab *v, const char *text, size_t len,
                             unsigned flags, int32_t *ids, size_t cap, size_t *n_ids,
                             struct lg_err *err);

/* Same, into a malloc'ed array the caller frees (*ids is NULL on failure). */
enum lg_status lg_tok_encode_alloc(const struct lg_vocab *v, const char *text, size_t len,
                                   unsigned flags, int32_t **ids, size_t *n_ids,
                                   struct lg_err *err);

/* The token's stored text (spaces as U+2581, byte tokens as "<0xHH>"). Empty for ids out of
 * range. Points into the vocab; valid until lg_vocab_free(). */
struct lg_str lg_tok_piece(const struct lg_vocab *v, int32_t id);

/* Token text by id: -1 when absent. */
int32_t lg_tok_find(const struct lg_vocab *v, const char *text, size_t len);

/* True for ids that end generation (spec §4.2): Gemma 4 <eos>, <turn|>, <|tool_response>;
 * Gemma 3 <eos>, <end_of_turn>; plus eos_id. Never </s>. */
bool lg_tok_is_eog(const struct lg_vocab *v, int32_t id);

/* True for control tokens (hidden by the detokenizer unless asked). */
bool lg_tok_is_control(const struct lg_vocab *v, int32_t id);

/* ---- Detokenizer -------------------------------------------------------------------------
 * Incremental and UTF-8 safe: feed ids one at a time, get back only complete UTF-8 text. A
 * character whose bytes arrive in several byte tokens is held until complete; bytes that can
 * never form a valid character become U+FFFD (or pass through with LG_DETOK_RAW_BYTES).
 * U+2581 becomes ' '. Control tokens produce nothing unless LG_DETOK_SHOW_SPECIAL. No
 * whitespace clean-up is applied (Hugging Face does none either). */
enum lg_detok_flags {
    LG_DETOK_SHOW_SPECIAL = 1u << 0, /* render control tokens as their text */
    LG_DETOK_RAW_BYTES = 1u << 1     /* pass invalid bytes through unchanged */
};

struct lg_detok;

/* The vocab must outlive the object. NULL on allocation failure. */
struct lg_detok *lg_detok_create(const struct lg_vocab *v, unsigned flags);
void lg_detok_destroy(struct lg_detok *d);
/* Forgets held bytes (start of a new stream). */
void lg_detok_reset(struct lg_detok *d);

/* Feeds one id. *text and *len receive the newly completed text (possibly empty); it points into
 * the object and is valid until the next call. LG_ERR_RANGE for an id outside the vocab. */
enum lg_status lg_detok_feed(struct lg_detok *d, int32_t id, const char **text, size_t *len,
                             struct lg_err *err);

/* End of stream: returns held bytes of an unfinished character (as U+FFFD each, or raw). */
void lg_detok_flush(struct lg_detok *d, const char **text, size_t *len);

/* Whole-sequence convenience: decodes n ids into a malloc'ed NUL-terminated string. */
enum lg_status lg_tok_decode_alloc(const struct lg_vocab *v, const int32_t *ids, size_t n,
                                   unsigned flags, char **text, size_t *len,
                                   struct lg_err *err);

#endif
