/*
 * imctl over a sqlite store prepared through the public API: nodes with
 * fresh and stale heartbeats, slots claimed by live, dead and unregistered
 * owners. Ages are judged at a fixed --now-ms, so the output is exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "im/shard.h"
#include "im/store.h"
#include "imctl.h"

#define NOW 1000000

typedef struct fx {
	char dir[64];
	char path[96];
	char *out, *err;
	size_t outlen, errlen;
} fx;

static int
setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	snprintf(f->dir, sizeof(f->dir), "/tmp/imctl-test-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fx *f = *state;
	char p[128];

	free(f->out);
	free(f->err);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void
claim(im_store *st, im_kind kind, uint32_t slot, const char *owner,
      im_epoch expect)
{
	assert_int_equal(im_store_slot_cas(st, kind, slot, expect, owner, NULL),
			 IM_OK);
}

/* A small cluster: connector-1 and chatter-1 alive, chatter-2 silent for
 * 10 s, router-1 alive; "ghost" holds a slot without being registered. */
static void
populate(fx *f)
{
	im_store *st = NULL;
	uint32_t i;

	assert_int_equal(im_store_sqlite_open(&st, f->path, NULL, NULL, 0),
			 IM_OK);
	assert_int_equal(im_store_node_register(st, "connector-1",
						IM_NODE_CONNECTOR,
						"127.0.0.1:7600", NOW - 60000,
						NULL),
			 IM_OK);
	assert_int_equal(im_store_node_heartbeat(st, "connector-1", NOW - 500),
			 IM_OK);
	assert_int_equal(im_store_node_register(st, "router-1", IM_NODE_ROUTER,
						"127.0.0.1:7700", NOW - 1000,
						NULL),
			 IM_OK);
	assert_int_equal(im_store_node_register(st, "chatter-1",
						IM_NODE_CHATTER,
						"127.0.0.1:7801", NOW - 1200,
						NULL),
			 IM_OK);
	assert_int_equal(im_store_node_register(st, "chatter-2",
						IM_NODE_CHATTER,
						"127.0.0.1:7802", NOW - 10000,
						NULL),
			 IM_OK);
	for (i = 0; i < 10; i++) {
		claim(st, IM_KIND_USER, i, "connector-1", 0);
	}
	for (i = 0; i < 5; i++) {
		claim(st, IM_KIND_GROUP, i, "chatter-1", 0);
	}
	for (i = 5; i < 8; i++) {
		claim(st, IM_KIND_GROUP, i, "chatter-2", 0);
	}
	/* Slot 7 moved from chatter-2 to chatter-1 (epoch 2). */
	claim(st, IM_KIND_GROUP, 7, "chatter-1", 1);
	claim(st, IM_KIND_GROUP, 8, "ghost", 0);
	/* Owners with an incarnation: chatter-1 is at incarnation 1. */
	claim(st, IM_KIND_GROUP, 9, "chatter-1/00000001", 0);
	claim(st, IM_KIND_GROUP, 10, "chatter-1/00000000", 0);
	im_store_close(st);
}

/* Show imctl's output as TAP comments. */
static void
echo(const char *text)
{
	const char *p = text;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, '\n');
		int n = end != NULL ? (int)(end - p) : (int)strlen(p);

		print_message("# %.*s\n", n, p);
		p = end != NULL ? end + 1 : NULL;
	}
}

/* Run imctl with argv (NULL terminated). */
static int
run(fx *f, const char **argv)
{
	FILE *out, *err;
	int rc, argc = 0;

	while (argv[argc] != NULL) {
		argc++;
	}

	free(f->out);
	free(f->err);
	f->out = f->err = NULL;
	out = open_memstream(&f->out, &f->outlen);
	err = open_memstream(&f->err, &f->errlen);
	assert_non_null(out);
	assert_non_null(err);
	rc = imctl_main(argc, (char **)argv, out, err);
	fclose(out);
	fclose(err);
	echo(f->out);
	echo(f->err);
	return rc;
}

/* The output line that starts with `prefix`, copied into buf. */
static const char *
line(const char *text, const char *prefix, char *buf, size_t len)
{
	const char *p = text;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, '\n');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);

		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			snprintf(buf, len, "%.*s", (int)n, p);
			return buf;
		}
		p = end != NULL ? end + 1 : NULL;
	}
	fail_msg("no line starting with '%s'", prefix);
	return NULL;
}

static void
assert_words(const char *l, const char *const *words)
{
	for (; *words != NULL; words++) {
		if (strstr(l, *words) == NULL) {
			fail_msg("'%s' not in '%s'", *words, l);
		}
	}
}

#define ARGS(...) ((const char *[]){"imctl", __VA_ARGS__, NULL})

static void
test_imctl_nodes_shows_liveness_from_heartbeat_age(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "--now-ms", "1000000",
			      "nodes");
	char buf[256];

	populate(f);
	assert_int_equal(run(f, a), 0);
	assert_words(line(f->out, "connector-1", buf, sizeof(buf)),
		     (const char *[]){"connector", "127.0.0.1:7600",
				      "0.5s ago", "alive", NULL});
	assert_words(line(f->out, "chatter-2", buf, sizeof(buf)),
		     (const char *[]){"chatter", "127.0.0.1:7802",
				      "10.0s ago", "dead", NULL});
	assert_words(line(f->out, "router-1", buf, sizeof(buf)),
		     (const char *[]){"router", "1.0s ago", "alive", NULL});
	/* Sorted by name, one header. */
	assert_true(strstr(f->out, "chatter-1") < strstr(f->out, "chatter-2"));
	assert_true(strstr(f->out, "chatter-2") < strstr(f->out, "connector-1"));
	assert_non_null(line(f->out, "NODE", buf, sizeof(buf)));
}

static void
test_imctl_dead_after_moves_the_liveness_line(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "--now-ms", "1000000",
			      "--dead-after", "20000", "nodes");
	char buf[256];

	populate(f);
	assert_int_equal(run(f, a), 0);
	assert_words(line(f->out, "chatter-2", buf, sizeof(buf)),
		     (const char *[]){"alive", NULL});
}

/* Without --dead-after imctl judges as the Routers do (one default,
 * IM_NODE_DEAD_AFTER_MS): a node silent 1 ms longer is dead. imctl used
 * its own 3000 ms and called such a node alive after it was moved. */
static void
test_imctl_default_dead_after_is_the_routers(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "--now-ms", "1000000",
			      "nodes");
	im_store *st = NULL;
	char buf[256];

	populate(f);
	assert_int_equal(im_store_sqlite_open(&st, f->path, NULL, NULL, 0),
			 IM_OK);
	assert_int_equal(im_store_node_register(
				 st, "node-fresh", IM_NODE_CHATTER, "x:1",
				 NOW - IM_NODE_DEAD_AFTER_MS, NULL),
			 IM_OK);
	assert_int_equal(im_store_node_register(
				 st, "node-stale", IM_NODE_CHATTER, "x:2",
				 NOW - IM_NODE_DEAD_AFTER_MS - 1, NULL),
			 IM_OK);
	im_store_close(st);
	assert_int_equal(run(f, a), 0);
	assert_words(line(f->out, "node-fresh", buf, sizeof(buf)),
		     (const char *[]){"alive", NULL});
	assert_words(line(f->out, "node-stale", buf, sizeof(buf)),
		     (const char *[]){"dead", NULL});
}

static void
test_imctl_slots_counts_per_node_and_kind_with_epochs(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "--now-ms", "1000000",
			      "--slots", "16", "slots");
	char buf[256];

	populate(f);
	assert_int_equal(run(f, a), 0);
	assert_words(line(f->out, "user   connector-1", buf, sizeof(buf)),
		     (const char *[]){" 10 ", "1..1", "alive", NULL});
	assert_words(line(f->out, "user   (unowned)", buf, sizeof(buf)),
		     (const char *[]){" 6", NULL});
	assert_words(line(f->out, "group  chatter-1", buf, sizeof(buf)),
		     (const char *[]){" 6 ", "1..2", "alive", NULL});
	assert_words(line(f->out, "group  chatter-2", buf, sizeof(buf)),
		     (const char *[]){" 2 ", "1..1", "dead", NULL});
	assert_words(line(f->out, "group  ghost", buf, sizeof(buf)),
		     (const char *[]){" 1 ", "not registered", NULL});
	assert_words(line(f->out, "group  chatter-1/00000001", buf,
			  sizeof(buf)),
		     (const char *[]){" 1 ", "alive", NULL});
	assert_words(line(f->out, "group  chatter-1/00000000", buf,
			  sizeof(buf)),
		     (const char *[]){" 1 ", "old incarnation", NULL});
	assert_words(line(f->out, "group  (unowned)", buf, sizeof(buf)),
		     (const char *[]){" 5", NULL});
}

static void
test_imctl_status_summarizes_and_warns_about_dead_owners(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "--now-ms", "1000000",
			      "--slots", "16", "status");
	char buf[256], schema[32];

	populate(f);
	assert_int_equal(run(f, a), 0);
	snprintf(schema, sizeof(schema), "schema %d", IM_STORE_SCHEMA_VERSION);
	assert_words(line(f->out, "store:", buf, sizeof(buf)),
		     (const char *[]){"sqlite", schema, NULL});
	assert_words(line(f->out, "nodes:", buf, sizeof(buf)),
		     (const char *[]){"4 registered", "3 alive",
				      "connector 1/1", "router 1/1",
				      "chatter 1/2", NULL});
	assert_words(line(f->out, "user slots:", buf, sizeof(buf)),
		     (const char *[]){"10/16", "1 nodes", "max epoch 1", NULL});
	assert_words(line(f->out, "group slots:", buf, sizeof(buf)),
		     (const char *[]){"11/16", "5 nodes", "max epoch 2", NULL});
	assert_words(line(f->out, "warning: chatter-2", buf, sizeof(buf)),
		     (const char *[]){"2 group slots", "dead", NULL});
	assert_words(line(f->out, "warning: ghost", buf, sizeof(buf)),
		     (const char *[]){"not registered", NULL});
	assert_words(line(f->out, "warning: chatter-1/00000000", buf,
			  sizeof(buf)),
		     (const char *[]){"old incarnation", NULL});
	/* The tables follow. */
	assert_non_null(line(f->out, "NODE", buf, sizeof(buf)));
	assert_non_null(line(f->out, "KIND", buf, sizeof(buf)));
}

/* The first id from 1 whose slot (of 16) is in [lo, hi). */
static uint64_t
id_in_slots(uint32_t lo, uint32_t hi)
{
	uint64_t id = 1;

	while (im_shard_slot_of(id, 16) < lo || im_shard_slot_of(id, 16) >= hi) {
		id++;
	}
	return id;
}

/* Run `imctl ... CMD ID` (user or group) on the populated store and
 * return its line, "CMD ID: ...", copied into buf. */
static const char *
owner_line(fx *f, const char *cmd, uint64_t id, char *buf, size_t len)
{
	char ids[32], want[64];

	snprintf(ids, sizeof(ids), "%llu", (unsigned long long)id);
	assert_int_equal(run(f, ARGS("--store", f->path, "--slots", "16",
				     "--now-ms", "1000000", cmd, ids)),
			 0);
	snprintf(want, sizeof(want), "%s %s:", cmd, ids);
	return line(f->out, want, buf, len);
}

static void
test_imctl_user_tells_where_a_user_is_served(void **state)
{
	fx *f = *state;
	char buf[256];

	populate(f);
	/* A user in a slot of connector-1 (user slots 0-9 of 16). */
	assert_words(owner_line(f, "user", id_in_slots(0, 10), buf,
				sizeof(buf)),
		     (const char *[]){"owner connector-1 (alive)",
				      "127.0.0.1:7600", NULL});
	assert_words(owner_line(f, "user", id_in_slots(10, 16), buf,
				sizeof(buf)),
		     (const char *[]){"unowned", NULL});
	assert_int_equal(run(f, ARGS("--store", f->path, "user", "0")), 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "user")), 2);
}

/* Where a group is served: a test waits on it for a Chatter's slot to
 * move (tests/cluster/imnode_hold_zombie.sh). */
static void
test_imctl_group_tells_which_chatter_owns_a_group(void **state)
{
	fx *f = *state;
	char buf[256];

	populate(f);
	/* Slot 7: chatter-2's, moved to chatter-1 (epoch 2). */
	assert_words(owner_line(f, "group", id_in_slots(7, 8), buf,
				sizeof(buf)),
		     (const char *[]){"slot 7,", "epoch 2,",
				      "owner chatter-1 (alive)",
				      "127.0.0.1:7801", NULL});
	/* Group slots 11-15 are nobody's. */
	assert_words(owner_line(f, "group", id_in_slots(11, 16), buf,
				sizeof(buf)),
		     (const char *[]){"unowned", NULL});
	assert_int_equal(run(f, ARGS("--store", f->path, "group", "0")), 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "group", "x")), 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "group")), 2);
}

static void
test_imctl_on_an_empty_store_says_so(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "status");
	im_store *st = NULL;
	char buf[256];

	assert_int_equal(im_store_sqlite_open(&st, f->path, NULL, NULL, 0),
			 IM_OK);
	im_store_close(st);
	assert_int_equal(run(f, a), 0);
	assert_non_null(line(f->out, "(no node registered)", buf,
			     sizeof(buf)));
	assert_words(line(f->out, "user slots:", buf, sizeof(buf)),
		     (const char *[]){"0/1024", NULL});
}

static void
test_imctl_refuses_a_missing_store_without_creating_it(void **state)
{
	fx *f = *state;
	const char **a = ARGS("--store", f->path, "nodes");

	assert_int_equal(run(f, a), 1);
	assert_non_null(strstr(f->err, "cannot open store"));
	assert_int_not_equal(access(f->path, F_OK), 0);
}

static void
test_imctl_usage_errors_exit_2(void **state)
{
	fx *f = *state;

	populate(f);
	assert_int_equal(run(f, (const char *[]){"imctl", NULL}), 2);
	assert_int_equal(run(f, ARGS("nodes")), 2);
	assert_int_equal(run(f, ARGS("--store", f->path)), 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "frobnicate")),
			 2);
	assert_non_null(strstr(f->err, "unknown command"));
	assert_int_equal(run(f, ARGS("--store", f->path, "--slots", "0",
					"nodes")),
			 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "--now-ms",
					"-5", "nodes")),
			 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "nodes",
					"extra")),
			 2);
	assert_int_equal(run(f, ARGS("--store", f->path, "--bogus")), 2);
	assert_int_equal(run(f, ARGS("--help")), 0);
	assert_non_null(strstr(f->out, "usage: imctl"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
		T(test_imctl_nodes_shows_liveness_from_heartbeat_age),
		T(test_imctl_dead_after_moves_the_liveness_line),
		T(test_imctl_default_dead_after_is_the_routers),
		T(test_imctl_slots_counts_per_node_and_kind_with_epochs),
		T(test_imctl_status_summarizes_and_warns_about_dead_owners),
		T(test_imctl_user_tells_where_a_user_is_served),
		T(test_imctl_group_tells_which_chatter_owns_a_group),
		T(test_imctl_on_an_empty_store_says_so),
		T(test_imctl_refuses_a_missing_store_without_creating_it),
		T(test_imctl_usage_errors_exit_2),
#undef T
	};

	return cmocka_run_group_tests_name("imctl", tests, NULL, NULL);
}
