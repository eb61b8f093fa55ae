/*
 * The store's disk is full (IM_ENOSPC): how a role backs off its writes
 * and keeps its log bounded until space returns.
 *
 * A write that failed full starts (or lengthens) a pause: until it ends,
 * requests that would write are refused at once with ERR_STORE_FULL and
 * the store is not tried. The pause starts at STORE_FULL_BACKOFF_MIN_MS and
 * doubles with every failed try up to STORE_FULL_BACKOFF_MAX_MS, so a full
 * disk costs at most one failed transaction per second, and space that
 * returns is used within that second. The first failure is logged at
 * once; then at most one warning per STORE_FULL_LOG_MS, counting what
 * failed and what was refused since the last one; the first write that
 * succeeds again logs how long the disk was full and resets the pause.
 * Loop thread only.
 */
#ifndef IM_ROLE_STORE_FULL_H
#define IM_ROLE_STORE_FULL_H

#include <stdbool.h>
#include <stdint.h>

#define STORE_FULL_BACKOFF_MIN_MS 50u
#define STORE_FULL_BACKOFF_MAX_MS 1000u
#define STORE_FULL_LOG_MS 10000u

typedef struct store_full {
	uint32_t backoff_ms;  /* the pause after the next failure; 0: not full */
	uint64_t until_ms;    /* nothing is written before this */
	uint64_t since_ms;    /* first failure since the disk was last fine */
	uint64_t last_log_ms; /* last warning line */
	uint64_t failed;      /* writes that failed full since that line */
	uint64_t refused;     /* requests refused unwritten since that line */
	uint64_t total;       /* requests refused or failed since since_ms */
	uint64_t lines;       /* warning lines logged (for tests, stats) */
} store_full;

/* Whether the store was found full and has not taken a write since. */
bool store_full_on(const store_full *f);

/*
 * Whether n requests that would write must be refused unwritten now (a
 * pause runs); counted. false: try the store.
 */
bool store_full_blocked(store_full *f, uint64_t now_ms, uint32_t n);

/*
 * A write of n requests failed IM_ENOSPC (what: who wrote, detail: the
 * store's errmsg): the pause doubles, and a warning is logged when due.
 */
void store_full_failed(store_full *f, uint64_t now_ms, uint32_t n,
                       const char *what, const char *detail);

/* A write succeeded: when the store was full, say it recovered, reset. */
void store_full_ok(store_full *f, uint64_t now_ms, const char *what);

#endif
