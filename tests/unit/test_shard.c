#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fail_alloc.h"
#include "im/shard.h"
#include "mem_store.h"
#include "store_backends.h"
#include "test_rng.h"

#define NSLOTS 1024
#define MAXN 32

static uint64_t seed;


/* A set of node names with stable storage and a pointer list for plan. */
typedef struct nodeset {
	char names[MAXN][IM_OWNER_MAX + 1];
	const char *ptr[MAXN];
	size_t n;
} nodeset;

static void
nodeset_add(nodeset *ns, const char *name)
{
	assert_true(ns->n < MAXN);
	snprintf(ns->names[ns->n], sizeof(ns->names[0]), "%s", name);
	ns->n++;
	for (size_t i = 0; i < ns->n; i++) {
		ns->ptr[i] = ns->names[i];
	}
}

static void
nodeset_remove(nodeset *ns, size_t at)
{
	assert_true(at < ns->n);
	memmove(ns->names[at], ns->names[at + 1],
		(ns->n - at - 1) * sizeof(ns->names[0]));
	ns->n--;
	for (size_t i = 0; i < ns->n; i++) {
		ns->ptr[i] = ns->names[i];
	}
}

static void
nodeset_random(nodeset *ns, test_rng *r, size_t n)
{
	char name[IM_OWNER_MAX + 1];

	memset(ns, 0, sizeof(*ns));
	while (ns->n < n) {
		snprintf(name, sizeof(name), "node-%llx",
			 (unsigned long long)test_rng_below(r, 1u << 20));
		bool dup = false;
		for (size_t i = 0; i < ns->n; i++) {
			dup = dup || strcmp(ns->names[i], name) == 0;
		}
		if (!dup) {
			nodeset_add(ns, name);
		}
	}
}

static im_shard_map *
new_map(uint32_t nslots, uint32_t max_nodes)
{
	im_shard_opts o = IM_SHARD_OPTS_INIT;
	im_shard_map *map = NULL;

	o.nslots = nslots;
	o.max_nodes = max_nodes;
	assert_int_equal(im_shard_create(&map, &o), IM_OK);
	assert_non_null(map);
	return map;
}

static size_t
plan(const im_shard_map *map, const nodeset *ns, im_shard_move *moves)
{
	size_t nm = 0;

	assert_int_equal(im_shard_plan(map, IM_KIND_GROUP, ns->ptr, ns->n,
				       moves, NSLOTS, &nm),
			 IM_OK);
	return nm;
}

/* Apply moves as if every CAS won (epoch + 1), without a store. */
static void
apply_moves(im_shard_map *map, const im_shard_move *moves, size_t nm)
{
	for (size_t i = 0; i < nm; i++) {
		assert_int_equal(im_shard_apply(map, IM_KIND_GROUP,
						moves[i].slot,
						moves[i].epoch + 1, moves[i].to),
				 IM_OK);
	}
}

/* Every live node holds floor or ceil of nslots/n, and nobody else any. */
static void
assert_balanced(const im_shard_map *map, const nodeset *ns)
{
	uint32_t lo = NSLOTS / (uint32_t)ns->n;
	uint32_t hi = lo + (NSLOTS % ns->n != 0 ? 1 : 0);
	uint32_t total = 0;

	for (size_t i = 0; i < ns->n; i++) {
		uint32_t c = im_shard_count(map, IM_KIND_GROUP, ns->ptr[i]);

		assert_in_range(c, lo, hi);
		total += c;
	}
	assert_int_equal(total, NSLOTS);
}

static void
test_shard_slot_of_is_pinned_to_known_values(void **state)
{
	(void)state;
	/* Changing these breaks every deployed cluster's slot table. */
	assert_int_equal(im_shard_slot_of(1, 1024), 485);
	assert_int_equal(im_shard_slot_of(2, 1024), 138);
	assert_int_equal(im_shard_slot_of(42, 1024), 546);
	assert_int_equal(im_shard_slot_of(1000000007, 1024), 560);
	assert_int_equal(im_shard_slot_of(UINT64_MAX, 1024), 379);
	assert_int_equal(im_shard_slot_of(1, 65536), 1509);
	assert_int_equal(im_shard_slot_of(42, 65536), 30242);
	assert_int_equal(im_shard_slot_of(42, 7), 3);
	assert_int_equal(im_shard_slot_of(42, 0), 0);
}

static void
test_shard_slot_of_spreads_sequential_ids_evenly(void **state)
{
	uint32_t hist[64] = {0};

	(void)state;
	for (uint64_t id = 1; id <= 64 * 1000; id++) {
		uint32_t s = im_shard_slot_of(id, 64);

		assert_true(s < 64);
		hist[s]++;
	}
	for (int i = 0; i < 64; i++) {
		/* 1000 expected; 6 sigma is about +-190. */
		assert_in_range(hist[i], 800, 1200);
	}
}

static void
test_shard_create_rejects_bad_opts(void **state)
{
	im_shard_opts o = IM_SHARD_OPTS_INIT;
	im_shard_map *map = (im_shard_map *)&o;

	(void)state;
	assert_int_equal(im_shard_create(NULL, &o), IM_EINVAL);
	o.version = 0;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	assert_null(map);
	o.version = IM_SHARD_OPTS_VERSION + 1;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	o.version = IM_SHARD_OPTS_VERSION;
	o.nslots = 0;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	o.nslots = IM_SHARD_SLOTS_MAX + 1;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	o.nslots = IM_SHARD_SLOTS_MAX;
	o.max_nodes = 0;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	o.max_nodes = IM_SHARD_NODES_MAX + 1;
	assert_int_equal(im_shard_create(&map, &o), IM_EINVAL);
	assert_null(map);

	/* NULL opts means the defaults. */
	assert_int_equal(im_shard_create(&map, NULL), IM_OK);
	assert_int_equal(im_shard_nslots(map), IM_SHARD_SLOTS_DEFAULT);
	im_shard_destroy(map);
	assert_int_equal(im_shard_nslots(NULL), 0);
}

static void
test_shard_create_survives_allocation_failure_at_every_step(void **state)
{
	fail_alloc fa = {0, 0, 0};
	im_shard_opts o = IM_SHARD_OPTS_INIT;
	im_shard_map *map = NULL;
	unsigned long n;
	int rc = IM_ENOMEM;

	(void)state;
	o.alloc = fail_alloc_allocator(&fa);
	for (n = 1; n < 100 && rc != IM_OK; n++) {
		fa.fail_at = n;
		fa.calls = 0;
		rc = im_shard_create(&map, &o);
		if (rc != IM_OK) {
			assert_int_equal(rc, IM_ENOMEM);
			assert_null(map);
			assert_int_equal(fa.live, 0);
		}
	}
	assert_int_equal(rc, IM_OK);
	assert_true(n > 2); /* at least one failure path was walked */
	/* A map that survived: it works and frees everything. */
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 3, 1, "a"), IM_OK);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "a"), 1);
	im_shard_destroy(map);
	assert_int_equal(fa.live, 0);
	im_shard_destroy(NULL);
}

static void
test_shard_new_map_has_every_slot_unowned(void **state)
{
	im_shard_map *map = new_map(NSLOTS, 8);
	im_shard_entry e;

	(void)state;
	for (uint32_t s = 0; s < NSLOTS; s++) {
		assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, s, &e),
				 IM_OK);
		assert_int_equal(e.slot, s);
		assert_int_equal(e.epoch, 0);
		assert_string_equal(e.owner, "");
	}
	assert_int_equal(im_shard_count(map, IM_KIND_USER, ""), NSLOTS);
	assert_int_equal(im_shard_count(map, IM_KIND_GROUP, ""), NSLOTS);
	assert_int_equal(im_shard_count(map, IM_KIND_GROUP, "nobody"), 0);
	im_shard_destroy(map);
}

static void
test_shard_get_finds_the_owner_of_an_ids_slot(void **state)
{
	im_shard_map *map = new_map(NSLOTS, 8);
	uint32_t s = im_shard_slot_of(777, NSLOTS);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_apply(map, IM_KIND_GROUP, s, 4, "chat-1"),
			 IM_OK);
	e = im_shard_get(map, IM_KIND_GROUP, 777);
	assert_int_equal(e.slot, s);
	assert_int_equal(e.epoch, 4);
	assert_string_equal(e.owner, "chat-1");
	/* Kinds are separate tables. */
	e = im_shard_get(map, IM_KIND_USER, 777);
	assert_string_equal(e.owner, "");
	/* get cannot fail: bad input answers "unowned". */
	e = im_shard_get(NULL, IM_KIND_GROUP, 777);
	assert_string_equal(e.owner, "");
	e = im_shard_get(map, (im_kind)7, 777);
	assert_string_equal(e.owner, "");
	assert_int_equal(e.epoch, 0);
	im_shard_destroy(map);
}

static void
test_shard_get_slot_rejects_bad_arguments(void **state)
{
	im_shard_map *map = new_map(16, 8);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 16, &e),
			 IM_EINVAL);
	assert_int_equal(im_shard_get_slot(map, (im_kind)2, 0, &e), IM_EINVAL);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 0, NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_get_slot(NULL, IM_KIND_USER, 0, &e),
			 IM_EINVAL);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 15, &e), IM_OK);
	im_shard_destroy(map);
}

static void
test_shard_apply_ignores_older_epochs_and_keeps_counts(void **state)
{
	im_shard_map *map = new_map(16, 8);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 5, 3, "a"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 5, 2, "b"), IM_OK);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 5, &e), IM_OK);
	assert_int_equal(e.epoch, 3);
	assert_string_equal(e.owner, "a");
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "b"), 0);

	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 5, 4, "b"), IM_OK);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "a"), 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "b"), 1);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, ""), 15);
	/* Releasing a slot (owner "") makes it unowned again. */
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 5, 5, ""), IM_OK);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "b"), 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, ""), 16);
	im_shard_destroy(map);
}

static void
test_shard_apply_rejects_bad_arguments(void **state)
{
	im_shard_map *map = new_map(16, 8);
	char longname[IM_OWNER_MAX + 2];

	(void)state;
	memset(longname, 'x', sizeof(longname));
	longname[IM_OWNER_MAX + 1] = '\0';
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 16, 1, "a"),
			 IM_EINVAL);
	assert_int_equal(im_shard_apply(map, (im_kind)-1, 0, 1, "a"),
			 IM_EINVAL);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 1, NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 1, longname),
			 IM_EINVAL);
	assert_int_equal(im_shard_apply(NULL, IM_KIND_USER, 0, 1, "a"),
			 IM_EINVAL);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, ""), 16);
	/* Exactly IM_OWNER_MAX bytes fit. */
	longname[IM_OWNER_MAX] = '\0';
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 1, longname),
			 IM_OK);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, longname), 1);
	im_shard_destroy(map);
}

static void
test_shard_apply_returns_efull_past_max_nodes_and_changes_nothing(void **state)
{
	im_shard_map *map = new_map(16, 2);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 1, "a"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_GROUP, 1, 1, "b"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 2, "c"),
			 IM_EFULL);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 0, &e), IM_OK);
	assert_int_equal(e.epoch, 1);
	assert_string_equal(e.owner, "a");
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "c"), 0);
	/* Known names and "" still work when the table is full. */
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 2, "b"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 2, 1, ""), IM_OK);
	im_shard_destroy(map);
}

static void
test_shard_load_reads_both_kinds_from_the_store(void **state)
{
	im_store *st = store_of(state);
	im_shard_map *map = new_map(NSLOTS, 8);
	im_shard_entry e;
	im_epoch ep;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 7, 0, "c1",
					   &ep),
			 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 7, 1, "c2",
					   &ep),
			 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_GROUP, 9, 0,
					   "chat", &ep),
			 IM_OK);
	assert_int_equal(im_shard_load(map, st), IM_OK);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 7, &e), IM_OK);
	assert_int_equal(e.epoch, 2);
	assert_string_equal(e.owner, "c2");
	assert_int_equal(im_shard_get_slot(map, IM_KIND_GROUP, 9, &e), IM_OK);
	assert_int_equal(e.epoch, 1);
	assert_string_equal(e.owner, "chat");
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "c1"), 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "c2"), 1);
	assert_int_equal(im_shard_count(map, IM_KIND_GROUP, "chat"), 1);
	assert_int_equal(im_shard_count(map, IM_KIND_GROUP, ""), NSLOTS - 1);
	/* Loading again changes nothing. */
	assert_int_equal(im_shard_load(map, st), IM_OK);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "c2"), 1);
	assert_int_equal(im_shard_load(NULL, st), IM_EINVAL);
	assert_int_equal(im_shard_load(map, NULL), IM_EINVAL);
	im_shard_destroy(map);
}

static void
test_shard_load_never_moves_an_epoch_backwards(void **state)
{
	im_store *st = store_of(state);
	im_shard_map *map = new_map(NSLOTS, 8);
	im_shard_entry e;
	im_epoch ep;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 3, 0, "old",
					   &ep),
			 IM_OK);
	/* The map heard of a newer owner (e.g. by RPC) before the store. */
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 3, 5, "new"), IM_OK);
	assert_int_equal(im_shard_load(map, st), IM_OK);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 3, &e), IM_OK);
	assert_int_equal(e.epoch, 5);
	assert_string_equal(e.owner, "new");
	im_shard_destroy(map);
}

/* Snapshot of both kinds, to compare a map before and after a call. */
static void
snapshot(const im_shard_map *map, uint32_t nslots, im_epoch *ep,
	 char (*own)[IM_OWNER_MAX + 1])
{
	for (int k = 0; k < IM_KIND_COUNT; k++) {
		for (uint32_t s = 0; s < nslots; s++) {
			im_shard_entry e;

			assert_int_equal(im_shard_get_slot(map, (im_kind)k, s,
							   &e),
					 IM_OK);
			ep[k * nslots + s] = e.epoch;
			strcpy(own[k * nslots + s], e.owner);
		}
	}
}

static void
assert_same_as(const im_shard_map *map, uint32_t nslots, const im_epoch *ep,
	       char (*own)[IM_OWNER_MAX + 1])
{
	static im_epoch ep2[2 * 64];
	static char own2[2 * 64][IM_OWNER_MAX + 1];

	assert_true(nslots <= 64);
	snapshot(map, nslots, ep2, own2);
	for (uint32_t i = 0; i < 2 * nslots; i++) {
		assert_int_equal(ep[i], ep2[i]);
		assert_string_equal(own[i], own2[i]);
	}
}

static void
test_shard_load_failure_midway_leaves_the_map_unchanged(void **state)
{
	static im_epoch ep[2 * 64];
	static char own[2 * 64][IM_OWNER_MAX + 1];
	mem_store *m = mem_store_open();
	im_shard_map *map = new_map(64, 4);
	char name[16];
	im_epoch e;

	(void)state;
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 9, "keep"),
			 IM_OK);
	for (uint32_t s = 0; s < 20; s++) {
		snprintf(name, sizeof(name), "n%u", s % 3);
		assert_int_equal(im_store_slot_cas(&m->base, IM_KIND_GROUP, s,
						   0, name, &e),
				 IM_OK);
	}
	snapshot(map, 64, ep, own);

	/* Connection lost after some rows. */
	m->load_fail_after = 5;
	assert_int_equal(im_shard_load(map, &m->base), IM_EUNAVAIL);
	assert_same_as(map, 64, ep, own);
	m->load_fail_after = -1;

	/* The store fails the read outright. */
	m->fail_rc = IM_ERR;
	m->fail_in = 1;
	assert_int_equal(im_shard_load(map, &m->base), IM_ERR);
	assert_same_as(map, 64, ep, own);

	/* More owners than max_nodes (4: keep, n0, n1, n2 fit; n3 not). */
	assert_int_equal(im_store_slot_cas(&m->base, IM_KIND_GROUP, 30, 0,
					   "n3", &e),
			 IM_OK);
	assert_int_equal(im_shard_load(map, &m->base), IM_EFULL);
	assert_same_as(map, 64, ep, own);
	assert_int_equal(im_shard_count(map, IM_KIND_GROUP, "n0"), 0);
	/* The names a failed load interned were dropped again. */
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 1, 1, "x1"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 2, 1, "x2"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 3, 1, "x3"), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 4, 1, "x4"),
			 IM_EFULL);
	im_shard_destroy(map);
	im_store_close(&m->base);
}

static void
test_shard_load_rejects_slots_beyond_the_maps_nslots(void **state)
{
	im_store *st = store_of(state);
	im_shard_map *map = new_map(16, 4);
	im_epoch e;

	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 3, 0, "a",
					   &e),
			 IM_OK);
	/* Written by a node configured with more slots. */
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 100, 0, "a",
					   &e),
			 IM_OK);
	assert_int_equal(im_shard_load(map, st), IM_EINVAL);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "a"), 0);
	assert_non_null(strstr(im_store_errmsg(st), "out of range"));
	im_shard_destroy(map);
}

static void
test_shard_claim_takes_a_slot_through_the_store(void **state)
{
	im_store *st = store_of(state);
	im_shard_map *map = new_map(NSLOTS, 8);
	im_shard_map *other = new_map(NSLOTS, 8);
	im_shard_entry e;
	im_epoch ep = 0;

	assert_int_equal(im_shard_claim(map, st, IM_KIND_GROUP, 12, "a",
					&ep),
			 IM_OK);
	assert_int_equal(ep, 1);
	assert_int_equal(im_shard_claim(map, st, IM_KIND_GROUP, 12, "b",
					&ep),
			 IM_OK);
	assert_int_equal(ep, 2);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_GROUP, 12, &e), IM_OK);
	assert_int_equal(e.epoch, 2);
	assert_string_equal(e.owner, "b");
	/* epoch_out may be NULL. */
	assert_int_equal(im_shard_claim(map, st, IM_KIND_USER, 0, "a",
					NULL),
			 IM_OK);
	/* The store agrees with the map. */
	assert_int_equal(im_shard_load(other, st), IM_OK);
	assert_int_equal(im_shard_get_slot(other, IM_KIND_GROUP, 12, &e),
			 IM_OK);
	assert_int_equal(e.epoch, 2);
	assert_string_equal(e.owner, "b");
	assert_int_equal(im_shard_count(other, IM_KIND_USER, "a"), 1);
	im_shard_destroy(other);
	im_shard_destroy(map);
}

static void
test_shard_claim_conflict_refreshes_the_map_so_a_retry_wins(void **state)
{
	im_store *st = store_of(state);
	im_shard_map *r1 = new_map(NSLOTS, 8);
	im_shard_map *r2 = new_map(NSLOTS, 8);
	im_shard_entry e;
	im_epoch ep = 0;

	/* Two routers see slot 5 unowned; r2 wins the race. */
	assert_int_equal(im_shard_claim(r2, st, IM_KIND_GROUP, 5, "b",
					&ep),
			 IM_OK);
	assert_int_equal(im_shard_claim(r1, st, IM_KIND_GROUP, 5, "a",
					&ep),
			 IM_ECONFLICT);
	assert_int_equal(ep, 1);
	/* r1 now knows the winner, as the store says. */
	assert_int_equal(im_shard_get_slot(r1, IM_KIND_GROUP, 5, &e), IM_OK);
	assert_int_equal(e.epoch, 1);
	assert_string_equal(e.owner, "b");
	/* A deliberate retry (a takeover) now works, fenced at epoch 2. */
	assert_int_equal(im_shard_claim(r1, st, IM_KIND_GROUP, 5, "a",
					&ep),
			 IM_OK);
	assert_int_equal(ep, 2);
	/* r2's stale view loses in turn. */
	assert_int_equal(im_shard_claim(r2, st, IM_KIND_GROUP, 5, "b",
					&ep),
			 IM_ECONFLICT);
	assert_int_equal(im_shard_get_slot(r2, IM_KIND_GROUP, 5, &e), IM_OK);
	assert_string_equal(e.owner, "a");
	assert_int_equal(e.epoch, 2);
	im_shard_destroy(r1);
	im_shard_destroy(r2);
}

static void
test_shard_claim_conflict_with_failing_refresh_reports_the_store_error(
	void **state)
{
	mem_store *m = mem_store_open();
	im_shard_map *r1 = new_map(NSLOTS, 8);
	im_shard_map *r2 = new_map(NSLOTS, 8);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_claim(r2, &m->base, IM_KIND_GROUP, 5, "b",
					NULL),
			 IM_OK);
	/* The CAS answers, then the re-read fails. */
	m->fail_rc = IM_EUNAVAIL;
	m->fail_in = 2;
	assert_int_equal(im_shard_claim(r1, &m->base, IM_KIND_GROUP, 5, "a",
					NULL),
			 IM_EUNAVAIL);
	assert_int_equal(im_shard_get_slot(r1, IM_KIND_GROUP, 5, &e), IM_OK);
	assert_int_equal(e.epoch, 0);
	assert_string_equal(e.owner, "");
	/* Once the store is back, the same call refreshes and conflicts. */
	assert_int_equal(im_shard_claim(r1, &m->base, IM_KIND_GROUP, 5, "a",
					NULL),
			 IM_ECONFLICT);
	im_shard_destroy(r1);
	im_shard_destroy(r2);
	im_store_close(&m->base);
}

static void
test_shard_claim_store_error_leaves_the_map_unchanged(void **state)
{
	mem_store *m = mem_store_open();
	im_shard_map *map = new_map(NSLOTS, 8);
	im_shard_entry e;
	im_epoch ep = 77;

	(void)state;
	m->fail_rc = IM_EUNAVAIL;
	m->fail_in = 1;
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 1, "a",
					&ep),
			 IM_EUNAVAIL);
	assert_int_equal(ep, 77);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 1, &e), IM_OK);
	assert_int_equal(e.epoch, 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, "a"), 0);
	im_shard_destroy(map);
	im_store_close(&m->base);
}

static void
test_shard_claim_returns_efull_before_touching_the_store(void **state)
{
	mem_store *m = mem_store_open();
	im_shard_map *map = new_map(NSLOTS, 1);
	im_shard_entry e;

	(void)state;
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 1, "a",
					NULL),
			 IM_OK);
	assert_int_equal(m->calls[MEM_OP_SLOT_CAS], 1);
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 1, "b",
					NULL),
			 IM_EFULL);
	assert_int_equal(m->calls[MEM_OP_SLOT_CAS], 1);
	assert_int_equal(im_shard_get_slot(map, IM_KIND_USER, 1, &e), IM_OK);
	assert_string_equal(e.owner, "a");
	im_shard_destroy(map);
	im_store_close(&m->base);
}

static void
test_shard_claim_rejects_bad_arguments(void **state)
{
	mem_store *m = mem_store_open();
	im_shard_map *map = new_map(16, 4);
	char longname[IM_OWNER_MAX + 2];

	(void)state;
	memset(longname, 'y', sizeof(longname));
	longname[IM_OWNER_MAX + 1] = '\0';
	assert_int_equal(im_shard_claim(NULL, &m->base, IM_KIND_USER, 1, "a",
					NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_claim(map, NULL, IM_KIND_USER, 1, "a", NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_claim(map, &m->base, (im_kind)3, 1, "a",
					NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 16, "a",
					NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 1, NULL,
					NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_USER, 1,
					longname, NULL),
			 IM_EINVAL);
	assert_int_equal(m->calls[MEM_OP_SLOT_CAS], 0);
	im_shard_destroy(map);
	im_store_close(&m->base);
}

static void
test_shard_count_rejects_bad_arguments_with_zero(void **state)
{
	im_shard_map *map = new_map(16, 4);

	(void)state;
	assert_int_equal(im_shard_count(NULL, IM_KIND_USER, ""), 0);
	assert_int_equal(im_shard_count(map, (im_kind)9, ""), 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, NULL), 0);
	assert_int_equal(im_shard_count(map, IM_KIND_USER, ""), 16);
	im_shard_destroy(map);
}

static void
test_shard_plan_from_empty_is_balanced_for_3_to_16_nodes(void **state)
{
	static im_shard_move moves[NSLOTS];
	test_rng r = {seed};
	nodeset ns;

	(void)state;
	for (size_t n = 3; n <= 16; n++) {
		im_shard_map *map = new_map(NSLOTS, MAXN);
		double mean = (double)NSLOTS / (double)n;
		size_t nm;

		nodeset_random(&ns, &r, n);
		nm = plan(map, &ns, moves);
		assert_int_equal(nm, NSLOTS);
		for (size_t i = 0; i < nm; i++) {
			assert_int_equal(moves[i].epoch, 0);
		}
		apply_moves(map, moves, nm);
		assert_balanced(map, &ns);
		for (size_t i = 0; i < n; i++) {
			uint32_t c = im_shard_count(map, IM_KIND_GROUP,
						    ns.ptr[i]);

			assert_true((double)c <= mean * 1.10);
		}
		/* A balanced map needs no move. */
		assert_int_equal(plan(map, &ns, moves), 0);
		im_shard_destroy(map);
	}
}

/* Random starting layouts: owners picked from live and dead nodes. */
static void
scramble(im_shard_map *map, test_rng *r, const nodeset *live,
	 const nodeset *dead)
{
	for (uint32_t s = 0; s < NSLOTS; s++) {
		uint64_t pick = test_rng_below(r, live->n + dead->n + 1);
		const char *who = pick < live->n ? live->ptr[pick]
				  : pick < live->n + dead->n
					  ? dead->ptr[pick - live->n]
					  : "";

		assert_int_equal(im_shard_apply(map, IM_KIND_GROUP, s,
						1 + test_rng_below(r, 5), who),
				 IM_OK);
	}
}

static void
test_shard_plan_adding_a_node_moves_about_one_share(void **state)
{
	static im_shard_move moves[NSLOTS];
	test_rng r = {seed ^ 0x1111};
	nodeset ns, none;

	(void)state;
	memset(&none, 0, sizeof(none));
	for (int round = 0; round < 50; round++) {
		size_t n = 3 + test_rng_below(&r, 14); /* 3..16 */
		im_shard_map *map = new_map(NSLOTS, MAXN);
		const char *newcomer;
		size_t nm;

		/* Any balanced start, not only the one plan builds. */
		nodeset_random(&ns, &r, n + 1);
		newcomer = ns.names[n];
		ns.n = n;
		scramble(map, &r, &ns, &none);
		apply_moves(map, moves, plan(map, &ns, moves));
		assert_balanced(map, &ns);

		ns.n = n + 1;
		nm = plan(map, &ns, moves);
		assert_true((double)nm <=
			    NSLOTS * (1.0 / (double)(n + 1) + 0.05));
		/* Every move feeds the newcomer. */
		for (size_t i = 0; i < nm; i++) {
			assert_string_equal(moves[i].to, newcomer);
		}
		apply_moves(map, moves, nm);
		assert_balanced(map, &ns);
		im_shard_destroy(map);
	}
}

static void
test_shard_plan_removing_a_node_moves_only_its_slots(void **state)
{
	static im_shard_move moves[NSLOTS];
	test_rng r = {seed ^ 0x2222};
	nodeset ns;

	(void)state;
	for (int round = 0; round < 50; round++) {
		size_t n = 3 + test_rng_below(&r, 14);
		im_shard_map *map = new_map(NSLOTS, MAXN);
		char gone[IM_OWNER_MAX + 1];
		uint32_t had;
		size_t nm;

		nodeset_random(&ns, &r, n);
		apply_moves(map, moves, plan(map, &ns, moves));
		snprintf(gone, sizeof(gone), "%s",
			 ns.names[test_rng_below(&r, n)]);
		had = im_shard_count(map, IM_KIND_GROUP, gone);
		for (size_t i = 0; i < ns.n; i++) {
			if (strcmp(ns.names[i], gone) == 0) {
				nodeset_remove(&ns, i);
				break;
			}
		}
		nm = plan(map, &ns, moves);
		assert_int_equal(nm, had);
		for (size_t i = 0; i < nm; i++) {
			im_shard_entry e;

			assert_int_equal(im_shard_get_slot(map, IM_KIND_GROUP,
							   moves[i].slot, &e),
					 IM_OK);
			assert_string_equal(e.owner, gone);
			assert_int_equal(e.epoch, moves[i].epoch);
		}
		apply_moves(map, moves, nm);
		assert_balanced(map, &ns);
		assert_int_equal(im_shard_count(map, IM_KIND_GROUP, gone), 0);
		im_shard_destroy(map);
	}
}

static void
test_shard_plan_from_any_layout_balances_with_minimal_moves(void **state)
{
	static im_shard_move moves[NSLOTS];
	static char before[NSLOTS][IM_OWNER_MAX + 1];
	test_rng r = {seed ^ 0x3333};
	nodeset live, dead;

	(void)state;
	for (int round = 0; round < 100; round++) {
		im_shard_map *map = new_map(NSLOTS, MAXN);
		uint32_t lo, gave[MAXN] = {0}, got[MAXN] = {0};
		size_t nm;

		nodeset_random(&live, &r, 1 + test_rng_below(&r, 16));
		nodeset_random(&dead, &r, test_rng_below(&r, 8));
		for (size_t i = 0; i < dead.n; i++) {
			/* "Dode-" names never collide with live "node-". */
			dead.names[i][0] = 'D';
		}
		scramble(map, &r, &live, &dead);
		lo = NSLOTS / (uint32_t)live.n;
		for (uint32_t s = 0; s < NSLOTS; s++) {
			im_shard_entry e;

			assert_int_equal(im_shard_get_slot(map, IM_KIND_GROUP,
							   s, &e),
					 IM_OK);
			strcpy(before[s], e.owner);
		}
		nm = plan(map, &live, moves);
		for (size_t i = 0; i < nm; i++) {
			for (size_t j = 0; j < live.n; j++) {
				if (strcmp(before[moves[i].slot],
					   live.ptr[j]) == 0) {
					gave[j]++;
				}
				if (moves[i].to == live.ptr[j]) {
					got[j]++;
				}
			}
		}
		for (size_t j = 0; j < live.n; j++) {
			uint32_t had = 0;

			for (uint32_t s = 0; s < NSLOTS; s++) {
				had += strcmp(before[s], live.ptr[j]) == 0;
			}
			/* Nobody both gives and takes; givers keep >= floor. */
			assert_true(gave[j] == 0 || got[j] == 0);
			if (gave[j] > 0) {
				assert_true(had - gave[j] >= lo);
			}
		}
		apply_moves(map, moves, nm);
		assert_balanced(map, &live);
		assert_int_equal(plan(map, &live, moves), 0);
		im_shard_destroy(map);
	}
}

static void
test_shard_plan_is_deterministic_whatever_the_node_order(void **state)
{
	static im_shard_move a[NSLOTS], b[NSLOTS];
	test_rng r = {seed ^ 0x4444};
	nodeset ns, shuffled, none;
	im_shard_map *map = new_map(NSLOTS, MAXN);
	size_t na, nb;

	(void)state;
	memset(&none, 0, sizeof(none));
	nodeset_random(&ns, &r, 9);
	ns.n = 7;
	scramble(map, &r, &ns, &none);
	ns.n = 9;
	shuffled = ns;
	for (size_t i = shuffled.n - 1; i > 0; i--) {
		size_t j = test_rng_below(&r, i + 1);
		char t[IM_OWNER_MAX + 1];

		memcpy(t, shuffled.names[i], sizeof(t));
		memcpy(shuffled.names[i], shuffled.names[j], sizeof(t));
		memcpy(shuffled.names[j], t, sizeof(t));
	}
	for (size_t i = 0; i < shuffled.n; i++) {
		shuffled.ptr[i] = shuffled.names[i];
	}
	na = plan(map, &ns, a);
	nb = plan(map, &shuffled, b);
	assert_int_equal(na, nb);
	assert_true(na > 0);
	for (size_t i = 0; i < na; i++) {
		assert_int_equal(a[i].slot, b[i].slot);
		assert_int_equal(a[i].epoch, b[i].epoch);
		assert_string_equal(a[i].to, b[i].to);
	}
	/* And the same list twice gives the same pointers back. */
	nb = plan(map, &ns, b);
	assert_int_equal(na, nb);
	for (size_t i = 0; i < na; i++) {
		assert_int_equal(a[i].slot, b[i].slot);
		assert_ptr_equal(a[i].to, b[i].to);
	}
	im_shard_destroy(map);
}

static void
test_shard_planned_moves_applied_through_the_store_reach_the_plan(void **state)
{
	static im_shard_move moves[NSLOTS];
	test_rng r = {seed ^ 0x5555};
	im_store *st = store_of(state);
	im_shard_map *router = new_map(NSLOTS, MAXN);
	im_shard_map *fresh = new_map(NSLOTS, MAXN);
	nodeset ns;
	size_t nm;

	nodeset_random(&ns, &r, 5);
	ns.n = 4;
	/* Start: 4 nodes; then a 5th joins; then the 2nd one dies. */
	for (int phase = 0; phase < 3; phase++) {
		if (phase == 1) {
			ns.n = 5;
		} else if (phase == 2) {
			nodeset_remove(&ns, 1);
		}
		nm = plan(router, &ns, moves);
		assert_true(nm > 0);
		for (size_t i = 0; i < nm; i++) {
			im_epoch ep = 0;

			assert_int_equal(im_shard_claim(router, st,
							IM_KIND_GROUP,
							moves[i].slot,
							moves[i].to, &ep),
					 IM_OK);
			assert_int_equal(ep, moves[i].epoch + 1);
		}
		assert_balanced(router, &ns);
		/* Anyone reading the store sees the same balanced map. */
		assert_int_equal(im_shard_load(fresh, st), IM_OK);
		assert_balanced(fresh, &ns);
		assert_int_equal(plan(fresh, &ns, moves), 0);
		for (uint32_t s = 0; s < NSLOTS; s++) {
			im_shard_entry e1, e2;

			im_shard_get_slot(router, IM_KIND_GROUP, s, &e1);
			im_shard_get_slot(fresh, IM_KIND_GROUP, s, &e2);
			assert_int_equal(e1.epoch, e2.epoch);
			assert_string_equal(e1.owner, e2.owner);
		}
	}
	im_shard_destroy(fresh);
	im_shard_destroy(router);
}

static void
test_shard_plan_rejects_bad_arguments_and_reports_efull(void **state)
{
	im_shard_move moves[8];
	im_shard_map *map = new_map(16, 4);
	const char *two[] = {"a", "b"};
	const char *dup_new[] = {"a", "b", "a"};
	const char *dup_known[] = {"k", "b", "k"};
	const char *empty[] = {"a", ""};
	const char *null[] = {"a", NULL};
	const char *five[] = {"a", "b", "c", "d", "e"};
	size_t nm = 99;

	(void)state;
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 0, 1, "k"), IM_OK);
	assert_int_equal(im_shard_plan(NULL, IM_KIND_USER, two, 2, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, (im_kind)5, two, 2, moves, 8, &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, NULL, 2, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, two, 0, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, two, 2, NULL, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, two, 2, moves, 8,
				       NULL),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, dup_new, 3, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, dup_known, 3, moves,
				       8, &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, empty, 2, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, null, 2, moves, 8,
				       &nm),
			 IM_EINVAL);
	/* More live nodes than the map can name. */
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, five, 5, moves, 8,
				       &nm),
			 IM_EINVAL);
	assert_int_equal(nm, 99);

	/* 16 slots to place, room for 3: the count needed comes back. */
	memset(moves, 0xab, sizeof(moves));
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, two, 2, moves, 3,
				       &nm),
			 IM_EFULL);
	assert_int_equal(nm, 16);
	for (size_t i = 3; i < 8; i++) {
		assert_int_equal(moves[i].slot, 0xabababab);
	}
	/* Asking for the count only. */
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, two, 2, NULL, 0,
				       &nm),
			 IM_EFULL);
	assert_int_equal(nm, 16);
	/* More nodes than slots: some get none, none gets two. */
	im_shard_destroy(map);
	map = new_map(3, 8);
	assert_int_equal(im_shard_plan(map, IM_KIND_USER, five, 5, moves, 8,
				       &nm),
			 IM_OK);
	assert_int_equal(nm, 3);
	assert_true(moves[0].to != moves[1].to && moves[1].to != moves[2].to &&
		    moves[0].to != moves[2].to);
	im_shard_destroy(map);
}

static void
test_shard_nothing_allocates_after_create(void **state)
{
	static im_shard_move moves[NSLOTS];
	fail_alloc fa = {0, 0, 0};
	im_shard_opts o = IM_SHARD_OPTS_INIT;
	im_shard_map *map = NULL;
	mem_store *m = mem_store_open();
	test_rng r = {seed ^ 0x6666};
	unsigned long after_create;
	nodeset ns;
	size_t nm;

	(void)state;
	o.nslots = NSLOTS;
	o.max_nodes = MAXN;
	o.alloc = fail_alloc_allocator(&fa);
	assert_int_equal(im_shard_create(&map, &o), IM_OK);
	after_create = fa.calls;
	/* Any allocation from here on would fail and show in fa.calls. */
	fa.fail_at = after_create + 1;

	nodeset_random(&ns, &r, 6);
	nm = plan(map, &ns, moves);
	for (size_t i = 0; i < nm; i++) {
		assert_int_equal(im_shard_claim(map, &m->base, IM_KIND_GROUP,
						moves[i].slot, moves[i].to,
						NULL),
				 IM_OK);
	}
	assert_int_equal(im_shard_load(map, &m->base), IM_OK);
	assert_int_equal(im_shard_apply(map, IM_KIND_USER, 1, 1, "late"),
			 IM_OK);
	for (uint64_t id = 1; id < 1000; id++) {
		assert_true(im_shard_get(map, IM_KIND_GROUP, id).epoch > 0);
	}
	assert_int_equal(fa.calls, after_create);
	im_shard_destroy(map);
	assert_int_equal(fa.live, 0);
	im_store_close(&m->base);
}

static int
setup_seed(void **state)
{
	(void)state;
	seed = test_seed();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shard_slot_of_is_pinned_to_known_values),
		cmocka_unit_test(
			test_shard_slot_of_spreads_sequential_ids_evenly),
		cmocka_unit_test(test_shard_create_rejects_bad_opts),
		cmocka_unit_test(
			test_shard_create_survives_allocation_failure_at_every_step),
		cmocka_unit_test(test_shard_new_map_has_every_slot_unowned),
		cmocka_unit_test(test_shard_get_finds_the_owner_of_an_ids_slot),
		cmocka_unit_test(test_shard_get_slot_rejects_bad_arguments),
		cmocka_unit_test(
			test_shard_apply_ignores_older_epochs_and_keeps_counts),
		cmocka_unit_test(test_shard_apply_rejects_bad_arguments),
		cmocka_unit_test(
			test_shard_apply_returns_efull_past_max_nodes_and_changes_nothing),
		STORE_TESTS(test_shard_load_reads_both_kinds_from_the_store),
		STORE_TESTS(test_shard_load_never_moves_an_epoch_backwards),
		cmocka_unit_test(
			test_shard_load_failure_midway_leaves_the_map_unchanged),
		STORE_TESTS(test_shard_load_rejects_slots_beyond_the_maps_nslots),
		STORE_TESTS(test_shard_claim_takes_a_slot_through_the_store),
		STORE_TESTS(test_shard_claim_conflict_refreshes_the_map_so_a_retry_wins),
		cmocka_unit_test(
			test_shard_claim_conflict_with_failing_refresh_reports_the_store_error),
		cmocka_unit_test(
			test_shard_claim_store_error_leaves_the_map_unchanged),
		cmocka_unit_test(
			test_shard_claim_returns_efull_before_touching_the_store),
		cmocka_unit_test(test_shard_claim_rejects_bad_arguments),
		cmocka_unit_test(
			test_shard_count_rejects_bad_arguments_with_zero),
		cmocka_unit_test(
			test_shard_plan_from_empty_is_balanced_for_3_to_16_nodes),
		cmocka_unit_test(
			test_shard_plan_adding_a_node_moves_about_one_share),
		cmocka_unit_test(
			test_shard_plan_removing_a_node_moves_only_its_slots),
		cmocka_unit_test(
			test_shard_plan_from_any_layout_balances_with_minimal_moves),
		cmocka_unit_test(
			test_shard_plan_is_deterministic_whatever_the_node_order),
		STORE_TESTS(test_shard_planned_moves_applied_through_the_store_reach_the_plan),
		cmocka_unit_test(
			test_shard_plan_rejects_bad_arguments_and_reports_efull),
		cmocka_unit_test(test_shard_nothing_allocates_after_create),
	};

	return cmocka_run_group_tests_name("shard", tests, setup_seed, NULL);
}
