/* common/sha256 against the FIPS 180-4 examples. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"
#include "suites.h"

START_TEST(test_sha256_vectors) {
    /* FIPS 180-4 examples (NIST CSRC), plus a multi-block input. */
    char hex[65];
    sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    sha256_hex(million, 1000000, hex);
    free(million);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* The incremental API (a streamed checkpoint is hashed as it is written):
 * the million 'a's fed in pieces that straddle the 64-byte blocks. */
START_TEST(test_sha256_incremental) {
    static const size_t pieces[] = {0, 1, 63, 64, 65, 127, 1000, 4096};
    char a[4096];
    memset(a, 'a', sizeof a);
    sha256_ctx ctx;
    sha256_init(&ctx);
    size_t left = 1000000;
    for (int i = 0; left > 0; i++) {
        size_t n = pieces[i % 8] < left ? pieces[i % 8] : left;
        sha256_update(&ctx, a, n);
        left -= n;
    }
    uint8_t digest[32];
    sha256_final(&ctx, digest);
    char hex[65];
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

Suite *sha256_suite(void) {
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("sha256");
    tcase_add_test(tc, test_sha256_vectors);
    tcase_add_test(tc, test_sha256_incremental);
    suite_add_tcase(s, tc);
    return s;
}
