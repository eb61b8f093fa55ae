/* Unit tests of the push queue (include/im/pushq.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "im/pushq.h"

#include "fail_alloc.h"
#include "test_rng.h"

#include <string.h>

static uint64_t seed;

#define RTO 100

static void
init(im_pushq *q, uint32_t max_items, uint32_t max_bytes)
{
	im_pushq_opts o = IM_PUSHQ_OPTS_INIT;

	o.max_items = max_items;
	o.max_bytes = max_bytes;
	o.rto_ms = RTO;
	assert_int_equal(im_pushq_init(q, &o), IM_OK);
}

/* Payload of (conv, seq): a length and bytes both derived from them. */
static uint32_t
plen(uint64_t conv, im_seq seq)
{
	return (uint32_t)((conv * 7 + seq * 3) % 40);
}

static void
pfill(uint8_t *b, uint64_t conv, im_seq seq)
{
	uint32_t j;

	for (j = 0; j < plen(conv, seq); j++) {
		b[j] = (uint8_t)(conv * 31 + seq + j);
	}
}

static bool
push(im_pushq *q, uint64_t conv, im_seq seq, uint64_t now)
{
	uint8_t b[64];
	bool queued = false;

	pfill(b, conv, seq);
	assert_int_equal(im_pushq_push(q, conv, seq, b, plen(conv, seq), now,
				       &queued), IM_OK);
	return queued;
}

/* What callbacks saw. */
#define SEEN_MAX 4096
struct seen {
	size_t n;
	int stop_at; /* return 1 at this call (0-based), -1 = never */
	im_pushq_item it[SEEN_MAX];
	bool data_ok;
};

static int
record(const im_pushq_item *item, void *payload)
{
	struct seen *s = payload;
	uint8_t b[64];

	assert_true(s->n < SEEN_MAX);
	pfill(b, item->conv, item->seq);
	if (item->len != plen(item->conv, item->seq) ||
	    memcmp(item->data, b, item->len) != 0) {
		s->data_ok = false;
	}
	s->it[s->n] = *item;
	s->it[s->n].data = NULL;
	if ((int)s->n++ == s->stop_at) {
		return 1;
	}
	return 0;
}

static void
seen_reset(struct seen *s)
{
	s->n = 0;
	s->stop_at = -1;
	s->data_ok = true;
}

static void
test_pushq_init_rejects_invalid_opts(void **state)
{
	im_pushq_opts o = IM_PUSHQ_OPTS_INIT;
	im_pushq q;

	(void)state;
	assert_int_equal(im_pushq_init(NULL, &o), IM_EINVAL);
	assert_int_equal(im_pushq_init(&q, NULL), IM_EINVAL);
	o.max_items = 0;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.max_items = (1u << 24) + 1;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.max_items = 10;
	o.max_bytes = 0;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.max_bytes = 10;
	o.rto_ms = 0;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.rto_ms = 10;
	o.version = 0;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.version = IM_PUSHQ_OPTS_VERSION + 1;
	assert_int_equal(im_pushq_init(&q, &o), IM_EINVAL);
	o.version = IM_PUSHQ_OPTS_VERSION;
	assert_int_equal(im_pushq_init(&q, &o), IM_OK);
	im_pushq_finish(&q);
	/* Finishing twice, or NULL, is harmless. */
	im_pushq_finish(&q);
	im_pushq_finish(NULL);
}

static void
test_pushq_idle_queue_holds_no_memory_and_keeps_it_for_reuse(void **state)
{
	fail_alloc fa = {0, 0, 0};
	im_pushq_opts o = IM_PUSHQ_OPTS_INIT;
	im_pushq q;
	unsigned long calls;
	im_seq s;

	(void)state;
	o.alloc = fail_alloc_allocator(&fa);
	assert_int_equal(im_pushq_init(&q, &o), IM_OK);
	assert_int_equal(fa.calls, 0);
	assert_int_equal(im_pushq_next_due(&q), UINT64_MAX);
	assert_int_equal(im_pushq_ack(&q, 1, 10), 0);
	assert_int_equal(fa.calls, 0);
	for (s = 1; s <= 5; s++) {
		assert_true(push(&q, 1, s, 0));
	}
	assert_int_equal(im_pushq_ack(&q, 1, 5), 5);
	assert_int_equal(im_pushq_count(&q), 0);
	assert_true(fa.live > 0);
	/* Traffic of the same size again costs no allocation. */
	calls = fa.calls;
	for (s = 6; s <= 10; s++) {
		assert_true(push(&q, 1, s, 0));
	}
	assert_int_equal(im_pushq_ack(&q, 1, 10), 5);
	assert_int_equal(fa.calls, calls);
	im_pushq_finish(&q);
	assert_int_equal(fa.live, 0);
}

static void
test_pushq_push_copies_data_and_counts_bytes(void **state)
{
	im_pushq q;
	struct seen s;
	uint8_t b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	bool queued = false;

	(void)state;
	init(&q, 16, 1024);
	assert_int_equal(im_pushq_push(&q, 3, 10, b, 8, 0, &queued), IM_OK);
	assert_true(queued);
	memset(b, 0, sizeof(b));
	assert_int_equal(im_pushq_push(&q, 3, 11, NULL, 0, 0, NULL), IM_OK);
	assert_int_equal(im_pushq_count(&q), 2);
	assert_int_equal(im_pushq_bytes(&q), 8);
	assert_int_equal(im_pushq_last_seq(&q, 3), 11);
	assert_int_equal(im_pushq_last_seq(&q, 4), 0);
	seen_reset(&s);
	s.data_ok = true;
	assert_int_equal(im_pushq_replay(&q, 3, 0, 5, record, &s), IM_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.it[0].seq, 10);
	assert_int_equal(s.it[0].len, 8);
	assert_int_equal(s.it[1].seq, 11);
	assert_int_equal(s.it[1].len, 0);
	im_pushq_finish(&q);
}

static int
check_copy(const im_pushq_item *item, void *payload)
{
	static const uint8_t want[4] = {9, 8, 7, 6};

	(void)payload;
	assert_int_equal(item->len, 4);
	assert_memory_equal(item->data, want, 4);
	assert_int_equal(item->tries, 2);
	assert_int_equal(item->sent_ms, 7);
	return 0;
}

static void
test_pushq_data_is_a_copy(void **state)
{
	im_pushq q;
	uint8_t b[4] = {9, 8, 7, 6};

	(void)state;
	init(&q, 4, 64);
	assert_int_equal(im_pushq_push(&q, 1, 1, b, 4, 0, NULL), IM_OK);
	memset(b, 0, sizeof(b));
	assert_int_equal(im_pushq_replay(&q, 1, 0, 7, check_copy, NULL),
			 IM_OK);
	im_pushq_finish(&q);
}

static void
test_pushq_duplicate_or_old_seq_is_not_queued(void **state)
{
	im_pushq q;

	(void)state;
	init(&q, 16, 1024);
	assert_true(push(&q, 1, 10, 0));
	assert_false(push(&q, 1, 10, 0));
	assert_false(push(&q, 1, 9, 0));
	assert_false(push(&q, 1, 0, 0));
	assert_false(push(&q, 2, 0, 0));
	assert_int_equal(im_pushq_count(&q), 1);
	/* Acked seqs stay duplicates. */
	assert_int_equal(im_pushq_ack(&q, 1, 10), 1);
	assert_false(push(&q, 1, 10, 0));
	assert_true(push(&q, 1, 11, 0));
	/* The user queue is conversation 0. */
	assert_true(push(&q, IM_PUSHQ_USERQ, 1, 0));
	assert_int_equal(im_pushq_last_seq(&q, IM_PUSHQ_USERQ), 1);
	im_pushq_finish(&q);
}

static void
test_pushq_item_bound_returns_efull_and_changes_nothing(void **state)
{
	im_pushq q;
	bool queued = true;
	im_seq s;

	(void)state;
	init(&q, 3, 1024);
	for (s = 1; s <= 3; s++) {
		assert_true(push(&q, 1, s, 0));
	}
	assert_int_equal(im_pushq_push(&q, 1, 4, "x", 1, 0, &queued),
			 IM_EFULL);
	assert_false(queued);
	assert_int_equal(im_pushq_push(&q, 2, 1, "x", 1, 0, &queued),
			 IM_EFULL);
	assert_int_equal(im_pushq_count(&q), 3);
	assert_int_equal(im_pushq_last_seq(&q, 1), 3);
	assert_int_equal(im_pushq_last_seq(&q, 2), 0);
	/* A duplicate is still fine when full. */
	assert_int_equal(im_pushq_push(&q, 1, 2, "x", 1, 0, &queued), IM_OK);
	assert_false(queued);
	/* An ack makes room. */
	assert_int_equal(im_pushq_ack(&q, 1, 1), 1);
	assert_true(push(&q, 1, 4, 0));
	im_pushq_finish(&q);
}

static void
test_pushq_byte_bound_returns_efull_and_changes_nothing(void **state)
{
	im_pushq q;
	uint8_t b[100];

	(void)state;
	memset(b, 1, sizeof(b));
	init(&q, 100, 100);
	assert_int_equal(im_pushq_push(&q, 1, 1, b, 60, 0, NULL), IM_OK);
	assert_int_equal(im_pushq_push(&q, 1, 2, b, 41, 0, NULL), IM_EFULL);
	assert_int_equal(im_pushq_bytes(&q), 60);
	assert_int_equal(im_pushq_last_seq(&q, 1), 1);
	assert_int_equal(im_pushq_push(&q, 1, 2, b, 40, 0, NULL), IM_OK);
	assert_int_equal(im_pushq_bytes(&q), 100);
	/* Empty payloads still fit, until the item bound. */
	assert_int_equal(im_pushq_push(&q, 1, 3, NULL, 0, 0, NULL), IM_OK);
	assert_int_equal(im_pushq_push(&q, 1, 4, b, 1, 0, NULL), IM_EFULL);
	im_pushq_finish(&q);
}

static void
test_pushq_ack_is_cumulative_per_conversation(void **state)
{
	im_pushq q;
	struct seen s;
	im_seq x;

	(void)state;
	init(&q, 64, 4096);
	for (x = 1; x <= 10; x++) {
		assert_true(push(&q, 1, x * 10, 0));
		assert_true(push(&q, 2, x * 10, 0));
	}
	assert_int_equal(im_pushq_ack(&q, 1, 35), 3);
	assert_int_equal(im_pushq_ack(&q, 1, 35), 0);
	assert_int_equal(im_pushq_ack(&q, 1, 20), 0);
	assert_int_equal(im_pushq_ack(&q, 3, 100), 0);
	assert_int_equal(im_pushq_ack(NULL, 1, 100), 0);
	assert_int_equal(im_pushq_count(&q), 17);
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, 1, 0, 0, record, &s), IM_OK);
	assert_int_equal(s.n, 7);
	assert_int_equal(s.it[0].seq, 40);
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, 2, 0, 0, record, &s), IM_OK);
	assert_int_equal(s.n, 10);
	assert_int_equal(im_pushq_ack(&q, 2, UINT64_MAX), 10);
	assert_int_equal(im_pushq_ack(&q, 1, 100), 7);
	assert_int_equal(im_pushq_count(&q), 0);
	assert_int_equal(im_pushq_bytes(&q), 0);
	assert_int_equal(im_pushq_next_due(&q), UINT64_MAX);
	im_pushq_finish(&q);
}

static void
test_pushq_due_lists_items_oldest_first_and_marks_them_sent(void **state)
{
	im_pushq q;
	struct seen s;

	(void)state;
	init(&q, 64, 4096);
	assert_true(push(&q, 1, 1, 0));
	assert_true(push(&q, 2, 1, 10));
	assert_true(push(&q, 1, 2, 20));
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 99, 10, record, &s), IM_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(im_pushq_due(&q, 110, 10, record, &s), IM_OK);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.it[0].conv, 1);
	assert_int_equal(s.it[0].seq, 1);
	assert_int_equal(s.it[0].tries, 2);
	assert_int_equal(s.it[0].sent_ms, 110);
	assert_int_equal(s.it[1].conv, 2);
	assert_true(s.data_ok);
	/* Now the oldest transmission is (1, 2) at 20. */
	assert_int_equal(im_pushq_next_due(&q), 120);
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 210, 10, record, &s), IM_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.it[0].seq, 2);
	assert_int_equal(s.it[0].tries, 2);
	assert_int_equal(s.it[1].tries, 3);
	assert_int_equal(s.it[2].tries, 3);
	assert_int_equal(im_pushq_next_due(&q), 310);
	/* A clock that went back finds nothing due. */
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 5, 10, record, &s), IM_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(im_pushq_due(NULL, 5, 10, record, &s), IM_EINVAL);
	assert_int_equal(im_pushq_due(&q, 5, 10, NULL, &s), IM_EINVAL);
	im_pushq_finish(&q);
}

static void
test_pushq_due_is_bounded_by_max_and_stops_on_callback_error(void **state)
{
	im_pushq q;
	struct seen s;
	im_seq x;

	(void)state;
	init(&q, 64, 4096);
	for (x = 1; x <= 10; x++) {
		assert_true(push(&q, 1, x, x));
	}
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 1000, 0, record, &s), IM_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(im_pushq_due(&q, 1000, 4, record, &s), IM_OK);
	assert_int_equal(s.n, 4);
	assert_int_equal(s.it[3].seq, 4);
	seen_reset(&s);
	s.stop_at = 2;
	assert_int_equal(im_pushq_due(&q, 1000, 100, record, &s), 1);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.it[0].seq, 5);
	/* The rest comes next; 5..7 were marked and are not due again. */
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 1000, 100, record, &s), IM_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.it[0].seq, 8);
	assert_int_equal(im_pushq_count(&q), 10);
	im_pushq_finish(&q);
}

static void
test_pushq_next_due_tracks_the_oldest_transmission(void **state)
{
	im_pushq q;

	(void)state;
	init(&q, 64, 4096);
	assert_int_equal(im_pushq_next_due(&q), UINT64_MAX);
	assert_int_equal(im_pushq_next_due(NULL), UINT64_MAX);
	assert_true(push(&q, 1, 1, 50));
	assert_true(push(&q, 2, 1, 70));
	assert_int_equal(im_pushq_next_due(&q), 50 + RTO);
	assert_int_equal(im_pushq_ack(&q, 1, 1), 1);
	assert_int_equal(im_pushq_next_due(&q), 70 + RTO);
	/* Saturates instead of wrapping. */
	assert_true(push(&q, 3, 1, UINT64_MAX - 1));
	assert_int_equal(im_pushq_ack(&q, 2, 1), 1);
	assert_int_equal(im_pushq_next_due(&q), UINT64_MAX);
	im_pushq_finish(&q);
}

static void
test_pushq_replay_returns_unacked_items_in_seq_order(void **state)
{
	im_pushq q;
	struct seen s;
	im_seq x;

	(void)state;
	init(&q, 64, 4096);
	for (x = 1; x <= 6; x++) {
		assert_true(push(&q, 1, x * 2, 0));
		assert_true(push(&q, 2, x, 0));
	}
	assert_int_equal(im_pushq_ack(&q, 1, 4), 2);
	/* Mix the transmission order up; replay must not care. */
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, RTO, 3, record, &s), IM_OK);
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, 1, 7, 500, record, &s), IM_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.it[0].seq, 8);
	assert_int_equal(s.it[1].seq, 10);
	assert_int_equal(s.it[2].seq, 12);
	assert_int_equal(s.it[0].sent_ms, 500);
	assert_true(s.data_ok);
	assert_int_equal(im_pushq_next_due(&q), RTO);
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, 9, 0, 500, record, &s), IM_OK);
	assert_int_equal(s.n, 0);
	s.stop_at = 0;
	assert_int_equal(im_pushq_replay(&q, 2, 0, 500, record, &s), 1);
	assert_int_equal(s.n, 1);
	assert_int_equal(im_pushq_replay(NULL, 2, 0, 0, record, &s),
			 IM_EINVAL);
	assert_int_equal(im_pushq_replay(&q, 2, 0, 0, NULL, &s), IM_EINVAL);
	im_pushq_finish(&q);
}

static void
test_pushq_replay_all_covers_every_conversation(void **state)
{
	im_pushq q;
	struct seen s;
	uint64_t c;
	im_seq x, last[6] = {0};
	size_t i;

	(void)state;
	init(&q, 64, 4096);
	for (x = 1; x <= 5; x++) {
		for (c = 0; c < 6; c++) {
			assert_true(push(&q, c, x, 0));
		}
	}
	assert_int_equal(im_pushq_ack(&q, 3, 5), 5);
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, IM_PUSHQ_ALL, 1, 9, record, &s),
			 IM_OK);
	assert_int_equal(s.n, 5 * 4);
	for (i = 0; i < s.n; i++) {
		assert_true(s.it[i].conv != 3);
		assert_true(s.it[i].seq > last[s.it[i].conv]);
		last[s.it[i].conv] = s.it[i].seq;
	}
	s.stop_at = 3;
	s.n = 0;
	assert_int_equal(im_pushq_replay(&q, IM_PUSHQ_ALL, 0, 9, record, &s),
			 1);
	assert_int_equal(s.n, 4);
	im_pushq_finish(&q);
}

static void
test_pushq_tombstones_are_compacted_and_memory_stays_bounded(void **state)
{
	im_pushq q;
	struct seen s;
	im_seq x;
	uint64_t c;

	(void)state;
	init(&q, 32, 32 * 40);
	/* Conversation 1 never acks while 2..4 ack at once: the arrays fill
	 * with tombstones between live items of conversation 1. */
	for (x = 1; x <= 2000; x++) {
		c = 1 + x % 4;
		if (c == 1 && im_pushq_count(&q) >= 20) {
			assert_int_equal(im_pushq_ack(&q, 1, x - 80), 1);
		}
		assert_true(push(&q, c, x, x));
		if (c != 1) {
			assert_int_equal(im_pushq_ack(&q, c, x), 1);
		}
		assert_true(q.icap <= 2 * 32);
		assert_true(q.bcap <= 2 * 32 * 40);
	}
	seen_reset(&s);
	assert_int_equal(im_pushq_replay(&q, 1, 0, 0, record, &s), IM_OK);
	assert_int_equal(s.n, im_pushq_count(&q));
	assert_true(s.data_ok);
	for (x = 1; x < s.n; x++) {
		assert_int_equal(s.it[x].seq, s.it[x - 1].seq + 4);
	}
	/* Transmission order survived the moves: due finds them in order. */
	seen_reset(&s);
	assert_int_equal(im_pushq_due(&q, 100000, 100, record, &s), IM_OK);
	assert_int_equal(s.n, im_pushq_count(&q));
	for (x = 1; x < s.n; x++) {
		assert_true(s.it[x].seq > s.it[x - 1].seq);
	}
	im_pushq_finish(&q);
}

static void
test_pushq_forgets_the_longest_idle_conversation_when_full(void **state)
{
	im_pushq q;
	uint64_t c;

	(void)state;
	init(&q, 4, 1024);
	for (c = 1; c <= 4; c++) {
		assert_true(push(&q, c, 10, 0));
	}
	assert_int_equal(im_pushq_ack(&q, 2, 10), 1);
	assert_int_equal(im_pushq_ack(&q, 1, 10), 1);
	assert_true(push(&q, 5, 10, 0));
	/* 2 went idle first and is forgotten; 1 is still known. */
	assert_int_equal(im_pushq_last_seq(&q, 2), 0);
	assert_int_equal(im_pushq_last_seq(&q, 1), 10);
	assert_int_equal(im_pushq_last_seq(&q, 3), 10);
	assert_int_equal(im_pushq_last_seq(&q, 5), 10);
	assert_false(push(&q, 1, 10, 0));
	assert_true(push(&q, 6, 10, 0));
	assert_int_equal(im_pushq_last_seq(&q, 1), 0);
	assert_int_equal(im_pushq_count(&q), 4);
	im_pushq_finish(&q);
}

static void
test_pushq_null_arguments_are_rejected(void **state)
{
	im_pushq q;
	bool queued = true;

	(void)state;
	init(&q, 4, 64);
	assert_int_equal(im_pushq_push(NULL, 1, 1, "x", 1, 0, &queued),
			 IM_EINVAL);
	assert_false(queued);
	assert_int_equal(im_pushq_push(&q, 1, 1, NULL, 1, 0, NULL),
			 IM_EINVAL);
	assert_int_equal(im_pushq_count(&q), 0);
	assert_int_equal(im_pushq_count(NULL), 0);
	assert_int_equal(im_pushq_bytes(NULL), 0);
	assert_int_equal(im_pushq_last_seq(NULL, 1), 0);
	im_pushq_finish(&q);
}

static void
test_pushq_survives_allocation_failure_at_every_step(void **state)
{
	unsigned long n;
	bool failed = true;

	(void)state;
	for (n = 1; n < 1000 && failed; n++) {
		fail_alloc fa = {n, 0, 0};
		im_pushq_opts o = IM_PUSHQ_OPTS_INIT;
		im_pushq q;
		struct seen s;
		uint64_t c;
		im_seq x;

		failed = false;
		o.max_items = 64;
		o.max_bytes = 64 * 40;
		o.alloc = fail_alloc_allocator(&fa);
		assert_int_equal(im_pushq_init(&q, &o), IM_OK);
		for (x = 1; x <= 12; x++) {
			for (c = 1; c <= 5; c++) {
				uint8_t b[64];
				size_t cnt = im_pushq_count(&q);
				size_t bytes = im_pushq_bytes(&q);
				int rc;

				pfill(b, c, x);
				rc = im_pushq_push(&q, c, x, b, plen(c, x), x,
						   NULL);
				if (rc == IM_OK) {
					continue;
				}
				assert_int_equal(rc, IM_ENOMEM);
				failed = true;
				assert_int_equal(im_pushq_count(&q), cnt);
				assert_int_equal(im_pushq_bytes(&q), bytes);
				assert_int_equal(im_pushq_last_seq(&q, c),
						 x - 1);
				/* The allocator fails once: retry works. */
				assert_true(push(&q, c, x, x));
			}
			if (x % 3 == 0) {
				assert_int_equal(im_pushq_ack(&q, 2, x), 3);
			}
		}
		seen_reset(&s);
		assert_int_equal(im_pushq_replay(&q, IM_PUSHQ_ALL, 0, 100,
						 record, &s), IM_OK);
		assert_int_equal(s.n, 48);
		assert_true(s.data_ok);
		im_pushq_finish(&q);
		assert_int_equal(fa.live, 0);
	}
	assert_false(failed);
	assert_true(n > 3);
}

/*
 * Property test: random pushes, acks, due and replay calls over a few
 * conversations, against a model that keeps every unacked item with its
 * transmission state and a transmission counter for "oldest first".
 */
#define M_CONVS 5
#define M_MAX 4096

struct mitem {
	uint64_t conv;
	im_seq seq;
	uint64_t sent;
	uint32_t tries;
	uint64_t tick;
	bool live;
};

struct pmodel {
	struct mitem it[M_MAX];
	size_t n;
	im_seq last[M_CONVS];
	uint64_t tick;
	size_t count, bytes;
};

static struct mitem *
m_find(struct pmodel *m, uint64_t conv, im_seq seq)
{
	size_t i;

	for (i = 0; i < m->n; i++) {
		if (m->it[i].live && m->it[i].conv == conv &&
		    m->it[i].seq == seq) {
			return &m->it[i];
		}
	}
	return NULL;
}

static struct mitem *
m_oldest(struct pmodel *m)
{
	struct mitem *best = NULL;
	size_t i;

	for (i = 0; i < m->n; i++) {
		if (m->it[i].live && (best == NULL ||
				      m->it[i].tick < best->tick)) {
			best = &m->it[i];
		}
	}
	return best;
}

/* Check what a callback saw against the model, then account it. */
static void
m_transmitted(struct pmodel *m, const struct seen *s, uint64_t now)
{
	size_t i;

	assert_true(s->data_ok);
	for (i = 0; i < s->n; i++) {
		struct mitem *mi = m_find(m, s->it[i].conv, s->it[i].seq);

		/* Never an acked (or unknown) item. */
		assert_non_null(mi);
		mi->sent = now;
		mi->tries++;
		mi->tick = ++m->tick;
		assert_int_equal(s->it[i].tries, mi->tries);
		assert_int_equal(s->it[i].sent_ms, now);
	}
}

static void
test_pushq_matches_a_reference_model_over_random_ops(void **state)
{
	static struct pmodel m;
	static struct seen s;
	test_rng rng = {seed ^ 0x9a5b};
	unsigned round;

	(void)state;
	for (round = 0; round < 10; round++) {
		im_pushq q;
		uint32_t max_items = 1 + (uint32_t)test_rng_below(&rng, 40);
		uint32_t max_bytes = 1 + (uint32_t)test_rng_below(&rng, 800);
		uint64_t now = 1000;
		unsigned op;
		size_t i;

		memset(&m, 0, sizeof(m));
		init(&q, max_items, max_bytes);
		for (op = 0; op < 3000; op++) {
			uint64_t c = test_rng_below(&rng, M_CONVS);
			uint64_t r = test_rng_below(&rng, 100);
			struct mitem *o;

			now += test_rng_below(&rng, 30);
			if (r < 45) {
				/* Mostly the next seqs, with gaps and dups. */
				im_seq x = m.last[c] + 1 +
					   test_rng_below(&rng, 3);
				uint8_t b[64];
				bool queued = false;
				int rc, want = IM_OK;

				if (test_rng_below(&rng, 8) == 0) {
					x = test_rng_below(&rng, x + 1);
				}
				pfill(b, c, x);
				rc = im_pushq_push(&q, c, x, b, plen(c, x),
						   now, &queued);
				if (x > m.last[c] &&
				    (m.count + 1 > max_items ||
				     m.bytes + plen(c, x) > max_bytes)) {
					want = IM_EFULL;
				}
				assert_int_equal(rc, want);
				assert_int_equal(queued, want == IM_OK &&
						 x > m.last[c]);
				if (queued) {
					assert_true(m.n < M_MAX);
					m.it[m.n].conv = c;
					m.it[m.n].seq = x;
					m.it[m.n].sent = now;
					m.it[m.n].tries = 1;
					m.it[m.n].tick = ++m.tick;
					m.it[m.n].live = true;
					m.n++;
					m.last[c] = x;
					m.count++;
					m.bytes += plen(c, x);
				}
			} else if (r < 75) {
				im_seq x = test_rng_below(&rng,
							  m.last[c] + 2);
				size_t want = 0;

				for (i = 0; i < m.n; i++) {
					if (m.it[i].live &&
					    m.it[i].conv == c &&
					    m.it[i].seq <= x) {
						m.it[i].live = false;
						m.count--;
						m.bytes -= plen(c,
								m.it[i].seq);
						want++;
					}
				}
				assert_int_equal(im_pushq_ack(&q, c, x),
						 want);
			} else if (r < 90) {
				size_t max = test_rng_below(&rng, 6);
				size_t k;

				seen_reset(&s);
				assert_int_equal(im_pushq_due(&q, now, max,
							      record, &s),
						 IM_OK);
				/* Exactly the oldest due ones, in order. */
				for (k = 0; k < s.n; k++) {
					o = m_oldest(&m);
					assert_non_null(o);
					assert_int_equal(s.it[k].conv,
							 o->conv);
					assert_int_equal(s.it[k].seq, o->seq);
					assert_true(o->sent + RTO <= now);
					o->tick = ++m.tick;
					o->tries++;
					o->sent = now;
					assert_int_equal(s.it[k].tries,
							 o->tries);
				}
				o = m_oldest(&m);
				assert_true(s.n == max || o == NULL ||
					    o->sent + RTO > now);
			} else {
				bool all = test_rng_below(&rng, 3) == 0;
				im_seq after = test_rng_below(&rng,
							      m.last[c] + 1);
				im_seq prev[M_CONVS] = {0};
				size_t want = 0;

				seen_reset(&s);
				assert_int_equal(im_pushq_replay(&q,
					all ? IM_PUSHQ_ALL : c, after, now,
					record, &s), IM_OK);
				for (i = 0; i < s.n; i++) {
					uint64_t sc = s.it[i].conv;

					assert_true(all || sc == c);
					assert_true(s.it[i].seq > after);
					assert_true(s.it[i].seq > prev[sc]);
					prev[sc] = s.it[i].seq;
				}
				for (i = 0; i < m.n; i++) {
					if (m.it[i].live &&
					    (all || m.it[i].conv == c) &&
					    m.it[i].seq > after) {
						want++;
					}
				}
				/* Nothing unacked is left out. */
				assert_int_equal(s.n, want);
				m_transmitted(&m, &s, now);
			}
			assert_int_equal(im_pushq_count(&q), m.count);
			assert_int_equal(im_pushq_bytes(&q), m.bytes);
			o = m_oldest(&m);
			assert_int_equal(im_pushq_next_due(&q),
					 o == NULL ? UINT64_MAX
						   : o->sent + RTO);
			/* A conversation without items may be forgotten, but
			 * only when max_items conversations are known. */
			for (i = 0; i < M_CONVS; i++) {
				im_seq l = im_pushq_last_seq(&q, i);
				size_t k;

				if (l == m.last[i]) {
					continue;
				}
				assert_int_equal(l, 0);
				assert_true(max_items < M_CONVS);
				for (k = 0; k < m.n; k++) {
					assert_false(m.it[k].live &&
						     m.it[k].conv == i);
				}
				m.last[i] = 0;
			}
		}
		seen_reset(&s);
		assert_int_equal(im_pushq_replay(&q, IM_PUSHQ_ALL, 0, now,
						 record, &s), IM_OK);
		assert_int_equal(s.n, m.count);
		m_transmitted(&m, &s, now);
		im_pushq_finish(&q);
	}
}

static void
test_pushq_shrink_gives_a_burst_back_once_the_queue_is_empty(void **state)
{
	im_pushq_opts o = IM_PUSHQ_OPTS_INIT;
	im_pushq q;
	uint8_t data[200];
	size_t peak, small, released;
	bool queued;
	im_seq s;

	(void)state;
	memset(data, 7, sizeof(data));
	assert_int_equal(im_pushq_init(&q, &o), IM_OK);
	assert_int_equal(im_pushq_mem(&q), 0);
	assert_int_equal(im_pushq_mem(NULL), 0);
	assert_int_equal(im_pushq_push(&q, 5, 1, data, 10, 0, &queued), IM_OK);
	small = im_pushq_mem(&q);
	assert_true(small > 0 && small < 4096);
	/* A burst of 1,000 unacked deliveries. */
	for (s = 2; s <= 1000; s++) {
		assert_int_equal(im_pushq_push(&q, 5, s, data, sizeof(data), 0,
		                               &queued), IM_OK);
	}
	peak = im_pushq_mem(&q);
	assert_true(peak >= 999 * sizeof(data));
	/* Not empty yet: nothing is released. */
	assert_int_equal(im_pushq_ack(&q, 5, 999), 999);
	assert_int_equal(im_pushq_shrink(&q, 4096), 0);
	assert_int_equal(im_pushq_mem(&q), peak);
	assert_int_equal(im_pushq_ack(&q, 5, 1000), 1);
	released = im_pushq_shrink(&q, 4096);
	assert_int_equal(released, peak - im_pushq_mem(&q));
	assert_true(im_pushq_mem(&q) < 4096);
	/* The duplicate check survives the shrink. */
	assert_int_equal(im_pushq_last_seq(&q, 5), 1000);
	assert_int_equal(im_pushq_push(&q, 5, 1000, data, 10, 0, &queued),
	                 IM_OK);
	assert_false(queued);
	/* And the queue works as before. */
	assert_int_equal(im_pushq_push(&q, 5, 1001, data, 10, 0, &queued),
	                 IM_OK);
	assert_true(queued);
	assert_int_equal(im_pushq_count(&q), 1);
	assert_int_equal(im_pushq_bytes(&q), 10);
	assert_int_equal(im_pushq_ack(&q, 5, 1001), 1);
	/* Small arrays are kept for reuse: no churn per message. */
	assert_int_equal(im_pushq_shrink(&q, 4096), 0);
	im_pushq_finish(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pushq_init_rejects_invalid_opts),
		cmocka_unit_test(
			test_pushq_idle_queue_holds_no_memory_and_keeps_it_for_reuse),
		cmocka_unit_test(test_pushq_push_copies_data_and_counts_bytes),
		cmocka_unit_test(test_pushq_data_is_a_copy),
		cmocka_unit_test(test_pushq_duplicate_or_old_seq_is_not_queued),
		cmocka_unit_test(
			test_pushq_item_bound_returns_efull_and_changes_nothing),
		cmocka_unit_test(
			test_pushq_byte_bound_returns_efull_and_changes_nothing),
		cmocka_unit_test(test_pushq_ack_is_cumulative_per_conversation),
		cmocka_unit_test(
			test_pushq_due_lists_items_oldest_first_and_marks_them_sent),
		cmocka_unit_test(
			test_pushq_due_is_bounded_by_max_and_stops_on_callback_error),
		cmocka_unit_test(
			test_pushq_next_due_tracks_the_oldest_transmission),
		cmocka_unit_test(
			test_pushq_replay_returns_unacked_items_in_seq_order),
		cmocka_unit_test(
			test_pushq_replay_all_covers_every_conversation),
		cmocka_unit_test(
			test_pushq_tombstones_are_compacted_and_memory_stays_bounded),
		cmocka_unit_test(
			test_pushq_forgets_the_longest_idle_conversation_when_full),
		cmocka_unit_test(test_pushq_null_arguments_are_rejected),
		cmocka_unit_test(
			test_pushq_survives_allocation_failure_at_every_step),
		cmocka_unit_test(
			test_pushq_matches_a_reference_model_over_random_ops),
		cmocka_unit_test(
			test_pushq_shrink_gives_a_burst_back_once_the_queue_is_empty),
	};

	seed = test_seed();
	return cmocka_run_group_tests_name("pushq", tests, NULL, NULL);
}
