/*
 * The store mux: handles over one store that take one recursive mutex
 * around every op (see mux.h). The inner store's error message is copied
 * into the calling handle while the lock is held, so no thread ever reads
 * a message another thread is writing.
 */
#include "mux.h"

#include "ops.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct im__store_mux {
	pthread_mutex_t lock;
	im_store *inner;
	struct im_store_ops ops; /* named after the inner store */
	unsigned long calls;     /* under lock */
	unsigned handles;        /* under lock */
};

struct mux_handle {
	im_store base; /* first, as in every backend */
	im__store_mux *m;
};

#define MUX(st) (((struct mux_handle *)(st))->m)

/* Lock and count; the inner store to call. */
static im_store *
mux_enter(im_store *st)
{
	im__store_mux *m = MUX(st);

	pthread_mutex_lock(&m->lock);
	m->calls++;
	return m->inner;
}

static int
mux_leave(im_store *st, int rc)
{
	im__store_mux *m = MUX(st);

	if (rc != IM_OK) {
		im_store_set_error(st, "%s", im_store_errmsg(m->inner));
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

static void
mux_close(im_store *st)
{
	im__store_mux *m = MUX(st);

	pthread_mutex_lock(&m->lock);
	m->handles--;
	pthread_mutex_unlock(&m->lock);
	free(st);
}

/* Every op of the list: lock, forward to the inner store through its
 * public wrapper (which answers IM_ENOTSUP for an op the inner backend
 * lacks), copy the error into this handle, unlock. */
#define MUX_FORWARD(v, op, OP, params, args)                                  \
	static int mux_##op(im_store *st, IM__UNPAREN params)                 \
	{                                                                      \
		im_store *inner = mux_enter(st);                               \
                                                                               \
		return mux_leave(st, im_store_##op(inner, IM__UNPAREN args));  \
	}
IM__STORE_OPS(MUX_FORWARD)
#undef MUX_FORWARD

/* The table comes from the list too: an op missing here would answer
 * IM_ENOTSUP through the mux and send callers to their fallbacks (some
 * unfenced). */
static const struct im_store_ops mux_ops = {
	.version = IM_STORE_OPS_VERSION,
	.name = "mux",
	.close = mux_close,
#define MUX_SLOT(v, op, OP, params, args) .op = mux_##op,
	IM__STORE_OPS(MUX_SLOT)
#undef MUX_SLOT
};

int
im__store_mux_create(im__store_mux **out, im_store *inner)
{
	pthread_mutexattr_t attr;
	im__store_mux *m;
	int rc;

	if (out == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return IM_ENOMEM;
	}
	if (pthread_mutexattr_init(&attr) != 0) {
		free(m);
		return IM_ENOMEM;
	}
	(void)pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
	rc = pthread_mutex_init(&m->lock, &attr);
	pthread_mutexattr_destroy(&attr);
	if (rc != 0) {
		free(m);
		return IM_ENOMEM;
	}
	m->inner = inner;
	m->ops = mux_ops;
	/* Callers that look at the backend's name see the real one. */
	m->ops.name = im_store_name(inner);
	*out = m;
	return IM_OK;
}

int
im__store_mux_handle(im__store_mux *m, im_store **out)
{
	struct mux_handle *h;
	int rc;

	if (m == NULL || out == NULL) {
		return IM_EINVAL;
	}
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		return IM_ENOMEM;
	}
	h->m = m;
	rc = im_store_init(&h->base, &m->ops);
	if (rc != IM_OK) {
		free(h);
		return rc;
	}
	pthread_mutex_lock(&m->lock);
	m->handles++;
	pthread_mutex_unlock(&m->lock);
	*out = &h->base;
	return IM_OK;
}

unsigned long
im__store_mux_calls(im__store_mux *m)
{
	unsigned long n;

	if (m == NULL) {
		return 0;
	}
	pthread_mutex_lock(&m->lock);
	n = m->calls;
	pthread_mutex_unlock(&m->lock);
	return n;
}

void
im__store_mux_destroy(im__store_mux *m)
{
	if (m == NULL) {
		return;
	}
	/* A handle still open would point at freed memory: leak instead. */
	if (m->handles != 0) {
		return;
	}
	pthread_mutex_destroy(&m->lock);
	free(m);
}
