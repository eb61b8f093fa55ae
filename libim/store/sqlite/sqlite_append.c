/*
 * The fenced writes of the sqlite backend: msg_append (chain checks,
 * dedup by key, rechaining after a duplicate) and uq_append, each one
 * BEGIN IMMEDIATE transaction with the fences checked inside it. Apart
 * from the other ops because this is where exactly-once and fencing are
 * kept.
 */
#include "store/sqlite/sqlite_internal.h"

#include <stdlib.h>

static int
chain_reserve(sq_store *sq, size_t n)
{
	struct sq_chain *c;

	if (n <= sq->chain_cap) {
		return IM_OK;
	}
	c = realloc(sq->chain, n * sizeof(*c));
	if (c == NULL) {
		im_store_set_error(&sq->base,
		                   "out of memory for a batch "
		                   "of %zu",
		                   n);
		return IM_ENOMEM;
	}
	sq->chain = c;
	sq->chain_cap = n;
	return IM_OK;
}

/*
 * Check the per-conv chains of a batch before touching the database and
 * remember, for each message, the previous one of its conv. The backward
 * scan is short for the usual batch (few convs, messages of one conv near
 * each other).
 */
static int
chain_check(sq_store *sq, const im_msg *msgs, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		sq->chain[i].prev_idx = SIZE_MAX;
		for (j = i; j-- > 0;) {
			if (msgs[j].conv == msgs[i].conv) {
				sq->chain[i].prev_idx = j;
				break;
			}
		}
		j = sq->chain[i].prev_idx;
		if (j != SIZE_MAX && (msgs[i].prev_seq != msgs[j].seq ||
		                      msgs[i].ordinal != msgs[j].ordinal + 1)) {
			im_store_set_error(&sq->base,
			                   "message %zu breaks the chain of "
			                   "conv %llu (prev_seq %llu, ordinal "
			                   "%llu after seq %llu ordinal %llu)",
			                   i, (unsigned long long)msgs[i].conv,
			                   (unsigned long long)msgs[i].prev_seq,
			                   (unsigned long long)msgs[i].ordinal,
			                   (unsigned long long)msgs[j].seq,
			                   (unsigned long long)msgs[j].ordinal);
			return IM_EINVAL;
		}
	}
	return IM_OK;
}

static int
append_one(sq_store *sq, const im_msg *msgs, size_t i, im_append_result *res)
{
	const im_msg *m = &msgs[i];
	struct sq_chain *c = &sq->chain[i];
	im_seq prev = m->prev_seq;
	uint64_t ord = m->ordinal;
	im_msg orig;
	int rc;

	if (c->prev_idx != SIZE_MAX) {
		prev = sq->chain[c->prev_idx].next_prev;
		ord = sq->chain[c->prev_idx].next_ord;
	}
	rc = im__sq_run(sq, SQ_MSG_INSERT,
	                SQ_ARGS(SQ_INT(m->conv), SQ_INT(m->seq), SQ_INT(prev),
	                        SQ_INT(ord), SQ_INT(m->sender),
	                        SQ_INT(m->dedup_id), SQ_INT(m->reply_to),
	                        SQ_INT(m->time_ms), SQ_INT(m->type),
	                        SQ_BLOB(m->body, m->body_len)),
	                "msg_append", NULL, NULL);
	if (rc != IM_OK) {
		return rc;
	}
	if (sqlite3_changes(sq->db) == 1) {
		*res = (im_append_result){m->seq, prev, ord, m->time_ms, false};
		c->next_prev = m->seq;
		c->next_ord = ord + 1;
		/* Read for its sender, as the conversation lists count it:
		 * unread after a login then agrees with the live count. */
		return im__sq_run(sq, SQ_CONV_READ_OWN,
		                  SQ_ARGS(SQ_INT(m->conv), SQ_INT(m->sender),
		                          SQ_INT(m->seq), SQ_INT(ord)),
		                  "msg_append", NULL, NULL);
	}
	/*
	 * The insert hit a unique index: only a dedup key seen before is a
	 * dup. The same seq holding another message is the owner's bug
	 * (a reused seq), refused so no message is silently lost.
	 */
	rc = im__sq_find_dedup(sq, m->conv, m->sender, m->dedup_id, &orig);
	if (rc == IM_ENOTFOUND) {
		im_store_set_error(&sq->base,
		                   "seq %llu of conv %llu already "
		                   "holds another message",
		                   (unsigned long long)m->seq,
		                   (unsigned long long)m->conv);
		return IM_ECONFLICT;
	}
	if (rc != IM_OK) {
		return rc;
	}
	*res = (im_append_result){orig.seq, orig.prev_seq, orig.ordinal,
	                          orig.time_ms, true};
	c->next_prev = prev;
	c->next_ord = ord;
	return IM_OK;
}

int
im__sq_msg_append(im_store *st, const im_fence *fences, size_t nfences,
                  const im_msg *msgs, size_t n, im_append_result *res_out)
{
	sq_store *sq = sq_of(st);
	size_t i;
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK ||
	    (rc = chain_reserve(sq, n)) != IM_OK ||
	    (rc = chain_check(sq, msgs, n)) != IM_OK) {
		return rc;
	}
	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = im__sq_check_fences(sq, fences, nfences)) != IM_OK) {
		goto out;
	}
	for (i = 0; i < n; i++) {
		if ((rc = append_one(sq, msgs, i, &res_out[i])) != IM_OK) {
			goto out;
		}
	}
out:
	return im__sq_end(sq, rc);
}

int
im__sq_uq_append(im_store *st, const im_fence *fences, size_t nfences,
                 const im_uq_item *items, size_t n)
{
	sq_store *sq = sq_of(st);
	size_t i;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if ((rc = im__sq_check_fences(sq, fences, nfences)) != IM_OK) {
		goto out;
	}
	for (i = 0; i < n && rc == IM_OK; i++) {
		const im_uq_item *it = &items[i];

		rc = im__sq_run(sq, SQ_UQ_INSERT,
		                SQ_ARGS(SQ_INT(it->user), SQ_INT(it->seq),
		                        SQ_INT(it->time_ms), SQ_INT(it->type),
		                        SQ_BLOB(it->body, it->body_len)),
		                "uq_append", NULL, NULL);
	}
out:
	return im__sq_end(sq, rc);
}
