/*
 * Client core: the conversations. Two tables hold the same groups: the
 * list, an im_convlist as the Connector keeps (last message, read pointer,
 * unread from ordinals, preview, flags, order, the max_convs bound), and a
 * side table of what only the client keeps (cursors, repairs, the name;
 * struct im__cc_conv). The chain's rules that move them are in conv.c.
 */
#include "core.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

_Static_assert(IM_CLIENT_PREVIEW_MAX == IM_PREVIEW_MAX,
               "a list preview is copied whole into im_client_conv");

struct im__cc_conv *
im__cc_conv_find(const im__cc *cc, im_gid g)
{
	size_t mask = cc->conv_cap - 1;
	size_t i = (size_t)im__mix64(g) & mask;

	for (;;) {
		struct im__cc_conv *c = &cc->convs[i];

		if (c->group == 0) {
			return NULL;
		}
		if (c->group == g) {
			return c;
		}
		i = (i + 1) & mask;
	}
}

/* The conversation of g, added when new; NULL for g 0, or when the list
 * has no room for it (max_convs, or no memory to grow). */
struct im__cc_conv *
im__cc_conv_get(im__cc *cc, im_gid g)
{
	size_t mask = cc->conv_cap - 1;
	size_t i = (size_t)im__mix64(g) & mask;
	struct im__cc_conv *c;
	im_conv_row row;

	if (g == 0) {
		return NULL;
	}
	for (;;) {
		c = &cc->convs[i];
		if (c->group == 0) {
			break;
		}
		if (c->group == g) {
			return c;
		}
		i = (i + 1) & mask;
	}
	/* Added to the list first: it holds the bound for both tables, and
	 * the side table (twice max_convs) then always has a free slot. A
	 * new conversation has no message and nothing read yet. */
	memset(&row, 0, sizeof(row));
	row.conv = g;
	if (im_convlist_apply_row(cc->list, &row) != IM_OK) {
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->group = g;
	c->member = true;
	return c;
}

/* The list's entry of g; zeroed if it has none. */
static void
entry_get(const im__cc *cc, im_gid g, im_conv_entry *e)
{
	if (im_convlist_lookup(cc->list, g, e) != IM_OK) {
		memset(e, 0, sizeof(*e));
	}
}

im_seq
im__cc_conv_last(const im__cc *cc, im_gid g)
{
	im_conv_entry e;

	entry_get(cc, g, &e);
	return e.last.seq;
}

/*
 * The client learns read pointers out of order with the chain: a read on
 * another device (EV_READ on the user queue) may come before the pushes of
 * the messages it read. im_convlist clamps a read pointer to its last
 * message, the invariant the Connector's counts rest on (there the store
 * writes both together), so the list is left as it is and the pointer
 * past its last waits in read_ahead: the list's read goes to its last
 * (unread 0, as the server counts it) and follows each delivery until one
 * reaches the pointer, which then is the list's own.
 */
static void
read_settle(im__cc *cc, struct im__cc_conv *c)
{
	im_conv_entry e;

	if (c->read_ahead.seq == 0) {
		return;
	}
	/* IM_EINVAL (an ordinal that contradicts the list's): nothing moves,
	 * and the pointer is dropped below rather than kept forever. */
	(void)im_convlist_read(cc->list, c->group, c->read_ahead.seq,
	                       c->read_ahead.ordinal, NULL);
	entry_get(cc, c->group, &e);
	if (c->read_ahead.seq <= e.last.seq ||
	    c->read_ahead.ordinal <= e.last.ordinal) {
		memset(&c->read_ahead, 0, sizeof(c->read_ahead));
	}
}

/* Move the read pointer of c forward to (seq, ordinal). */
void
im__cc_list_read(im__cc *cc, struct im__cc_conv *c, im_seq seq,
                 uint64_t ordinal)
{
	if (seq > c->read_ahead.seq) {
		c->read_ahead.seq = seq;
		c->read_ahead.ordinal = ordinal;
		read_settle(cc, c);
	}
}

/* A message of the chain into the list; history never comes here. */
void
im__cc_list_deliver(im__cc *cc, struct im__cc_conv *c, const im_Deliver *d,
                    bool own)
{
	im_msg m;

	memset(&m, 0, sizeof(m));
	m.conv = d->group;
	m.seq = d->seq;
	m.prev_seq = d->prev_seq;
	m.ordinal = d->ordinal;
	m.sender = d->sender;
	m.time_ms = d->time_ms;
	m.body_len = d->body.size;
	m.body = d->body.bytes;
	/* The list ignores seqs not above its last (a message it knows from
	 * the login list). It refuses (IM_EINVAL) a message whose ordinal
	 * is not above its last one's, or whose prev_seq is not below its
	 * seq: the chain's rules took it, so it is shown and the cursor
	 * moves, but the list keeps the last message it can count from. */
	(void)im_convlist_deliver(cc->list, &m, own);
	read_settle(cc, c);
}

/* The login's row of a conversation merged into the list: the server's
 * last message unless the list knows a later one, the read pointer
 * moved forward only (one past the last waits in read_ahead). */
void
im__cc_list_info(im__cc *cc, struct im__cc_conv *c, const im_ConvInfo *ci)
{
	im_conv_entry e;
	im_conv_row row;

	entry_get(cc, c->group, &e);
	memset(&row, 0, sizeof(row));
	row.conv = c->group;
	row.read_seq = e.read.seq;
	row.read_ordinal = e.read.ordinal;
	if (ci->read_seq >= e.read.seq) {
		row.read_seq = ci->read_seq;
		row.read_ordinal = ci->read_ordinal;
	}
	row.flags = ci->flags;
	if (ci->last_seq >= e.last.seq) {
		row.last.seq = ci->last_seq;
		row.last.ordinal = ci->last_ordinal;
		row.last_sender = ci->last_sender;
		row.last_time_ms = ci->last_time_ms;
		row.preview_len = ci->preview.size;
		row.preview = ci->preview.bytes;
	} else {
		row.last = e.last;
		row.last_sender = e.last_sender;
		row.last_time_ms = e.last_time_ms;
		row.preview_len = e.preview_len;
		row.preview = e.preview;
	}
	/* IM_EINVAL (a last seq without its ordinal): the list keeps the
	 * row it had; nothing else can fail for a group it holds. */
	(void)im_convlist_apply_row(cc->list, &row);
	read_settle(cc, c);
	im__cc_list_read(cc, c, ci->read_seq, ci->read_ordinal);
}

static void
to_client(const struct im__cc_conv *c, const im_conv_entry *e,
          im_client_conv *out)
{
	memset(out, 0, sizeof(*out));
	out->group = e->conv;
	out->last_seq = e->last.seq;
	out->last_ordinal = e->last.ordinal;
	out->read_seq = e->read.seq;
	out->read_ordinal = e->read.ordinal;
	if (c->read_ahead.seq != 0) {
		/* The user's pointer as the server has it; the list's stops
		 * at its last, which makes unread 0. */
		out->read_seq = c->read_ahead.seq;
		out->read_ordinal = c->read_ahead.ordinal;
	}
	out->unread = e->unread;
	out->last_sender = e->last_sender;
	out->last_time_ms = e->last_time_ms;
	out->flags = e->flags;
	snprintf(out->name, sizeof(out->name), "%s", c->name);
	out->preview_len = e->preview_len;
	memcpy(out->preview, e->preview, e->preview_len);
}

void
im__cc_convs(const im__cc *cc, im_client_conv *out, size_t max, size_t *n_out)
{
	size_t i, all = 0, n = 0;

	if (cc != NULL && out != NULL) {
		/* The list's order (pinned first, newest first); the groups
		 * left are kept for their cursors but not shown. */
		im_convlist_list(cc->list, cc->entries, cc->max_convs, &all);
		for (i = 0; i < all && n < max; i++) {
			const struct im__cc_conv *c =
			        im__cc_conv_find(cc, cc->entries[i].conv);

			if (c != NULL && c->member) {
				to_client(c, &cc->entries[i], &out[n++]);
			}
		}
	}
	if (n_out != NULL) {
		*n_out = n;
	}
}

int
im__cc_conv_lookup(const im__cc *cc, im_gid group, im_client_conv *out)
{
	const struct im__cc_conv *c;
	im_conv_entry e;

	if (group == 0) {
		return IM_ENOTFOUND;
	}
	c = im__cc_conv_find(cc, group);
	if (c == NULL || !c->member) {
		return IM_ENOTFOUND;
	}
	if (out != NULL) {
		entry_get(cc, group, &e);
		to_client(c, &e, out);
	}
	return IM_OK;
}
