/*
 * imnode: one binary for every cluster role, chosen with --role.
 *
 *   imnode --role router --name router-1 --listen 127.0.0.1:7700 \
 *          --store /var/lib/im/store.db     (or a PostgreSQL conninfo)
 *
 * Why one binary: the roles share everything around them (configuration,
 * store, membership, signals, logging); only the role object differs. One
 * binary keeps that plumbing in one place and lets a deployment change a
 * node's role by configuration.
 *
 * Configuration: the settings of servers/common/config.h (`--config FILE`
 * and flags that override it; `imnode --help` lists them with their
 * defaults). The node's own identity and listen address are all it needs:
 * where the other nodes are comes from the store.
 *
 * Roles: router (router.h) here; connector and chatter are the imd roles
 * of servers/roles/ behind RPC (node_role.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "im/shard.h"
#include "im/store.h"
#include "member.h"
#include "node_role.h"
#include "router.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: imnode --role router|connector|chatter --name NAME "
		   "--listen HOST:PORT\n"
		   "              --store PATH_OR_CONNINFO [--config FILE] "
		   "[--KEY VALUE ...]\n");
	srv_config_usage(SRV_NODE, f);
}

static int
configure(srv_config *c, int argc, char **argv)
{
	char err[SRV_PATH_MAX + 512];
	int rc = srv_config_parse(c, argc, argv, 1, err, sizeof(err));

	if (rc == 1) {
		usage(stdout);
		exit(0);
	}
	if (rc == 0 && strcmp(c->role, "router") != 0 &&
	    strcmp(c->role, "connector") != 0 &&
	    strcmp(c->role, "chatter") != 0) {
		snprintf(err, sizeof(err), "role '%s' is not available "
			 "(router, connector or chatter)", c->role);
		rc = -1;
	}
	if (rc == 0) {
		rc = srv_config_log_level(c, err, sizeof(err));
	}
	if (rc != 0) {
		fprintf(stderr, "imnode: %s\n", err);
		usage(stderr);
		return -1;
	}
	return 0;
}

static int
open_store(im_store **st, const char *spec)
{
	char msg[256] = "";
	int rc;

	if (strncmp(spec, "postgres://", 11) == 0 ||
	    strncmp(spec, "postgresql://", 13) == 0 ||
	    strchr(spec, '=') != NULL) {
		rc = im_store_pg_open(st, spec, NULL, msg, sizeof(msg));
	} else {
		rc = im_store_sqlite_open(st, spec, NULL, msg, sizeof(msg));
	}
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: store %s: %s (%s)\n", spec, msg,
			im_strerror(rc));
	}
	return rc;
}

/* Nodes of a cluster start together: a store busy with the others'
 * migrations and registrations is retried for a while (bounded). */
static int
open_store_retrying(im_store **st, const char *spec)
{
	int i, rc;

	for (i = 0;; i++) {
		rc = open_store(st, spec);
		if (rc != IM_EUNAVAIL || i >= 50) {
			return rc;
		}
		usleep(100 * 1000);
	}
}

static void
on_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	fprintf(stderr, "imnode: signal %d: stopping\n", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

/* HOST:PORT where PORT 0 means any free port. */
static bool
parse_listen(const char *listen, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon = strrchr(listen, ':');

	if (colon != NULL && strcmp(colon, ":0") == 0 &&
	    (size_t)(colon - listen) < hostlen && colon > listen) {
		snprintf(host, hostlen, "%.*s", (int)(colon - listen), listen);
		*port = 0;
		return true;
	}
	return cl_split_address(listen, host, hostlen, port);
}

static int
run_router(struct ev_loop *loop, im_store *st, const srv_config *c)
{
	cl_member_opts mo = CL_MEMBER_OPTS_INIT;
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	router_opts ropts = ROUTER_OPTS_INIT;
	im_shard_map *map = NULL;
	router *r = NULL;
	cl_member *m = NULL;
	char host[64], addr[IM_NODE_ADDR_MAX + 1];
	uint16_t port;
	int rc, ret = 1;

	if (!parse_listen(c->listen, host, sizeof(host), &port)) {
		fprintf(stderr, "imnode: bad listen address '%s'\n",
			c->listen);
		return 1;
	}
	so.nslots = c->slots;
	if ((rc = im_shard_create(&map, &so)) != IM_OK) {
		fprintf(stderr, "imnode: slot map: %s\n", im_strerror(rc));
		return 1;
	}
	/* The Routers detect dead nodes and move their slots (router.h). */
	ropts.heartbeat_ms = c->heartbeat_ms;
	ropts.dead_after_ms = c->dead_after_ms;
	ropts.limits.admit_ms = c->router_admit_ms;
	ropts.limits.frame_ms = c->router_frame_ms;
	ropts.limits.per_peer_max = c->router_per_peer_max;
	rc = router_create(&r, loop, st, map, host, port, &ropts);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: router on %s: %s (%s)\n", c->listen,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	/* Registered with the port actually bound (listen may say :0). */
	snprintf(addr, sizeof(addr), "%s:%u", host, router_port(r));
	mo.heartbeat_ms = c->heartbeat_ms;
	mo.refresh_ms = c->refresh_ms;
	mo.dead_after_ms = c->dead_after_ms;
	rc = cl_member_create(&m, loop, st, c->name, IM_NODE_ROUTER, addr,
			      &mo);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: register %s: %s (%s)\n", c->name,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	if (c->port_file[0] != '\0' &&
	    srv_port_file_write(c->port_file, router_port(r)) != 0) {
		fprintf(stderr, "imnode: %s: %s\n", c->port_file,
			strerror(errno));
		goto out;
	}
	fprintf(stderr, "imnode: router %s listening on %s\n", c->name, addr);
	ev_run(loop, 0);
	/* Stopped (a signal): leave the view now rather than by age, so
	 * the nodes drop us at their next view reload and imctl does not
	 * count us; they already use the other Routers once our
	 * connections close below. */
	cl_member_mute(m, true);
	if (im_store_node_heartbeat(st, c->name, 0) != IM_OK) {
		fprintf(stderr, "imnode: leave the view: %s\n",
			im_store_errmsg(st));
	}
	ret = 0;
out:
	cl_member_destroy(m);
	router_destroy(r);
	im_shard_destroy(map);
	return ret;
}

int
main(int argc, char **argv)
{
	srv_config c;
	struct ev_loop *loop = EV_DEFAULT;
	ev_signal sint, sterm;
	im_store *st = NULL;
	int ret;

	srv_config_init(&c, SRV_NODE);
	if (configure(&c, argc, argv) != 0) {
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (open_store_retrying(&st, c.store) != IM_OK) {
		return 1;
	}
	ev_signal_init(&sint, on_signal, SIGINT);
	ev_signal_init(&sterm, on_signal, SIGTERM);
	ev_signal_start(loop, &sint);
	ev_signal_start(loop, &sterm);
	if (strcmp(c.role, "router") != 0) {
		ret = node_role_run(loop, st, &c);
	} else {
		ret = run_router(loop, st, &c);
	}
	im_store_close(st);
	return ret;
}
