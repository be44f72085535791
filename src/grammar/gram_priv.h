/* gram_priv.h: internals shared by the src/grammar files (not a public interface).
 *
 * A grammar is an array of nodes with their edges in CSR form. Per node, byte edges come first
 * (sorted by lo), then empty and call edges. A node with `ret` set ends its rule: a match at
 * that point returns to the caller's return node, or, with an empty stack, is complete.
 * Invariant after lg_gram_finish(): every node left can still reach the end of its rule
 * (unproductive branches are pruned), so any non-empty state can be completed. */
#ifndef LG_GRAM_PRIV_H
#define LG_GRAM_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "grammar/grammar.h"

enum lg_gedge_kind {
    LG_GE_BYTES = 0,
    LG_GE_EPS = 1,
    LG_GE_CALL = 2
};

struct lg_gedge {
    uint8_t kind, lo, hi;
    int32_t to;     /* next node (CALL: the return node) */
    int32_t callee; /* CALL: start node of the called rule */
};

struct lg_gnode {
    uint32_t e_first;  /* first edge in g->edges */
    uint32_t n_bytes;  /* byte edges */
    uint32_t n_other;  /* EPS / CALL edges after them */
    uint8_t ret;
    uint8_t free_str;  /* loop node of an unbounded JSON string: plain characters loop back */
    /* Short-plain shortcut (gram_mask.c): plain_char = a string's character node (its
     * characters come from one char_inline, so every "short-plain" code point — printable,
     * not '"' '\\' '<', well-formed UTF-8 — leads to the same place); plain_dead = no byte
     * edge takes a short-plain byte. */
    uint8_t plain_char;
    uint8_t plain_dead;
};

struct lg_grammar {
    uint32_t n_nodes, n_edges;
    struct lg_gnode *nodes;
    struct lg_gedge *edges;
    int32_t start; /* start node of the root rule */
};

/* ---- builder (gram_build.c) ---- */
struct lg_gtmp_edge {
    int32_t from;
    struct lg_gedge e;
};

enum { LG_GB_RET = 1, LG_GB_FREE_STR = 2, LG_GB_PLAIN_CHAR = 4 }; /* lg_gbuild.ret flags */

struct lg_gbuild {
    struct lg_gtmp_edge *e;
    uint32_t n_e, cap_e;
    uint8_t *ret; /* per node: LG_GB_RET | LG_GB_FREE_STR */
    uint32_t n_nodes, cap_nodes;
    enum lg_status st; /* sticky: the first failure */
    struct lg_err *err;
};

/* All builder calls are no-ops returning -1 once st != LG_OK or when from < 0. */
int32_t lg_gb_node(struct lg_gbuild *b);
void lg_gb_bytes(struct lg_gbuild *b, int32_t from, uint8_t lo, uint8_t hi, int32_t to);
void lg_gb_eps(struct lg_gbuild *b, int32_t from, int32_t to);
void lg_gb_call(struct lg_gbuild *b, int32_t from, int32_t callee, int32_t to);
/* A rule: returns its start node; *end receives its end node (marked ret). */
int32_t lg_gb_rule(struct lg_gbuild *b, int32_t *end);
/* Literal bytes from `from`; returns the node after them. */
int32_t lg_gb_lit(struct lg_gbuild *b, int32_t from, const char *s, size_t n);
/* Byte range step: a new node after one byte in [lo, hi]. */
int32_t lg_gb_range(struct lg_gbuild *b, int32_t from, uint8_t lo, uint8_t hi);
/* Call step: a new node after one match of rule `callee`. */
int32_t lg_gb_step_call(struct lg_gbuild *b, int32_t from, int32_t callee);
/* Records a failure (first one wins) and returns -1. */
int32_t lg_gb_fail(struct lg_gbuild *b, enum lg_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Builds the grammar (CSR, pruning) with root rule start `start`; frees the builder's arrays.
 * Fails with LG_ERR_INVALID_ARG when the root cannot derive any finite text. */
enum lg_status lg_gb_finish(struct lg_gbuild *b, int32_t start, struct lg_grammar **out);
void lg_gb_free(struct lg_gbuild *b);

/* ---- matcher internals (gram_match.c), used by the mask walk (gram_mask.c) ----
 * A parse position is (node, frame); frames are hash-consed return stacks shared by every
 * state of one context, so equal stacks have equal ids and positions compare as integers. */
struct lg_ghead {
    int32_t node;
    uint32_t frame;
};

struct lg_gframe {
    int32_t ret;     /* node to continue at in the caller */
    uint32_t parent; /* caller's frame; frame 0 is the empty stack */
    uint32_t depth;
    uint32_t next;   /* hash chain, newest first */
};

enum { LG_GMASK_CACHE = 4 };

struct lg_gmask_entry {
    const struct lg_grammar_vocab *gv;
    struct lg_ghead *heads;
    uint32_t n_heads;
    bool complete, used;
    uint64_t tick;
    uint32_t *mask; /* [n_words] */
};

struct lg_gctx {
    const struct lg_grammar *g;
    uint32_t refs;
    bool oom;
    struct lg_gframe *frames;
    uint32_t n_frames, cap_frames;
    uint32_t *buckets; /* [n_buckets], UINT32_MAX = empty */
    uint32_t n_buckets;
    uint64_t *vis_key; /* closure visited set, stamped */
    uint32_t *vis_stamp;
    uint32_t stamp, n_vis;
    struct lg_ghead *work;
    uint32_t cap_work;
    /* trie walk scratch: heads per depth */
    struct lg_ghead *pool;
    uint32_t cap_pool;
    uint64_t tick;
    struct lg_gmask_entry cache[LG_GMASK_CACHE];
    struct lg_gwalk *walk; /* mask walk memo (gram_mask.c) */
    struct lg_ghead *acc;  /* [2][LG_GRAMMAR_MAX_HEADS] accept scratch */
    uint32_t *scratch;     /* mask scratch: [n_scratch] words, then per-depth counts */
    size_t n_scratch;
};

struct lg_grammar_state {
    struct lg_gctx *ctx;
    struct lg_ghead *heads; /* sorted by (node, frame) */
    uint32_t n_heads, cap_heads;
    bool complete;
    bool ended; /* an EOG token was accepted */
};

/* Advances positions in[0..n_in) by one byte into out (room for LG_GRAMMAR_MAX_HEADS);
 * returns the count and sets *complete when the text so far is a sentence. */
uint32_t lg_gram_advance(struct lg_gctx *c, const struct lg_ghead *in, uint32_t n_in,
                         uint8_t byte, struct lg_ghead *out, bool *complete);
struct lg_gwalk;
void lg_gram_walk_free(struct lg_gwalk *w);

/* Drops frames created after mark (temporary frames of a mask walk). */
void lg_gram_frames_rollback(struct lg_gctx *c, uint32_t mark);

/* ---- validation helper shared with the compiler (gram_validate.c) ----
 * Validates v against sch (root for $ref resolution) and returns true when valid. */
bool lg_gram_value_valid(const json_t *root, const json_t *sch, const json_t *v);
/* Format checks: "date", "date-time", "time", "uuid", "email". *known = false for others. */
bool lg_gram_format_ok(const char *format, const char *s, size_t n, bool *known);
/* Resolves "#", "#/a/b" (with ~0 ~1) against root; NULL when it does not resolve. */
const json_t *lg_gram_resolve_ref(const json_t *root, const char *ref);
/* Code points in UTF-8 text (JSON strings from jansson are valid UTF-8). */
size_t lg_gram_utf8_len(const char *s, size_t n);

#endif
