/*
 * bench_store: what the storage vtable costs on top of sqlite.
 *
 * For batch sizes 1, 16, 128 and 1024 and for synchronous FULL and NORMAL,
 * append messages to one group for a fixed time through im_store_msg_append
 * (fence check, dedup, rechaining, one BEGIN IMMEDIATE transaction per
 * batch), then insert the same rows with a raw loop of one prepared INSERT
 * per row inside one transaction per batch, on a database with the same
 * schema and pragmas. Prints messages/s of both and their ratio.
 *
 * Usage: bench_store [-t seconds_per_row] [-d dir] [-b body_bytes]
 *                    [-s full|normal] [-B batch] [-r repeats]
 * -s and -B restrict the table to one sync mode or one batch size; -r runs
 * each cell that many times, alternating vtable and raw, and keeps the best
 * of each (the machine is shared, so single runs are noisy).
 * Every row is bounded by its time and by a message cap, so the whole run
 * takes about 8 x 2 x seconds_per_row.
 */
#include "im/store.h"

#include <sqlite3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 1024
#define MAX_MSGS_PER_ROW 20000000u

static double
clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* One run: wall-clock rate and CPU microseconds per message. */
typedef struct result {
	double rate;
	double cpu_us;
} result;

static result
result_of(uint64_t done, double t0, double t, double c0)
{
	result r = {
	        .rate = (double)done / (t - t0),
	        .cpu_us = (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0) * 1e6 /
	                  (double)done,
	};
	return r;
}

typedef struct bench {
	char dir[256];
	char path[320];
	double seconds;
	uint32_t body_len;
	char body[IM_MSG_BODY_MAX];
	unsigned serial;
} bench;

static void
remove_db(const char *path)
{
	static const char *const sfx[] = {"", "-wal", "-shm", "-journal"};
	char p[400];

	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", path, sfx[i]);
		(void)unlink(p);
	}
}

static void
fresh_path(bench *b)
{
	snprintf(b->path, sizeof(b->path), "%s/bench-%u.db", b->dir,
	         b->serial++);
	remove_db(b->path);
}

static void
fill(const bench *b, im_msg *m, size_t n, uint64_t *next)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t s = (*next)++;

		m[i] = (im_msg){
		        .conv = 1,
		        .seq = s,
		        .prev_seq = s - 1,
		        .ordinal = s,
		        .sender = 1 + s % 7,
		        .dedup_id = s,
		        .time_ms = 1700000000000ull + s,
		        .body_len = b->body_len,
		        .body = b->body,
		};
	}
}

/* Messages per second through the vtable. */
static result
run_vtable(bench *b, im_sqlite_sync sync, size_t batch)
{
	static im_msg m[MAX_BATCH];
	static im_append_result r[MAX_BATCH];
	im_store_sqlite_opts o = IM_STORE_SQLITE_OPTS_INIT;
	im_fence f = {IM_KIND_GROUP, 1, 0};
	im_store *st = NULL;
	char err[256] = "";
	uint64_t next = 1, done = 0;
	double t0, t, c0;
	result res;
	int rc;

	fresh_path(b);
	o.sync = sync;
	rc = im_store_sqlite_open(&st, b->path, &o, err, sizeof(err));
	if (rc != IM_OK) {
		fprintf(stderr, "open %s: %s\n", b->path, err);
		exit(1);
	}
	if (im_store_slot_cas(st, IM_KIND_GROUP, 1, 0, "bench", &f.epoch) !=
	    IM_OK) {
		fprintf(stderr, "claim: %s\n", im_store_errmsg(st));
		exit(1);
	}
	t0 = now_s();
	c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	do {
		fill(b, m, batch, &next);
		rc = im_store_msg_append(st, &f, 1, m, batch, r);
		if (rc != IM_OK) {
			fprintf(stderr, "append: %s\n", im_store_errmsg(st));
			exit(1);
		}
		done += batch;
		t = now_s();
	} while (t - t0 < b->seconds && done < MAX_MSGS_PER_ROW);
	res = result_of(done, t0, t, c0);
	im_store_close(st);
	remove_db(b->path);
	return res;
}

static void
must(sqlite3 *db, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW) {
		fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
		exit(1);
	}
}

/* Messages per second with plain prepared INSERTs. */
static result
run_raw(bench *b, im_sqlite_sync sync, size_t batch)
{
	static im_msg m[MAX_BATCH];
	im_store *st = NULL;
	sqlite3 *db = NULL;
	sqlite3_stmt *ins, *begin, *commit;
	uint64_t next = 1, done = 0;
	double t0, t, c0;
	result res;

	/* Same schema as the store: let the store create it, then leave. */
	fresh_path(b);
	if (im_store_sqlite_open(&st, b->path, NULL, NULL, 0) != IM_OK) {
		fprintf(stderr, "open %s failed\n", b->path);
		exit(1);
	}
	im_store_close(st);
	must(db, sqlite3_open(b->path, &db), "open");
	sqlite3_busy_timeout(db, 5000);
	must(db, sqlite3_exec(db, "PRAGMA journal_mode=WAL", 0, 0, 0), "wal");
	must(db,
	     sqlite3_exec(db,
	                  sync == IM_SQLITE_SYNC_NORMAL
	                          ? "PRAGMA synchronous=NORMAL"
	                          : "PRAGMA synchronous=FULL",
	                  0, 0, 0),
	     "sync");
	must(db,
	     sqlite3_prepare_v2(db,
	                        "INSERT INTO im_messages (conv, seq, prev_seq, "
	                        "ordinal, sender, dedup_id, reply_to, time_ms, "
	                        "type, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	                        "?7, ?8, ?9, ?10)",
	                        -1, &ins, NULL),
	     "prepare");
	must(db, sqlite3_prepare_v2(db, "BEGIN", -1, &begin, NULL), "begin");
	must(db, sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL), "commit");
	t0 = now_s();
	c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	do {
		fill(b, m, batch, &next);
		must(db, sqlite3_step(begin), "begin");
		sqlite3_reset(begin);
		for (size_t i = 0; i < batch; i++) {
			sqlite3_bind_int64(ins, 1, (sqlite3_int64)m[i].conv);
			sqlite3_bind_int64(ins, 2, (sqlite3_int64)m[i].seq);
			sqlite3_bind_int64(ins, 3,
			                   (sqlite3_int64)m[i].prev_seq);
			sqlite3_bind_int64(ins, 4, (sqlite3_int64)m[i].ordinal);
			sqlite3_bind_int64(ins, 5, (sqlite3_int64)m[i].sender);
			sqlite3_bind_int64(ins, 6,
			                   (sqlite3_int64)m[i].dedup_id);
			sqlite3_bind_int64(ins, 7, 0);
			sqlite3_bind_int64(ins, 8, (sqlite3_int64)m[i].time_ms);
			sqlite3_bind_int64(ins, 9, 0);
			sqlite3_bind_blob(ins, 10, m[i].body,
			                  (int)m[i].body_len, SQLITE_STATIC);
			must(db, sqlite3_step(ins), "insert");
			sqlite3_reset(ins);
		}
		must(db, sqlite3_step(commit), "commit");
		sqlite3_reset(commit);
		done += batch;
		t = now_s();
	} while (t - t0 < b->seconds && done < MAX_MSGS_PER_ROW);
	res = result_of(done, t0, t, c0);
	sqlite3_finalize(ins);
	sqlite3_finalize(begin);
	sqlite3_finalize(commit);
	sqlite3_close(db);
	remove_db(b->path);
	return res;
}

static void
usage(void)
{
	fprintf(stderr,
	        "usage: bench_store [-t seconds_per_row] [-d dir] "
	        "[-b body_bytes] [-s full|normal] [-B batch] [-r repeats]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const size_t batches[] = {1, 16, 128, 1024};
	static const im_sqlite_sync syncs[] = {IM_SQLITE_SYNC_FULL,
	                                       IM_SQLITE_SYNC_NORMAL};
	static bench b;
	const char *dir = NULL;
	const char *only_sync = NULL;
	size_t only_batch = 0;
	int repeats = 1;
	bool made_dir = false;
	int opt;

	b.seconds = 2.0;
	b.body_len = 64;
	while ((opt = getopt(argc, argv, "t:d:b:s:B:r:h")) != -1) {
		switch (opt) {
		case 't':
			b.seconds = atof(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		case 'b':
			b.body_len = (uint32_t)atoi(optarg);
			break;
		case 's':
			only_sync = optarg;
			break;
		case 'B':
			only_batch = (size_t)atoi(optarg);
			break;
		case 'r':
			repeats = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (b.seconds <= 0 || b.seconds > 60 || b.body_len > IM_MSG_BODY_MAX ||
	    repeats < 1 || repeats > 20 || only_batch > MAX_BATCH) {
		usage();
	}
	memset(b.body, 'x', sizeof(b.body));
	if (dir != NULL) {
		snprintf(b.dir, sizeof(b.dir), "%s", dir);
	} else {
		const char *tmp = getenv("TMPDIR");

		snprintf(b.dir, sizeof(b.dir), "%s/im-bench-XXXXXX",
		         tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
		if (mkdtemp(b.dir) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		made_dir = true;
	}
	printf("# sqlite %s, body %u bytes, %.1f s per run, best of %d, "
	       "dir %s\n",
	       sqlite3_libversion(), b.body_len, b.seconds, repeats, b.dir);
	printf("| sync   | batch | vtable msg/s | raw msg/s | vtable/raw "
	       "| vtable cpu us/msg | raw cpu us/msg |\n");
	printf("|--------|------:|-------------:|----------:|-----------:"
	       "|------------------:|---------------:|\n");
	fflush(stdout);
	for (size_t s = 0; s < 2; s++) {
		const char *sname =
		        syncs[s] == IM_SQLITE_SYNC_FULL ? "full" : "normal";

		if (only_sync != NULL && strcmp(only_sync, sname) != 0) {
			continue;
		}
		for (size_t i = 0; i < 4; i++) {
			result v = {0, 1e9}, r = {0, 1e9};

			if (only_batch != 0 && only_batch != batches[i]) {
				continue;
			}
			for (int k = 0; k < repeats; k++) {
				result vk =
				        run_vtable(&b, syncs[s], batches[i]);
				result rk = run_raw(&b, syncs[s], batches[i]);

				v.rate = vk.rate > v.rate ? vk.rate : v.rate;
				r.rate = rk.rate > r.rate ? rk.rate : r.rate;
				v.cpu_us = vk.cpu_us < v.cpu_us ? vk.cpu_us
				                                : v.cpu_us;
				r.cpu_us = rk.cpu_us < r.cpu_us ? rk.cpu_us
				                                : r.cpu_us;
			}

			printf("| %-6s | %5zu | %12.0f | %9.0f | %9.1f%% "
			       "| %17.2f | %14.2f |\n",
			       syncs[s] == IM_SQLITE_SYNC_FULL ? "FULL"
			                                       : "NORMAL",
			       batches[i], v.rate, r.rate,
			       100.0 * v.rate / r.rate, v.cpu_us, r.cpu_us);
			fflush(stdout);
		}
	}
	if (made_dir) {
		(void)rmdir(b.dir);
	}
	return 0;
}
