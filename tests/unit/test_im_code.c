/*
 * The wire code table (proto/im_code.h): every im.Code has a text and a
 * name, a client reads each code as the im_err it always did (the mapping
 * libim/client had of its own), and a server answers a failed libim/store
 * call with ERR_FULL or ERR_UNAVAILABLE only. The texts the Chatter sends
 * are pinned here too, as they were before the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "im_code.h"

static void
test_im_code_every_code_has_a_text_and_a_name(void **state)
{
	uint32_t code;

	(void)state;
	for (code = _im_Code_MIN; code <= _im_Code_MAX; code++) {
		assert_non_null(im_code_text(code));
		assert_true(strlen(im_code_text(code)) > 0);
		assert_non_null(im_code_name(code));
	}
	assert_string_equal(im_code_name(im_Code_ERR_FULL), "ERR_FULL");
	assert_string_equal(im_code_name(im_Code_OK), "OK");
}

static void
test_im_code_unknown_code_is_an_internal_error(void **state)
{
	uint32_t code = _im_Code_MAX + 1;

	(void)state;
	assert_string_equal(im_code_text(code), "internal error");
	assert_null(im_code_name(code));
	assert_int_equal(im_code_to_err(code), IM_ERR);
	assert_int_equal(im_code_to_err(1000), IM_ERR);
}

static void
test_im_code_to_err_is_what_the_client_returns(void **state)
{
	static const struct {
		uint32_t code;
		int err;
	} want[] = {
	        {im_Code_OK, IM_OK},
	        {im_Code_ERR_INTERNAL, IM_ERR},
	        {im_Code_ERR_BAD_REQUEST, IM_EINVAL},
	        {im_Code_ERR_AUTH, IM_EPERM},
	        {im_Code_ERR_NOT_LOGGED_IN, IM_EPROTO},
	        {im_Code_ERR_NOT_MEMBER, IM_EPERM},
	        {im_Code_ERR_NOT_FOUND, IM_ENOTFOUND},
	        {im_Code_ERR_TOO_BIG, IM_ETOOBIG},
	        {im_Code_ERR_UNAVAILABLE, IM_EUNAVAIL},
	        {im_Code_ERR_FULL, IM_EFULL},
	        {im_Code_ERR_REDIRECT, IM_EAGAIN},
	        {im_Code_ERR_SESSION, IM_ENOTFOUND},
	        {im_Code_ERR_TIMEOUT, IM_EAGAIN},
	        {im_Code_ERR_STORE_FULL, IM_ENOSPC},
	};
	size_t i;

	(void)state;
	assert_int_equal(sizeof(want) / sizeof(want[0]), _im_Code_ARRAYSIZE);
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(im_code_to_err(want[i].code), want[i].err);
	}
}

static void
test_im_code_of_err_is_full_or_unavailable(void **state)
{
	int err;

	(void)state;
	assert_int_equal(im_code_of_err(IM_OK), im_Code_OK);
	assert_int_equal(im_code_of_err(IM_EFULL), im_Code_ERR_FULL);
	/* A full disk is certain too (nothing stored), and distinct from a
	 * bound: the client tells its user "store full". */
	assert_int_equal(im_code_of_err(IM_ENOSPC), im_Code_ERR_STORE_FULL);
	for (err = IM_ERR; err >= IM_ENOSPC; err--) {
		if (err != IM_EFULL && err != IM_ENOSPC) {
			assert_int_equal(im_code_of_err(err),
			                 im_Code_ERR_UNAVAILABLE);
		}
	}
}

static void
test_im_code_texts_are_those_the_chatter_sent(void **state)
{
	(void)state;
	assert_string_equal(im_code_text(im_Code_ERR_NOT_FOUND),
	                    "no such group");
	assert_string_equal(im_code_text(im_Code_ERR_NOT_MEMBER),
	                    "not a member of the group");
	assert_string_equal(im_code_text(im_Code_ERR_FULL),
	                    "server bound reached");
	assert_string_equal(im_code_text(im_Code_ERR_UNAVAILABLE),
	                    "store unavailable; retry with the same dedup id");
	assert_string_equal(im_code_text(im_Code_ERR_STORE_FULL),
	                    "store full");
	assert_string_equal(im_code_text(im_Code_ERR_INTERNAL),
	                    "internal error");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_im_code_every_code_has_a_text_and_a_name),
	        cmocka_unit_test(
	                test_im_code_unknown_code_is_an_internal_error),
	        cmocka_unit_test(
	                test_im_code_to_err_is_what_the_client_returns),
	        cmocka_unit_test(test_im_code_of_err_is_full_or_unavailable),
	        cmocka_unit_test(test_im_code_texts_are_those_the_chatter_sent),
	};

	return cmocka_run_group_tests_name("im_code", tests, NULL, NULL);
}
