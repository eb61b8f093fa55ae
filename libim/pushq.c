#include "im/pushq.h"

#include "internal.h"

#include <assert.h>

#define NIL UINT32_MAX
#define PUSHQ_ITEMS_MAX (1u << 24)
#define FIRST_ITEMS 8u
#define FIRST_CONVS 4u
#define FIRST_BYTES 256u

/* tries == 0 marks a tombstone: a live item was transmitted at least once. */
struct item {
	uint64_t conv;
	im_seq seq;
	uint64_t sent_ms;
	uint64_t off;
	uint32_t len;
	uint32_t tries;
	uint32_t tprev, tnext; /* transmission order */
	uint32_t cnext;        /* same conversation, seq order */
	uint32_t np;           /* new slot, during compaction only */
};

struct conv {
	uint64_t conv;
	im_seq last_seq;
	uint32_t chead, ctail; /* items, or NIL */
	uint32_t nlive;
	uint32_t iprev, inext; /* idle list; inext links the free list too */
	bool used;
};

static struct item *
items(const im_pushq *q)
{
	return q->items;
}

static struct conv *
convs(const im_pushq *q)
{
	return q->convs;
}

static uint32_t
cmask(const im_pushq *q)
{
	return 2 * q->ccap - 1;
}

static uint32_t
home(const im_pushq *q, uint64_t conv)
{
	return (uint32_t)(im__mix64(conv) & cmask(q));
}

/* Index slot holding conv's record, or NIL. */
static uint32_t
conv_slot(const im_pushq *q, uint64_t conv)
{
	uint32_t s;

	if (q->ccap == 0) {
		return NIL;
	}
	for (s = home(q, conv); q->cidx[s] != 0; s = (s + 1) & cmask(q)) {
		if (convs(q)[q->cidx[s] - 1].conv == conv) {
			return s;
		}
	}
	return NIL;
}

static struct conv *
conv_find(const im_pushq *q, uint64_t conv)
{
	uint32_t s = conv_slot(q, conv);

	return s == NIL ? NULL : &convs(q)[q->cidx[s] - 1];
}

static void
cidx_put(im_pushq *q, uint64_t conv, uint32_t rec)
{
	uint32_t s;

	for (s = home(q, conv); q->cidx[s] != 0; s = (s + 1) & cmask(q)) {
	}
	q->cidx[s] = rec + 1;
}

static void
cidx_del(im_pushq *q, uint32_t s)
{
	uint32_t j = s;

	/* Backward-shift deletion: no tombstones in the index. */
	q->cidx[s] = 0;
	for (;;) {
		uint32_t h;

		j = (j + 1) & cmask(q);
		if (q->cidx[j] == 0) {
			return;
		}
		h = home(q, convs(q)[q->cidx[j] - 1].conv);
		if (((j - h) & cmask(q)) >= ((j - s) & cmask(q))) {
			q->cidx[s] = q->cidx[j];
			q->cidx[j] = 0;
			s = j;
		}
	}
}

static void
idle_unlink(im_pushq *q, uint32_t r)
{
	struct conv *c = &convs(q)[r];

	if (c->iprev != NIL) {
		convs(q)[c->iprev].inext = c->inext;
	} else {
		q->idle_head = c->inext;
	}
	if (c->inext != NIL) {
		convs(q)[c->inext].iprev = c->iprev;
	} else {
		q->idle_tail = c->iprev;
	}
	c->iprev = c->inext = NIL;
}

static void
idle_append(im_pushq *q, uint32_t r)
{
	struct conv *c = &convs(q)[r];

	c->iprev = q->idle_tail;
	c->inext = NIL;
	if (q->idle_tail != NIL) {
		convs(q)[q->idle_tail].inext = r;
	} else {
		q->idle_head = r;
	}
	q->idle_tail = r;
}

static void
t_unlink(im_pushq *q, uint32_t i)
{
	struct item *it = &items(q)[i];

	if (it->tprev != NIL) {
		items(q)[it->tprev].tnext = it->tnext;
	} else {
		q->thead = it->tnext;
	}
	if (it->tnext != NIL) {
		items(q)[it->tnext].tprev = it->tprev;
	} else {
		q->ttail = it->tprev;
	}
}

static void
t_append(im_pushq *q, uint32_t i)
{
	struct item *it = &items(q)[i];

	it->tprev = q->ttail;
	it->tnext = NIL;
	if (q->ttail != NIL) {
		items(q)[q->ttail].tnext = i;
	} else {
		q->thead = i;
	}
	q->ttail = i;
}

/* Drop the tombstones from the item array; payloads do not move. */
static void
compact_items(im_pushq *q)
{
	struct item *it = items(q);
	uint32_t i, j = 0;

	for (i = q->ihead; i < q->iend; i++) {
		if (it[i].tries != 0) {
			it[i].np = j++;
		}
	}
	/* Links are translated in place first: np of every live slot stays
	 * readable until the moves below. A record's head or tail is some
	 * live slot i, rewritten to np <= i, so no later slot k > i can
	 * mistake an already rewritten value for its own old index. */
	for (i = q->ihead; i < q->iend; i++) {
		struct conv *c;

		if (it[i].tries == 0) {
			continue;
		}
		if (it[i].tprev != NIL) {
			it[i].tprev = it[it[i].tprev].np;
		}
		if (it[i].tnext != NIL) {
			it[i].tnext = it[it[i].tnext].np;
		}
		if (it[i].cnext != NIL) {
			it[i].cnext = it[it[i].cnext].np;
		}
		c = conv_find(q, it[i].conv);
		assert(c != NULL);
		if (c->chead == i) {
			c->chead = it[i].np;
		}
		if (c->ctail == i) {
			c->ctail = it[i].np;
		}
	}
	if (q->thead != NIL) {
		q->thead = it[q->thead].np;
		q->ttail = it[q->ttail].np;
	}
	for (i = q->ihead; i < q->iend; i++) {
		if (it[i].tries != 0 && it[i].np != i) {
			it[it[i].np] = it[i];
		}
	}
	q->ihead = 0;
	q->iend = j;
	assert(j == q->count);
}

/* Drop the dead bytes from the payload buffer; push order is byte order. */
static void
compact_bytes(im_pushq *q)
{
	struct item *it = items(q);
	uint64_t w = 0;
	uint32_t i;

	for (i = q->ihead; i < q->iend; i++) {
		if (it[i].tries == 0) {
			continue;
		}
		if (it[i].off != w && it[i].len != 0) {
			memmove(q->buf + w, q->buf + it[i].off, it[i].len);
		}
		it[i].off = w;
		w += it[i].len;
	}
	q->bend = w;
	assert(w == q->bytes);
}

/* Room for one more item slot; compaction or growth, unchanged on error. */
static int
reserve_item(im_pushq *q)
{
	uint32_t dead = q->iend - q->count; /* slots before ihead too */
	uint32_t cap;
	void *p;

	if (q->iend < q->icap) {
		return IM_OK;
	}
	/* Compacting only when at least as many slots are dead as live makes
	 * each move pay for an ack that came before: O(1) amortized. */
	if (dead > 0 && dead >= q->count) {
		compact_items(q);
		if (q->iend < q->icap) {
			return IM_OK;
		}
	}
	cap = q->icap == 0 ? FIRST_ITEMS : q->icap * 2;
	cap = IM__MIN(cap, 2 * q->opts.max_items);
	assert(cap > q->iend);
	p = im__realloc(&q->opts.alloc, q->items, (size_t)cap *
			sizeof(struct item));
	if (p == NULL) {
		return IM_ENOMEM;
	}
	q->items = p;
	q->icap = cap;
	return IM_OK;
}

static int
reserve_bytes(im_pushq *q, uint32_t len)
{
	uint64_t dead = q->bend - q->bytes;
	uint64_t cap;
	void *p;

	if (q->bend + len <= q->bcap) {
		return IM_OK;
	}
	if (dead > 0 && dead >= q->bytes) {
		compact_bytes(q);
		if (q->bend + len <= q->bcap) {
			return IM_OK;
		}
	}
	/* Without compaction dead < live, so bend + len stays below twice
	 * max_bytes: the buffer never needs more than that. */
	cap = q->bcap == 0 ? FIRST_BYTES : q->bcap * 2;
	cap = IM__MIN(cap, 2 * (uint64_t)q->opts.max_bytes);
	cap = IM__MAX(cap, q->bend + len);
	if (cap > SIZE_MAX) {
		return IM_ENOMEM;
	}
	p = im__realloc(&q->opts.alloc, q->buf, (size_t)cap);
	if (p == NULL) {
		return IM_ENOMEM;
	}
	q->buf = p;
	q->bcap = cap;
	return IM_OK;
}

/* Grow the conversation table (records and index); unchanged on error. */
static int
grow_convs(im_pushq *q)
{
	uint32_t cap = q->ccap == 0 ? FIRST_CONVS : q->ccap * 2;
	uint32_t old = q->ccap;
	uint32_t *idx;
	struct conv *c;
	uint32_t i;

	cap = IM__MIN(cap, q->opts.max_items);
	/* The index has 2 * cap slots, a power of two: keep cap one too. */
	for (i = 1; i < cap; i <<= 1) {
	}
	cap = i;
	idx = im__calloc(&q->opts.alloc, 2 * (size_t)cap, sizeof(*idx));
	if (idx == NULL) {
		return IM_ENOMEM;
	}
	c = im__realloc(&q->opts.alloc, q->convs, (size_t)cap * sizeof(*c));
	if (c == NULL) {
		im__free(&q->opts.alloc, idx);
		return IM_ENOMEM;
	}
	im__free(&q->opts.alloc, q->cidx);
	q->convs = c;
	q->cidx = idx;
	q->ccap = cap;
	for (i = old; i < cap; i++) {
		c[i].used = false;
		c[i].inext = i + 1 < cap ? i + 1 : q->cfree;
	}
	if (old < cap) {
		q->cfree = old;
	}
	for (i = 0; i < old; i++) {
		if (c[i].used) {
			cidx_put(q, c[i].conv, i);
		}
	}
	return IM_OK;
}

/* Make sure a free record exists: grow, or forget the longest idle one. */
static int
reserve_conv(im_pushq *q)
{
	uint32_t r;

	if (q->cfree != NIL) {
		return IM_OK;
	}
	if (q->ccap < q->opts.max_items) {
		return grow_convs(q);
	}
	/* cused == max_items > count: some record has no items. */
	r = q->idle_head;
	assert(r != NIL);
	idle_unlink(q, r);
	cidx_del(q, conv_slot(q, convs(q)[r].conv));
	convs(q)[r].used = false;
	convs(q)[r].inext = q->cfree;
	q->cfree = r;
	q->cused--;
	return IM_OK;
}

int
im_pushq_init(im_pushq *q, const im_pushq_opts *opts)
{
	if (q == NULL || opts == NULL || opts->version == 0 ||
	    opts->version > IM_PUSHQ_OPTS_VERSION || opts->max_items == 0 ||
	    opts->max_items > PUSHQ_ITEMS_MAX || opts->max_bytes == 0 ||
	    opts->rto_ms == 0) {
		return IM_EINVAL;
	}
	memset(q, 0, sizeof(*q));
	q->opts = *opts;
	q->cfree = NIL;
	q->thead = q->ttail = NIL;
	q->idle_head = q->idle_tail = NIL;
	return IM_OK;
}

void
im_pushq_finish(im_pushq *q)
{
	if (q == NULL) {
		return;
	}
	im__free(&q->opts.alloc, q->items);
	im__free(&q->opts.alloc, q->buf);
	im__free(&q->opts.alloc, q->convs);
	im__free(&q->opts.alloc, q->cidx);
	memset(q, 0, sizeof(*q));
	q->cfree = NIL;
	q->thead = q->ttail = NIL;
	q->idle_head = q->idle_tail = NIL;
}

int
im_pushq_push(im_pushq *q, im_gid conv, im_seq seq, const void *data,
	      uint32_t len, uint64_t now_ms, bool *queued_out)
{
	struct conv *c;
	struct item *it;
	uint32_t r, i;
	int rc;

	if (queued_out != NULL) {
		*queued_out = false;
	}
	if (q == NULL || (data == NULL && len > 0)) {
		return IM_EINVAL;
	}
	c = conv_find(q, conv);
	if (seq <= (c != NULL ? c->last_seq : 0)) {
		return IM_OK;
	}
	if (q->count >= q->opts.max_items ||
	    q->bytes + len > q->opts.max_bytes) {
		return IM_EFULL;
	}
	/* Growth and compaction are invisible; the record comes last since
	 * forgetting an idle one is not. */
	rc = reserve_item(q);
	if (rc == IM_OK) {
		rc = reserve_bytes(q, len);
	}
	if (rc == IM_OK && c == NULL) {
		rc = reserve_conv(q);
	}
	if (rc != IM_OK) {
		return rc;
	}
	if (c == NULL) {
		r = q->cfree;
		c = &convs(q)[r];
		q->cfree = c->inext;
		c->conv = conv;
		c->last_seq = 0;
		c->chead = c->ctail = NIL;
		c->nlive = 0;
		c->used = true;
		c->iprev = c->inext = NIL;
		cidx_put(q, conv, r);
		q->cused++;
	} else if (c->nlive == 0) {
		idle_unlink(q, (uint32_t)(c - convs(q)));
	}
	i = q->iend++;
	it = &items(q)[i];
	it->conv = conv;
	it->seq = seq;
	it->sent_ms = now_ms;
	it->off = q->bend;
	it->len = len;
	it->tries = 1;
	it->cnext = NIL;
	if (len > 0) {
		memcpy(q->buf + q->bend, data, len);
	}
	q->bend += len;
	t_append(q, i);
	if (c->ctail != NIL) {
		items(q)[c->ctail].cnext = i;
	} else {
		c->chead = i;
	}
	c->ctail = i;
	c->nlive++;
	c->last_seq = seq;
	q->count++;
	q->bytes += len;
	if (queued_out != NULL) {
		*queued_out = true;
	}
	return IM_OK;
}

size_t
im_pushq_ack(im_pushq *q, im_gid conv, im_seq seq)
{
	struct conv *c;
	size_t n = 0;

	if (q == NULL) {
		return 0;
	}
	c = conv_find(q, conv);
	if (c == NULL) {
		return 0;
	}
	while (c->chead != NIL && items(q)[c->chead].seq <= seq) {
		uint32_t i = c->chead;
		struct item *it = &items(q)[i];

		c->chead = it->cnext;
		t_unlink(q, i);
		it->tries = 0;
		q->count--;
		q->bytes -= it->len;
		c->nlive--;
		n++;
	}
	if (n == 0) {
		return 0;
	}
	if (c->chead == NIL) {
		c->ctail = NIL;
		idle_append(q, (uint32_t)(c - convs(q)));
	}
	if (q->count == 0) {
		/* The common case, a client that keeps up: start over. */
		q->ihead = q->iend = 0;
		q->bend = 0;
	} else {
		while (items(q)[q->ihead].tries == 0) {
			q->ihead++;
		}
	}
	return n;
}

static const uint8_t empty[1];

static int
transmit(im_pushq *q, uint32_t i, uint64_t now_ms, im_pushq_cb cb,
	 void *payload)
{
	struct item *it = &items(q)[i];
	im_pushq_item view;

	it->sent_ms = now_ms;
	if (it->tries < UINT32_MAX) {
		it->tries++;
	}
	t_unlink(q, i);
	t_append(q, i);
	view.conv = it->conv;
	view.seq = it->seq;
	view.sent_ms = it->sent_ms;
	view.tries = it->tries;
	view.len = it->len;
	view.data = it->len != 0 ? q->buf + it->off : empty;
	return cb(&view, payload);
}

int
im_pushq_due(im_pushq *q, uint64_t now_ms, size_t max, im_pushq_cb cb,
	     void *payload)
{
	size_t n;

	if (q == NULL || cb == NULL) {
		return IM_EINVAL;
	}
	/* A transmitted item goes to the tail with sent_ms = now, no longer
	 * due (rto_ms > 0), so the walk cannot come round to it again. */
	for (n = 0; n < max && q->thead != NIL; n++) {
		uint32_t i = q->thead;
		uint64_t sent = items(q)[i].sent_ms;
		int rc;

		if (now_ms < sent || now_ms - sent < q->opts.rto_ms) {
			break;
		}
		rc = transmit(q, i, now_ms, cb, payload);
		if (rc != 0) {
			return rc;
		}
	}
	return IM_OK;
}

uint64_t
im_pushq_next_due(const im_pushq *q)
{
	uint64_t sent;

	if (q == NULL || q->thead == NIL) {
		return UINT64_MAX;
	}
	sent = items(q)[q->thead].sent_ms;
	if (sent > UINT64_MAX - q->opts.rto_ms) {
		return UINT64_MAX;
	}
	return sent + q->opts.rto_ms;
}

static int
replay_conv(im_pushq *q, const struct conv *c, im_seq after, uint64_t now_ms,
	    im_pushq_cb cb, void *payload)
{
	uint32_t i;
	int rc;

	for (i = c->chead; i != NIL; i = items(q)[i].cnext) {
		if (items(q)[i].seq <= after) {
			continue;
		}
		rc = transmit(q, i, now_ms, cb, payload);
		if (rc != 0) {
			return rc;
		}
	}
	return IM_OK;
}

int
im_pushq_replay(im_pushq *q, im_gid conv, im_seq after, uint64_t now_ms,
		im_pushq_cb cb, void *payload)
{
	const struct conv *c;
	uint32_t r;
	int rc;

	if (q == NULL || cb == NULL) {
		return IM_EINVAL;
	}
	if (conv != IM_PUSHQ_ALL) {
		c = conv_find(q, conv);
		return c == NULL ? IM_OK
				 : replay_conv(q, c, after, now_ms, cb,
					       payload);
	}
	for (r = 0; r < q->ccap; r++) {
		c = &convs(q)[r];
		if (!c->used || c->nlive == 0) {
			continue;
		}
		rc = replay_conv(q, c, after, now_ms, cb, payload);
		if (rc != 0) {
			return rc;
		}
	}
	return IM_OK;
}

im_seq
im_pushq_last_seq(const im_pushq *q, im_gid conv)
{
	const struct conv *c;

	if (q == NULL) {
		return 0;
	}
	c = conv_find(q, conv);
	return c != NULL ? c->last_seq : 0;
}

size_t
im_pushq_count(const im_pushq *q)
{
	return q != NULL ? q->count : 0;
}

size_t
im_pushq_bytes(const im_pushq *q)
{
	return q != NULL ? (size_t)q->bytes : 0;
}

size_t
im_pushq_mem(const im_pushq *q)
{
	if (q == NULL) {
		return 0;
	}
	return (size_t)q->icap * sizeof(struct item) + (size_t)q->bcap +
	       (size_t)q->ccap * (sizeof(struct conv) + 2 * sizeof(uint32_t));
}

size_t
im_pushq_shrink(im_pushq *q, size_t keep)
{
	size_t before = im_pushq_mem(q);

	/* Only an empty queue gives its arrays back: no item or payload is
	 * referenced then (every conversation chain and the transmission
	 * list are empty), so nothing has to move. The conversation records
	 * stay: they carry last_seq, the duplicate check. */
	if (q == NULL || q->count != 0 ||
	    (size_t)q->icap * sizeof(struct item) + (size_t)q->bcap <= keep) {
		return 0;
	}
	assert(q->thead == NIL && q->bytes == 0);
	im__free(&q->opts.alloc, q->items);
	im__free(&q->opts.alloc, q->buf);
	q->items = NULL;
	q->buf = NULL;
	q->icap = q->ihead = q->iend = 0;
	q->bcap = q->bend = 0;
	return before - im_pushq_mem(q);
}
