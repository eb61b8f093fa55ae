#include "faulty_store.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct faulty_store {
	wrap_store w; /* first */
	faulty_plan plan;
	unsigned long seen;   /* matching calls since arm */
	unsigned long faults; /* faults injected since arm */
	bool fail_this;       /* decided in pre, applied in post (AFTER) */
} faulty_store;

/* Count the call and decide whether it fails. */
static bool
faulty_hit(faulty_store *fs, enum store_op op)
{
	const faulty_plan *p = &fs->plan;

	if (p->nth == 0 || (p->ops != 0 && !(p->ops & STORE_OP_BIT(op)))) {
		return false;
	}
	fs->seen++;
	return fs->seen == p->nth || (p->persistent && fs->seen > p->nth);
}

static int
faulty_inject(faulty_store *fs, enum store_op op)
{
	fs->faults++;
	im_store_set_error(&fs->w.base,
	                   "faulty_store: injected %s into %s "
	                   "(call %lu)",
	                   im_strerror(fs->plan.err), store_op_name(op),
	                   fs->seen);
	return fs->plan.err;
}

static int
faulty_pre(wrap_store *w, enum store_op op)
{
	faulty_store *fs = (faulty_store *)w;

	fs->fail_this = faulty_hit(fs, op);
	if (fs->fail_this && fs->plan.when == FAULTY_BEFORE) {
		fs->fail_this = false;
		return faulty_inject(fs, op);
	}
	return 0;
}

static int
faulty_post(wrap_store *w, enum store_op op, int rc)
{
	faulty_store *fs = (faulty_store *)w;

	if (fs->fail_this) {
		fs->fail_this = false;
		return faulty_inject(fs, op);
	}
	return rc;
}

static void
faulty_destroy(wrap_store *w)
{
	free(w);
}

int
faulty_store_wrap(im_store **out, im_store *inner, bool own_inner)
{
	faulty_store *fs;
	int rc;

	if (out == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	if ((fs = calloc(1, sizeof(*fs))) == NULL) {
		return IM_ENOMEM;
	}
	fs->w.pre = faulty_pre;
	fs->w.post = faulty_post;
	fs->w.destroy = faulty_destroy;
	if ((rc = wrap_store_init(&fs->w, inner, own_inner)) != IM_OK) {
		free(fs);
		return rc;
	}
	*out = &fs->w.base;
	return IM_OK;
}

void
faulty_store_arm(im_store *faulty, const faulty_plan *plan)
{
	faulty_store *fs = (faulty_store *)faulty;
	static const faulty_plan off = {0};

	fs->plan = plan != NULL ? *plan : off;
	fs->seen = 0;
	fs->faults = 0;
	fs->fail_this = false;
}

unsigned long
faulty_store_faults(const im_store *faulty)
{
	return ((const faulty_store *)faulty)->faults;
}
