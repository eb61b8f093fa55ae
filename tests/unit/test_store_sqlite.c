/*
 * What only the sqlite backend promises beyond the conformance suite:
 * open's argument and error paths, a locked database reported as
 * IM_EUNAVAIL after busy_timeout, refusing re-entry from a callback, and
 * the opts versions (version 2's exclusive locking).
 */
#include "im/store.h"

#include "store/sqlite/sqlite.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct tmpdb {
	char dir[256];
	char path[300];
} tmpdb;

static int
tmp_setup(void **state)
{
	tmpdb *t = calloc(1, sizeof(*t));
	const char *tmp = getenv("TMPDIR");

	if (t == NULL) {
		return -1;
	}
	snprintf(t->dir, sizeof(t->dir), "%s/im-sq-XXXXXX",
	         tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(t->dir) == NULL) {
		free(t);
		return -1;
	}
	snprintf(t->path, sizeof(t->path), "%s/t.db", t->dir);
	*state = t;
	return 0;
}

static int
tmp_teardown(void **state)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	tmpdb *t = *state;
	char p[320];

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", t->path, sfx[i]);
		(void)unlink(p);
	}
	(void)rmdir(t->dir);
	free(t);
	return 0;
}

static void
test_sqlite_open_rejects_bad_arguments(void **state)
{
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = (im_store *)&o;
	char err[64] = "";

	assert_int_equal(
	        im_store_sqlite_open(NULL, ":memory:", NULL, err, sizeof(err)),
	        IM_EINVAL);
	assert_true(strlen(err) > 0);
	assert_int_equal(im_store_sqlite_open(&st, NULL, NULL, NULL, 0),
	                 IM_EINVAL);
	assert_null(st);
	o.version = 0;
	assert_int_equal(im_store_sqlite_open(&st, ":memory:", &o, NULL, 0),
	                 IM_EINVAL);
	o.version = IM_STORE_SQLITE_OPTS_VERSION + 1;
	assert_int_equal(im_store_sqlite_open(&st, ":memory:", &o, NULL, 0),
	                 IM_EINVAL);
	o.version = IM_STORE_SQLITE_OPTS_VERSION;
	o.sync = (im_sqlite_sync)7;
	assert_int_equal(im_store_sqlite_open(&st, ":memory:", &o, NULL, 0),
	                 IM_EINVAL);
	assert_null(st);
}

static void
test_sqlite_open_of_an_unreachable_path_fails_with_a_reason(void **state)
{
	im_store *st = NULL;
	char err[256] = "";

	assert_int_equal(im_store_sqlite_open(&st, "/nonexistent-dir/x/y.db",
	                                      NULL, err, sizeof(err)),
	                 IM_ERR);
	assert_null(st);
	assert_non_null(strstr(err, "sqlite"));
}

static void
test_sqlite_open_with_sync_normal_works(void **state)
{
	tmpdb *t = *state;
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = NULL;
	uint32_t v = 0;

	o.sync = IM_SQLITE_SYNC_NORMAL;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_string_equal(im_store_name(st), "sqlite");
	assert_int_equal(im_store_migrate(st, &v), IM_OK);
	assert_int_equal(v, IM_STORE_SCHEMA_VERSION);
	assert_non_null(im__store_sqlite_db(st));
	im_store_close(st);
}

static void
test_sqlite_write_on_a_locked_database_is_unavailable(void **state)
{
	tmpdb *t = *state;
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = NULL;
	im_group g = {.gid = 1, .creator = 1, .name = "g"};
	sqlite3 *other = NULL;
	im_epoch e;

	o.busy_timeout_ms = 20;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	/* Another process holds the write lock longer than our timeout. */
	assert_int_equal(sqlite3_open(t->path, &other), SQLITE_OK);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", 0, 0, 0),
	                 SQLITE_OK);
	assert_int_equal(im_store_group_create(st, &g), IM_EUNAVAIL);
	assert_non_null(strstr(im_store_errmsg(st), "locked"));
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_EUNAVAIL);
	assert_int_equal(sqlite3_exec(other, "ROLLBACK", 0, 0, 0), SQLITE_OK);
	/* Once the lock is gone the same call goes through. */
	assert_int_equal(im_store_group_create(st, &g), IM_OK);
	sqlite3_close(other);
	im_store_close(st);
}

static void
test_sqlite_two_handles_on_one_file_fence_a_zombie_owner(void **state)
{
	tmpdb *t = *state;
	im_store *a = NULL, *b = NULL;
	im_seg_key k = {IM_SEG_GROUP_SEQ, 9};
	im_fence fa = {IM_KIND_GROUP, 4, 0};
	im_msg m = {.conv = 9, .seq = 1, .ordinal = 1, .sender = 3};
	im_append_result r;
	im_seg sa, sb;
	im_epoch eb = 0;
	int i;

	assert_int_equal(im_store_sqlite_open(&a, t->path, NULL, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_sqlite_open(&b, t->path, NULL, NULL, 0),
	                 IM_OK);
	/* Segments taken through two processes never overlap. */
	for (i = 0; i < 10; i++) {
		assert_int_equal(im_store_seg_take(a, &k, 10, &sa), IM_OK);
		assert_int_equal(im_store_seg_take(b, &k, 10, &sb), IM_OK);
		assert_int_equal(sb.first, sa.last + 1);
	}
	/* a owns the slot; b takes it over; a is now a zombie. */
	assert_int_equal(
	        im_store_slot_cas(a, IM_KIND_GROUP, 4, 0, "a", &fa.epoch),
	        IM_OK);
	assert_int_equal(im_store_msg_append(a, &fa, 1, &m, 1, &r), IM_OK);
	assert_int_equal(im_store_slot_cas(b, IM_KIND_GROUP, 4, 0, "b", &eb),
	                 IM_ECONFLICT);
	assert_int_equal(eb, 1);
	assert_int_equal(im_store_slot_cas(b, IM_KIND_GROUP, 4, 1, "b", &eb),
	                 IM_OK);
	m.seq = 2;
	m.prev_seq = 1;
	m.ordinal = 2;
	m.dedup_id = 2;
	assert_int_equal(im_store_msg_append(a, &fa, 1, &m, 1, &r), IM_ESTALE);
	assert_non_null(strstr(im_store_errmsg(a), "group/4"));
	im_store_close(a);
	im_store_close(b);
}

static int
count_msg(const im_msg *m, void *payload)
{
	(*(int *)payload)++;
	return 0;
}

/* Load the frozen SQL of an old store into a file, as a fixture. */
static void
load_fixture(const char *db_path, const char *name)
{
	const char *dir = getenv("IM_TEST_DATA");
	char path[512];
	char *sql;
	sqlite3 *db = NULL;
	FILE *f;
	long len;

	assert_non_null(dir);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = ftell(f);
	assert_true(len > 0);
	rewind(f);
	sql = calloc(1, (size_t)len + 1);
	assert_non_null(sql);
	assert_int_equal(fread(sql, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	free(sql);
}

static void
test_sqlite_opens_a_version_1_store_and_keeps_its_data(void **state)
{
	tmpdb *t = *state;
	im_store *st = NULL;
	im_seg_key k = {IM_SEG_GROUP_SEQ, 100};
	im_fence fence = {IM_KIND_GROUP, 7, 3};
	im_msg m = {.conv = 100,
	            .seq = 201,
	            .prev_seq = 12,
	            .ordinal = 3,
	            .sender = 5,
	            .dedup_id = 1};
	im_append_result r;
	im_group g;
	im_msg_pos pos;
	im_seg seg;
	uint32_t v = 0;
	int n = 0;

	load_fixture(t->path, "store-v1.sql");
	assert_int_equal(im_store_sqlite_open(&st, t->path, NULL, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_migrate(st, &v), IM_OK);
	assert_int_equal(v, IM_STORE_SCHEMA_VERSION);
	assert_int_equal(im_store_group_lookup(st, 100, &g), IM_OK);
	assert_string_equal(g.name, "old group");
	assert_int_equal(
	        im_store_msg_read(st, 100, 0, IM_SEQ_MAX, 0, count_msg, &n),
	        IM_OK);
	assert_int_equal(n, 2);
	assert_int_equal(im_store_msg_last(st, 100, IM_SEQ_MAX, &pos), IM_OK);
	assert_int_equal(pos.seq, 12);
	assert_int_equal(pos.ordinal, 2);
	/* Counters, epochs and dedup keys of the old store still hold. */
	assert_int_equal(im_store_seg_take(st, &k, 10, &seg), IM_OK);
	assert_int_equal(seg.first, 201);
	assert_int_equal(im_store_msg_append(st, &fence, 1, &m, 1, &r), IM_OK);
	assert_true(r.dup);
	assert_int_equal(r.seq, 11);
	im_store_close(st);
}

static int
reenter(im_uid u, void *payload)
{
	im_store *st = payload;
	im_group g;

	assert_int_equal(im_store_group_lookup(st, 1, &g), IM_ERR);
	assert_non_null(strstr(im_store_errmsg(st), "callback"));
	return 0;
}

static void
test_sqlite_refuses_calls_from_its_own_read_callback(void **state)
{
	im_store *st = NULL;
	im_group g = {.gid = 1, .creator = 1, .name = "g"};
	im_group out;

	assert_int_equal(im_store_sqlite_open(&st, ":memory:", NULL, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_group_create(st, &g), IM_OK);
	assert_int_equal(im_store_member_add(st, 1, 5, NULL), IM_OK);
	assert_int_equal(im_store_member_list(st, 1, reenter, st), IM_OK);
	/* After the read the handle works again. */
	assert_int_equal(im_store_group_lookup(st, 1, &out), IM_OK);
	im_store_close(st);
}

static void
test_sqlite_segment_space_exhaustion_is_efull(void **state)
{
	im_store *st = NULL;
	im_seg_key k = {IM_SEG_GROUP_ID, 0};
	im_seg s;

	assert_int_equal(im_store_sqlite_open(&st, ":memory:", NULL, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_seg_take(st, &k, 10, &s), IM_OK);
	assert_int_equal(sqlite3_exec(im__store_sqlite_db(st),
	                              "UPDATE im_segments SET max_id = "
	                              "9223372036854775800",
	                              0, 0, 0),
	                 SQLITE_OK);
	assert_int_equal(im_store_seg_take(st, &k, 7, &s), IM_OK);
	assert_int_equal(s.last, (uint64_t)INT64_MAX);
	assert_int_equal(im_store_seg_take(st, &k, 1, &s), IM_EFULL);
	assert_non_null(strstr(im_store_errmsg(st), "exhausted"));
	im_store_close(st);
}

/* Reading the file from another connection: SQLITE_OK or SQLITE_BUSY. */
static int
other_reads(const char *path)
{
	sqlite3 *other = NULL;
	int rc;

	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	rc = sqlite3_exec(other, "SELECT count(*) FROM im_slots", 0, 0, 0);
	sqlite3_close(other);
	return rc;
}

static void
test_sqlite_exclusive_store_locks_everyone_else_out_until_closed(void **state)
{
	tmpdb *t = *state;
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = NULL, *st2 = (im_store *)&o;
	im_epoch e = 0;
	char err[256] = "";
	char shm[320];

	o.busy_timeout_ms = 20;
	o.exclusive = true;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_OK);
	/* Another process, or another store on the same file, waits
	 * busy_timeout and gives up; the holder keeps working. */
	assert_int_equal(other_reads(t->path), SQLITE_BUSY);
	assert_int_equal(
	        im_store_sqlite_open(&st2, t->path, &o, err, sizeof(err)),
	        IM_EUNAVAIL);
	assert_null(st2);
	assert_non_null(strstr(err, "locked"));
	o.exclusive = false;
	assert_int_equal(im_store_sqlite_open(&st2, t->path, &o, NULL, 0),
	                 IM_EUNAVAIL);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, e, "n", &e),
	                 IM_OK);
	assert_int_equal(e, 2);
	/* The wal-index lives in heap memory: no -shm file. */
	snprintf(shm, sizeof(shm), "%s-shm", t->path);
	assert_int_equal(access(shm, F_OK), -1);
	im_store_close(st);
	/* Closed: the file is free and holds what was committed. */
	assert_int_equal(other_reads(t->path), SQLITE_OK);
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 2, "n", &e),
	                 IM_OK);
	assert_int_equal(e, 3);
	im_store_close(st);
}

static int
int_cb(void *payload, int ncol, char **vals, char **names)
{
	*(int *)payload = ncol > 0 && vals[0] != NULL ? atoi(vals[0]) : -1;
	return 0;
}

/* PRAGMA wal_autocheckpoint of the store's connection. */
static int
autocheckpoint_of(im_store *st)
{
	int v = -1;

	assert_int_equal(sqlite3_exec(im__store_sqlite_db(st),
	                              "PRAGMA wal_autocheckpoint", int_cb, &v,
	                              0),
	                 SQLITE_OK);
	return v;
}

static void
test_sqlite_wal_autocheckpoint_is_set_and_zero_keeps_the_default(void **state)
{
	tmpdb *t = *state;
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = NULL;

	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(autocheckpoint_of(st), 1000);
	im_store_close(st);
	o.wal_autocheckpoint = 12345;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(autocheckpoint_of(st), 12345);
	im_store_close(st);
}

/* What a caller compiled against version 1 of the opts passes. */
typedef struct opts_v1 {
	uint32_t version;
	im_sqlite_sync sync;
	uint32_t busy_timeout_ms;
} opts_v1;

static void
test_sqlite_version_1_opts_open_shared_and_are_not_read_past_their_end(
        void **state)
{
	tmpdb *t = *state;
	/* Exactly the old size on the heap: under ASan a read of the
	 * version 2 field would be an overflow. */
	opts_v1 *o1 = malloc(sizeof(*o1));
	im_store *st = NULL;
	im_epoch e = 0;

	assert_non_null(o1);
	o1->version = 1;
	o1->sync = IM_SQLITE_SYNC_NORMAL;
	o1->busy_timeout_ms = 20;
	assert_int_equal(
	        im_store_sqlite_open(&st, t->path,
	                             (const im_store_sqlite_opts *)(void *)o1,
	                             NULL, 0),
	        IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_OK);
	/* Shared locking and sqlite's checkpoints, as before version 2. */
	assert_int_equal(other_reads(t->path), SQLITE_OK);
	assert_int_equal(autocheckpoint_of(st), 1000);
	im_store_close(st);
	free(o1);
}

static void
test_sqlite_exclusive_works_on_memory_and_on_an_existing_wal_file(void **state)
{
	tmpdb *t = *state;
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_store *st = NULL;
	im_epoch e = 0;

	o.exclusive = true;
	assert_int_equal(im_store_sqlite_open(&st, ":memory:", &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_OK);
	im_store_close(st);
	/* A file first opened shared (already in WAL mode), then
	 * exclusively: the data is there. */
	o.exclusive = false;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 0, "n", &e),
	                 IM_OK);
	im_store_close(st);
	o.exclusive = true;
	assert_int_equal(im_store_sqlite_open(&st, t->path, &o, NULL, 0),
	                 IM_OK);
	assert_int_equal(im_store_slot_cas(st, IM_KIND_USER, 1, 1, "n", &e),
	                 IM_OK);
	assert_int_equal(e, 2);
	im_store_close(st);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_sqlite_open_rejects_bad_arguments),
	        cmocka_unit_test(
	                test_sqlite_open_of_an_unreachable_path_fails_with_a_reason),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_open_with_sync_normal_works, tmp_setup,
	                tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_write_on_a_locked_database_is_unavailable,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_two_handles_on_one_file_fence_a_zombie_owner,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_opens_a_version_1_store_and_keeps_its_data,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test(
	                test_sqlite_refuses_calls_from_its_own_read_callback),
	        cmocka_unit_test(test_sqlite_segment_space_exhaustion_is_efull),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_exclusive_store_locks_everyone_else_out_until_closed,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_wal_autocheckpoint_is_set_and_zero_keeps_the_default,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_version_1_opts_open_shared_and_are_not_read_past_their_end,
	                tmp_setup, tmp_teardown),
	        cmocka_unit_test_setup_teardown(
	                test_sqlite_exclusive_works_on_memory_and_on_an_existing_wal_file,
	                tmp_setup, tmp_teardown),
	};

	return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
