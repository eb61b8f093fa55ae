#include "im/dedup.h"

#include "internal.h"

#include <assert.h>

#define NIL UINT32_MAX
#define DEDUP_CAPACITY_MAX (1u << 28)

/*
 * Every entry sits on two intrusive lists: the LRU list (lookups refresh it)
 * and the age list (inserts append; stamps never decrease along it because
 * they are the clock's high-water mark), so expiry pops from the age head
 * and eviction from the LRU head without scanning.
 */
struct entry {
	uint64_t conv;
	uint64_t sender;
	uint64_t dedup_id;
	im_dedup_val val;
	uint64_t stamp;
	uint32_t hnext; /* bucket chain, or the free list */
	uint32_t lru_prev, lru_next;
	uint32_t age_prev, age_next;
};

struct list {
	uint32_t head; /* oldest */
	uint32_t tail; /* newest */
};

struct im_dedup {
	im_allocator alloc;
	uint64_t seed;
	uint64_t ttl_ms;
	uint64_t newest_ms;
	uint32_t capacity;
	uint32_t count;
	uint32_t mask;
	uint32_t free_head;
	struct list lru;
	struct list age;
	uint32_t *buckets;
	struct entry *entries;
};

static uint32_t
bucket_of(const im_dedup *d, uint64_t conv, uint64_t sender, uint64_t id)
{
	uint64_t h;

	h = im__mix64(d->seed ^ conv);
	h = im__mix64(h ^ sender);
	h = im__mix64(h ^ id);
	return (uint32_t)(h & d->mask);
}

/* The two lists share code through member offsets of the link pair. */
#define LINK_UNLINK(d, l, i, prev, next)                                       \
	do {                                                                   \
		struct entry *e_ = &(d)->entries[(i)];                         \
		if (e_->prev != NIL) {                                         \
			(d)->entries[e_->prev].next = e_->next;                \
		} else {                                                       \
			(l)->head = e_->next;                                  \
		}                                                              \
		if (e_->next != NIL) {                                         \
			(d)->entries[e_->next].prev = e_->prev;                \
		} else {                                                       \
			(l)->tail = e_->prev;                                  \
		}                                                              \
		e_->prev = e_->next = NIL;                                     \
	} while (0)

#define LINK_APPEND(d, l, i, prev, next)                                       \
	do {                                                                   \
		struct entry *e_ = &(d)->entries[(i)];                         \
		e_->prev = (l)->tail;                                          \
		e_->next = NIL;                                                \
		if ((l)->tail != NIL) {                                        \
			(d)->entries[(l)->tail].next = (i);                    \
		} else {                                                       \
			(l)->head = (i);                                       \
		}                                                              \
		(l)->tail = (i);                                               \
	} while (0)

static void
lru_unlink(im_dedup *d, uint32_t i)
{
	LINK_UNLINK(d, &d->lru, i, lru_prev, lru_next);
}

static void
lru_append(im_dedup *d, uint32_t i)
{
	LINK_APPEND(d, &d->lru, i, lru_prev, lru_next);
}

static void
age_unlink(im_dedup *d, uint32_t i)
{
	LINK_UNLINK(d, &d->age, i, age_prev, age_next);
}

static void
age_append(im_dedup *d, uint32_t i)
{
	LINK_APPEND(d, &d->age, i, age_prev, age_next);
}

static void
observe(im_dedup *d, uint64_t now_ms)
{
	if (now_ms > d->newest_ms) {
		d->newest_ms = now_ms;
	}
}

static bool
expired(const im_dedup *d, const struct entry *e)
{
	/* stamp <= newest_ms always: stamps are taken from it. */
	return d->ttl_ms != 0 && d->newest_ms - e->stamp >= d->ttl_ms;
}

/* Finds the entry and the link pointing at it, for O(1) unlinking. */
static uint32_t
find(const im_dedup *d, uint64_t conv, uint64_t sender, uint64_t id,
     uint32_t **link_out)
{
	uint32_t *link = &d->buckets[bucket_of(d, conv, sender, id)];

	while (*link != NIL) {
		struct entry *e = &d->entries[*link];

		if (e->conv == conv && e->sender == sender &&
		    e->dedup_id == id) {
			if (link_out != NULL) {
				*link_out = link;
			}
			return *link;
		}
		link = &e->hnext;
	}
	return NIL;
}

static void
drop(im_dedup *d, uint32_t i)
{
	struct entry *e = &d->entries[i];
	uint32_t *link = NULL;
	uint32_t found;

	found = find(d, e->conv, e->sender, e->dedup_id, &link);
	assert(found == i && link != NULL);
	(void)found;
	*link = e->hnext;
	lru_unlink(d, i);
	age_unlink(d, i);
	e->hnext = d->free_head;
	d->free_head = i;
	d->count--;
}

int
im_dedup_create(im_dedup **out, const im_dedup_opts *opts)
{
	im_dedup *d;
	uint32_t nb = 1;
	uint32_t i;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	if (opts == NULL || opts->version == 0 ||
	    opts->version > IM_DEDUP_OPTS_VERSION || opts->capacity == 0 ||
	    opts->capacity > DEDUP_CAPACITY_MAX) {
		return IM_EINVAL;
	}
	while (nb < opts->capacity) {
		nb <<= 1;
	}
	d = im__calloc(&opts->alloc, 1, sizeof(*d));
	if (d == NULL) {
		return IM_ENOMEM;
	}
	d->alloc = opts->alloc;
	d->buckets = im__calloc(&d->alloc, nb, sizeof(*d->buckets));
	d->entries = im__calloc(&d->alloc, opts->capacity, sizeof(*d->entries));
	if (d->buckets == NULL || d->entries == NULL) {
		im_dedup_destroy(d);
		return IM_ENOMEM;
	}
	d->seed = opts->seed;
	d->ttl_ms = opts->ttl_ms;
	d->capacity = opts->capacity;
	d->mask = nb - 1;
	for (i = 0; i < nb; i++) {
		d->buckets[i] = NIL;
	}
	for (i = 0; i < d->capacity; i++) {
		d->entries[i].hnext = i + 1 < d->capacity ? i + 1 : NIL;
	}
	d->free_head = 0;
	d->lru.head = d->lru.tail = NIL;
	d->age.head = d->age.tail = NIL;
	*out = d;
	return IM_OK;
}

void
im_dedup_destroy(im_dedup *d)
{
	if (d == NULL) {
		return;
	}
	im__free(&d->alloc, d->buckets);
	im__free(&d->alloc, d->entries);
	im__free(&d->alloc, d);
}

int
im_dedup_lookup(im_dedup *d, im_gid conv, im_uid sender, uint64_t dedup_id,
		uint64_t now_ms, im_dedup_val *val_out)
{
	uint32_t i;

	if (d == NULL) {
		return IM_EINVAL;
	}
	observe(d, now_ms);
	i = find(d, conv, sender, dedup_id, NULL);
	if (i == NIL) {
		return IM_ENOTFOUND;
	}
	if (expired(d, &d->entries[i])) {
		drop(d, i);
		return IM_ENOTFOUND;
	}
	lru_unlink(d, i);
	lru_append(d, i);
	if (val_out != NULL) {
		*val_out = d->entries[i].val;
	}
	return IM_OK;
}

int
im_dedup_insert(im_dedup *d, im_gid conv, im_uid sender, uint64_t dedup_id,
		const im_dedup_val *val, uint64_t now_ms, bool *evicted_out)
{
	struct entry *e;
	uint32_t b;
	uint32_t i;
	bool evicted = false;

	if (d == NULL || val == NULL) {
		return IM_EINVAL;
	}
	observe(d, now_ms);
	i = find(d, conv, sender, dedup_id, NULL);
	if (i != NIL) {
		e = &d->entries[i];
		e->val = *val;
		e->stamp = d->newest_ms;
		lru_unlink(d, i);
		lru_append(d, i);
		age_unlink(d, i);
		age_append(d, i);
		goto out;
	}
	if (d->count == d->capacity) {
		/* A dead entry is a free slot in disguise; spare a live one. */
		if (expired(d, &d->entries[d->age.head])) {
			drop(d, d->age.head);
		} else {
			drop(d, d->lru.head);
			evicted = true;
		}
	}
	i = d->free_head;
	assert(i != NIL);
	e = &d->entries[i];
	d->free_head = e->hnext;
	e->conv = conv;
	e->sender = sender;
	e->dedup_id = dedup_id;
	e->val = *val;
	e->stamp = d->newest_ms;
	b = bucket_of(d, conv, sender, dedup_id);
	e->hnext = d->buckets[b];
	d->buckets[b] = i;
	lru_append(d, i);
	age_append(d, i);
	d->count++;
out:
	if (evicted_out != NULL) {
		*evicted_out = evicted;
	}
	return IM_OK;
}

size_t
im_dedup_expire(im_dedup *d, uint64_t now_ms, size_t max)
{
	size_t n = 0;

	if (d == NULL) {
		return 0;
	}
	observe(d, now_ms);
	while (n < max && d->age.head != NIL &&
	       expired(d, &d->entries[d->age.head])) {
		drop(d, d->age.head);
		n++;
	}
	return n;
}

size_t
im_dedup_forget_conv(im_dedup *d, im_gid conv)
{
	uint32_t i, next;
	size_t n = 0;

	if (d == NULL) {
		return 0;
	}
	for (i = d->lru.head; i != NIL; i = next) {
		next = d->entries[i].lru_next;
		if (d->entries[i].conv == conv) {
			drop(d, i);
			n++;
		}
	}
	return n;
}

size_t
im_dedup_count(const im_dedup *d)
{
	return d != NULL ? d->count : 0;
}

size_t
im_dedup_mem(const im_dedup *d)
{
	if (d == NULL) {
		return 0;
	}
	return sizeof(*d) + ((size_t)d->mask + 1) * sizeof(*d->buckets) +
	       (size_t)d->capacity * sizeof(*d->entries);
}
