/*
 * The store mux (private; servers and tests link im_store_mux): several
 * handles over one store connection, every op under one mutex, so that
 * threads of one process can share a store that is not thread-safe itself
 * (a sqlite connection opened in exclusive locking mode cannot have a
 * second connection; a PostgreSQL connection is one session). The
 * Chatter's commit thread gets one handle, everything on the event loop
 * another. It is a backend like sqlite/ and pg/, over another backend, so
 * it lives beside them; its forwarding functions come from the op list
 * (ops.h), so it forwards every op of this build.
 *
 * Each handle is an im_store with its own error message (im_store_errmsg of
 * a handle only ever describes an op made through that handle), so each
 * thread reads only its own. The lock is recursive: a callback of a
 * streaming op (msg_read, member_list, ...) may call the store again
 * through the same thread's handle. A thread blocks in any op while
 * another thread's op runs: the loop waits for a commit in flight when it
 * reads the store meanwhile. So a callback of an op must never wait for
 * another thread that uses the store (the Chatter's commit thread): the
 * lock is held for the whole op.
 */
#ifndef IM_STORE_MUX_H
#define IM_STORE_MUX_H

#include "im/sys/store.h"

typedef struct im__store_mux im__store_mux;

/*
 * Create a mux over inner (borrowed: it must outlive the mux and every
 * handle; closing the handles never closes it).
 * @retval IM_OK, IM_EINVAL (NULL argument), IM_ENOMEM
 */
int im__store_mux_create(im__store_mux **out, im_store *inner);

/*
 * A new handle on m. im_store_close(handle) releases it. Every handle
 * must be closed before im__store_mux_destroy.
 * @retval IM_OK, IM_EINVAL, IM_ENOMEM
 */
int im__store_mux_handle(im__store_mux *m, im_store **out);

/* Ops made through all handles of m so far (tests). Thread-safe. */
unsigned long im__store_mux_calls(im__store_mux *m);

/* Free m (NULL is fine). Its handles must be closed already. */
void im__store_mux_destroy(im__store_mux *m);

#endif
