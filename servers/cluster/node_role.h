/*
 * A Connector or Chatter node of the cluster (imnode --role connector or
 * chatter): imd's role object (servers/roles) behind RPC (link.h), with
 * its membership in the store (member.h) and its slots, taken and handed
 * over by the rules of servers/common/slot_policy.h. Kept apart from
 * node_main.c, which only reads the settings and picks the role.
 */
#ifndef IM_CLUSTER_NODE_ROLE_H
#define IM_CLUSTER_NODE_ROLE_H

#include <ev.h>

#include "config.h"
#include "im/store.h"

/*
 * Run the node of c->role on loop over st until the loop is broken (a
 * signal). c is borrowed; its tuning (c->cn, c->ch) is used as given.
 * Returns the process's exit status: 0, 1 (a failure), 2 (bad settings).
 */
int node_role_run(struct ev_loop *loop, im_store *st, srv_config *c);

#endif
