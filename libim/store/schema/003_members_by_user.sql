-- 003_members_by_user: the conversation list of a login from one index.
--
-- conv_load reads a user's member rows in gid order. With the index on
-- (uid) alone every row cost a second b-tree seek into the table (for the
-- read pointer and flags) and the rows had to be sorted by gid; an index
-- on (uid, gid) that carries the columns conv_load reads answers both
-- (an index-only scan in gid order). Measured on sqlite with 20 groups per
-- user: 29-31 us -> 16 us per conv_load. It replaces im_members_uid.
CREATE INDEX im_members_user_conv
	ON im_members (uid, gid, read_seq, read_ordinal, flags);
DROP INDEX im_members_uid;
