/*
 * imctl: show a libim cluster as the store sees it.
 *
 *   imctl --store CONNINFO_OR_PATH [options] nodes|slots|status|user|group
 *
 * nodes   every registered node: role, address, incarnation, heartbeat
 *         age and liveness (alive while the age is within --dead-after)
 * slots   per kind (user -> Connectors, group -> Chatters) and owner: slot
 *         count and epoch range; unowned slots of the --slots total
 * status  both, plus a summary line per role and warnings (slots held by
 *         a node that is dead or not registered)
 * user UID  where a user is served: slot, owner, its state and address
 *         (the Connector a client of that user connects to; last field)
 * group GID where a group is served: slot, epoch, owner (the Chatter), its
 *         state and address
 *
 * The store is a sqlite path (must exist: imctl never creates a store) or
 * a PostgreSQL conninfo ("postgres://..." or "key=value ...").
 */
#ifndef IM_IMCTL_H
#define IM_IMCTL_H

#include <stdio.h>

/*
 * Run imctl with argv; output goes to out, errors to err. Returns the
 * process exit code: 0 ok, 1 store or runtime error, 2 usage error.
 */
int imctl_main(int argc, char **argv, FILE *out, FILE *err);

#endif
