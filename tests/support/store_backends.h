/*
 * Run a store-backed unit test once per backend: the in-memory fake
 * (mem_store.h, which can also inject faults) and the real sqlite backend.
 * Use STORE_TESTS(test_fn) in a cmocka test table; the test gets its store
 * with store_of(state). Include after <cmocka.h>.
 */
#ifndef IM_TEST_STORE_BACKENDS_H
#define IM_TEST_STORE_BACKENDS_H

#include <stdio.h>
#include <stdlib.h>

#include "im/store.h"
#include "mem_store.h"

typedef struct backend {
	const char *name;
	im_store *(*open)(void);
} backend;

typedef struct fixture {
	const backend *be;
	im_store *st;
} fixture;

static im_store *
open_mem(void)
{
	mem_store *m = mem_store_open();

	return m != NULL ? &m->base : NULL;
}

static const backend mem = {"mem", open_mem};

static int
setup_store(void **state)
{
	const backend *be = *state;
	fixture *f = calloc(1, sizeof(*f));

	if (f == NULL) {
		return -1;
	}
	f->be = be;
	f->st = be->open();
	if (f->st == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown_store(void **state)
{
	fixture *f = *state;

	im_store_close(f->st);
	free(f);
	return 0;
}

static im_store *
store_of(void **state)
{
	return ((fixture *)*state)->st;
}

/* One test on one backend, named test_x_on_<backend>. */
#define STORE_TEST(fn, be)                                                   \
	{                                                                    \
		#fn "_on_" #be, fn, setup_store, teardown_store,             \
			(void *)&be                                          \
	}

/*
 * The sqlite backend's private header lands with the backend: its presence
 * means libim/store/sqlite is built and linked into this test, and the
 * store-backed tests run on it too.
 */
static im_store *
open_sqlite(void)
{
	im_store *st = NULL;
	char err[256];

	if (im_store_sqlite_open(&st, ":memory:", NULL, err, sizeof(err)) !=
	    IM_OK) {
		fprintf(stderr, "# sqlite: %s\n", err);
		return NULL;
	}
	return st;
}

static const backend sqlite = {"sqlite", open_sqlite};
#define STORE_TESTS(fn) STORE_TEST(fn, mem), STORE_TEST(fn, sqlite)

#endif
