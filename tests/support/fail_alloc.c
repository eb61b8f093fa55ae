#include "fail_alloc.h"

#include <stdlib.h>

static void *
fail_realloc(void *ud, void *p, size_t n)
{
	fail_alloc *fa = ud;
	void *q;

	if (n == 0) {
		if (p != NULL) {
			fa->live--;
			free(p);
		}
		return NULL;
	}
	fa->calls++;
	if (fa->fail_at != 0 && fa->calls == fa->fail_at) {
		return NULL;
	}
	q = realloc(p, n);
	if (q != NULL && p == NULL) {
		fa->live++;
	}
	return q;
}

im_allocator
fail_alloc_allocator(fail_alloc *fa)
{
	im_allocator a = {fail_realloc, fa};

	return a;
}
