/*
 * Login tokens: mint/verify round trips, and every way a token can lie.
 * Every check goes through both im_token_verify and an im_token_verifier
 * (verify() below), which must give the same answer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fail_alloc.h"
#include "im/token.h"
#include "test_rng.h"

static const char secret[] = "0123456789abcdef-test-secret";
#define SLEN (sizeof(secret) - 1)

/* The verifier for `secret`, shared by every test so that one keyed
 * context sees thousands of checks, good and bad, in a row. */
static im_token_verifier *shared;

static int
setup_shared(void **state)
{
	return im_token_verifier_create(&shared, secret, SLEN, NULL);
}

static int
teardown_shared(void **state)
{
	im_token_verifier_destroy(shared);
	shared = NULL;
	return 0;
}

/* im_token_verify, checked against a verifier on the same key (the shared
 * one for `secret`); both must agree on the code and on *uid_out. */
static int
verify(const char *tok, const void *key, size_t key_len, uint64_t now_s,
       im_uid *uid_out)
{
	im_token_verifier *v = shared, *own = NULL;
	im_uid u1 = uid_out != NULL ? *uid_out : 0, u2 = u1;
	int rc, vrc;

	rc = im_token_verify(tok, key, key_len, now_s,
	                     uid_out != NULL ? &u1 : NULL);
	if (key != secret || key_len != SLEN) {
		vrc = im_token_verifier_create(&own, key, key_len, NULL);
		v = own;
		if (vrc != IM_OK) {
			/* Only a key im_token_verify refuses too. */
			assert_int_equal(vrc, IM_EINVAL);
			assert_int_equal(rc, IM_EINVAL);
			return rc;
		}
	}
	vrc = im_token_verifier_verify(v, tok, now_s,
	                               uid_out != NULL ? &u2 : NULL);
	im_token_verifier_destroy(own);
	assert_int_equal(vrc, rc);
	assert_true(u1 == u2);
	if (uid_out != NULL) {
		*uid_out = u1;
	}
	return rc;
}

static void
test_token_minted_token_verifies_to_its_user(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_uid uid = 0;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	assert_int_equal(verify(tok, secret, SLEN, 1999, &uid), IM_OK);
	assert_int_equal(uid, 42);
	assert_int_equal(verify(tok, secret, SLEN, 0, NULL), IM_OK);
}

static void
test_token_has_the_documented_format(void **state)
{
	char tok[IM_TOKEN_BUF];
	/* HMAC-SHA256(key="0123456789abcdef-test-secret", "7.100") computed
	 * independently with `openssl dgst -sha256 -hmac`. */
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN, 7, 100),
	                 IM_OK);
	assert_string_equal(tok, "7.100.94b34f45c406a1558ce515e632e3f73e"
	                         "3611dfcc99d309e4333931cf4a128be5");
}

static void
test_token_largest_ids_fit_the_documented_buffer(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_uid uid = 0;

	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN,
	                               UINT64_MAX, UINT64_MAX),
	                 IM_OK);
	assert_int_equal(strlen(tok), IM_TOKEN_MAX);
	assert_int_equal(verify(tok, secret, SLEN, 5, &uid), IM_OK);
	assert_true(uid == UINT64_MAX);
}

static void
test_token_expired_token_is_refused(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_uid uid = 9;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	assert_int_equal(verify(tok, secret, SLEN, 2000, &uid),
	                 IM_EPERM);
	assert_int_equal(verify(tok, secret, SLEN, 5000, &uid),
	                 IM_EPERM);
	assert_int_equal(uid, 9);
}

static void
test_token_other_secret_is_refused(void **state)
{
	char tok[IM_TOKEN_BUF];
	static const char other[] = "0123456789abcdef-test-secreT";

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	assert_int_equal(verify(tok, other, SLEN, 1, NULL), IM_EPERM);
}

static void
test_token_any_flipped_mac_digit_is_refused(void **state)
{
	char tok[IM_TOKEN_BUF];
	size_t i, start;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	start = strlen(tok) - 64;
	for (i = start; i < strlen(tok); i++) {
		char save = tok[i];

		tok[i] = save == 'a' ? 'b' : 'a';
		assert_int_equal(verify(tok, secret, SLEN, 1, NULL),
		                 IM_EPERM);
		tok[i] = save;
	}
}

static void
test_token_changed_claims_are_refused(void **state)
{
	char tok[IM_TOKEN_BUF];
	char forged[IM_TOKEN_BUF + 8];

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	/* Same MAC, other user / later expiry. */
	snprintf(forged, sizeof(forged), "43%s", tok + 2);
	assert_int_equal(verify(forged, secret, SLEN, 1, NULL),
	                 IM_EPERM);
	snprintf(forged, sizeof(forged), "42.9000%s", tok + 7);
	assert_int_equal(verify(forged, secret, SLEN, 1, NULL),
	                 IM_EPERM);
}

/* Copy pattern into out with its "%s" (if any) replaced by mac. */
static void
subst_mac(char *out, size_t len, const char *pattern, const char *mac)
{
	const char *hole = strstr(pattern, "%s");

	if (hole == NULL) {
		snprintf(out, len, "%s", pattern);
		return;
	}
	snprintf(out, len, "%.*s%s%s", (int)(hole - pattern), pattern, mac,
	         hole + 2);
}

static void
test_token_malformed_tokens_are_invalid(void **state)
{
	char tok[IM_TOKEN_BUF];
	char bad[256];
	const char *mac;
	static const char *const cases[] = {
	        "",
	        ".",
	        "..",
	        "42",
	        "42.2000",
	        "42.2000.",
	        "x.2000.%s",
	        "042.2000.%s",
	        "42.02000.%s",
	        "+42.2000.%s",
	        " 42.2000.%s",
	        "42 .2000.%s",
	        "0.2000.%s",
	        "42.0.%s",
	        "42..%s",
	        ".2000.%s",
	        "42.2000.%s0",
	        "42.2000.%s.",
	        "18446744073709551616.2000.%s",
	        "42.18446744073709551616.%s",
	        "42.2000.2000.%s",
	};
	size_t i;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	mac = tok + strlen("42.2000.");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		subst_mac(bad, sizeof(bad), cases[i], mac);
		assert_int_equal(verify(bad, secret, SLEN, 1, NULL),
		                 IM_EINVAL);
	}
	/* Upper-case hex is another spelling of the same MAC: refused. */
	snprintf(bad, sizeof(bad), "%s", tok);
	for (i = strlen("42.2000."); bad[i] != '\0'; i++) {
		if (bad[i] >= 'a' && bad[i] <= 'f') {
			bad[i] = (char)(bad[i] - 'a' + 'A');
			break;
		}
	}
	if (bad[i] != '\0') {
		assert_int_equal(verify(bad, secret, SLEN, 1, NULL),
		                 IM_EINVAL);
	}
	/* Too long to be a token at all. */
	memset(bad, '1', sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	assert_int_equal(verify(bad, secret, SLEN, 1, NULL),
	                 IM_EINVAL);
}

static void
test_token_random_garbage_never_verifies(void **state)
{
	test_rng rng = {test_seed()};
	char bad[IM_TOKEN_MAX + 1];
	size_t i, j, n;

	for (i = 0; i < 20000; i++) {
		n = (size_t)test_rng_below(&rng, sizeof(bad));
		for (j = 0; j < n; j++) {
			static const char alpha[] = "0123456789abcdef.x";

			bad[j] = alpha[test_rng_below(&rng, sizeof(alpha) - 1)];
		}
		bad[n] = '\0';
		assert_int_not_equal(
		        verify(bad, secret, SLEN, 1, NULL), IM_OK);
	}
}

static void
test_token_bad_arguments_are_rejected(void **state)
{
	char tok[IM_TOKEN_BUF];
	char small[20];

	assert_int_equal(im_token_mint(NULL, 10, secret, SLEN, 1, 2),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), NULL, SLEN, 1, 2),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, 15, 1, 2),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret,
	                               IM_TOKEN_SECRET_MAX + 1, 1, 2),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN, 0, 2),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN, 1, 0),
	                 IM_EINVAL);
	assert_int_equal(
	        im_token_mint(small, sizeof(small), secret, SLEN, 1, 2),
	        IM_ETOOBIG);
	assert_string_equal(small, "");
	assert_int_equal(verify(NULL, secret, SLEN, 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN, 1, 2),
	                 IM_OK);
	assert_int_equal(verify(tok, NULL, SLEN, 1, NULL), IM_EINVAL);
	assert_int_equal(verify(tok, secret, 3, 1, NULL), IM_EINVAL);
}

/* bench/im-bench/token.c mints on its own; its test pins this vector. */
static void
test_token_matches_the_im_bench_vector(void **state)
{
	char tok[IM_TOKEN_BUF];

	assert_int_equal(im_token_mint(tok, sizeof(tok), "0123456789abcdef", 16,
	                               42, 1700000000),
	                 IM_OK);
	assert_string_equal(tok, "42.1700000000."
	                         "7718ee373e1d52f09c9a6ff8b193b811"
	                         "df7a17ac10e4af25c8c9477abfe90909");
}

static void
test_token_verifier_create_rejects_bad_arguments(void **state)
{
	im_token_verifier_opts o = IM_TOKEN_VERIFIER_OPTS_INIT;
	im_token_verifier *v = (im_token_verifier *)&o; /* must become NULL */

	assert_int_equal(im_token_verifier_create(NULL, secret, SLEN, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_token_verifier_create(&v, NULL, SLEN, NULL),
	                 IM_EINVAL);
	assert_null(v);
	assert_int_equal(im_token_verifier_create(&v, secret,
	                                          IM_TOKEN_SECRET_MIN - 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_token_verifier_create(&v, secret,
	                                          IM_TOKEN_SECRET_MAX + 1, NULL),
	                 IM_EINVAL);
	o.version = 0;
	assert_int_equal(im_token_verifier_create(&v, secret, SLEN, &o),
	                 IM_EINVAL);
	o.version = IM_TOKEN_VERIFIER_OPTS_VERSION + 1;
	assert_int_equal(im_token_verifier_create(&v, secret, SLEN, &o),
	                 IM_EINVAL);
	assert_null(v);
	assert_int_equal(im_token_verifier_verify(NULL, "1.2.x", 1, NULL),
	                 IM_EINVAL);
}

static void
test_token_verifier_destroy_accepts_null(void **state)
{
	im_token_verifier_destroy(NULL);
}

static void
test_token_verifier_create_survives_every_allocation_failure(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_token_verifier *v = NULL;
	im_uid uid = 0;
	unsigned long n;
	int rc = IM_ENOMEM;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	for (n = 1; rc == IM_ENOMEM; n++) {
		im_token_verifier_opts o = IM_TOKEN_VERIFIER_OPTS_INIT;
		fail_alloc fa = {n, 0, 0};

		o.alloc = fail_alloc_allocator(&fa);
		rc = im_token_verifier_create(&v, secret, SLEN, &o);
		if (rc == IM_ENOMEM) {
			assert_null(v);
			assert_int_equal(fa.live, 0);
			continue;
		}
		assert_int_equal(rc, IM_OK);
		assert_true(fa.calls >= 1); /* it did use the allocator */
		assert_int_equal(im_token_verifier_verify(v, tok, 1, &uid),
		                 IM_OK);
		assert_int_equal(uid, 42);
		im_token_verifier_destroy(v);
		assert_int_equal(fa.live, 0);
	}
	assert_true(n > 2); /* at least one failure was walked */
}

static void
test_token_verifiers_of_two_secrets_do_not_mix(void **state)
{
	static const char other[] = "another-secret-of-enough-length";
	char mine[IM_TOKEN_BUF], theirs[IM_TOKEN_BUF];
	im_token_verifier *v = NULL;
	int i;

	assert_int_equal(im_token_verifier_create(&v, other, sizeof(other) - 1,
	                                          NULL),
	                 IM_OK);
	assert_int_equal(
	        im_token_mint(mine, sizeof(mine), secret, SLEN, 7, 2000), IM_OK);
	assert_int_equal(im_token_mint(theirs, sizeof(theirs), other,
	                               sizeof(other) - 1, 7, 2000),
	                 IM_OK);
	for (i = 0; i < 3; i++) {
		assert_int_equal(im_token_verifier_verify(v, theirs, 1, NULL),
		                 IM_OK);
		assert_int_equal(im_token_verifier_verify(v, mine, 1, NULL),
		                 IM_EPERM);
		assert_int_equal(
		        im_token_verifier_verify(shared, mine, 1, NULL), IM_OK);
		assert_int_equal(
		        im_token_verifier_verify(shared, theirs, 1, NULL),
		        IM_EPERM);
	}
	im_token_verifier_destroy(v);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_token_minted_token_verifies_to_its_user),
	        cmocka_unit_test(test_token_has_the_documented_format),
	        cmocka_unit_test(
	                test_token_largest_ids_fit_the_documented_buffer),
	        cmocka_unit_test(test_token_expired_token_is_refused),
	        cmocka_unit_test(test_token_other_secret_is_refused),
	        cmocka_unit_test(test_token_any_flipped_mac_digit_is_refused),
	        cmocka_unit_test(test_token_changed_claims_are_refused),
	        cmocka_unit_test(test_token_malformed_tokens_are_invalid),
	        cmocka_unit_test(test_token_random_garbage_never_verifies),
	        cmocka_unit_test(test_token_bad_arguments_are_rejected),
	        cmocka_unit_test(test_token_matches_the_im_bench_vector),
	        cmocka_unit_test(
	                test_token_verifier_create_rejects_bad_arguments),
	        cmocka_unit_test(test_token_verifier_destroy_accepts_null),
	        cmocka_unit_test(
	                test_token_verifier_create_survives_every_allocation_failure),
	        cmocka_unit_test(
	                test_token_verifiers_of_two_secrets_do_not_mix),
	};

	return cmocka_run_group_tests_name("token", tests, setup_shared,
	                                   teardown_shared);
}
