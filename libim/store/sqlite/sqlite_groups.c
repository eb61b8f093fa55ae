/*
 * Groups, members and conversation state on sqlite: creating groups (one,
 * or a fenced batch with their members), membership, and the per-user
 * conversation rows with their read pointers (each write also fenced,
 * ops version 6).
 */
#include "store/sqlite/sqlite_internal.h"

#include <time.h>

static uint64_t
now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
		return 0;
	}
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
group_insert(sq_store *sq, const im_group *g, const char *what)
{
	return im__sq_run(sq, SQ_GROUP_INSERT,
	                  SQ_ARGS(SQ_INT(g->gid), SQ_INT(g->creator),
	                          SQ_INT(g->created_ms), SQ_TEXT(g->name)),
	                  what, NULL, NULL);
}

/* A member whose read pointer starts at the group's last message. */
static int
member_insert(sq_store *sq, im_gid gid, im_uid user, const im_msg_pos *last,
              uint64_t now, const char *what)
{
	return im__sq_run(sq, SQ_MEMBER_INSERT,
	                  SQ_ARGS(SQ_INT(gid), SQ_INT(user), SQ_INT(last->seq),
	                          SQ_INT(last->ordinal), SQ_INT(now)),
	                  what, NULL, NULL);
}

int
im__sq_group_create(im_store *st, const im_group *group)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	rc = group_insert(sq, group, "group_create");
	if (rc == IM_OK && sqlite3_changes(sq->db) == 0) {
		im_store_set_error(st, "group %llu exists",
		                   (unsigned long long)group->gid);
		rc = IM_ECONFLICT;
	}
	return im__sq_end(sq, rc);
}

struct group_row {
	im_gid gid;
	im_group *out; /* NULL: only whether it exists */
	bool found;
};

static int
group_row(sqlite3_stmt *s, void *arg)
{
	struct group_row *g = arg;
	im_group *out = g->out;

	if (out != NULL && !g->found) {
		const unsigned char *name = sqlite3_column_text(s, 2);
		size_t len = (size_t)sqlite3_column_bytes(s, 2);

		memset(out, 0, sizeof(*out));
		out->gid = g->gid;
		out->creator = sq_col_u64(s, 0);
		out->created_ms = sq_col_u64(s, 1);
		len = IM__MIN(len, (size_t)IM_GROUP_NAME_MAX);
		if (name != NULL) {
			memcpy(out->name, name, len);
		}
	}
	g->found = true;
	return 0;
}

static int
group_get(sq_store *sq, im_gid gid, im_group *out)
{
	struct group_row g = {gid, out, false};
	int rc;

	rc = im__sq_run(sq, SQ_GROUP_GET, SQ_ARGS(SQ_INT(gid)), "group_lookup",
	                group_row, &g);
	if (rc == IM_OK && !g.found) {
		im_store_set_error(&sq->base, "no group %llu",
		                   (unsigned long long)gid);
		return IM_ENOTFOUND;
	}
	return rc;
}

int
im__sq_group_lookup(im_store *st, im_gid gid, im_group *out)
{
	sq_store *sq = sq_of(st);
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return group_get(sq, gid, out);
}

/* member_add, with the fences (none: nfences 0) checked inside its
 * transaction; member_remove and conv_update below do the same. */
static int
member_add(sq_store *sq, const im_fence *fences, size_t nfences, im_gid gid,
           im_uid user, bool *added_out)
{
	im_msg_pos last;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if (nfences > 0 &&
	    (rc = im__sq_check_fences(sq, fences, nfences)) != IM_OK) {
		goto out;
	}
	if ((rc = group_get(sq, gid, NULL)) != IM_OK) {
		goto out;
	}
	rc = im__sq_last(sq, gid, IM_SEQ_MAX, &last);
	if (rc != IM_OK && rc != IM_ENOTFOUND) {
		goto out;
	}
	rc = member_insert(sq, gid, user, &last, now_ms(), "member_add");
	if (rc == IM_OK) {
		*added_out = sqlite3_changes(sq->db) == 1;
	}
out:
	return im__sq_end(sq, rc);
}

int
im__sq_member_add(im_store *st, im_gid gid, im_uid user, bool *added_out)
{
	return member_add(sq_of(st), NULL, 0, gid, user, added_out);
}

int
im__sq_member_add_fenced(im_store *st, const im_fence *fences, size_t nfences,
                         im_gid gid, im_uid user, bool *added_out)
{
	return member_add(sq_of(st), fences, nfences, gid, user, added_out);
}

/*
 * Insert one new group's row, or accept an existing one from an earlier
 * try of the same batch (same creator and created_ms). *existed_out tells
 * which, so members of a retried group start at its last message.
 */
static int
group_put(sq_store *sq, const im_group *g, bool *existed_out)
{
	im_group cur;
	int rc;

	if ((rc = group_insert(sq, g, "group_create_many")) != IM_OK) {
		return rc;
	}
	*existed_out = sqlite3_changes(sq->db) == 0;
	if (!*existed_out) {
		return IM_OK;
	}
	if ((rc = group_get(sq, g->gid, &cur)) != IM_OK) {
		return rc;
	}
	if (cur.creator != g->creator || cur.created_ms != g->created_ms) {
		im_store_set_error(&sq->base,
		                   "sqlite: group %llu exists (another group)",
		                   (unsigned long long)g->gid);
		return IM_ECONFLICT;
	}
	return IM_OK;
}

/* One row of a batch: the group (or its earlier try) and its members. */
static int
group_new_put(sq_store *sq, const im_group_new *g, uint64_t now)
{
	im_msg_pos last = {0, 0};
	bool existed = false;
	size_t j;
	int rc;

	rc = group_put(sq, &g->group, &existed);
	if (rc == IM_OK && existed) {
		rc = im__sq_last(sq, g->group.gid, IM_SEQ_MAX, &last);
		rc = rc == IM_ENOTFOUND ? IM_OK : rc;
	}
	for (j = 0; j < g->nmembers && rc == IM_OK; j++) {
		rc = member_insert(sq, g->group.gid, g->members[j], &last, now,
		                   "group_create_many");
	}
	return rc;
}

static int
gkey_row(sqlite3_stmt *s, void *arg)
{
	im_group_created *r = arg;

	r->gid = sq_col_u64(s, 0);
	r->dup = true;
	return 0;
}

/*
 * A fenced batch of groups in one transaction; with dedup_ids (NULL: none
 * keyed) a keyed row whose key exists writes nothing and res_out (NULL
 * without keys) names the key's group.
 */
static int
groups_write(sq_store *sq, const im_fence *fences, size_t nfences,
             const im_group_new *groups, const uint64_t *dedup_ids, size_t n,
             im_group_created *res_out)
{
	uint64_t now = now_ms();
	im_group_created scratch;
	size_t i;
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	rc = im__sq_check_fences(sq, fences, nfences);
	for (i = 0; i < n && rc == IM_OK; i++) {
		const im_group_new *g = &groups[i];
		uint64_t key = dedup_ids != NULL ? dedup_ids[i] : 0;
		im_group_created *r = res_out != NULL ? &res_out[i] : &scratch;

		r->gid = g->group.gid;
		r->dup = false;
		if (key != 0) {
			rc = im__sq_run(sq, SQ_GKEY_GET,
			                SQ_ARGS(SQ_INT(g->group.creator),
			                        SQ_INT(key)),
			                "group_create_dedup", gkey_row, r);
			if (rc != IM_OK || r->dup) {
				continue; /* the key's first group stands */
			}
		}
		rc = group_new_put(sq, g, now);
		if (rc == IM_OK && key != 0) {
			rc = im__sq_run(sq, SQ_GKEY_INSERT,
			                SQ_ARGS(SQ_INT(g->group.creator),
			                        SQ_INT(key), SQ_INT(g->group.gid)),
			                "group_create_dedup", NULL, NULL);
		}
	}
	if (rc != IM_OK && res_out != NULL) {
		memset(res_out, 0, n * sizeof(*res_out));
	}
	return im__sq_end(sq, rc);
}

int
im__sq_group_create_many(im_store *st, const im_fence *fences, size_t nfences,
                         const im_group_new *groups, size_t n)
{
	return groups_write(sq_of(st), fences, nfences, groups, NULL, n, NULL);
}

int
im__sq_group_create_dedup(im_store *st, const im_fence *fences,
                          size_t nfences, const im_group_new *groups,
                          const uint64_t *dedup_ids, size_t n,
                          im_group_created *res_out)
{
	return groups_write(sq_of(st), fences, nfences, groups, dedup_ids, n,
	                    res_out);
}

static int
member_remove(sq_store *sq, const im_fence *fences, size_t nfences,
              im_gid gid, im_uid user, bool *removed_out)
{
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if (nfences > 0 &&
	    (rc = im__sq_check_fences(sq, fences, nfences)) != IM_OK) {
		return im__sq_end(sq, rc);
	}
	rc = im__sq_run(sq, SQ_MEMBER_DELETE,
	                SQ_ARGS(SQ_INT(gid), SQ_INT(user)), "member_remove",
	                NULL, NULL);
	if (rc == IM_OK) {
		*removed_out = sqlite3_changes(sq->db) == 1;
	}
	return im__sq_end(sq, rc);
}

int
im__sq_member_remove(im_store *st, im_gid gid, im_uid user, bool *removed_out)
{
	return member_remove(sq_of(st), NULL, 0, gid, user, removed_out);
}

int
im__sq_member_remove_fenced(im_store *st, const im_fence *fences,
                            size_t nfences, im_gid gid, im_uid user,
                            bool *removed_out)
{
	return member_remove(sq_of(st), fences, nfences, gid, user,
	                     removed_out);
}

static int
uid_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;

	return l->cb.uid(sq_col_u64(s, 0), l->payload);
}

int
im__sq_member_list(im_store *st, im_gid gid, im_uid_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.uid = cb, .payload = payload};
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return im__sq_run(sq, SQ_MEMBER_LIST, SQ_ARGS(SQ_INT(gid)),
	                  "member_list", uid_row, &l);
}

static int
conv_row(sqlite3_stmt *s, void *arg)
{
	struct sq_reader *l = arg;
	im_conv_row row = {
	        .conv = sq_col_u64(s, 0),
	        .read_seq = sq_col_u64(s, 1),
	        .read_ordinal = sq_col_u64(s, 2),
	        .flags = (uint32_t)sqlite3_column_int64(s, 3),
	        .last = {sq_col_u64(s, 4), sq_col_u64(s, 5)},
	        .last_sender = sq_col_u64(s, 6),
	        .last_time_ms = sq_col_u64(s, 7),
	        .preview = sqlite3_column_blob(s, 8),
	};

	row.preview_len =
	        (uint32_t)IM__MIN(sqlite3_column_bytes(s, 8), IM_PREVIEW_MAX);
	return l->cb.conv(&row, l->payload);
}

int
im__sq_conv_load(im_store *st, im_uid user, im_conv_cb cb, void *payload)
{
	sq_store *sq = sq_of(st);
	struct sq_reader l = {.cb.conv = cb, .payload = payload};
	int rc;

	if ((rc = im__sq_guard(sq)) != IM_OK) {
		return rc;
	}
	return im__sq_run(sq, SQ_CONV_LOAD,
	                  SQ_ARGS(SQ_INT(user), SQ_INT(IM_PREVIEW_MAX)),
	                  "conv_load", conv_row, &l);
}

static int
conv_update(sq_store *sq, const im_fence *fences, size_t nfences, im_uid user,
            im_gid conv, im_seq read_seq, uint64_t read_ordinal,
            uint32_t flags)
{
	int rc;

	if ((rc = im__sq_write_begin(sq)) != IM_OK) {
		return rc;
	}
	if (nfences > 0 &&
	    (rc = im__sq_check_fences(sq, fences, nfences)) != IM_OK) {
		return im__sq_end(sq, rc);
	}
	rc = im__sq_run(sq, SQ_CONV_UPDATE,
	                SQ_ARGS(SQ_INT(user), SQ_INT(conv),
	                        SQ_INT(sq_bound(read_seq)),
	                        SQ_INT(sq_bound(read_ordinal)), SQ_INT(flags)),
	                "conv_update", NULL, NULL);
	if (rc == IM_OK && sqlite3_changes(sq->db) == 0) {
		im_store_set_error(&sq->base,
		                   "user %llu is not a member of %llu",
		                   (unsigned long long)user,
		                   (unsigned long long)conv);
		rc = IM_ENOTFOUND;
	}
	return im__sq_end(sq, rc);
}

int
im__sq_conv_update(im_store *st, im_uid user, im_gid conv, im_seq read_seq,
                   uint64_t read_ordinal, uint32_t flags)
{
	return conv_update(sq_of(st), NULL, 0, user, conv, read_seq,
	                   read_ordinal, flags);
}

int
im__sq_conv_update_fenced(im_store *st, const im_fence *fences,
                          size_t nfences, im_uid user, im_gid conv,
                          im_seq read_seq, uint64_t read_ordinal,
                          uint32_t flags)
{
	return conv_update(sq_of(st), fences, nfences, user, conv, read_seq,
	                   read_ordinal, flags);
}
