/*
 * The in-process router of imd: one Connector and one Chatter, the four
 * role calls are direct function calls. The cluster replaces this with a
 * router that encodes the same batches as RPC.
 */
#ifndef IM_ROLE_ROUTER_LOCAL_H
#define IM_ROLE_ROUTER_LOCAL_H

#include "chatter.h"
#include "connector.h"

typedef struct router_local {
	role_router base;
	connector *cn;
	chatter *ch;
} router_local;

/* Bind the base ops; set cn and ch before the loop runs. */
void router_local_init(router_local *r);

#endif
