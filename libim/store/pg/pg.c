/*
 * The PostgreSQL backend (libpq).
 *
 * Every op is one prepared statement, sent with binary parameters and read
 * back in binary, so one op costs one round trip. Writes run as a single
 * autocommit statement: the statement is the transaction, and a commit
 * waits for the WAL flush (synchronous_commit stays on).
 *
 * Fences: msg_append and uq_append lock the fenced slot rows FOR SHARE in a
 * materialized CTE before inserting. A CAS is an UPDATE of that row, so it
 * either commits before the lock is taken (then READ COMMITTED re-reads the
 * newest row version and the append sees the new epoch, even though its
 * snapshot predates the CAS) or waits until the append committed.
 *
 * Dedup, in two steps. First the fast statement inserts the batch as given
 * (the common case: no duplicate). Its INSERT has no ON CONFLICT, so a
 * stored dedup key (or seq) makes it fail on a unique index and roll back.
 * Then the full statement probes the stored dedup keys (LATERAL ... LIMIT 1,
 * so that a generic plan never scans the table), drops the duplicates and
 * rechains the rest with window functions. It has no ON CONFLICT either: a
 * key committed concurrently after its snapshot raises a unique violation,
 * the statement rolls back and runs again, now seeing that row as a dup.
 * A seq taken twice in a row by another message is IM_ECONFLICT.
 *
 * uint64 ids are stored in BIGINT columns by their bit pattern; seq bounds
 * given to range queries are clamped to INT64_MAX.
 *
 * This file holds the connection (reconnect, prepare), migrations, open,
 * close and the ops table. The statements are in pg_stmts.c, the query
 * helper every op runs through in pg_query.c, the fenced appends in
 * pg_append.c, and the other ops in pg_slots.c, pg_msgs.c, pg_groups.c and
 * pg_nodes.c.
 */
#include "store/pg/pg_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "store/schema.h"

/* Key of the advisory lock serializing migrations ("libimsch"). */
#define PG_MIGRATE_LOCK "7821266965256128104"

/* ---- connection ------------------------------------------------------ */

static void
set_pq_error(struct pg_store *s, const char *what)
{
	const char *m = PQerrorMessage(s->conn);
	size_t len = strlen(m);

	/* libpq messages end with a newline; errmsg is one line. */
	while (len > 0 && (m[len - 1] == '\n' || m[len - 1] == '\r')) {
		len--;
	}
	im_store_set_error(&s->base, "pg: %s: %.*s", what, (int)len, m);
}

static int
pg_prepare_all(struct pg_store *s)
{
	PGresult *res;
	int i;

	/*
	 * The append's custom plans cost more to make than to run (the array
	 * sizes change the estimates, so the plan cache never settles on a
	 * generic plan by itself). Every statement here is index driven, and
	 * the dedup probe is written so that a generic plan cannot scan.
	 */
	/* DEALLOCATE: re-preparing on a session that kept some of them. */
	res = PQexec(s->conn, "SET plan_cache_mode = force_generic_plan;"
	                      " DEALLOCATE ALL");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		im_store_set_error(&s->base, "pg: set plan_cache_mode: %s",
		                   PQresultErrorMessage(res));
		PQclear(res);
		return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR
		                                          : IM_EUNAVAIL;
	}
	PQclear(res);

	for (i = 0; i < PG_NSTMT; i++) {
		res = PQprepare(s->conn, im__pg_stmts[i].name,
		                im__pg_stmts[i].sql, im__pg_stmts[i].nparams,
		                im__pg_stmts[i].types);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			im_store_set_error(&s->base, "pg: prepare %s: %s",
			                   im__pg_stmts[i].name,
			                   PQresultErrorMessage(res));
			PQclear(res);
			return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR
			                                          : IM_EUNAVAIL;
		}
		PQclear(res);
	}
	s->prepared = true;
	return IM_OK;
}

/* Notices ("relation exists, skipping") are not errors; keep stderr clean. */
static void
pg_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static void
pg_pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

int
im__pg_ensure(struct pg_store *s)
{
	uint32_t tries;
	int fd;

	/*
	 * A server that restarted or killed our backend while we were idle
	 * has already sent its goodbye; read it now so that a write is not
	 * sent into a dead socket (its outcome would look unknown).
	 */
	if (PQstatus(s->conn) == CONNECTION_OK &&
	    (fd = PQsocket(s->conn)) >= 0) {
		struct pollfd pfd = {fd, POLLIN, 0};
		int i;

		/* The error message first, then the EOF: a few reads. */
		for (i = 0; i < 4 && poll(&pfd, 1, 0) > 0; i++) {
			if (!PQconsumeInput(s->conn)) {
				break;
			}
		}
	}
	for (tries = 0; PQstatus(s->conn) != CONNECTION_OK; tries++) {
		if (tries >= s->opts.reconnect_tries) {
			set_pq_error(s, "reconnect");
			return IM_EUNAVAIL;
		}
		if (tries > 0) {
			pg_pause_ms(50u << (tries < 5 ? tries : 5));
		}
		s->prepared = false;
		PQreset(s->conn);
	}
	if (!s->prepared) {
		return pg_prepare_all(s);
	}
	return IM_OK;
}

/* ---- migrations ------------------------------------------------------ */

static int
pg_exec_simple(struct pg_store *s, const char *sql, PGresult **out)
{
	PGresult *res = PQexec(s->conn, sql);
	ExecStatusType es = PQresultStatus(res);

	if (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK) {
		if (out != NULL) {
			*out = res;
		} else {
			PQclear(res);
		}
		return IM_OK;
	}
	im_store_set_error(&s->base, "pg: %.40s...: %s", sql,
	                   res != NULL ? PQresultErrorMessage(res)
	                               : PQerrorMessage(s->conn));
	PQclear(res);
	return PQstatus(s->conn) == CONNECTION_OK ? IM_ERR : IM_EUNAVAIL;
}

/* One migration step: its own transaction, under the advisory lock. */
static int
pg_migrate_step(struct pg_store *s, uint32_t *cur_out, bool *done_out)
{
	const struct im__migration *m = NULL;
	PGresult *res = NULL;
	char sql[128], why[IM_STORE_ERRMSG_MAX];
	uint32_t cur;
	int rc;

	*done_out = false;
	if ((rc = pg_exec_simple(s, "BEGIN", NULL)) != IM_OK) {
		return rc;
	}
	rc = pg_exec_simple(
	        s, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", NULL);
	if (rc == IM_OK) {
		rc = pg_exec_simple(s, im__schema_bootstrap_sql, NULL);
	}
	if (rc == IM_OK) {
		rc = pg_exec_simple(s, im__schema_version_sql, &res);
	}
	if (rc != IM_OK) {
		goto out;
	}
	cur = PQgetisnull(res, 0, 0)
	              ? 0
	              : (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	*cur_out = cur;
	why[0] = '\0';
	rc = im__schema_next(cur, &m, why, sizeof(why));
	if (rc != IM_OK) {
		im_store_set_error(&s->base, "pg: %s", why);
		rc = IM_ESCHEMA;
		goto out;
	}
	if (m == NULL) {
		*done_out = true;
		return pg_exec_simple(s, "COMMIT", NULL);
	}
	if ((rc = pg_exec_simple(s, m->sql, NULL)) != IM_OK) {
		snprintf(why, sizeof(why), "%s", s->base.errmsg);
		im_store_set_error(&s->base, "pg: migration %u (%s): %s",
		                   m->version, m->name, why);
		goto out;
	}
	if (im__schema_set_sql(sql, sizeof(sql), m->version) != IM_OK) {
		rc = IM_ERR;
		goto out;
	}
	if ((rc = pg_exec_simple(s, sql, NULL)) == IM_OK &&
	    (rc = pg_exec_simple(s, "COMMIT", NULL)) == IM_OK) {
		*cur_out = m->version;
		return IM_OK;
	}
out:
	if (PQstatus(s->conn) == CONNECTION_OK) {
		PQclear(PQexec(s->conn, "ROLLBACK"));
	}
	return rc;
}

/*
 * Concurrent openers serialize on an advisory lock, so that they neither
 * race on CREATE TABLE nor apply a step twice; each step commits alone, so
 * a crash leaves the database at some whole version.
 */
static int
pg_migrate(im_store *st, uint32_t *schema_out)
{
	struct pg_store *s = PG(st);
	uint32_t cur = 0, steps;
	bool done = false;
	int rc;

	if ((rc = im__pg_ensure(s)) != IM_OK) {
		return rc;
	}
	for (steps = 0; !done; steps++) {
		if (steps > im__nmigrations) {
			im_store_set_error(st,
			                   "pg: migrations do not converge");
			return IM_ERR;
		}
		rc = pg_migrate_step(s, &cur, &done);
		if (rc != IM_OK) {
			if (rc == IM_ESCHEMA) {
				*schema_out = cur;
			}
			return rc;
		}
	}
	*schema_out = cur;
	return IM_OK;
}

/* ---- open and close -------------------------------------------------- */

static void
pg_close(im_store *st)
{
	struct pg_store *s = PG(st);

	PQfinish(s->conn);
	free(s->buf);
	free(s);
}

static const struct im_store_ops pg_ops = {
        .version = IM_STORE_OPS_VERSION,
        .name = "pg",
        .close = pg_close,
        .migrate = pg_migrate,
        .slot_load = im__pg_slot_load,
        .slot_cas = im__pg_slot_cas,
        .seg_take = im__pg_seg_take,
        .msg_append = im__pg_msg_append,
        .msg_read = im__pg_msg_read,
        .msg_last = im__pg_msg_last,
        .msg_find_dedup = im__pg_msg_find_dedup,
        .group_create = im__pg_group_create,
        .group_lookup = im__pg_group_lookup,
        .member_add = im__pg_member_add,
        .member_remove = im__pg_member_remove,
        .member_list = im__pg_member_list,
        .conv_load = im__pg_conv_load,
        .conv_update = im__pg_conv_update,
        .uq_append = im__pg_uq_append,
        .uq_read = im__pg_uq_read,
        /* version 2 */
        .node_register = im__pg_node_register,
        .node_heartbeat = im__pg_node_heartbeat,
        .node_list = im__pg_node_list,
        /* version 3 */
        .slot_cas_many = im__pg_slot_cas_many,
        /* version 4 */
        .group_create_many = im__pg_group_create_many,
        .seg_take_many = im__pg_seg_take_many,
        .uq_last = im__pg_uq_last,
        /* version 5 */
        .group_create_dedup = im__pg_group_create_dedup,
        /* version 6 */
        .member_add_fenced = im__pg_member_add_fenced,
        .member_remove_fenced = im__pg_member_remove_fenced,
        .conv_update_fenced = im__pg_conv_update_fenced,
};

static void
open_error(char *errbuf, size_t errlen, const char *msg)
{
	if (errbuf != NULL && errlen > 0) {
		snprintf(errbuf, errlen, "%s", msg);
	}
}

int
im_store_pg_open(im_store **out, const char *conninfo,
                 const im_store_pg_opts *opts, char *errbuf, size_t errlen)
{
	static const im_store_pg_opts defaults = IM_STORE_PG_OPTS_INIT;
	const char *keys[3] = {"connect_timeout", "dbname", NULL};
	const char *vals[3];
	char timeout[16];
	struct pg_store *s;
	uint32_t schema;
	int rc;

	if (out == NULL) {
		open_error(errbuf, errlen, "pg: out is NULL");
		return IM_EINVAL;
	}
	*out = NULL;
	if (conninfo == NULL) {
		open_error(errbuf, errlen, "pg: conninfo is NULL");
		return IM_EINVAL;
	}
	if (opts != NULL &&
	    (opts->version == 0 || opts->version > IM_STORE_PG_OPTS_VERSION)) {
		open_error(errbuf, errlen, "pg: unknown opts version");
		return IM_EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		open_error(errbuf, errlen, "pg: out of memory");
		return IM_ENOMEM;
	}
	s->opts = opts != NULL ? *opts : defaults;
	if (s->opts.reconnect_tries == 0) {
		s->opts.reconnect_tries = 1;
	}
	/* Never unbounded (libpq's 0); libpq counts seconds, minimum 2. */
	if (s->opts.connect_timeout_ms == 0) {
		s->opts.connect_timeout_ms = defaults.connect_timeout_ms;
	}
	snprintf(timeout, sizeof(timeout), "%u",
	         (unsigned)IM__MAX(2u, ((uint64_t)s->opts.connect_timeout_ms +
	                                999) / 1000));
	vals[0] = timeout;
	vals[1] = conninfo;
	vals[2] = NULL;
	/* Keys later in the list win: the caller's conninfo may override. */
	s->conn = PQconnectdbParams(keys, vals, 1);
	if (s->conn == NULL) {
		free(s);
		open_error(errbuf, errlen, "pg: out of memory");
		return IM_ENOMEM;
	}
	PQsetNoticeProcessor(s->conn, pg_notice, NULL);
	if (im_store_init(&s->base, &pg_ops) != IM_OK) {
		rc = IM_ERR;
		goto fail;
	}
	if (PQstatus(s->conn) != CONNECTION_OK) {
		set_pq_error(s, "connect");
		rc = IM_EUNAVAIL;
		goto fail;
	}
	/* Migrate before preparing: the statements need the tables. */
	s->prepared = true;
	if ((rc = pg_migrate(&s->base, &schema)) != IM_OK) {
		goto fail;
	}
	if ((rc = pg_prepare_all(s)) != IM_OK) {
		goto fail;
	}
	*out = &s->base;
	return IM_OK;
fail:
	open_error(errbuf, errlen, s->base.errmsg);
	pg_close(&s->base);
	return rc;
}
