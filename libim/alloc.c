#include "internal.h"

#include <stdint.h>
#include <stdlib.h>

void *
im__realloc(const im_allocator *a, void *p, size_t n)
{
	if (a != NULL && a->realloc != NULL) {
		return a->realloc(a->ud, p, n);
	}
	if (n == 0) {
		free(p);
		return NULL;
	}
	return realloc(p, n);
}

void *
im__alloc(const im_allocator *a, size_t n)
{
	if (n == 0) {
		n = 1;
	}
	return im__realloc(a, NULL, n);
}

void *
im__calloc(const im_allocator *a, size_t count, size_t size)
{
	void *p;

	if (size != 0 && count > SIZE_MAX / size) {
		return NULL;
	}
	p = im__alloc(a, count * size);
	if (p != NULL) {
		memset(p, 0, count * size);
	}
	return p;
}

void
im__free(const im_allocator *a, void *p)
{
	if (p != NULL) {
		im__realloc(a, p, 0);
	}
}
