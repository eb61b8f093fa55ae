/*
 * Leaf segment allocator (double buffer) for one key.
 *
 * Invariants kept by every function:
 *  - cur is empty ({1, 0}) or cur.first <= next <= cur.last;
 *  - spare is empty or lies entirely above cur.last and last_id;
 *  - spare is non-empty only while cur is non-empty (a segment goes to cur
 *    first, and spare is promoted as soon as cur runs out);
 *  - no id in cur or spare is <= last_id, so ids handed out only grow.
 * Ids are below UINT64_MAX (IM_SEQ_MAX means "latest" elsewhere), so
 * next + 1 never wraps.
 */
#include "im/idseg.h"

#include "im/sys/store.h"
#include "internal.h"

static const im_seg empty_seg = {1, 0};

static bool
seg_empty(const im_seg *g)
{
	return g->first > g->last;
}

static uint64_t
seg_size(const im_seg *g)
{
	/* Saturates for {0, UINT64_MAX}, which no caller can create. */
	if (seg_empty(g)) {
		return 0;
	}
	return g->last - g->first + 1;
}

static bool
cur_empty(const im_idseg *s)
{
	return seg_empty(&s->cur);
}

static bool
spare_empty(const im_idseg *s)
{
	return seg_empty(&s->spare);
}

/* Highest id this allocator knows of: handed out or held. */
static uint64_t
known_max(const im_idseg *s)
{
	uint64_t m = s->last_id;

	if (!cur_empty(s)) {
		m = IM__MAX(m, s->cur.last);
	}
	if (!spare_empty(s)) {
		m = IM__MAX(m, s->spare.last);
	}
	return m;
}

static void
take_spare(im_idseg *s)
{
	s->cur = s->spare;
	s->next = s->cur.first;
	s->spare = empty_seg;
}

int
im_idseg_init(im_idseg *s, const im_seg_key *key, const im_idseg_opts *opts)
{
	im_idseg_opts def = IM_IDSEG_OPTS_INIT;

	if (opts == NULL) {
		opts = &def;
	}
	if (s == NULL || key == NULL || opts->version == 0 ||
	    opts->version > IM_IDSEG_OPTS_VERSION || opts->step == 0 ||
	    opts->refill_percent < 1 || opts->refill_percent > 100 ||
	    (key->space != IM_SEG_GROUP_SEQ && key->space != IM_SEG_USER_SEQ &&
	     key->space != IM_SEG_GROUP_ID)) {
		return IM_EINVAL;
	}
	s->key = *key;
	s->step = opts->step;
	s->refill_percent = opts->refill_percent;
	s->cur = empty_seg;
	s->next = 1;
	s->spare = empty_seg;
	s->last_id = 0;
	return IM_OK;
}

void
im_idseg_finish(im_idseg *s)
{
	if (s != NULL) {
		im_idseg_reset(s);
	}
}

int
im_idseg_next(im_idseg *s, uint64_t *id_out)
{
	uint64_t id;

	if (s == NULL || id_out == NULL) {
		return IM_EINVAL;
	}
	if (cur_empty(s)) {
		return IM_EAGAIN;
	}
	id = s->next;
	s->last_id = id;
	if (id == s->cur.last) {
		/*
		 * Promote now rather than on the next call, so wants_refill
		 * sees an empty spare as soon as it is needed.
		 */
		take_spare(s);
		if (cur_empty(s)) {
			s->next = 1;
		}
	} else {
		s->next = id + 1;
	}
	*id_out = id;
	return IM_OK;
}

bool
im_idseg_wants_refill(const im_idseg *s)
{
	uint64_t size, used, at;

	if (s == NULL || !spare_empty(s)) {
		return false;
	}
	if (cur_empty(s)) {
		return true;
	}
	size = seg_size(&s->cur);
	used = s->next - s->cur.first;
	/* floor(size * percent / 100) without overflowing 64 bits. */
	at = size / 100 * s->refill_percent +
	     size % 100 * s->refill_percent / 100;
	return used >= at;
}

uint64_t
im_idseg_available(const im_idseg *s)
{
	uint64_t left, spare;

	if (s == NULL || cur_empty(s)) {
		return 0;
	}
	left = s->cur.last - s->next + 1;
	spare = seg_size(&s->spare);
	return spare > UINT64_MAX - left ? UINT64_MAX : left + spare;
}

/* The caller checked g is non-empty, above known_max and not both full. */
static void
place(im_idseg *s, const im_seg *g)
{
	if (cur_empty(s)) {
		s->cur = *g;
		s->next = g->first;
	} else {
		s->spare = *g;
	}
}

int
im_idseg_refill(im_idseg *s, im_store *st)
{
	im_seg g;
	uint64_t floor;
	int rc;

	if (s == NULL || st == NULL) {
		return IM_EINVAL;
	}
	if (!cur_empty(s) && !spare_empty(s)) {
		/* A segment taken now would have nowhere to go. */
		return IM_EFULL;
	}
	if ((rc = im_store_seg_take(st, &s->key, s->step, &g)) != IM_OK) {
		return rc;
	}
	/*
	 * A sane store never hands out ids we already know of. If it does
	 * (restored from an old backup), keep only what lies above them, so
	 * ids stay unique and increasing even then.
	 */
	floor = known_max(s);
	if (g.last == UINT64_MAX) {
		g.last = UINT64_MAX - 1;
	}
	if (g.first <= floor) {
		g.first = floor + 1;
	}
	if (g.first == 0 || seg_empty(&g)) {
		im_store_set_error(st,
				   "segment [%llu, %llu] is not above id %llu",
				   (unsigned long long)g.first,
				   (unsigned long long)g.last,
				   (unsigned long long)floor);
		return IM_ERR;
	}
	place(s, &g);
	return IM_OK;
}

int
im_idseg_feed(im_idseg *s, const im_seg *seg)
{
	if (s == NULL || seg == NULL || seg->first == 0 || seg_empty(seg) ||
	    seg->last == UINT64_MAX) {
		return IM_EINVAL;
	}
	if (!cur_empty(s) && !spare_empty(s)) {
		return IM_EFULL;
	}
	if (seg->first <= known_max(s)) {
		return IM_EINVAL;
	}
	place(s, seg);
	return IM_OK;
}

void
im_idseg_reset(im_idseg *s)
{
	if (s == NULL) {
		return;
	}
	s->cur = empty_seg;
	s->next = 1;
	s->spare = empty_seg;
}
