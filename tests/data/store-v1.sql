-- A libim store at schema version 1, as a frozen SQL script (tests/data is
-- for old-schema fixtures, mosquitto style). Never edit this file when the
-- schema changes: it stands for databases already in the field, and the
-- sqlite unit test opens it with the current build, which must migrate it
-- and keep every row readable.
CREATE TABLE im_schema (version BIGINT NOT NULL);
INSERT INTO im_schema (version) VALUES (1);
CREATE TABLE im_slots (
	kind BIGINT NOT NULL,
	slot BIGINT NOT NULL,
	owner TEXT NOT NULL,
	epoch BIGINT NOT NULL,
	PRIMARY KEY (kind, slot)
);

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

CREATE TABLE im_userq (
	uid BIGINT NOT NULL,
	seq BIGINT NOT NULL,
	time_ms BIGINT NOT NULL,
	type BIGINT NOT NULL,
	body BYTEA NOT NULL,
	PRIMARY KEY (uid, seq)
);

INSERT INTO im_slots VALUES (1, 7, 'node-a', 3);
INSERT INTO im_segments VALUES (0, 100, 200);
INSERT INTO im_groups VALUES (100, 5, 1700000000000, 'old group');
INSERT INTO im_members VALUES (100, 5, 11, 1, 2, 1700000000000);
INSERT INTO im_messages VALUES (100, 11, 0, 1, 5, 1, 0, 1700000000011, 0, X'68656c6c6f');
INSERT INTO im_messages VALUES (100, 12, 11, 2, 6, 1, 11, 1700000000012, 3, X'776f726c64');
INSERT INTO im_userq VALUES (5, 1, 1700000000001, 2, X'6a6f696e6564');
