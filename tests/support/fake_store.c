#include "fake_store.h"

#include <stdlib.h>
#include <string.h>

typedef struct fake_store {
	wrap_store w; /* first */
	unsigned long calls[STORE_OP_COUNT];
} fake_store;

static int
fake_pre(wrap_store *w, enum store_op op)
{
	((fake_store *)w)->calls[op]++;
	return 0;
}

static void
fake_destroy(wrap_store *w)
{
	free(w);
}

int
fake_store_wrap(im_store **out, im_store *inner, bool own_inner)
{
	fake_store *fs;
	int rc;

	if (out == NULL || inner == NULL) {
		return IM_EINVAL;
	}
	if ((fs = calloc(1, sizeof(*fs))) == NULL) {
		return IM_ENOMEM;
	}
	fs->w.pre = fake_pre;
	fs->w.destroy = fake_destroy;
	if ((rc = wrap_store_init(&fs->w, inner, own_inner)) != IM_OK) {
		free(fs);
		return rc;
	}
	*out = &fs->w.base;
	return IM_OK;
}

unsigned long
fake_store_calls(const im_store *fake, enum store_op op)
{
	return op < STORE_OP_COUNT ? ((const fake_store *)fake)->calls[op] : 0;
}

unsigned long
fake_store_total(const im_store *fake)
{
	unsigned long n = 0;
	int i;

	for (i = 0; i < STORE_OP_COUNT; i++) {
		n += ((const fake_store *)fake)->calls[i];
	}
	return n;
}

void
fake_store_reset(im_store *fake)
{
	memset(((fake_store *)fake)->calls, 0,
	       sizeof(((fake_store *)fake)->calls));
}
