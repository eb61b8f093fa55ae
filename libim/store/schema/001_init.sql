-- 001_init: the first schema of libim's store.
--
-- Portable SQL: it runs unchanged on sqlite (>= 3.35) and PostgreSQL (>= 15).
-- Every id, seq, epoch and time is a BIGINT holding the uint64 value's bit
-- pattern (signed 64-bit on both engines); seqs and ordinals stay below 2^63
-- so their order is the numeric order. Bodies are BYTEA (sqlite stores the
-- blob as is). The im_schema table itself is created by the migration runner
-- (libim/store/schema.c) before this file runs.

-- Slot ownership (shard map): one row per slot ever claimed; epoch only grows.
CREATE TABLE im_slots (
	kind BIGINT NOT NULL,
	slot BIGINT NOT NULL,
	owner TEXT NOT NULL,
	epoch BIGINT NOT NULL,
	PRIMARY KEY (kind, slot)
);

-- Leaf-style ID segments: max_id is the highest id handed out for a key.
CREATE TABLE im_segments (
	space BIGINT NOT NULL,
	id BIGINT NOT NULL,
	max_id BIGINT NOT NULL,
	PRIMARY KEY (space, id)
);

CREATE TABLE im_groups (
	gid BIGINT NOT NULL PRIMARY KEY,
	creator BIGINT NOT NULL,
	created_ms BIGINT NOT NULL,
	name TEXT NOT NULL
);

-- Membership doubles as the per-user conversation state (read pointer with
-- its ordinal, mute/pin flags).
CREATE TABLE im_members (
	gid BIGINT NOT NULL,
	uid BIGINT NOT NULL,
	read_seq BIGINT NOT NULL,
	read_ordinal BIGINT NOT NULL,
	flags BIGINT NOT NULL,
	joined_ms BIGINT NOT NULL,
	PRIMARY KEY (gid, uid)
);
CREATE INDEX im_members_uid ON im_members (uid);

-- Group messages. The UNIQUE dedup key is what makes a retried send
-- exactly-once, also across an owner failover.
CREATE TABLE im_messages (
	conv BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	prev_seq BIGINT NOT NULL,
	ordinal BIGINT NOT NULL,
	sender BIGINT NOT NULL,
	dedup_id BIGINT NOT NULL,
	reply_to BIGINT NOT NULL,
	time_ms BIGINT NOT NULL,
	type BIGINT NOT NULL,
	body BYTEA NOT NULL,
	PRIMARY KEY (conv, seq),
	UNIQUE (conv, sender, dedup_id)
);

-- Per-user queue (membership events, read-sync between devices).
CREATE TABLE im_userq (
	uid BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	time_ms BIGINT NOT NULL,
	type BIGINT NOT NULL,
	body BYTEA NOT NULL,
	PRIMARY KEY (uid, seq)
);
