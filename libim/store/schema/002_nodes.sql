-- 002_nodes: cluster membership (store ops version 2).
--
-- One row per node name. A node registers at start (incarnation + 1, so a
-- restarted or fenced node is a fresh incarnation) and then heartbeats;
-- readers judge liveness by the age of heartbeat_ms. role is im_node_role
-- (1 Connector, 2 Router, 3 Chatter); address is where the node listens.
-- The name is also the owner string of the slots the node holds.
CREATE TABLE im_nodes (
	name TEXT NOT NULL PRIMARY KEY,
	role BIGINT NOT NULL,
	address TEXT NOT NULL,
	registered_ms BIGINT NOT NULL,
	heartbeat_ms BIGINT NOT NULL,
	incarnation BIGINT NOT NULL
);
