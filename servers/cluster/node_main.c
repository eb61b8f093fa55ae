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
 * Configuration: `--config FILE` (lines `key = value`, # comments) and
 * flags `--key value` that override it. Keys: role, name, listen, store,
 * slots, port-file. The node's own identity and listen address are all it
 * needs: where the other nodes are comes from the store.
 *
 * Roles: router (servers/cluster/router.h). The Connector and Chatter
 * roles come with servers/roles/ (the imd roles) behind RPC; see the
 * README of servers/cluster/.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "im/shard.h"
#include "im/store.h"
#include "member.h"
#include "router.h"

typedef struct node_config {
	char role[16];
	char name[IM_NODE_NAME_MAX + 1];
	char listen[IM_NODE_ADDR_MAX + 1];
	char store[512];
	char port_file[512];
	uint32_t slots;
} node_config;

static void
usage(FILE *f)
{
	fprintf(f, "usage: imnode --role router --name NAME --listen "
		   "HOST:PORT --store PATH_OR_CONNINFO\n"
		   "              [--slots N] [--port-file FILE] "
		   "[--config FILE]\n");
}

static int
set_key(node_config *c, const char *key, const char *val)
{
	struct {
		const char *key;
		char *dst;
		size_t len;
	} strs[] = {
		{"role", c->role, sizeof(c->role)},
		{"name", c->name, sizeof(c->name)},
		{"listen", c->listen, sizeof(c->listen)},
		{"store", c->store, sizeof(c->store)},
		{"port-file", c->port_file, sizeof(c->port_file)},
	};
	size_t i;

	for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		if (strcmp(key, strs[i].key) == 0) {
			if (strlen(val) >= strs[i].len) {
				fprintf(stderr, "imnode: %s too long\n", key);
				return -1;
			}
			snprintf(strs[i].dst, strs[i].len, "%s", val);
			return 0;
		}
	}
	if (strcmp(key, "slots") == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(val, &end, 10);
		if (errno != 0 || *end != '\0' || v == 0 ||
		    v > IM_SHARD_SLOTS_MAX) {
			fprintf(stderr, "imnode: bad slots '%s'\n", val);
			return -1;
		}
		c->slots = (uint32_t)v;
		return 0;
	}
	fprintf(stderr, "imnode: unknown key '%s'\n", key);
	return -1;
}

static char *
trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t') {
		s++;
	}
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' ||
			 e[-1] == '\r')) {
		*--e = '\0';
	}
	return s;
}

static int
load_file(node_config *c, const char *path)
{
	char line[1024];
	FILE *f = fopen(path, "r");
	int lineno = 0, rc = 0;

	if (f == NULL) {
		fprintf(stderr, "imnode: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *s = trim(line), *eq;

		lineno++;
		if (*s == '\0' || *s == '#') {
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			fprintf(stderr, "imnode: %s:%d: expected key = value\n",
				path, lineno);
			rc = -1;
			break;
		}
		*eq = '\0';
		rc = set_key(c, trim(s), trim(eq + 1));
	}
	fclose(f);
	return rc;
}

static int
parse_args(node_config *c, int argc, char **argv)
{
	int i;

	for (i = 1; i + 1 < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 &&
		    load_file(c, argv[i + 1]) != 0) {
			return -1;
		}
	}
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			exit(0);
		}
		if (strncmp(argv[i], "--", 2) != 0 || i + 1 >= argc) {
			usage(stderr);
			return -1;
		}
		if (strcmp(argv[i], "--config") != 0 &&
		    set_key(c, argv[i] + 2, argv[i + 1]) != 0) {
			return -1;
		}
		i++;
	}
	if (c->role[0] == '\0' || c->name[0] == '\0' ||
	    c->listen[0] == '\0' || c->store[0] == '\0') {
		fprintf(stderr, "imnode: role, name, listen and store are "
				"needed\n");
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
#ifdef IMNODE_HAVE_PG
		rc = im_store_pg_open(st, spec, NULL, msg, sizeof(msg));
#else
		snprintf(msg, sizeof(msg), "built without PostgreSQL");
		rc = IM_ENOTSUP;
#endif
	} else {
		rc = im_store_sqlite_open(st, spec, NULL, msg, sizeof(msg));
	}
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: store %s: %s (%s)\n", spec, msg,
			im_strerror(rc));
	}
	return rc;
}

static int
write_port_file(const char *path, uint16_t port)
{
	char tmp[600];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		return -1;
	}
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0) {
		return -1;
	}
	return rename(tmp, path);
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
run_router(struct ev_loop *loop, im_store *st, const node_config *c)
{
	im_shard_opts so = IM_SHARD_OPTS_INIT;
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
	rc = router_create(&r, loop, st, map, host, port, NULL);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: router on %s: %s (%s)\n", c->listen,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	/* Registered with the port actually bound (listen may say :0). */
	snprintf(addr, sizeof(addr), "%s:%u", host, router_port(r));
	rc = cl_member_create(&m, loop, st, c->name, IM_NODE_ROUTER, addr,
			      NULL);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: register %s: %s (%s)\n", c->name,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	if (c->port_file[0] != '\0' &&
	    write_port_file(c->port_file, router_port(r)) != 0) {
		fprintf(stderr, "imnode: %s: %s\n", c->port_file,
			strerror(errno));
		goto out;
	}
	fprintf(stderr, "imnode: router %s listening on %s\n", c->name, addr);
	ev_run(loop, 0);
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
	node_config c;
	struct ev_loop *loop = EV_DEFAULT;
	ev_signal sint, sterm;
	im_store *st = NULL;
	int ret;

	memset(&c, 0, sizeof(c));
	c.slots = IM_SHARD_SLOTS_DEFAULT;
	if (parse_args(&c, argc, argv) != 0) {
		return 2;
	}
	if (strcmp(c.role, "router") != 0) {
		fprintf(stderr, "imnode: role '%s' is not available in this "
				"build (router only so far)\n",
			c.role);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (open_store(&st, c.store) != IM_OK) {
		return 1;
	}
	ev_signal_init(&sint, on_signal, SIGINT);
	ev_signal_init(&sterm, on_signal, SIGTERM);
	ev_signal_start(loop, &sint);
	ev_signal_start(loop, &sterm);
	ret = run_router(loop, st, &c);
	im_store_close(st);
	return ret;
}
