#include "router_local.h"

static void
rl_submit(role_router *r, const role_op *ops, size_t n)
{
	router_local *rl = (router_local *)r;

	chatter_submit(rl->ch, ops, n);
}

static void
rl_reply(role_router *r, const role_reply *reps, size_t n)
{
	router_local *rl = (router_local *)r;

	if (n > 0) {
		connector_reply(rl->cn, reps, n);
	}
}

static void
rl_deliver(role_router *r, const role_fanout *f, size_t n)
{
	router_local *rl = (router_local *)r;

	/* One Connector holds every user: one call for the whole batch. */
	if (n > 0) {
		connector_deliver(rl->cn, f, n);
	}
}

static void
rl_user_events(role_router *r, const role_uevent *ev, size_t n)
{
	router_local *rl = (router_local *)r;

	if (n > 0) {
		connector_user_events(rl->cn, ev, n);
	}
}

static const struct role_router_ops rl_ops = {
        .submit = rl_submit,
        .reply = rl_reply,
        .deliver = rl_deliver,
        .user_events = rl_user_events,
};

void
router_local_init(router_local *r)
{
	r->base.ops = &rl_ops;
	r->cn = NULL;
	r->ch = NULL;
}
