/* tok_priv.h: what the tok/ files share behind struct lg_vocab (not for other modules).
 *
 * Token texts live in one blob; a open-addressing hash maps text -> id (the last id wins on
 * duplicates, as in llama.cpp). Gemma 4 merges live in a second hash keyed by the pair of
 * token ids. Special tokens (control, user-defined, unknown types) sit in a byte trie so the
 * encoder can list every special that starts at a position in one walk.
 */
#ifndef LG_TOK_PRIV_H
#define LG_TOK_PRIV_H

#include "tok/tok.h"

/* One trie node. Children are a sibling list (root children are indexed directly). */
struct lg_tok_trie_node {
    int32_t first_child;
    int32_t next_sibling;
    int32_t tok;      /* special token ending here, or -1 */
    int32_t up_all;   /* nearest proper ancestor with a special token, or -1 */
    int32_t up_user;  /* same, counting only always-matched (user-defined) tokens */
    uint16_t depth;   /* bytes from the root */
    uint8_t byte;
    uint8_t user;     /* tok is matched even without LG_TOK_PARSE_SPECIAL */
};

/* Text hash slot: the high 32 bits of the hash are kept so most misses never touch the
 * token text (the table is cache-bound: lookups of candidate pairs dominate encoding). */
struct lg_tok_slot {
    uint32_t tag;
    int32_t id; /* -1 empty */
};

enum { LG_TOK_FILTER_BITS = 1 << 21 };

struct lg_vocab_priv {
    char *blob;               /* all token texts, back to back */
    uint32_t *off;            /* [n_tokens + 1] token i is blob[off[i] .. off[i+1]) */
    float *scores;            /* [n_tokens] */
    uint8_t *types;           /* [n_tokens] */
    uint8_t *byte_val;        /* [n_tokens] the byte of a BYTE token */
    struct lg_tok_slot *hash; /* [hash_mask + 1] */
    uint32_t hash_mask;
    uint64_t *filter;         /* [LG_TOK_FILTER_BITS / 64] one bit per token hash: most
                               * candidate pairs are not tokens, and this 256 KB bitmap stays
                               * in cache where the table does not */
    int32_t byte_tok[256];    /* <0xHH> token of each byte */

    /* Gemma 4 merges: key = left << 32 | right (token ids); rank and result token. */
    uint64_t *merge_key;      /* [merge_cap], UINT64_MAX empty */
    uint32_t *merge_rank;
    int32_t *merge_res;
    uint32_t merge_mask;

    struct lg_tok_trie_node *trie; /* [n_trie]; node 0 is the root */
    uint32_t n_trie;
    int32_t root_child[256];
    uint16_t *spec_len_all;   /* distinct special lengths, descending */
    uint32_t n_spec_len_all;
    uint16_t *spec_len_user;  /* same for user-defined only */
    uint32_t n_spec_len_user;

    int32_t eog[8];
    uint32_t n_eog;
};

/* Hash of a byte string (also used for spans of input text). */
uint64_t lg_tok_hash_bytes(const void *p, size_t n);

/* Token id of text[0..n), or -1. */
int32_t lg_tok_lookup(const struct lg_vocab *v, const char *text, size_t n);

/* Merge of (left, right) token ids: rank and result, false when there is none. */
bool lg_tok_merge_lookup(const struct lg_vocab *v, int32_t left, int32_t right, uint32_t *rank,
                         int32_t *res);

/* Text of token id (valid id). */
static inline const char *lg_tok_text(const struct lg_vocab *v, int32_t id, size_t *n)
{
    const struct lg_vocab_priv *p = v->priv;
    *n = p->off[id + 1] - p->off[id];
    return p->blob + p->off[id];
}

/* Growable id buffer used by the encoders. */
struct lg_tok_buf {
    int32_t *ids;
    size_t n, cap;
};
enum lg_status lg_tok_buf_push(struct lg_tok_buf *b, int32_t id);

/* Strict UTF-8: length of the valid character at s[0..n) (1..4), or 0 when s does not start
 * with one (bad lead, bad continuation, overlong, surrogate, > U+10FFFF, or truncated).
 * *incomplete is set when the bytes so far are a valid prefix cut short by n. */
size_t lg_tok_utf8_valid(const unsigned char *s, size_t n, bool *incomplete);

#endif
