/*
 * A store that counts calls per op and forwards them to another store
 * (libgit2's fake_backend with its read_calls counters).
 */
#ifndef IM_TEST_FAKE_STORE_H
#define IM_TEST_FAKE_STORE_H

#include "wrap_store.h"

/*
 * Wrap inner; with own_inner, closing the fake closes inner too.
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM
 */
int fake_store_wrap(im_store **out, im_store *inner, bool own_inner);

/* Calls of op so far (including those that failed). */
unsigned long fake_store_calls(const im_store *fake, enum store_op op);

/* Calls of all ops so far. */
unsigned long fake_store_total(const im_store *fake);

void fake_store_reset(im_store *fake);

#endif
