/*
 * TEMPORARY local copy of the shared schema until libim/store/schema.h and
 * the generated im__migrations[] land from the sqlite branch.
 */
#ifndef IM_PG_SCHEMA_LOCAL_H
#define IM_PG_SCHEMA_LOCAL_H

#include <stddef.h>
#include <stdint.h>

struct im__migration {
	uint32_t version;
	const char *name;
	const char *sql;
};

static const struct im__migration im__migrations[] = {
	{1, "init",
	 "CREATE TABLE im_slots (kind BIGINT NOT NULL, slot BIGINT NOT NULL,"
	 " owner TEXT NOT NULL, epoch BIGINT NOT NULL,"
	 " PRIMARY KEY (kind, slot));"
	 "CREATE TABLE im_segments (space BIGINT NOT NULL, id BIGINT NOT NULL,"
	 " max_id BIGINT NOT NULL, PRIMARY KEY (space, id));"
	 "CREATE TABLE im_groups (gid BIGINT PRIMARY KEY,"
	 " creator BIGINT NOT NULL, created_ms BIGINT NOT NULL,"
	 " name TEXT NOT NULL);"
	 "CREATE TABLE im_members (gid BIGINT NOT NULL, uid BIGINT NOT NULL,"
	 " read_seq BIGINT NOT NULL, read_ordinal BIGINT NOT NULL,"
	 " flags BIGINT NOT NULL, joined_ms BIGINT NOT NULL,"
	 " PRIMARY KEY (gid, uid));"
	 "CREATE INDEX im_members_uid ON im_members (uid);"
	 "CREATE TABLE im_messages (conv BIGINT NOT NULL, seq BIGINT NOT NULL,"
	 " prev_seq BIGINT NOT NULL, ordinal BIGINT NOT NULL,"
	 " sender BIGINT NOT NULL, dedup_id BIGINT NOT NULL,"
	 " reply_to BIGINT NOT NULL, time_ms BIGINT NOT NULL,"
	 " type BIGINT NOT NULL, body BYTEA NOT NULL,"
	 " PRIMARY KEY (conv, seq), UNIQUE (conv, sender, dedup_id));"
	 "CREATE TABLE im_userq (uid BIGINT NOT NULL, seq BIGINT NOT NULL,"
	 " time_ms BIGINT NOT NULL, type BIGINT NOT NULL,"
	 " body BYTEA NOT NULL, PRIMARY KEY (uid, seq));"},
};
static const size_t im__nmigrations =
	sizeof(im__migrations) / sizeof(im__migrations[0]);

#endif
