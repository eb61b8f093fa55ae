/*
 * The sqlite backend and a full disk: how large the WAL may grow, and what
 * a write that found no space does to give some back.
 *
 * The WAL grows until the commit that takes it past wal_autocheckpoint
 * pages copies it into the database file; then sqlite writes it again from
 * its start but never shrinks the file by itself. With imd's 10000 pages
 * (40 MB, chosen for fewer fsyncs) the WAL alone can fill a small
 * filesystem. So, at open:
 *
 *  - the checkpoint interval is the configured one, but at most a quarter
 *    of the space then free on the database's filesystem (and at least
 *    SQ_WAL_MIN_PAGES): the WAL is never what fills the disk;
 *  - journal_size_limit is that same size: a WAL that grew past it anyway
 *    (a checkpoint could not finish) is truncated back to it by the next
 *    checkpoint that resets it.
 *
 * When a write fails for want of space (SQLITE_FULL, or an I/O error whose
 * errno is ENOSPC) the transaction is rolled back (nothing of it stays) and
 * a TRUNCATE checkpoint is tried, which copies the WAL into the database
 * and cuts the -wal file to zero bytes: what the WAL held beyond the
 * database's own pages is given back. It may fail too (the database file
 * must grow for new pages); the next full write tries again.
 */
#include "store/sqlite/sqlite_internal.h"

#include <errno.h>
#include <stdio.h>
#include <sys/statvfs.h>

/* sqlite's own default interval, used when none is configured. */
#define SQ_WAL_DEFAULT_PAGES 1000u
/* The smallest interval a nearly full disk gets: below it every few
 * commits would pay a checkpoint's fsyncs. */
#define SQ_WAL_MIN_PAGES 64u

bool
im__sq_is_full(sq_store *sq, int rc)
{
	int prim = rc & 0xff;

	return prim == SQLITE_FULL ||
	       (prim == SQLITE_IOERR && sqlite3_system_errno(sq->db) == ENOSPC);
}

/* The database's page size in bytes (4096 unless the file says else). */
static uint64_t
sq_page_size(sq_store *sq)
{
	sqlite3_stmt *s = NULL;
	uint64_t size = 4096;

	if (sqlite3_prepare_v2(sq->db, "PRAGMA page_size", -1, &s, NULL) ==
	            SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > 0) {
		size = (uint64_t)sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	return size;
}

uint32_t
im__sq_wal_pages(uint32_t configured, uint64_t free_bytes, uint64_t page_size)
{
	uint64_t pages = configured > 0 ? configured : SQ_WAL_DEFAULT_PAGES;
	uint64_t cap = page_size > 0 ? free_bytes / 4 / page_size : pages;

	if (cap < SQ_WAL_MIN_PAGES) {
		cap = SQ_WAL_MIN_PAGES;
	}
	return (uint32_t)(pages < cap ? pages : cap);
}

int
im__sq_space_pragmas(sq_store *sq, uint32_t configured)
{
	const char *path = sqlite3_db_filename(sq->db, "main");
	uint64_t page = sq_page_size(sq);
	uint64_t free_bytes = UINT64_MAX;
	struct statvfs vfs;
	char sql[96];
	uint32_t pages;
	int rc;

	/* A private or in-memory database ("" or NULL) has no filesystem. */
	if (path != NULL && path[0] != '\0' && statvfs(path, &vfs) == 0) {
		free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	}
	pages = im__sq_wal_pages(configured, free_bytes, page);
	snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%u",
	         (unsigned)pages);
	if ((rc = im__sq_exec_sql(sq, sql, "wal_autocheckpoint")) != IM_OK) {
		return rc;
	}
	sq->wal_pages = pages;
	snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%llu",
	         (unsigned long long)(pages * page));
	return im__sq_exec_sql(sq, sql, "journal_size_limit");
}

void
im__sq_space_reclaim(sq_store *sq)
{
	/* Best effort: a failure leaves things as they were, and must not
	 * replace the write's own error text. */
	(void)sqlite3_wal_checkpoint_v2(sq->db, NULL,
	                                SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
}
