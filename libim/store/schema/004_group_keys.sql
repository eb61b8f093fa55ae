-- 004_group_keys: the durable unique key of a keyed CreateGroup.
--
-- A client gives each CreateGroup a dedup id and sends it again with the
-- same id after a lost answer or a reconnect. (creator, dedup_id) is unique
-- here, written in the same transaction as the group, so a retry finds the
-- first group instead of making a second one, also when another Chatter
-- (after a failover) handles the retry. One row per keyed group, kept as
-- long as the group row (as im_messages keeps its dedup keys).
CREATE TABLE im_group_keys (
	creator BIGINT NOT NULL,
	dedup_id BIGINT NOT NULL,
	gid BIGINT NOT NULL,
	PRIMARY KEY (creator, dedup_id)
);
