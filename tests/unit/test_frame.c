#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "im/frame.h"
#include "test_rng.h"

static void
test_frame_header_round_trips_through_parse(void **state)
{
	uint8_t buf[IM_FRAME_HEADER + 5];
	const uint8_t *payload = NULL;
	uint32_t plen = 0;
	size_t used = 0;

	(void)state;
	im_frame_put_header(buf, 5);
	memcpy(buf + IM_FRAME_HEADER, "hello", 5);
	assert_int_equal(im_frame_parse(buf, sizeof(buf), 64, &payload, &plen,
					&used),
			 IM_OK);
	assert_int_equal(plen, 5);
	assert_int_equal(used, sizeof(buf));
	assert_memory_equal(payload, "hello", 5);
}

static void
test_frame_incomplete_input_asks_for_more(void **state)
{
	uint8_t buf[IM_FRAME_HEADER + 3];
	const uint8_t *payload;
	uint32_t plen;
	size_t used, cut;

	(void)state;
	im_frame_put_header(buf, 3);
	memcpy(buf + IM_FRAME_HEADER, "abc", 3);
	for (cut = 0; cut < sizeof(buf); cut++) {
		assert_int_equal(im_frame_parse(buf, cut, 64, &payload, &plen,
						&used),
				 IM_EAGAIN);
	}
	assert_int_equal(im_frame_parse(NULL, 0, 64, &payload, &plen, &used),
			 IM_EAGAIN);
}

static void
test_frame_oversize_prefix_is_rejected_before_the_payload_arrives(void **state)
{
	uint8_t buf[IM_FRAME_HEADER];
	const uint8_t *payload;
	uint32_t plen;
	size_t used;

	(void)state;
	im_frame_put_header(buf, 0xffffffffu);
	assert_int_equal(im_frame_parse(buf, sizeof(buf), IM_FRAME_MAX,
					&payload, &plen, &used),
			 IM_ETOOBIG);
	im_frame_put_header(buf, 65);
	assert_int_equal(im_frame_parse(buf, sizeof(buf), 64, &payload, &plen,
					&used),
			 IM_ETOOBIG);
}

static void
test_frame_empty_frame_is_a_protocol_error(void **state)
{
	uint8_t buf[IM_FRAME_HEADER];
	const uint8_t *payload;
	uint32_t plen;
	size_t used;

	(void)state;
	im_frame_put_header(buf, 0);
	assert_int_equal(im_frame_parse(buf, sizeof(buf), 64, &payload, &plen,
					&used),
			 IM_EPROTO);
}

/* A stream cut at random points parses back into the same frames. */
static void
test_frame_random_stream_parses_back_in_order(void **state)
{
	static uint8_t stream[1 << 16];
	uint32_t lens[256];
	size_t nframes = 0, off = 0, got = 0, have = 0, pos = 0;
	test_rng rng = {test_seed()};

	(void)state;
	while (nframes < 256 && off + IM_FRAME_HEADER + 200 <
						   sizeof(stream)) {
		uint32_t len = 1 + (uint32_t)test_rng_below(&rng, 200);
		uint32_t i;

		im_frame_put_header(stream + off, len);
		for (i = 0; i < len; i++) {
			stream[off + IM_FRAME_HEADER + i] =
				(uint8_t)(nframes + i);
		}
		lens[nframes++] = len;
		off += IM_FRAME_HEADER + len;
	}
	/* Feed the bytes in random chunks, as a socket would. */
	while (have < off) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;

		have += 1 + test_rng_below(&rng, 300);
		if (have > off) {
			have = off;
		}
		while (im_frame_parse(stream + pos, have - pos, 256, &payload,
				      &plen, &used) == IM_OK) {
			assert_true(got < nframes);
			assert_int_equal(plen, lens[got]);
			assert_int_equal(payload[0], (uint8_t)got);
			pos += used;
			got++;
		}
	}
	assert_int_equal(got, nframes);
	assert_int_equal(pos, off);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_header_round_trips_through_parse),
		cmocka_unit_test(test_frame_incomplete_input_asks_for_more),
		cmocka_unit_test(
			test_frame_oversize_prefix_is_rejected_before_the_payload_arrives),
		cmocka_unit_test(test_frame_empty_frame_is_a_protocol_error),
		cmocka_unit_test(test_frame_random_stream_parses_back_in_order),
	};

	return cmocka_run_group_tests_name("frame", tests, NULL, NULL);
}
