/*
 * Core module micro-benchmarks: ops/s and ns/op for the hot paths.
 * Run on demand: build/bench/bench_core [seconds-per-row]
 * Not part of the test run; numbers go to bench/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "im/dedup.h"
#include "im/idseg.h"
#include "im/pushq.h"
#include "im/shard.h"
#include "im/store.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t
rng(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void
row(const char *name, uint64_t ops, double secs)
{
	printf("| %-44s | %12.0f | %9.1f |\n", name, (double)ops / secs,
	       secs * 1e9 / (double)ops);
}

/* Sink so the compiler cannot drop the measured work. */
static volatile uint64_t sink;

static void
bench_shard(double budget)
{
	im_shard_map *map;
	im_shard_opts o = IM_SHARD_OPTS_INIT;
	char name[32];
	uint64_t s = 1, ops = 0, acc = 0;
	uint32_t slot;
	double t0;

	if (im_shard_create(&map, &o) != IM_OK) {
		fprintf(stderr, "shard_create failed\n");
		exit(1);
	}
	for (slot = 0; slot < im_shard_nslots(map); slot++) {
		snprintf(name, sizeof(name), "node-%u", slot % 8);
		im_shard_apply(map, IM_KIND_GROUP, slot, 1, name);
	}
	t0 = now_s();
	while (now_s() - t0 < budget) {
		int i;

		for (i = 0; i < 100000; i++) {
			im_shard_entry e =
				im_shard_get(map, IM_KIND_GROUP, rng(&s));

			acc += e.epoch + e.slot;
		}
		ops += 100000;
	}
	sink = acc;
	row("shard lookup (im_shard_get)", ops, now_s() - t0);
	im_shard_destroy(map);
}

static void
bench_idseg(double budget, const char *dir, uint32_t step)
{
	im_store *st;
	im_idseg seg;
	im_idseg_opts o = IM_IDSEG_OPTS_INIT;
	im_seg_key key = {IM_SEG_GROUP_SEQ, 42};
	char path[512], err[256], name[64];
	uint64_t ops = 0, id = 0, refills = 0;
	double t0;

	snprintf(path, sizeof(path), "%s/idseg.db", dir);
	if (im_store_sqlite_open(&st, path, NULL, err, sizeof(err)) != IM_OK) {
		fprintf(stderr, "open %s: %s\n", path, err);
		exit(1);
	}
	o.step = step;
	im_idseg_init(&seg, &key, &o);
	t0 = now_s();
	while (now_s() - t0 < budget) {
		int i;

		for (i = 0; i < 100000; i++) {
			if (im_idseg_wants_refill(&seg)) {
				if (im_idseg_refill(&seg, st) != IM_OK) {
					fprintf(stderr, "refill: %s\n",
						im_store_errmsg(st));
					exit(1);
				}
				refills++;
			}
			if (im_idseg_next(&seg, &id) != IM_OK) {
				fprintf(stderr, "idseg ran dry\n");
				exit(1);
			}
		}
		ops += 100000;
	}
	sink = id;
	snprintf(name, sizeof(name), "idseg next, step %u (%llu sqlite refills)",
		 step, (unsigned long long)refills);
	row(name, ops, now_s() - t0);
	im_idseg_finish(&seg);
	im_store_close(st);
}

static void
bench_dedup(double budget)
{
	enum { N = 1000000 };
	im_dedup *d;
	im_dedup_opts o = IM_DEDUP_OPTS_INIT;
	im_dedup_val v = {0, 0};
	uint64_t s = 7, ops = 0, hits = 0, i;
	double t0;

	o.capacity = N;
	o.ttl_ms = 0;
	if (im_dedup_create(&d, &o) != IM_OK) {
		fprintf(stderr, "dedup_create failed\n");
		exit(1);
	}
	for (i = 0; i < N; i++) {
		v.seq = i + 1;
		im_dedup_insert(d, 1 + i % 1000, 1 + i % 7919, i, &v, 1, NULL);
	}
	t0 = now_s();
	while (now_s() - t0 < budget) {
		int k;

		for (k = 0; k < 100000; k++) {
			uint64_t x = rng(&s) % N;

			hits += im_dedup_lookup(d, 1 + x % 1000, 1 + x % 7919,
						x, 1, &v) == IM_OK;
		}
		ops += 100000;
	}
	sink = hits;
	row("dedup lookup, 1M entries (hits)", ops, now_s() - t0);
	ops = 0;
	t0 = now_s();
	while (now_s() - t0 < budget) {
		int k;

		for (k = 0; k < 100000; k++) {
			uint64_t x = N + ops + (uint64_t)k;

			v.seq = x;
			im_dedup_insert(d, 1 + x % 1000, 1 + x % 7919, x, &v,
					1, NULL);
		}
		ops += 100000;
	}
	row("dedup insert, 1M entries (evicting LRU)", ops, now_s() - t0);
	im_dedup_destroy(d);
}

static void
bench_pushq(double budget)
{
	im_pushq q;
	im_pushq_opts o = IM_PUSHQ_OPTS_INIT;
	uint8_t frame[100];
	uint64_t ops = 0, seq = 0;
	double t0;

	memset(frame, 'x', sizeof(frame));
	im_pushq_init(&q, &o);
	t0 = now_s();
	while (now_s() - t0 < budget) {
		int k;

		/* A window of 64 in flight, acked in bursts of 16. */
		for (k = 0; k < 64; k++) {
			im_pushq_push(&q, 1 + (uint64_t)(k % 4), ++seq, frame,
				      sizeof(frame), 0, NULL);
			if (k % 16 == 15) {
				int c;

				for (c = 1; c <= 4; c++) {
					im_pushq_ack(&q, (uint64_t)c, seq);
				}
			}
		}
		ops += 64;
	}
	row("pushq push + ack (100-byte frames)", ops, now_s() - t0);
	im_pushq_finish(&q);
}

int
main(int argc, char **argv)
{
	double budget = argc > 1 ? atof(argv[1]) : 1.0;
	char dir[] = "/tmp/im-bench-core-XXXXXX";

	if (budget <= 0 || budget > 60) {
		fprintf(stderr, "usage: %s [seconds-per-row (0..60]]\n",
			argv[0]);
		return 2;
	}
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	printf("| %-44s | %12s | %9s |\n", "operation", "ops/s", "ns/op");
	printf("|%.46s|%.14s|%.11s|\n",
	       "----------------------------------------------",
	       "--------------", "-----------");
	bench_shard(budget);
	bench_idseg(budget, dir, 1000);
	bench_idseg(budget, dir, 100000);
	bench_dedup(budget);
	bench_pushq(budget);
	{
		char cmd[600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "could not remove %s\n", dir);
		}
	}
	return 0;
}
