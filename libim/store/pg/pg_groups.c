/*
 * Groups, members and conversation state on PostgreSQL: creating groups
 * (one, or a fenced batch with their members), membership, and the
 * per-user conversation rows with their read pointers (each write also
 * fenced, ops version 6).
 */
#include "store/pg/pg_internal.h"

#include <stdio.h>

int
im__pg_group_create(im_store *st, const im_group *group)
{
	struct pg_params p;
	int rc, rows;

	pg_param_u64(&p, 0, group->gid);
	pg_param_u64(&p, 1, group->creator);
	pg_param_u64(&p, 2, group->created_ms);
	pg_param_str(&p, 3, group->name);
	rc = im__pg_exec(PG(st), PG_GROUP_CREATE, &p, PG_ONCE, NULL, NULL,
	                 &rows);
	if (rc == IM_OK && rows != 1) {
		im_store_set_error(st, "pg: group %llu exists",
		                   (unsigned long long)group->gid);
		return IM_ECONFLICT;
	}
	return rc;
}

static int
group_row(const PGresult *res, int r, void *arg)
{
	im_group *out = arg;

	if (r == 0) {
		out->gid = pg_col_u64(res, 0, 0);
		out->creator = pg_col_u64(res, 0, 1);
		out->created_ms = pg_col_u64(res, 0, 2);
		snprintf(out->name, sizeof(out->name), "%.*s",
		         IM__MIN(PQgetlength(res, 0, 3), IM_GROUP_NAME_MAX),
		         PQgetvalue(res, 0, 3));
	}
	return 0;
}

int
im__pg_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	struct pg_params p;
	int rc, rows;

	pg_param_u64(&p, 0, gid);
	rc = im__pg_exec(PG(st), PG_GROUP_LOOKUP, &p, PG_AGAIN, group_row, out,
	                 &rows);
	if (rc == IM_OK && rows == 0) {
		im_store_set_error(st, "pg: no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	return rc;
}

/* Encode the parameters of PG_GROUP_CREATE_MANY after the fences; returns
 * the end of what was written. */
static unsigned char *
groups_encode(unsigned char *p, const im_group_new *groups, size_t n, size_t nm,
              struct pg_params *par)
{
	unsigned char *start;
	size_t i, j;
	int c;

	for (c = 0; c < 3; c++) {
		start = p;
		p = pg_arr_head(p, OID_INT8, (uint32_t)n);
		for (i = 0; i < n; i++) {
			const im_group *g = &groups[i].group;

			p = pg_arr_i8(p, c == 0   ? g->gid
			                 : c == 1 ? g->creator
			                          : g->created_ms);
		}
		pg_param_arr(par, 3 + c, start, p);
	}
	start = p;
	p = pg_arr_head(p, OID_TEXT, (uint32_t)n);
	for (i = 0; i < n; i++) {
		p = pg_arr_bytes(p, groups[i].group.name,
		                 (uint32_t)strlen(groups[i].group.name));
	}
	pg_param_arr(par, 6, start, p);
	for (c = 0; c < 2; c++) {
		start = p;
		p = pg_arr_head(p, OID_INT8, (uint32_t)nm);
		for (i = 0; i < n; i++) {
			for (j = 0; j < groups[i].nmembers; j++) {
				p = pg_arr_i8(p, c == 0 ? groups[i].group.gid
				                        : groups[i].members[j]);
			}
		}
		pg_param_arr(par, 7 + c, start, p);
	}
	return p;
}

/* A stale fence (kind 1) wins over a gid taken by another group (kind 3),
 * wherever the rows stand. Kind 4 (keyed creation only): row idx's key
 * exists with that gid. */
struct create_rows {
	struct pg_store *s;
	bool taken;
	uint64_t taken_gid;
	im_group_created *res; /* NULL without keys */
	size_t n;
};

static int
create_row(const PGresult *res, int r, void *arg)
{
	struct create_rows *c = arg;
	uint64_t kind = pg_col_u64(res, r, 0);

	if (kind == 3 && !c->taken) {
		c->taken = true;
		c->taken_gid = pg_col_u64(res, r, 1);
	}
	if (kind == 4 && c->res != NULL) {
		uint64_t idx = pg_col_u64(res, r, 1);

		if (idx >= 1 && idx <= c->n) {
			c->res[idx - 1].gid = pg_col_u64(res, r, 2);
			c->res[idx - 1].dup = true;
		}
	}
	return im__pg_fence_row(res, r, c->s);
}

/* Reserve and encode fences and groups ($1..$9) of a batch; extra bytes
 * stay free after them for the caller's parameters. */
static int
groups_prepare(struct pg_store *s, const im_fence *fences, size_t nfences,
               const im_group_new *groups, size_t n, size_t extra,
               struct pg_params *par, unsigned char **end_out)
{
	unsigned char *p;
	size_t i, nm = 0, names = 0, need;
	int rc;

	for (i = 0; i < n; i++) {
		nm += groups[i].nmembers;
		names += strlen(groups[i].group.name);
	}
	need = im__pg_fence_size(nfences) + 3 * (ARR_HEAD + n * ARR_I8) +
	       ARR_HEAD + n * 4 + names + 2 * (ARR_HEAD + nm * ARR_I8) + extra;
	if ((rc = im__pg_buf_reserve(s, need)) != IM_OK) {
		return rc;
	}
	p = im__pg_fence_encode(s->buf, fences, nfences, par);
	*end_out = groups_encode(p, groups, n, nm, par);
	return IM_OK;
}

static int
create_taken(im_store *st, int rc, const struct create_rows *c)
{
	if (rc == IM_OK && c->taken) {
		im_store_set_error(st, "pg: group %llu exists (another group)",
		                   (unsigned long long)c->taken_gid);
		return IM_ECONFLICT;
	}
	return rc;
}

int
im__pg_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                         const im_group_new *groups, size_t n)
{
	struct pg_store *s = PG(st);
	struct create_rows c = {s, false, 0, NULL, 0};
	struct pg_params par;
	unsigned char *end;
	int rc;

	rc = groups_prepare(s, fences, nfences, groups, n, 0, &par, &end);
	if (rc != IM_OK) {
		return rc;
	}
	/* Idempotent (see the statement): a lost connection or a race on a
	 * unique key is answered by running it again. */
	rc = im__pg_exec(s, PG_GROUP_CREATE_MANY, &par, PG_RACES, create_row,
	                 &c, NULL);
	return create_taken(st, rc, &c);
}

int
im__pg_group_create_dedup(im_store *st, const im_fence *fences,
                          size_t nfences, const im_group_new *groups,
                          const uint64_t *dedup_ids, size_t n,
                          im_group_created *res_out)
{
	struct pg_store *s = PG(st);
	struct create_rows c = {s, false, 0, res_out, n};
	struct pg_params par;
	unsigned char *p, *start;
	size_t i;
	int rc;

	rc = groups_prepare(s, fences, nfences, groups, n,
	                    ARR_HEAD + n * ARR_I8, &par, &p);
	if (rc != IM_OK) {
		return rc;
	}
	start = p;
	p = pg_arr_head(p, OID_INT8, (uint32_t)n);
	for (i = 0; i < n; i++) {
		p = pg_arr_i8(p, dedup_ids[i]);
	}
	pg_param_arr(&par, 9, start, p);
	for (i = 0; i < n; i++) {
		res_out[i].gid = groups[i].group.gid;
		res_out[i].dup = false;
	}
	/* Idempotent like the batch without keys; a race on a key is run
	 * again and then finds the key (kind 4 rows, create_row). */
	rc = im__pg_exec(s, PG_GROUP_CREATE_DEDUP, &par, PG_RACES, create_row,
	                 &c, NULL);
	rc = create_taken(st, rc, &c);
	if (rc != IM_OK) {
		memset(res_out, 0, n * sizeof(*res_out));
	}
	return rc;
}

int
im__pg_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	struct pg_params p;
	uint64_t cols[2];
	int rc;

	pg_param_u64(&p, 0, gid);
	pg_param_u64(&p, 1, user);
	/* Row: whether the group exists, and whether the member was added. */
	rc = im__pg_exec_u64(PG(st), PG_MEMBER_ADD, &p, PG_ONCE, cols, 2, NULL);
	if (rc != IM_OK) {
		return rc;
	}
	if (cols[0] == 0) {
		im_store_set_error(st, "pg: no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	*added_out = cols[1] == 1;
	return IM_OK;
}

int
im__pg_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	struct pg_params p;
	int rc, rows;

	pg_param_u64(&p, 0, gid);
	pg_param_u64(&p, 1, user);
	rc = im__pg_exec(PG(st), PG_MEMBER_REMOVE, &p, PG_ONCE, NULL, NULL,
	                 &rows);
	if (rc == IM_OK) {
		*removed_out = rows > 0;
	}
	return rc;
}

static int
uid_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;

	return l->cb.uid(pg_col_u64(res, r, 0), l->payload);
}

int
im__pg_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	struct pg_reader l = {.cb.uid = cb, .payload = payload};
	struct pg_params p;

	pg_param_u64(&p, 0, gid);
	return im__pg_exec(PG(st), PG_MEMBER_LIST, &p, PG_AGAIN, uid_row, &l,
	                   NULL);
}

static int
conv_row(const PGresult *res, int r, void *arg)
{
	struct pg_reader *l = arg;
	im_conv_row row = {
	        .conv = pg_col_u64(res, r, 0),
	        .read_seq = pg_col_u64(res, r, 1),
	        .read_ordinal = pg_col_u64(res, r, 2),
	        .flags = (uint32_t)pg_col_u64(res, r, 3),
	        .last = {pg_col_u64(res, r, 4), pg_col_u64(res, r, 5)},
	        .last_sender = pg_col_u64(res, r, 6),
	        .last_time_ms = pg_col_u64(res, r, 7),
	        .preview_len = (uint32_t)IM__MIN(PQgetlength(res, r, 8),
	                                         IM_PREVIEW_MAX),
	};

	/* Never NULL, also when empty (callers memcpy it). */
	row.preview = PQgetvalue(res, r, 8);
	return l->cb.conv(&row, l->payload);
}

int
im__pg_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	struct pg_reader l = {.cb.conv = cb, .payload = payload};
	struct pg_params p;

	pg_param_u64(&p, 0, user);
	return im__pg_exec(PG(st), PG_CONV_LOAD, &p, PG_AGAIN, conv_row, &l,
	                   NULL);
}

int
im__pg_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
                   uint64_t read_ordinal, uint32_t flags)
{
	struct pg_params p;
	int rc, rows;

	pg_param_u64(&p, 0, user);
	pg_param_u64(&p, 1, conv);
	pg_param_u64(&p, 2, pg_clamp_seq(read_seq));
	pg_param_u64(&p, 3, read_ordinal);
	pg_param_u64(&p, 4, flags);
	/* A monotonic pointer and absolute flags: replaying is harmless. */
	rc = im__pg_exec(PG(st), PG_CONV_UPDATE, &p, PG_AGAIN, NULL, NULL,
	                 &rows);
	if (rc == IM_OK && rows == 0) {
		im_store_set_error(st, "pg: user %llu is not in group %llu",
		                   (unsigned long long)user,
		                   (unsigned long long)conv);
		return IM_ENOTFOUND;
	}
	return rc;
}

/* ---- ops version 6: the same writes, fenced --------------------------- */

/* What a fenced write's statement answered: a stale fence (row kind 1)
 * or its counts (row kind 2: whether the group exists, rows written). */
struct fenced_rows {
	struct pg_store *s;
	uint64_t found;
	uint64_t written;
};

static int
fenced_row(const PGresult *res, int r, void *arg)
{
	struct fenced_rows *f = arg;

	if (pg_col_u64(res, r, 0) == 2) {
		f->found = pg_col_u64(res, r, 1);
		f->written = pg_col_u64(res, r, 2);
		return IM_OK;
	}
	return im__pg_fence_row(res, r, f->s);
}

/* Run a fenced statement whose parameters after the fences are the
 * nparams scalars of v. */
static int
fenced_exec(struct pg_store *s, enum pg_stmt id, const im_fence *fences,
            size_t nfences, const uint64_t *v, int nparams,
            enum pg_retry retry, struct fenced_rows *out)
{
	struct pg_params par;
	int rc, i;

	if (nfences > PG_BATCH_MAX) {
		im_store_set_error(&s->base, "pg: %zu fences are too many",
		                   nfences);
		return IM_EINVAL;
	}
	if ((rc = im__pg_buf_reserve(s, im__pg_fence_size(nfences))) !=
	    IM_OK) {
		return rc;
	}
	(void)im__pg_fence_encode(s->buf, fences, nfences, &par);
	for (i = 0; i < nparams; i++) {
		pg_param_u64(&par, 3 + i, v[i]);
	}
	out->s = s;
	out->found = 0;
	out->written = 0;
	return im__pg_exec(s, id, &par, retry, fenced_row, out, NULL);
}

int
im__pg_member_add_fenced(im_store *st, const im_fence *fences, size_t nfences,
                         im_gid gid, im_uid user, bool *added_out)
{
	const uint64_t v[2] = {gid, user};
	struct fenced_rows f;
	int rc;

	rc = fenced_exec(PG(st), PG_MEMBER_ADD_FENCED, fences, nfences, v, 2,
	                 PG_ONCE, &f);
	if (rc != IM_OK) {
		return rc;
	}
	if (f.found == 0) {
		im_store_set_error(st, "pg: no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	*added_out = f.written == 1;
	return IM_OK;
}

int
im__pg_member_remove_fenced(im_store *st, const im_fence *fences,
                            size_t nfences, im_gid gid, im_uid user,
                            bool *removed_out)
{
	const uint64_t v[2] = {gid, user};
	struct fenced_rows f;
	int rc;

	rc = fenced_exec(PG(st), PG_MEMBER_REMOVE_FENCED, fences, nfences, v,
	                 2, PG_ONCE, &f);
	if (rc == IM_OK) {
		*removed_out = f.written > 0;
	}
	return rc;
}

int
im__pg_conv_update_fenced(im_store *st, const im_fence *fences,
                          size_t nfences, im_uid user, im_gid conv,
                          im_seq read_seq, uint64_t read_ordinal,
                          uint32_t flags)
{
	const uint64_t v[5] = {user, conv, pg_clamp_seq(read_seq),
	                       read_ordinal, flags};
	struct fenced_rows f;
	int rc;

	/* A monotonic pointer and absolute flags: replaying is harmless. */
	rc = fenced_exec(PG(st), PG_CONV_UPDATE_FENCED, fences, nfences, v, 5,
	                 PG_AGAIN, &f);
	if (rc == IM_OK && f.written == 0) {
		im_store_set_error(st, "pg: user %llu is not in group %llu",
		                   (unsigned long long)user,
		                   (unsigned long long)conv);
		return IM_ENOTFOUND;
	}
	return rc;
}
