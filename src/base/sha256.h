/* sha256.h: SHA-256 (FIPS 180-4), streaming. Used by the model store to address blobs.
 *
 * A context is plain data: init, update any number of times with any lengths, final.
 * Any thread (one context per thread). No allocation. */
#ifndef LG_BASE_SHA256_H
#define LG_BASE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "localgemma.h"

enum {
    LG_SHA256_BYTES = 32,
    LG_SHA256_HEX_LEN = 64 /* hex digits, without the terminating NUL */
};

struct lg_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;     /* total bytes hashed so far */
    uint8_t buf[64];      /* pending partial block */
    uint32_t n_buf;
};

void lg_sha256_init(struct lg_sha256 *c);
void lg_sha256_update(struct lg_sha256 *c, const void *data, size_t n);
/* Writes the 32-byte digest; the context must be re-initialised before reuse. */
void lg_sha256_final(struct lg_sha256 *c, uint8_t out[LG_SHA256_BYTES]);

/* Implementation choice. AUTO (the default, made at first use) takes the x86 SHA extensions
 * when cpuid has them, unless LG_ISA=ref. Returns false (and changes nothing) when HW is
 * asked for but missing. For tests and benchmarks; any thread. */
enum lg_sha256_impl {
    LG_SHA256_IMPL_AUTO = 0,
    LG_SHA256_IMPL_REF = 1,
    LG_SHA256_IMPL_HW = 2
};
bool lg_sha256_select(enum lg_sha256_impl impl);

/* One-shot helpers. hex gets 64 lower-case digits + NUL. */
void lg_sha256(const void *data, size_t n, uint8_t out[LG_SHA256_BYTES]);
void lg_sha256_hex(const uint8_t digest[LG_SHA256_BYTES], char hex[LG_SHA256_HEX_LEN + 1]);

/* Hashes a whole file by reading it; hex gets 64 digits + NUL. *n_bytes (may be NULL) gets
 * the size read. LG_ERR_IO with the path and errno text on failure. */
enum lg_status lg_sha256_file(const char *path, char hex[LG_SHA256_HEX_LEN + 1],
                              uint64_t *n_bytes, struct lg_err *err);

#endif
