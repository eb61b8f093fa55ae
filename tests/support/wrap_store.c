#include "wrap_store.h"

#include <stdio.h>

static const char *const op_names[STORE_OP_COUNT] = {
#define OP_NAME(v, op, OP, params, args) [STORE_OP_##OP] = #op,
	IM__STORE_OPS(OP_NAME)
#undef OP_NAME
};

const char *
store_op_name(enum store_op op)
{
	return op < STORE_OP_COUNT ? op_names[op] : "?";
}

static int
w_pre(wrap_store *w, enum store_op op)
{
	return w->pre != NULL ? w->pre(w, op) : 0;
}

static int
w_post(wrap_store *w, enum store_op op, int rc)
{
	if (rc != 0) {
		snprintf(w->base.errmsg, sizeof(w->base.errmsg), "%s",
		         im_store_errmsg(w->inner));
	}
	return w->post != NULL ? w->post(w, op, rc) : rc;
}

static void
w_close(im_store *st)
{
	wrap_store *w = (wrap_store *)st;

	if (w->own_inner) {
		im_store_close(w->inner);
	}
	if (w->destroy != NULL) {
		w->destroy(w);
	}
}

/* Every op of the list: the pre hook may answer instead of the inner
 * store; the post hook sees the inner store's answer. */
#define W_FORWARD(v, op, OP, params, args)                                   \
	static int w_##op(im_store *st, IM__UNPAREN params)                   \
	{                                                                      \
		wrap_store *w = (wrap_store *)st;                              \
		int rc = w_pre(w, STORE_OP_##OP);                              \
                                                                               \
		if (rc != 0) {                                                 \
			return rc;                                             \
		}                                                              \
		rc = im_store_##op(w->inner, IM__UNPAREN args);                \
		return w_post(w, STORE_OP_##OP, rc);                           \
	}
IM__STORE_OPS(W_FORWARD)
#undef W_FORWARD

/* Ops the inner store lacks answer IM_ENOTSUP through its own wrapper. */
static const struct im_store_ops wrap_ops = {
	.version = IM_STORE_OPS_VERSION,
	.name = "wrap",
	.close = w_close,
#define W_SLOT(v, op, OP, params, args) .op = w_##op,
	IM__STORE_OPS(W_SLOT)
#undef W_SLOT
};

int
wrap_store_init(wrap_store *w, im_store *inner, bool own_inner)
{
	if (w == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	w->ops = wrap_ops;
	/* Report the wrapped backend's name: suites print it. */
	w->ops.name = im_store_name(inner);
	w->inner = inner;
	w->own_inner = own_inner;
	return im_store_init(&w->base, &w->ops);
}
