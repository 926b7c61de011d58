/* The token cache (server/token_cache.h) on its own: hits carry the
 * token's id and role; other texts miss; a revocation empties it and a
 * lookup that began before it is not stored; a later token of the same
 * slot replaces an earlier one; tokens over the length limit are not
 * kept. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "suites.h"
#include "token_cache.h"

static int cached(token_cache *c, const char *text, auth_token *got) {
    uint64_t generation;
    return token_cache_get(c, text, got, &generation);
}

/* Looks text up (a miss) and stores t with that lookup's generation. */
static void remember(token_cache *c, const char *text, const auth_token *t) {
    uint64_t generation;
    auth_token unused;
    token_cache_get(c, text, &unused, &generation);
    token_cache_put(c, text, t, generation);
}

START_TEST(test_hit_and_miss) {
    token_cache *c = token_cache_new();
    ck_assert_ptr_nonnull(c);
    auth_token viewer = {7, AUTH_ROLE_VIEWER}, admin = {9, AUTH_ROLE_ADMIN}, got = {0};
    ck_assert_int_eq(cached(c, "rlhfd_a", &got), 0);
    remember(c, "rlhfd_a", &viewer);
    remember(c, "rlhfd_b", &admin);
    ck_assert_int_eq(cached(c, "rlhfd_a", &got), 1);
    ck_assert_int_eq(got.id, 7);
    ck_assert_int_eq(got.role, AUTH_ROLE_VIEWER);
    ck_assert_int_eq(cached(c, "rlhfd_b", &got), 1);
    ck_assert_int_eq(got.id, 9);
    ck_assert_int_eq(got.role, AUTH_ROLE_ADMIN);
    /* texts that share a prefix with a cached one are other tokens */
    ck_assert_int_eq(cached(c, "rlhfd_", &got), 0);
    ck_assert_int_eq(cached(c, "rlhfd_ab", &got), 0);
    ck_assert_int_eq(cached(c, "", &got), 0);
    token_cache_free(c);
}
END_TEST

START_TEST(test_invalidate) {
    token_cache *c = token_cache_new();
    auth_token t = {3, AUTH_ROLE_ANNOTATOR}, got;
    remember(c, "rlhfd_a", &t);
    /* a lookup of b begins (reads the database) before a revocation ... */
    uint64_t before;
    ck_assert_int_eq(token_cache_get(c, "rlhfd_b", &got, &before), 0);
    token_cache_invalidate(c);
    ck_assert_int_eq(cached(c, "rlhfd_a", &got), 0); /* emptied */
    /* ... and ends after it: what it read may be the revoked token */
    token_cache_put(c, "rlhfd_b", &t, before);
    ck_assert_int_eq(cached(c, "rlhfd_b", &got), 0);
    /* a lookup that began after the revocation is stored */
    remember(c, "rlhfd_b", &t);
    ck_assert_int_eq(cached(c, "rlhfd_b", &got), 1);
    ck_assert_int_eq(got.id, 3);
    /* and a second revocation empties it again */
    token_cache_invalidate(c);
    ck_assert_int_eq(cached(c, "rlhfd_b", &got), 0);
    token_cache_free(c);
}
END_TEST

START_TEST(test_same_slot_replaces) {
    token_cache *c = token_cache_new();
    auth_token a = {1, AUTH_ROLE_ADMIN}, got;
    remember(c, "rlhfd_first", &a);
    /* Store other tokens until one takes first's slot (first misses): with
     * TOKEN_CACHE_SLOTS slots that happens within a few thousand. */
    char other[48] = "";
    int64_t i;
    for (i = 0; i < 100 * TOKEN_CACHE_SLOTS && cached(c, "rlhfd_first", &got); i++) {
        snprintf(other, sizeof other, "rlhfd_other_%lld", (long long)i);
        auth_token t = {100 + i, AUTH_ROLE_VIEWER};
        remember(c, other, &t);
    }
    ck_assert_msg(!cached(c, "rlhfd_first", &got), "no token ever replaced rlhfd_first");
    ck_assert_int_ge(i, 1);
    /* the token that replaced it is cached, with its own id */
    ck_assert_int_eq(cached(c, other, &got), 1);
    ck_assert_int_eq(got.id, 100 + i - 1);
    /* storing first again replaces that one in turn */
    remember(c, "rlhfd_first", &a);
    ck_assert_int_eq(cached(c, "rlhfd_first", &got), 1);
    ck_assert_int_eq(got.id, 1);
    ck_assert_int_eq(cached(c, other, &got), 0);
    token_cache_free(c);
}
END_TEST

START_TEST(test_many_tokens_fit_the_slots) {
    /* More tokens than slots: by pigeonhole some were replaced, and the
     * last one stored is always there. */
    token_cache *c = token_cache_new();
    char text[32];
    for (int i = 0; i <= TOKEN_CACHE_SLOTS; i++) {
        snprintf(text, sizeof text, "rlhfd_%d", i);
        auth_token t = {i + 1, AUTH_ROLE_VIEWER};
        remember(c, text, &t);
    }
    int hits = 0;
    auth_token got;
    for (int i = 0; i <= TOKEN_CACHE_SLOTS; i++) {
        snprintf(text, sizeof text, "rlhfd_%d", i);
        if (cached(c, text, &got)) {
            ck_assert_int_eq(got.id, i + 1); /* a hit is that token's, never another's */
            hits++;
        }
    }
    ck_assert_int_le(hits, TOKEN_CACHE_SLOTS);
    ck_assert_int_ge(hits, 1);
    ck_assert_int_eq(cached(c, text, &got), 1);
    token_cache_free(c);
}
END_TEST

START_TEST(test_length_limit) {
    token_cache *c = token_cache_new();
    char longest[TOKEN_CACHE_MAX_LEN + 2];
    memset(longest, 'x', sizeof longest);
    longest[TOKEN_CACHE_MAX_LEN] = '\0'; /* exactly the limit: kept */
    auth_token t = {5, AUTH_ROLE_VIEWER}, got;
    remember(c, longest, &t);
    ck_assert_int_eq(cached(c, longest, &got), 1);
    longest[TOKEN_CACHE_MAX_LEN] = 'x'; /* one byte more: not kept */
    longest[TOKEN_CACHE_MAX_LEN + 1] = '\0';
    remember(c, longest, &t);
    ck_assert_int_eq(cached(c, longest, &got), 0);
    token_cache_free(c);
}
END_TEST

Suite *token_cache_suite(void) {
    Suite *s = suite_create("token_cache");
    TCase *tc = tcase_create("token_cache");
    tcase_add_test(tc, test_hit_and_miss);
    tcase_add_test(tc, test_invalidate);
    tcase_add_test(tc, test_same_slot_replaces);
    tcase_add_test(tc, test_many_tokens_fit_the_slots);
    tcase_add_test(tc, test_length_limit);
    suite_add_tcase(s, tc);
    return s;
}
