#include "im/convlist.h"

#include "internal.h"

#include <assert.h>

#define CONVLIST_MAX (1u << 24)
#define FIRST_CAP 8u

/*
 * Dense entry array (swap-remove keeps it dense) plus an open-addressing
 * index of entry positions + 1 (0 = empty slot), linear probing with
 * backward-shift deletion so no tombstones pile up. Both grow by doubling up
 * to max_convs so a user with few conversations costs little; a lookup
 * never allocates.
 */
struct table {
	im_conv_entry *e;
	uint32_t n;
	uint32_t cap;
	uint32_t *idx;
	uint32_t mask;
	uint64_t unread_total; /* over entries not muted */
};

struct im_convlist {
	im_allocator alloc;
	uint32_t max;
	struct table t;
};

static uint32_t
home(const struct table *t, im_gid conv)
{
	return (uint32_t)(im__mix64(conv) & t->mask);
}

static uint32_t
find_slot(const struct table *t, im_gid conv)
{
	uint32_t s;

	if (t->idx == NULL) {
		return UINT32_MAX;
	}
	for (s = home(t, conv); t->idx[s] != 0; s = (s + 1) & t->mask) {
		if (t->e[t->idx[s] - 1].conv == conv) {
			return s;
		}
	}
	return UINT32_MAX;
}

static im_conv_entry *
find(const struct table *t, im_gid conv)
{
	uint32_t s = find_slot(t, conv);

	return s == UINT32_MAX ? NULL : &t->e[t->idx[s] - 1];
}

static void
idx_put(struct table *t, im_gid conv, uint32_t pos)
{
	uint32_t s;

	for (s = home(t, conv); t->idx[s] != 0; s = (s + 1) & t->mask) {
	}
	t->idx[s] = pos + 1;
}

static void
idx_del(struct table *t, uint32_t s)
{
	uint32_t j = s;

	/* Backward shift: pull later members of the probe run into the hole
	 * when their home does not lie cyclically in (hole, j]. */
	t->idx[s] = 0;
	for (;;) {
		uint32_t h;

		j = (j + 1) & t->mask;
		if (t->idx[j] == 0) {
			return;
		}
		h = home(t, t->e[t->idx[j] - 1].conv);
		if (((j - h) & t->mask) >= ((j - s) & t->mask)) {
			t->idx[s] = t->idx[j];
			t->idx[j] = 0;
			s = j;
		}
	}
}

static uint64_t
contribution(const im_conv_entry *e)
{
	return (e->flags & IM_CONV_MUTED) != 0 ? 0 : e->unread;
}

/* Make room for one more entry; leaves t unchanged on failure. */
static int
reserve(const im_allocator *a, struct table *t, uint32_t max)
{
	uint32_t cap, nb, i;
	uint32_t *idx;
	im_conv_entry *e;

	if (t->n < t->cap) {
		return IM_OK;
	}
	if (t->n >= max) {
		return IM_EFULL;
	}
	cap = t->cap == 0 ? FIRST_CAP : t->cap * 2;
	if (cap > max) {
		cap = max;
	}
	for (nb = 1; nb < cap * 2; nb <<= 1) {
	}
	idx = im__calloc(a, nb, sizeof(*idx));
	if (idx == NULL) {
		return IM_ENOMEM;
	}
	e = im__realloc(a, t->e, (size_t)cap * sizeof(*e));
	if (e == NULL) {
		im__free(a, idx);
		return IM_ENOMEM;
	}
	im__free(a, t->idx);
	t->e = e;
	t->cap = cap;
	t->idx = idx;
	t->mask = nb - 1;
	for (i = 0; i < t->n; i++) {
		idx_put(t, t->e[i].conv, i);
	}
	return IM_OK;
}

static void
table_free(const im_allocator *a, struct table *t)
{
	im__free(a, t->e);
	im__free(a, t->idx);
	memset(t, 0, sizeof(*t));
}

static im_conv_entry *
append(struct table *t, im_gid conv)
{
	im_conv_entry *e = &t->e[t->n];

	assert(t->n < t->cap);
	memset(e, 0, sizeof(*e));
	e->conv = conv;
	idx_put(t, conv, t->n);
	t->n++;
	return e;
}

static bool
row_valid(const im_conv_row *row)
{
	return row != NULL && row->conv != 0 &&
	       row->preview_len <= IM_PREVIEW_MAX &&
	       (row->preview_len == 0 || row->preview != NULL) &&
	       (row->last.seq == 0) == (row->last.ordinal == 0);
}

static int
table_apply(const im_allocator *a, struct table *t, uint32_t max,
	    const im_conv_row *row)
{
	im_conv_entry *e = find(t, row->conv);
	int rc;

	if (e == NULL) {
		rc = reserve(a, t, max);
		if (rc != IM_OK) {
			return rc;
		}
		e = append(t, row->conv);
	} else {
		t->unread_total -= contribution(e);
	}
	e->last = row->last;
	e->read.seq = row->read_seq;
	e->read.ordinal = row->read_ordinal;
	/* A pointer past the last message (or a chain the store got out of
	 * step) must not turn into a negative count: clamp to the last. */
	if (e->read.ordinal >= e->last.ordinal || e->read.seq >= e->last.seq) {
		e->read = e->last;
	}
	e->unread = e->last.ordinal - e->read.ordinal;
	e->last_sender = row->last_sender;
	e->last_time_ms = row->last_time_ms;
	e->flags = row->flags;
	e->preview_len = row->preview_len;
	if (row->preview_len != 0) {
		memcpy(e->preview, row->preview, row->preview_len);
	}
	t->unread_total += contribution(e);
	return IM_OK;
}

int
im_convlist_create(im_convlist **out, const im_convlist_opts *opts)
{
	im_convlist *cl;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	if (opts == NULL || opts->version == 0 ||
	    opts->version > IM_CONVLIST_OPTS_VERSION || opts->max_convs == 0 ||
	    opts->max_convs > CONVLIST_MAX) {
		return IM_EINVAL;
	}
	cl = im__calloc(&opts->alloc, 1, sizeof(*cl));
	if (cl == NULL) {
		return IM_ENOMEM;
	}
	cl->alloc = opts->alloc;
	cl->max = opts->max_convs;
	*out = cl;
	return IM_OK;
}

void
im_convlist_destroy(im_convlist *cl)
{
	if (cl == NULL) {
		return;
	}
	table_free(&cl->alloc, &cl->t);
	im__free(&cl->alloc, cl);
}

struct load_ctx {
	im_convlist *cl;
	struct table t;
	int err;
};

static int
load_row(const im_conv_row *row, void *payload)
{
	struct load_ctx *lc = payload;

	if (!row_valid(row)) {
		lc->err = IM_EINVAL;
	} else {
		lc->err = table_apply(&lc->cl->alloc, &lc->t, lc->cl->max,
				      row);
	}
	return lc->err;
}

int
im_convlist_load(im_convlist *cl, im_store *st, im_uid user)
{
	struct load_ctx lc;
	int rc;

	if (cl == NULL || st == NULL || user == 0) {
		return IM_EINVAL;
	}
	memset(&lc, 0, sizeof(lc));
	lc.cl = cl;
	rc = im_store_conv_load(st, user, load_row, &lc);
	if (rc == IM_OK && lc.err != IM_OK) {
		rc = lc.err;
	}
	if (rc > 0) {
		/* Only our callback stops a read, and it returns negatives. */
		rc = IM_ERR;
	}
	if (rc != IM_OK) {
		table_free(&cl->alloc, &lc.t);
		return rc;
	}
	table_free(&cl->alloc, &cl->t);
	cl->t = lc.t;
	return IM_OK;
}

int
im_convlist_apply_row(im_convlist *cl, const im_conv_row *row)
{
	if (cl == NULL || !row_valid(row)) {
		return IM_EINVAL;
	}
	return table_apply(&cl->alloc, &cl->t, cl->max, row);
}

int
im_convlist_deliver(im_convlist *cl, const im_msg *msg, bool own)
{
	struct table *t;
	im_conv_entry *e;
	uint32_t plen;
	int rc;

	if (cl == NULL || msg == NULL || msg->conv == 0 || msg->seq == 0 ||
	    msg->ordinal == 0 || msg->prev_seq >= msg->seq ||
	    (msg->body_len != 0 && msg->body == NULL)) {
		return IM_EINVAL;
	}
	t = &cl->t;
	e = find(t, msg->conv);
	if (e != NULL) {
		if (msg->seq <= e->last.seq) {
			return IM_OK;
		}
		if (msg->ordinal <= e->last.ordinal) {
			/* Seq and ordinal disagree: a broken chain. */
			return IM_EINVAL;
		}
	} else {
		rc = reserve(&cl->alloc, t, cl->max);
		if (rc != IM_OK) {
			return rc;
		}
		e = append(t, msg->conv);
		e->read.seq = msg->prev_seq;
		e->read.ordinal = msg->ordinal - 1;
	}
	t->unread_total -= contribution(e);
	e->last.seq = msg->seq;
	e->last.ordinal = msg->ordinal;
	if (own) {
		e->read = e->last;
	}
	e->unread = e->last.ordinal - e->read.ordinal;
	e->last_sender = msg->sender;
	e->last_time_ms = msg->time_ms;
	plen = IM__MIN(msg->body_len, (uint32_t)IM_PREVIEW_MAX);
	e->preview_len = plen;
	if (plen != 0) {
		memcpy(e->preview, msg->body, plen);
	}
	t->unread_total += contribution(e);
	return IM_OK;
}

int
im_convlist_read(im_convlist *cl, im_gid conv, im_seq seq, uint64_t ordinal,
		 bool *moved_out)
{
	im_conv_entry *e;
	im_msg_pos to;

	if (moved_out != NULL) {
		*moved_out = false;
	}
	if (cl == NULL || conv == 0) {
		return IM_EINVAL;
	}
	e = find(&cl->t, conv);
	if (e == NULL) {
		return IM_ENOTFOUND;
	}
	if (seq <= e->read.seq) {
		return IM_OK;
	}
	if (seq >= e->last.seq) {
		to = e->last;
	} else if (ordinal > e->read.ordinal && ordinal < e->last.ordinal) {
		to.seq = seq;
		to.ordinal = ordinal;
	} else {
		/* A seq strictly inside (read, last) must have an ordinal
		 * strictly inside too, or the counts would lie. */
		return IM_EINVAL;
	}
	cl->t.unread_total -= contribution(e);
	e->read = to;
	e->unread = e->last.ordinal - e->read.ordinal;
	cl->t.unread_total += contribution(e);
	if (moved_out != NULL) {
		*moved_out = true;
	}
	return IM_OK;
}

int
im_convlist_set_flags(im_convlist *cl, im_gid conv, uint32_t flags)
{
	im_conv_entry *e;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	e = find(&cl->t, conv);
	if (e == NULL) {
		return IM_ENOTFOUND;
	}
	cl->t.unread_total -= contribution(e);
	e->flags = flags;
	cl->t.unread_total += contribution(e);
	return IM_OK;
}

int
im_convlist_remove(im_convlist *cl, im_gid conv)
{
	struct table *t;
	uint32_t s, pos, last;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	t = &cl->t;
	s = find_slot(t, conv);
	if (s == UINT32_MAX) {
		return IM_ENOTFOUND;
	}
	pos = t->idx[s] - 1;
	t->unread_total -= contribution(&t->e[pos]);
	idx_del(t, s);
	last = t->n - 1;
	if (pos != last) {
		/* Re-point the moved entry's index slot at its new place. */
		s = find_slot(t, t->e[last].conv);
		assert(s != UINT32_MAX);
		t->e[pos] = t->e[last];
		t->idx[s] = pos + 1;
	}
	t->n--;
	return IM_OK;
}

int
im_convlist_lookup(const im_convlist *cl, im_gid conv, im_conv_entry *out)
{
	const im_conv_entry *e;

	if (cl == NULL) {
		return IM_EINVAL;
	}
	e = find(&cl->t, conv);
	if (e == NULL) {
		return IM_ENOTFOUND;
	}
	if (out != NULL) {
		*out = *e;
	}
	return IM_OK;
}

size_t
im_convlist_count(const im_convlist *cl)
{
	return cl != NULL ? cl->t.n : 0;
}

uint64_t
im_convlist_unread_total(const im_convlist *cl)
{
	return cl != NULL ? cl->t.unread_total : 0;
}

/* True when a is listed before b. */
static bool
before(const im_conv_entry *a, const im_conv_entry *b)
{
	bool pa = (a->flags & IM_CONV_PINNED) != 0;
	bool pb = (b->flags & IM_CONV_PINNED) != 0;

	if (pa != pb) {
		return pa;
	}
	if (a->last_time_ms != b->last_time_ms) {
		return a->last_time_ms > b->last_time_ms;
	}
	return a->conv < b->conv;
}

static void
swap(im_conv_entry *a, im_conv_entry *b)
{
	im_conv_entry tmp = *a;

	*a = *b;
	*b = tmp;
}

/* Heap whose root is the entry listed last (the first to give way). */
static void
sift_down(im_conv_entry *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < n && before(&h[m], &h[l])) {
			m = l;
		}
		if (r < n && before(&h[m], &h[r])) {
			m = r;
		}
		if (m == i) {
			return;
		}
		swap(&h[i], &h[m]);
		i = m;
	}
}

static void
sift_up(im_conv_entry *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!before(&h[p], &h[i])) {
			return;
		}
		swap(&h[p], &h[i]);
		i = p;
	}
}

void
im_convlist_list(const im_convlist *cl, im_conv_entry *out, size_t max,
		 size_t *n_out)
{
	size_t n = 0, i;

	/* The caller's array doubles as a bounded heap, so listing needs no
	 * memory of its own and costs O(count log max). */
	if (cl != NULL && out != NULL) {
		for (i = 0; i < cl->t.n && max > 0; i++) {
			const im_conv_entry *e = &cl->t.e[i];

			if (n < max) {
				out[n] = *e;
				sift_up(out, n);
				n++;
			} else if (before(e, &out[0])) {
				out[0] = *e;
				sift_down(out, n, 0);
			}
		}
		for (i = n; i > 1; i--) {
			swap(&out[0], &out[i - 1]);
			sift_down(out, i - 1, 0);
		}
	}
	if (n_out != NULL) {
		*n_out = n;
	}
}

size_t
im_convlist_mem(const im_convlist *cl)
{
	if (cl == NULL) {
		return 0;
	}
	return sizeof(*cl) + (size_t)cl->t.cap * sizeof(im_conv_entry) +
	       (cl->t.idx != NULL ? ((size_t)cl->t.mask + 1) * sizeof(uint32_t)
	                          : 0);
}
