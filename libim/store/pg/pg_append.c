/*
 * The fenced writes of the PostgreSQL backend: msg_append (dedup, the
 * chain checks, the fast and the full statement, rechaining) and
 * uq_append, with the fence encoding group_create_many shares. Apart from
 * the other ops because this is where exactly-once and fencing are kept
 * (see the header comment of pg.c for the two-step dedup).
 */
#include "store/pg/pg_internal.h"

#include <stdio.h>

/* ---- fences ---------------------------------------------------------- */

size_t
im__pg_fence_size(size_t nfences)
{
	return 3 * (ARR_HEAD + nfences * ARR_I8);
}

unsigned char *
im__pg_fence_encode(unsigned char *p, const im_fence *fences, size_t nfences,
                    struct pg_params *par)
{
	size_t i;
	int c;

	for (c = 0; c < 3; c++) {
		unsigned char *start = p;

		p = pg_arr_head(p, OID_INT8, (uint32_t)nfences);
		for (i = 0; i < nfences; i++) {
			uint64_t v = c == 0   ? (uint64_t)fences[i].kind
			             : c == 1 ? fences[i].slot
			                      : fences[i].epoch;

			p = pg_arr_i8(p, v);
		}
		pg_param_arr(par, c, start, p);
	}
	return p;
}

int
im__pg_fence_row(const PGresult *res, int r, void *arg)
{
	struct pg_store *s = arg;

	if (pg_col_u64(res, r, 0) != 1) {
		return IM_OK;
	}
	im_store_set_error(&s->base,
	                   "pg: stale fence: slot %llu/%llu is"
	                   " at epoch %llu",
	                   (unsigned long long)pg_col_u64(res, r, 1),
	                   (unsigned long long)pg_col_u64(res, r, 2),
	                   (unsigned long long)pg_col_u64(res, r, 3));
	return IM_ESTALE;
}

/* ---- msg_append: the batch ------------------------------------------- */

/*
 * Batch bookkeeping in the scratch buffer, laid out by append_plan: for
 * each message the first message of its conv (`head`) and, for an
 * in-batch duplicate, the earlier message with its key (`orig`, -1 if
 * none); `sent` lists the messages that go to the statement.
 */
struct append_plan {
	uint64_t *run_seq, *run_ord;
	int32_t *head, *orig, *last, *sent, *tab;
	size_t tabn, nsent;
	unsigned char *params; /* after the bookkeeping */
};

static uint64_t
dedup_hash(const im_msg *m)
{
	return im__mix64(m->conv ^
	                 im__mix64(m->sender ^ im__mix64(m->dedup_id)));
}

/* Per conv, the chain; tab maps conv -> its head message. */
static int
scan_chains(struct pg_store *s, const im_msg *msgs, size_t n,
            struct append_plan *ap)
{
	size_t i, mask = ap->tabn - 1;

	for (i = 0; i < ap->tabn; i++) {
		ap->tab[i] = -1;
	}
	for (i = 0; i < n; i++) {
		size_t h = im__mix64(msgs[i].conv) & mask;
		const im_msg *pm;

		while (ap->tab[h] >= 0 &&
		       msgs[ap->tab[h]].conv != msgs[i].conv) {
			h = (h + 1) & mask;
		}
		if (ap->tab[h] < 0) {
			ap->tab[h] = (int32_t)i;
			ap->head[i] = (int32_t)i;
			ap->last[i] = (int32_t)i;
			continue;
		}
		ap->head[i] = ap->tab[h];
		pm = &msgs[ap->last[ap->head[i]]];
		if (msgs[i].prev_seq != pm->seq ||
		    msgs[i].ordinal != pm->ordinal + 1) {
			im_store_set_error(&s->base,
			                   "pg: broken chain in conv"
			                   " %llu at seq %llu",
			                   (unsigned long long)msgs[i].conv,
			                   (unsigned long long)msgs[i].seq);
			return IM_EINVAL;
		}
		ap->last[ap->head[i]] = (int32_t)i;
	}
	return IM_OK;
}

/* In-batch duplicates; tab maps a dedup key -> its first message. */
static void
scan_dups(const im_msg *msgs, size_t n, struct append_plan *ap)
{
	size_t i, mask = ap->tabn - 1;

	for (i = 0; i < ap->tabn; i++) {
		ap->tab[i] = -1;
	}
	for (i = 0; i < n; i++) {
		size_t h = dedup_hash(&msgs[i]) & mask;

		ap->orig[i] = -1;
		while (ap->tab[h] >= 0) {
			const im_msg *a = &msgs[ap->tab[h]], *b = &msgs[i];

			if (a->conv == b->conv && a->sender == b->sender &&
			    a->dedup_id == b->dedup_id) {
				ap->orig[i] = ap->tab[h];
				break;
			}
			h = (h + 1) & mask;
		}
		if (ap->orig[i] < 0) {
			ap->tab[h] = (int32_t)i;
		}
	}
}

/*
 * Size the scratch for the bookkeeping and the parameters, carve it, and
 * check the chains: IM_EINVAL before any write for a broken one.
 */
static int
append_plan(struct pg_store *s, size_t nfences, const im_msg *msgs, size_t n,
            struct append_plan *ap)
{
	size_t i, body_bytes = 0, need, meta;
	int rc;

	ap->tabn = 16;
	while (ap->tabn < 2 * n) {
		ap->tabn *= 2;
	}
	for (i = 0; i < n; i++) {
		body_bytes += msgs[i].body_len;
	}
	/* Bookkeeping first, then the parameters, in one buffer. */
	meta = (4 * n + ap->tabn) * sizeof(int32_t) + 2 * n * sizeof(uint64_t);
	meta = (meta + 15) & ~(size_t)15;
	need = meta + im__pg_fence_size(nfences) +
	       12 * (ARR_HEAD + n * ARR_I8) + ARR_HEAD + n * 4 + body_bytes;
	if (need > PG_PARAM_BYTES_MAX) {
		im_store_set_error(&s->base,
		                   "pg: batch of %zu bytes is too large", need);
		return IM_EINVAL;
	}
	if ((rc = im__pg_buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	ap->run_seq = (uint64_t *)(void *)s->buf;
	ap->run_ord = ap->run_seq + n;
	ap->head = (int32_t *)(void *)(ap->run_ord + n);
	ap->orig = ap->head + n;
	ap->last = ap->orig + n;
	ap->sent = ap->last + n;
	ap->tab = ap->sent + n;
	ap->params = s->buf + meta;
	if ((rc = scan_chains(s, msgs, n, ap)) != IM_OK) {
		return rc;
	}
	scan_dups(msgs, n, ap);
	ap->nsent = 0;
	for (i = 0; i < n; i++) {
		if (ap->orig[i] < 0) {
			ap->sent[ap->nsent++] = (int32_t)i;
		}
	}
	return IM_OK;
}

/* Column c of the append's int8 arrays for message m (head h). */
static uint64_t
append_col(const im_msg *m, const im_msg *h, bool fast, int c)
{
	switch (c) {
	case 0:
		return m->conv;
	case 1:
		return m->seq;
	case 2:
		return fast ? m->prev_seq : h->prev_seq;
	case 3:
		return fast ? m->ordinal : h->ordinal - 1;
	case 4:
		return m->sender;
	case 5:
		return m->dedup_id;
	case 6:
		return m->reply_to;
	case 7:
		return m->time_ms;
	default:
		return m->type;
	}
}

/*
 * The 13 parameters of an append of msgs[sent[0..nsent)]. The fast
 * statement takes each message's own prev_seq and ordinal; the full one
 * takes its conv's base (the head's prev_seq and ordinal - 1) and rechains.
 */
static void
append_encode(const struct append_plan *ap, const im_fence *fences,
              size_t nfences, const im_msg *msgs, bool fast,
              struct pg_params *par)
{
	unsigned char *p, *start;
	size_t i;
	int c;

	p = im__pg_fence_encode(ap->params, fences, nfences, par);
	for (c = 0; c < 9; c++) {
		start = p;
		p = pg_arr_head(p, OID_INT8, (uint32_t)ap->nsent);
		for (i = 0; i < ap->nsent; i++) {
			const im_msg *m = &msgs[ap->sent[i]];

			p = pg_arr_i8(
			        p, append_col(m, &msgs[ap->head[ap->sent[i]]],
			                      fast, c));
		}
		pg_param_arr(par, 3 + c, start, p);
	}
	start = p;
	p = pg_arr_head(p, OID_BYTEA, (uint32_t)ap->nsent);
	for (i = 0; i < ap->nsent; i++) {
		const im_msg *m = &msgs[ap->sent[i]];

		p = pg_arr_bytes(p, m->body, m->body_len);
	}
	pg_param_arr(par, 12, start, p);
}

/* ---- msg_append: the statements -------------------------------------- */

static bool
taken_seq(const PGresult *res)
{
	const char *con = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

	return im__pg_sqlstate_is(res, "23505") && con != NULL &&
	       strcmp(con, "im_messages_pkey") == 0;
}

/* "Key (conv, seq)=(100, 6) already exists." names the taken seq. */
static void
seq_conflict(struct pg_store *s, const PGresult *res)
{
	const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	long long conv, seq;

	if (d != NULL &&
	    sscanf(d, "Key (conv, seq)=(%lld, %lld)", &conv, &seq) == 2) {
		im_store_set_error(&s->base,
		                   "pg: conv %llu seq %llu holds another"
		                   " message",
		                   (unsigned long long)conv,
		                   (unsigned long long)seq);
	} else {
		im_store_set_error(&s->base,
		                   "pg: a seq of the batch holds"
		                   " another message: %s",
		                   d != NULL ? d : "");
	}
}

/*
 * Fast path, the common case of a batch without duplicates: insert the
 * chain as given. A dedup key (or seq) already stored makes the INSERT
 * fail on its unique index and roll back: IM_ECONFLICT, *pkey_hit telling
 * whether it was a seq, and the full statement finds the duplicates.
 */
static int
append_fast(struct pg_store *s, const struct append_plan *ap,
            const im_fence *fences, size_t nfences, const im_msg *msgs,
            size_t n, im_append_result *res_out, bool *pkey_hit)
{
	struct pg_params par;
	enum pg_stmt id = PG_MSG_APPEND_FAST;
	PGresult *res = NULL;
	size_t i;
	int rc;

	append_encode(ap, fences, nfences, msgs, true, &par);
	if (nfences == 1) {
		pg_param_u64(&par, 0, (uint64_t)fences[0].kind);
		pg_param_u64(&par, 1, fences[0].slot);
		pg_param_u64(&par, 2, fences[0].epoch);
		id = PG_MSG_APPEND_FAST1;
	}
	rc = im__pg_run(s, id, &par, PG_ONCE, &res);
	if (rc != IM_OK) {
		*pkey_hit = rc == IM_ECONFLICT && taken_seq(res);
		PQclear(res);
		return rc;
	}
	rc = im__pg_rows(res, im__pg_fence_row, s);
	PQclear(res);
	if (rc != IM_OK) {
		return rc;
	}
	for (i = 0; i < n; i++) {
		res_out[i].seq = msgs[i].seq;
		res_out[i].prev_seq = msgs[i].prev_seq;
		res_out[i].ordinal = msgs[i].ordinal;
		res_out[i].time_ms = msgs[i].time_ms;
		res_out[i].dup = false;
	}
	return IM_OK;
}

/*
 * The full statement: probe the stored dedup keys, drop the duplicates,
 * rechain the rest. A key committed concurrently makes it roll back and
 * run again; a seq taken in two attempts in a row is taken by another
 * message (a same-key twin would be a dup by now): no retry fixes it.
 */
static int
append_full(struct pg_store *s, const struct append_plan *ap,
            const im_fence *fences, size_t nfences, const im_msg *msgs,
            bool pkey_hit, PGresult **out)
{
	struct pg_params par;
	int rc, tries;

	append_encode(ap, fences, nfences, msgs, false, &par);
	for (tries = 0;; tries++) {
		rc = im__pg_run(s, PG_MSG_APPEND, &par, PG_ONCE, out);
		if (rc != IM_ECONFLICT) {
			break;
		}
		if (taken_seq(*out) && pkey_hit) {
			seq_conflict(s, *out);
			PQclear(*out);
			*out = NULL;
			return IM_ECONFLICT;
		}
		pkey_hit = taken_seq(*out);
		PQclear(*out);
		*out = NULL;
		if (tries + 1 >= PG_RACE_TRIES) {
			im_store_set_error(&s->base, "pg: append kept racing"
			                             " other writers");
			return IM_EUNAVAIL;
		}
	}
	if (rc != IM_OK) {
		PQclear(*out);
		*out = NULL;
		return rc;
	}
	if ((rc = im__pg_rows(*out, im__pg_fence_row, s)) != IM_OK) {
		PQclear(*out);
		*out = NULL;
	}
	return rc;
}

struct dup_rows {
	const struct append_plan *ap;
	im_append_result *res_out;
};

/* Rows of kind 0 are stored duplicates: idx (1-based in sent) and the
 * original's seq, prev_seq, ordinal and time_ms. */
static int
dup_row(const PGresult *res, int r, void *arg)
{
	struct dup_rows *d = arg;
	uint64_t idx;
	im_append_result *out;

	if (pg_col_u64(res, r, 0) != 0) {
		return 0;
	}
	idx = pg_col_u64(res, r, 1);
	if (idx < 1 || idx > d->ap->nsent) {
		return 0;
	}
	out = &d->res_out[d->ap->sent[idx - 1]];
	out->dup = true;
	out->seq = pg_col_u64(res, r, 2);
	out->prev_seq = pg_col_u64(res, r, 3);
	out->ordinal = pg_col_u64(res, r, 4);
	out->time_ms = pg_col_u64(res, r, 5);
	return 0;
}

/* Results of the full statement: stored duplicates first, then rechain
 * in batch order. */
static void
append_results(const struct append_plan *ap, const PGresult *res,
               const im_msg *msgs, size_t n, im_append_result *res_out)
{
	struct dup_rows d = {ap, res_out};
	size_t i;

	for (i = 0; i < n; i++) {
		res_out[i].dup = false;
	}
	(void)im__pg_rows(res, dup_row, &d);
	for (i = 0; i < n; i++) {
		size_t h = (size_t)ap->head[i];

		if (h == i) {
			ap->run_seq[h] = msgs[i].prev_seq;
			ap->run_ord[h] = msgs[i].ordinal - 1;
		}
		if (ap->orig[i] >= 0) {
			res_out[i] = res_out[ap->orig[i]];
			res_out[i].dup = true;
			continue;
		}
		if (res_out[i].dup) {
			continue;
		}
		res_out[i].seq = msgs[i].seq;
		res_out[i].prev_seq = ap->run_seq[h];
		res_out[i].ordinal = ++ap->run_ord[h];
		res_out[i].time_ms = msgs[i].time_ms;
		ap->run_seq[h] = msgs[i].seq;
	}
}

int
im__pg_msg_append(im_store *st, const im_fence *fences, size_t nfences,
                  const im_msg *msgs, size_t n, im_append_result *res_out)
{
	struct pg_store *s = PG(st);
	struct append_plan ap;
	PGresult *res = NULL;
	bool pkey_hit = false;
	int rc;

	if (n > PG_BATCH_MAX || nfences > PG_BATCH_MAX) {
		im_store_set_error(st, "pg: batch of %zu is too large", n);
		return IM_EINVAL;
	}
	if ((rc = append_plan(s, nfences, msgs, n, &ap)) != IM_OK) {
		return rc;
	}
	if (ap.nsent == n) {
		rc = append_fast(s, &ap, fences, nfences, msgs, n, res_out,
		                 &pkey_hit);
		if (rc != IM_ECONFLICT) {
			return rc;
		}
	}
	if ((rc = append_full(s, &ap, fences, nfences, msgs, pkey_hit, &res)) !=
	    IM_OK) {
		return rc;
	}
	append_results(&ap, res, msgs, n, res_out);
	PQclear(res);
	return IM_OK;
}

/* ---- uq_append ------------------------------------------------------- */

int
im__pg_uq_append(im_store *st, const im_fence *fences, size_t nfences,
                 const im_uq_item *items, size_t n)
{
	struct pg_store *s = PG(st);
	struct pg_params par;
	unsigned char *p, *start;
	size_t i, body_bytes = 0, need;
	int rc, c;

	if (n > PG_BATCH_MAX || nfences > PG_BATCH_MAX) {
		im_store_set_error(st, "pg: batch of %zu is too large", n);
		return IM_EINVAL;
	}
	for (i = 0; i < n; i++) {
		body_bytes += items[i].body_len;
	}
	need = im__pg_fence_size(nfences) + 4 * (ARR_HEAD + n * ARR_I8) +
	       ARR_HEAD + n * 4 + body_bytes;
	if (need > PG_PARAM_BYTES_MAX) {
		im_store_set_error(st, "pg: batch of %zu bytes is too large",
		                   need);
		return IM_EINVAL;
	}
	if ((rc = im__pg_buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	p = im__pg_fence_encode(s->buf, fences, nfences, &par);
	for (c = 0; c < 4; c++) {
		start = p;
		p = pg_arr_head(p, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			const im_uq_item *it = &items[i];

			p = pg_arr_i8(p, c == 0   ? it->user
			                 : c == 1 ? it->seq
			                 : c == 2 ? it->time_ms
			                          : it->type);
		}
		pg_param_arr(&par, 3 + c, start, p);
	}
	start = p;
	p = pg_arr_head(p, OID_BYTEA, (uint32_t)n);
	for (i = 0; i < n; i++) {
		p = pg_arr_bytes(p, items[i].body, items[i].body_len);
	}
	pg_param_arr(&par, 7, start, p);
	/* ON CONFLICT DO NOTHING makes a replay harmless: retry freely. */
	return im__pg_exec(s, PG_UQ_APPEND, &par, PG_RACES, im__pg_fence_row, s,
	                   NULL);
}
