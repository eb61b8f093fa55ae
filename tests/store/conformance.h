/*
 * The backend conformance suite: written once against the public
 * im_store_* API and run unchanged against every backend (store-sqlite-mem,
 * store-sqlite-file, store-pg). A backend provides a fixture; the suite
 * never skips a test, so a backend that cannot run fails loudly.
 */
#ifndef IM_TEST_CONFORMANCE_H
#define IM_TEST_CONFORMANCE_H

#include "im/store.h"

typedef struct store_fixture {
	/* Printed at the start, e.g. "sqlite (:memory:)". */
	const char *name;
	void *ctx;
	/* Must provide: open a fresh, empty, migrated store. */
	int (*open)(void *ctx, im_store **out);
	/*
	 * Must provide: run raw SQL on the database behind st (a store
	 * returned by open or reopen), to reach states the API cannot, such
	 * as a schema version newer than this build.
	 */
	int (*exec)(void *ctx, im_store *st, const char *sql);
	/*
	 * May be NULL: open the database of the last open again (the store
	 * was closed before). Persistent backends provide it, and then the
	 * suite also checks that data and schema version survive reopening.
	 */
	int (*reopen)(void *ctx, im_store **out);
	/* May be NULL: called after each test, the store already closed. */
	void (*cleanup)(void *ctx);
} store_fixture;

/* Run the whole suite; returns the number of failed tests. */
int store_conformance_run(const store_fixture *fx);

#endif
