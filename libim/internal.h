/* Internal helpers shared by the core's modules; not installed. */
#ifndef IM_INTERNAL_H
#define IM_INTERNAL_H

#include "im/im.h"

#include <string.h>

/* Allocation through an object's im_allocator (NULL realloc = libc). */
void *im__realloc(const im_allocator *a, void *p, size_t n);
void *im__alloc(const im_allocator *a, size_t n);
void *im__calloc(const im_allocator *a, size_t count, size_t size);
void im__free(const im_allocator *a, void *p);

/* 64-bit mixer (splitmix64 finalizer): hashing ids into slots and tables. */
static inline uint64_t
im__mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

#define IM__ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define IM__MIN(a, b) ((a) < (b) ? (a) : (b))
#define IM__MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
