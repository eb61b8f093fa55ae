/* Login tokens: mint/verify round trips, and every way a token can lie. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "im/token.h"
#include "test_rng.h"

static const char secret[] = "0123456789abcdef-test-secret";
#define SLEN (sizeof(secret) - 1)

static void
test_token_minted_token_verifies_to_its_user(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_uid uid = 0;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	assert_int_equal(im_token_verify(tok, secret, SLEN, 1999, &uid), IM_OK);
	assert_int_equal(uid, 42);
	assert_int_equal(im_token_verify(tok, secret, SLEN, 0, NULL), IM_OK);
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
	assert_int_equal(im_token_verify(tok, secret, SLEN, 5, &uid), IM_OK);
	assert_true(uid == UINT64_MAX);
}

static void
test_token_expired_token_is_refused(void **state)
{
	char tok[IM_TOKEN_BUF];
	im_uid uid = 9;

	assert_int_equal(
	        im_token_mint(tok, sizeof(tok), secret, SLEN, 42, 2000), IM_OK);
	assert_int_equal(im_token_verify(tok, secret, SLEN, 2000, &uid),
	                 IM_EPERM);
	assert_int_equal(im_token_verify(tok, secret, SLEN, 5000, &uid),
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
	assert_int_equal(im_token_verify(tok, other, SLEN, 1, NULL), IM_EPERM);
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
		assert_int_equal(im_token_verify(tok, secret, SLEN, 1, NULL),
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
	assert_int_equal(im_token_verify(forged, secret, SLEN, 1, NULL),
	                 IM_EPERM);
	snprintf(forged, sizeof(forged), "42.9000%s", tok + 7);
	assert_int_equal(im_token_verify(forged, secret, SLEN, 1, NULL),
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
		assert_int_equal(im_token_verify(bad, secret, SLEN, 1, NULL),
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
		assert_int_equal(im_token_verify(bad, secret, SLEN, 1, NULL),
		                 IM_EINVAL);
	}
	/* Too long to be a token at all. */
	memset(bad, '1', sizeof(bad) - 1);
	bad[sizeof(bad) - 1] = '\0';
	assert_int_equal(im_token_verify(bad, secret, SLEN, 1, NULL),
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
		        im_token_verify(bad, secret, SLEN, 1, NULL), IM_OK);
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
	assert_int_equal(im_token_verify(NULL, secret, SLEN, 1, NULL),
	                 IM_EINVAL);
	assert_int_equal(im_token_mint(tok, sizeof(tok), secret, SLEN, 1, 2),
	                 IM_OK);
	assert_int_equal(im_token_verify(tok, NULL, SLEN, 1, NULL), IM_EINVAL);
	assert_int_equal(im_token_verify(tok, secret, 3, 1, NULL), IM_EINVAL);
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
	};

	return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
