/* test_sha256.c: SHA-256 against the FIPS 180-2/NIST example vectors, the million-'a' vector,
 * split-update equivalence at every boundary, and a 48 MiB file against sha256sum(1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/sha256.h"
#include "test.h"

static void hex_of(const void *p, size_t n, char hex[65])
{
    uint8_t d[32];
    lg_sha256(p, n, d);
    lg_sha256_hex(d, hex);
}

static void run_all(void)
{
    char hex[65];
    static const struct {
        const char *msg, *want;
    } vec[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmn"
         "opqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
        {"The quick brown fox jumps over the lazy dog",
         "d7a8fbb307d7809469ca9abcb0082e4f8d5651e46d3cdb762d02d0bf37c9e592"},
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        hex_of(vec[i].msg, strlen(vec[i].msg), hex);
        CHECK_EQ_STR(hex, vec[i].want);
    }

    /* one million 'a', fed in odd-sized pieces */
    {
        struct lg_sha256 c;
        lg_sha256_init(&c);
        char a[997];
        memset(a, 'a', sizeof a);
        size_t left = 1000000;
        while (left) {
            size_t n = left < sizeof a ? left : sizeof a;
            lg_sha256_update(&c, a, n);
            left -= n;
        }
        uint8_t d[32];
        lg_sha256_final(&c, d);
        lg_sha256_hex(d, hex);
        CHECK_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }

    /* lengths around the padding boundaries (values from Python hashlib) */
    {
        static const struct {
            size_t n;
            const char *want;
        } pad[] = {
            {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
            {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
            {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
            {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
            {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
            {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
            {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"},
        };
        char x[128];
        memset(x, 'x', sizeof x);
        for (size_t i = 0; i < sizeof pad / sizeof pad[0]; i++) {
            hex_of(x, pad[i].n, hex);
            CHECK_EQ_STR(hex, pad[i].want);
        }
    }

    {
        char m[130];
        /* split-update equivalence: every split point of a 130-byte message */
        for (size_t i = 0; i < 130; i++)
            m[i] = (char)(i * 7 + 3);
        for (size_t len = 50; len <= 130; len += 1) {
            char whole[65];
            hex_of(m, len, whole);
            int same = 1;
            for (size_t cut = 0; cut <= len; cut++) {
                struct lg_sha256 c;
                uint8_t d[32];
                lg_sha256_init(&c);
                lg_sha256_update(&c, m, cut);
                lg_sha256_update(&c, m + cut, len - cut);
                lg_sha256_final(&c, d);
                lg_sha256_hex(d, hex);
                same &= strcmp(hex, whole) == 0;
            }
            CHECK_MSG(same, "split update differs at len %zu", len);
        }
    }

    /* a 48 MiB pseudo-random file, hashed by us and by sha256sum */
    {
        char path[] = "/tmp/lg_test_sha256_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        if (fd >= 0) {
            enum { CHUNK = 1 << 20 };
            uint8_t *buf = malloc(CHUNK);
            uint64_t s = 0x9e3779b97f4a7c15u;
            int ok = buf != NULL;
            for (int k = 0; ok && k < 48; k++) {
                for (size_t i = 0; i < CHUNK; i++) {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    buf[i] = (uint8_t)s;
                }
                ok = write(fd, buf, CHUNK) == CHUNK;
            }
            /* a tail that is not a block multiple */
            ok = ok && write(fd, "tail", 4) == 4;
            close(fd);
            free(buf);
            CHECK(ok);
            uint64_t n = 0;
            struct lg_err err = {0};
            CHECK_EQ_INT(lg_sha256_file(path, hex, &n, &err), LG_OK);
            CHECK_EQ_INT(n, 48ull * CHUNK + 4);
            char cmd[128], ref[128] = {0};
            snprintf(cmd, sizeof cmd, "sha256sum %s", path);
            FILE *p = popen(cmd, "r");
            if (p) {
                if (!fgets(ref, sizeof ref, p))
                    ref[0] = 0;
                pclose(p);
            }
            ref[64] = 0;
            CHECK_EQ_STR(hex, ref);
            unlink(path);
        }
        struct lg_err err = {0};
        CHECK_EQ_INT(lg_sha256_file("/nonexistent/lg_sha", hex, NULL, &err), LG_ERR_IO);
        CHECK(strstr(err.msg, "/nonexistent/lg_sha") != NULL);
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(void)
{
    /* every implementation on every vector; HW only where the CPU has it */
    static const enum lg_sha256_impl impls[] = {LG_SHA256_IMPL_REF, LG_SHA256_IMPL_HW};
    static const char *names[] = {"ref", "sha-ni"};
    enum { BENCH_BYTES = 64 << 20 };
    uint8_t *buf = calloc(1, BENCH_BYTES);
    for (int i = 0; i < 2; i++) {
        if (!lg_sha256_select(impls[i])) {
            printf("sha256 %s: not available on this CPU, skipped\n", names[i]);
            continue;
        }
        run_all();
        if (buf) {
            uint8_t d[32];
            double t0 = now_s();
            lg_sha256(buf, BENCH_BYTES, d);
            printf("sha256 %s: %.0f MB/s\n", names[i], BENCH_BYTES / 1e6 / (now_s() - t0));
        }
    }
    free(buf);
    CHECK(lg_sha256_select(LG_SHA256_IMPL_AUTO));
    return lg_test_done("test_sha256");
}
