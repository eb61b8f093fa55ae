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
 * Roles: router (servers/cluster/router.h); connector and chatter are the
 * imd roles of servers/roles/ behind RPC (link.h).
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
#include "im/token.h"
#include "link.h"
#include "member.h"
#include "router.h"
#include "store_mux.h"
#include "tuning.h"

typedef struct node_config {
	char role[16];
	char name[IM_NODE_NAME_MAX + 1];
	char listen[IM_NODE_ADDR_MAX + 1];
	char store[512];
	char port_file[512];
	char secret[1025];
	char secret_file[512];
	char log_level[16];
	uint32_t slots;
	uint32_t expect;
	/* Membership and balance periods (0: the defaults, 250/250/250
	 * ms); tests shorten them to start a cluster quickly. */
	uint32_t heartbeat_ms;
	uint32_t refresh_ms;
	uint32_t balance_ms;
	/* Silence after which a node is dead (0: 1500 ms): the Routers'
	 * judgement (router.h) and every node's view of its peers. */
	uint32_t dead_after_ms;
	/* imd's Connector/Chatter tuning keys (servers/roles/tuning.h). */
	connector_opts cn;
	chatter_opts ch;
} node_config;

static void
usage(FILE *f)
{
	fprintf(f, "usage: imnode --role router|connector|chatter --name NAME "
		   "--listen HOST:PORT\n"
		   "              --store PATH_OR_CONNINFO [--slots N] "
		   "[--port-file FILE] [--config FILE]\n"
		   "              [--expect N] (connector, chatter: claim "
		   "slots once N nodes of the role are alive)\n"
		   "              [--secret S | --secret-file F] (connector: "
		   "token secret)\n"
		   "              [--log-level error|warn|info|debug]\n"
		   "              [--heartbeat-ms MS] [--refresh-ms MS] "
		   "[--balance-ms MS] (membership and\n"
		   "              slot balance periods, 250 each)\n"
		   "              [--dead-after-ms MS] (a node silent this "
		   "long is dead: Routers move\n"
		   "              its slots; 1500)\n"
		   "              [--KEY VALUE] Connector/Chatter tuning, the "
		   "keys of imd:\n");
	role_tuning_usage(f);
}

static int
set_key(node_config *c, const char *key_in, const char *val)
{
	char key[64];
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
		{"secret", c->secret, sizeof(c->secret)},
		{"secret-file", c->secret_file, sizeof(c->secret_file)},
		{"log-level", c->log_level, sizeof(c->log_level)},
	};
	size_t i;

	/* '-' and '_' alike, as in imd (port_file = ... in a file). */
	snprintf(key, sizeof(key), "%s", key_in);
	for (i = 0; key[i] != '\0'; i++) {
		key[i] = key[i] == '_' ? '-' : key[i];
	}

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
	if (strcmp(key, "expect") == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(val, &end, 10);
		if (errno != 0 || *end != '\0' || v == 0 || v > 4096) {
			fprintf(stderr, "imnode: bad expect '%s'\n", val);
			return -1;
		}
		c->expect = (uint32_t)v;
		return 0;
	}
	{
		static const char *const ms_keys[] = {
			"heartbeat-ms", "refresh-ms", "balance-ms",
			"dead-after-ms"};
		uint32_t *ms_dst[] = {&c->heartbeat_ms, &c->refresh_ms,
				      &c->balance_ms, &c->dead_after_ms};

		for (i = 0; i < 4; i++) {
			char *end;
			unsigned long v;

			if (strcmp(key, ms_keys[i]) != 0) {
				continue;
			}
			errno = 0;
			v = strtoul(val, &end, 10);
			if (errno != 0 || *end != '\0' || v < 10 ||
			    v > 60000) {
				fprintf(stderr, "imnode: bad %s '%s' (10 to "
						"60000 ms)\n",
					key, val);
				return -1;
			}
			*ms_dst[i] = (uint32_t)v;
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
	{
		char err[256];
		int rc = role_tuning_set(&c->cn, &c->ch, key, val, err,
					 sizeof(err));

		if (rc <= 0) {
			if (rc < 0) {
				fprintf(stderr, "imnode: %s\n", err);
			}
			return rc;
		}
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

/* The membership options of c (periods that are set override). */
static void
member_opts(cl_member_opts *mo, const node_config *c)
{
	if (c->heartbeat_ms != 0) {
		mo->heartbeat_ms = c->heartbeat_ms;
	}
	if (c->refresh_ms != 0) {
		mo->refresh_ms = c->refresh_ms;
	}
	if (c->dead_after_ms != 0) {
		mo->dead_after_ms = c->dead_after_ms;
	}
}

static int
run_router(struct ev_loop *loop, im_store *st, const node_config *c)
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
	if (c->heartbeat_ms != 0) {
		ropts.heartbeat_ms = c->heartbeat_ms;
	}
	if (c->dead_after_ms != 0) {
		ropts.dead_after_ms = c->dead_after_ms;
	}
	rc = router_create(&r, loop, st, map, host, port, &ropts);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: router on %s: %s (%s)\n", c->listen,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	/* Registered with the port actually bound (listen may say :0). */
	snprintf(addr, sizeof(addr), "%s:%u", host, router_port(r));
	member_opts(&mo, c);
	rc = cl_member_create(&m, loop, st, c->name, IM_NODE_ROUTER, addr,
			      &mo);
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

/* ---- Connector and Chatter ------------------------------------------- */


typedef struct rolenode {
	struct ev_loop *loop;
	im_store *st;
	im_shard_map *map;
	cl_member *m;
	cl_link *link;
	const node_config *c;
	im_node_role role;
	im_kind kind;
	char owner[IM_OWNER_MAX + 1];
	bool balanced; /* expect was reached once */
	uint64_t inc;  /* the incarnation rn.owner names */
	ev_timer tick;
	connector *cn;
	chatter *ch;
} rolenode;

static void
owner_of(char *out, size_t len, const cl_node *n)
{
	cl_owner_of(out, len, n->name, n->incarnation);
}

/* Is the slot's owner gone: unowned, an unknown or dead node, or an older
 * incarnation of a node? Only such slots are taken without a handover. */
static bool
owner_gone(const rolenode *rn, const char *owner)
{
	char name[IM_OWNER_MAX + 1], cur[IM_OWNER_MAX + 1];
	const char *slash = strchr(owner, '/');
	const cl_node *n;

	if (owner[0] == '\0' || slash == NULL) {
		return true;
	}
	snprintf(name, sizeof(name), "%.*s", (int)(slash - owner), owner);
	n = cl_member_find(rn->m, name);
	if (n == NULL || !n->alive) {
		return true;
	}
	owner_of(cur, sizeof(cur), n);
	return strcmp(cur, owner) != 0;
}

static const char *owner_address(void *payload, const char *owner);

/* owner is this node under an older incarnation ("NAME/..." but not us). */
static bool
earlier_self(const rolenode *rn, const char *owner)
{
	size_t len = strlen(rn->c->name);

	return strncmp(owner, rn->c->name, len) == 0 && owner[len] == '/' &&
	       strcmp(owner, rn->owner) != 0;
}

/*
 * Reload the slot map (a tick, or a Router's SlotMap after it moved a dead
 * node's slots). Slots gained need nothing more: a Chatter loads a group's
 * state on its first use under the new epoch (fresh seq segment), a
 * Connector serves a user whose slot the map gives it. Slots lost while we
 * could not heartbeat: a Connector sends those users to the new owner.
 */
static int
map_reload(rolenode *rn)
{
	uint32_t had = im_shard_count(rn->map, rn->kind, rn->owner);
	int rc = im_shard_load(rn->map, rn->st);

	if (rc != IM_OK) {
		LOG_W("slot map: %s (%s)", im_strerror(rc),
		      im_store_errmsg(rn->st));
		return rc;
	}
	if (rn->cn != NULL &&
	    im_shard_count(rn->map, rn->kind, rn->owner) < had) {
		/* Another Connector took user slots of ours (we could not
		 * heartbeat for a while): our users' deliveries go there
		 * now, so send them there. */
		uint32_t shed = connector_shed_moved(rn->cn);

		LOG_W("%s lost user slots (now %u): %u connections sent to "
		      "the new owners", rn->owner,
		      im_shard_count(rn->map, rn->kind, rn->owner), shed);
	}
	return IM_OK;
}

/*
 * Claim this node's fair share of the slots of its kind, among the live
 * nodes of its role, once `expect` of them are alive. Slots still held by
 * a live node are left to it: moving them needs a handover.
 */
static void
balance(rolenode *rn)
{
	static char owners[256][IM_OWNER_MAX + 1];
	const char *nodes[256];
	im_shard_move moves[1024];
	size_t i, n = 0, nm = 0;
	uint32_t claimed = 0, handed = 0;
	bool routers = cl_link_routers_up(rn->link) > 0;
	int rc = IM_OK;

	for (i = 0; i < cl_member_count(rn->m) && n < 256; i++) {
		const cl_node *x = cl_member_node(rn->m, i);

		/* Fresh now, not only at the view's last reload: a node a
		 * Router just judged dead must not get slots handed over. */
		if (x->role == rn->role && cl_member_fresh(rn->m, x)) {
			owner_of(owners[n], sizeof(owners[n]), x);
			nodes[n] = owners[n];
			n++;
		}
	}
	/*
	 * `expect` only holds back the first claim (so a starting cluster
	 * spreads evenly); after that a node that lost peers must go on
	 * balancing, or the dead ones' slots would never be taken over.
	 */
	if (!rn->balanced && n < rn->c->expect) {
		return;
	}
	rn->balanced = true;
	if (map_reload(rn) != IM_OK) {
		return;
	}
	if (n == 0) {
		/* Not even we look fresh (we were silent: our heartbeat is
		 * old until the next one lands): nothing to plan over yet. */
		return;
	}
	rc = im_shard_plan(rn->map, rn->kind, nodes, n, moves, 1024, &nm);
	if (rc != IM_OK && rc != IM_EFULL) {
		LOG_W("plan: %s", im_strerror(rc));
		return;
	}
	for (i = 0; i < nm && i < 1024; i++) {
		im_shard_entry e;

		if (im_shard_get_slot(rn->map, rn->kind, moves[i].slot, &e) !=
		    IM_OK) {
			continue;
		}
		if (strcmp(moves[i].to, rn->owner) == 0) {
			/* A live owner hands its slots over itself. */
			if (!owner_gone(rn, e.owner)) {
				continue;
			}
			/* A dead owner's slots are the Routers' to move
			 * (router.h: they judge, plan and notify); we take
			 * them ourselves only as the fallback when no Router
			 * is up. Unowned slots (a new cluster) and those of
			 * an earlier life of ours (we know it is over) we
			 * take at once. */
			if (e.owner[0] != '\0' && routers &&
			    !earlier_self(rn, e.owner)) {
				continue;
			}
			rc = im_shard_claim(rn->map, rn->st, rn->kind,
					    moves[i].slot, rn->owner, NULL);
			claimed += rc == IM_OK;
		} else if (rn->ch != NULL && strcmp(e.owner, rn->owner) == 0) {
			/*
			 * Handover of a group slot to a Chatter that joined:
			 * commit what is pending (acked only once stored),
			 * then move the slot to it by CAS. Anything of ours
			 * for the slot after that is fenced (epoch + 1); the
			 * new owner starts from a fresh seq segment.
			 */
			if (handed == 0) {
				chatter_flush(rn->ch);
			}
			rc = im_shard_claim(rn->map, rn->st, rn->kind,
					    moves[i].slot, moves[i].to, NULL);
			if (rc == IM_OK) {
				chatter_drop_slot(rn->ch, moves[i].slot);
				handed++;
			}
		} else if (rn->cn != NULL && strcmp(e.owner, rn->owner) == 0) {
			/*
			 * Handover of a user slot to a Connector that joined:
			 * write what is queued, move the slot by CAS (our
			 * user-queue appends for it are fenced from then on),
			 * then send the slot's clients a Redirect to the new
			 * owner and drop their sessions; they resume there
			 * from the store, which holds every acked message.
			 */
			if (handed == 0) {
				connector_flush(rn->cn);
			}
			rc = im_shard_claim(rn->map, rn->st, rn->kind,
					    moves[i].slot, moves[i].to, NULL);
			if (rc == IM_OK) {
				connector_drop_slot(rn->cn, moves[i].slot,
						    owner_address(rn,
								  moves[i].to));
				handed++;
			}
		} else {
			continue;
		}
		if (rc != IM_OK && rc != IM_ECONFLICT) {
			LOG_W("slot %u: %s (%s)", moves[i].slot,
			      im_strerror(rc), im_store_errmsg(rn->st));
			break;
		}
	}
	if (handed > 0) {
		LOG_I("%s handed %u %s slots over (now %u)", rn->owner,
		      handed, rn->kind == IM_KIND_USER ? "user" : "group",
		      im_shard_count(rn->map, rn->kind, rn->owner));
	}
	if (claimed > 0 || handed > 0) {
		cl_link_notify_slots(rn->link);
	}
	if (claimed > 0) {
		LOG_I("%s claimed %u %s slots (now %u)", rn->owner, claimed,
		      rn->kind == IM_KIND_USER ? "user" : "group",
		      im_shard_count(rn->map, rn->kind, rn->owner));
	}
}

/*
 * A Chatter silent past the heartbeat timeout (paused, cut off) came back
 * as a new incarnation (cl_member re-registered it): whatever it held may
 * have been taken over, so it forgets all its group state, takes the new
 * owner name (its old slots are now "an older incarnation": fenced for
 * its writes, free to claim) and tells the Routers who it is now. Its
 * writes under the old epochs fail IM_ESTALE and are answered
 * ERR_UNAVAILABLE, never acked.
 */
static void
reincarnate(rolenode *rn)
{
	char old[IM_OWNER_MAX + 1];
	uint32_t kept = 0, shed = 0;

	snprintf(old, sizeof(old), "%s", rn->owner);
	rn->inc = cl_member_incarnation(rn->m);
	if (rn->ch != NULL) {
		chatter_flush(rn->ch); /* fenced if the slots moved */
		chatter_drop_all(rn->ch);
	}
	if (rn->cn != NULL) {
		/* Whatever is queued goes out first (user-queue appends
		 * are fenced where the slot moved). */
		connector_flush(rn->cn);
	}
	/* the roles hold rn->owner by pointer: they are renamed too */
	snprintf(rn->owner, sizeof(rn->owner), "%.40s/%08llx", rn->c->name,
		 (unsigned long long)rn->inc);
	cl_link_set_owner(rn->link, rn->owner);
	(void)im_shard_load(rn->map, rn->st);
	if (rn->cn != NULL) {
		/*
		 * A Connector takes back at once, by CAS from its old name,
		 * the user slots nobody moved while it was silent: their
		 * users stay served here without a move (no deliveries went
		 * elsewhere meanwhile: the slot stayed ours). Those a Router
		 * moved are the new owners': their clients get a Redirect
		 * there and their sessions here are dropped. The balance
		 * evens the rest out by handover as usual.
		 */
		uint32_t slot, nslots = im_shard_nslots(rn->map);

		for (slot = 0; slot < nslots; slot++) {
			im_shard_entry e;

			if (im_shard_get_slot(rn->map, IM_KIND_USER, slot, &e) ==
				    IM_OK &&
			    strcmp(e.owner, old) == 0 &&
			    im_shard_claim(rn->map, rn->st, IM_KIND_USER, slot,
					   rn->owner, NULL) == IM_OK) {
				kept++;
			}
		}
		shed = connector_renamed(rn->cn);
		cl_link_notify_slots(rn->link);
	}
	LOG_W("%s was silent past the heartbeat timeout: dropped its state, "
	      "now %s (kept %u user slots, %u connections sent away)",
	      old, rn->owner, kept, shed);
}

static void
on_member_change(cl_member *m, void *payload)
{
	rolenode *rn = payload;

	if (rn->link != NULL && rn->inc != 0 &&
	    cl_member_incarnation(m) != rn->inc) {
		reincarnate(rn);
	}
	cl_link_sync(rn->link);
	/* A node of our role came or went: take (or hand over) the share
	 * now rather than on the next tick, a second later at worst. */
	balance(rn);
}

static void
on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	rolenode *rn = w->data;

	(void)loop;
	(void)revents;
	/* After a pause this timer may fire before the membership's: let
	 * it heartbeat first, so a node silent past the timeout comes back
	 * as a new incarnation before it balances under its old name. */
	(void)cl_member_tick(rn->m);
	/* Keep the map fresh (others' claims) and our share taken. */
	balance(rn);
}

/* The client address of the Connector owning a user, for Redirect. */
static const char *
owner_address(void *payload, const char *owner)
{
	rolenode *rn = payload;
	char name[IM_OWNER_MAX + 1];
	const cl_node *n;

	snprintf(name, sizeof(name), "%s", owner);
	name[strcspn(name, "/")] = '\0';
	n = cl_member_find(rn->m, name);
	if (n == NULL || !n->alive || n->role != IM_NODE_CONNECTOR ||
	    owner_gone(rn, owner)) {
		return NULL;
	}
	return n->address;
}

/*
 * A Router moved slots (SlotMap): reload now, not at the next tick. If we
 * gained some, tell every Router, as after a claim of our own: the other
 * Routers then stop forwarding to the dead owner now (a paused one still
 * has its connections up) instead of at their next map refresh.
 */
static void
reload_map(void *payload)
{
	rolenode *rn = payload;
	uint32_t had = im_shard_count(rn->map, rn->kind, rn->owner);

	if (map_reload(rn) == IM_OK &&
	    im_shard_count(rn->map, rn->kind, rn->owner) > had) {
		cl_link_notify_slots(rn->link);
	}
}

static int
read_secret(node_config *c)
{
	FILE *f;
	size_t n;

	if (c->secret_file[0] == '\0') {
		return 0;
	}
	if ((f = fopen(c->secret_file, "r")) == NULL) {
		fprintf(stderr, "imnode: %s: %s\n", c->secret_file,
			strerror(errno));
		return -1;
	}
	if (fgets(c->secret, sizeof(c->secret), f) == NULL) {
		c->secret[0] = '\0';
	}
	fclose(f);
	n = strlen(c->secret);
	while (n > 0 &&
	       (c->secret[n - 1] == '\n' || c->secret[n - 1] == '\r')) {
		c->secret[--n] = '\0';
	}
	return 0;
}

static int
run_role(struct ev_loop *loop, im_store *st, node_config *c)
{
	im_shard_opts so = IM_SHARD_OPTS_INIT;
	cl_member_opts mo = CL_MEMBER_OPTS_INIT;
	rpc_opts ro = RPC_OPTS_INIT;
	rolenode rn;
	char host[64];
	uint16_t port = 0;
	const char *addr;
	int rc, ret = 1;

	if (strlen(c->name) > 40) {
		/* Room for "/INCARNATION" in a slot owner string. */
		fprintf(stderr, "imnode: names of connectors and chatters "
				"are at most 40 bytes\n");
		return 2;
	}
	memset(&rn, 0, sizeof(rn));
	rn.loop = loop;
	rn.st = st;
	rn.c = c;
	if (strcmp(c->role, "connector") == 0) {
		rn.role = IM_NODE_CONNECTOR;
		rn.kind = IM_KIND_USER;
		if (!cl_split_address(c->listen, host, sizeof(host), &port)) {
			fprintf(stderr, "imnode: a connector needs listen "
					"HOST:PORT with a port\n");
			return 2;
		}
		if (read_secret(c) != 0 ||
		    strlen(c->secret) < IM_TOKEN_SECRET_MIN) {
			fprintf(stderr, "imnode: a connector needs a token "
					"secret of %d bytes or more\n",
				IM_TOKEN_SECRET_MIN);
			return 2;
		}
		addr = c->listen;
	} else {
		rn.role = IM_NODE_CHATTER;
		rn.kind = IM_KIND_GROUP;
		addr = "-";
	}
	so.nslots = c->slots;
	if ((rc = im_shard_create(&rn.map, &so)) != IM_OK ||
	    (rc = im_shard_load(rn.map, st)) != IM_OK) {
		fprintf(stderr, "imnode: slot map: %s\n", im_strerror(rc));
		goto out;
	}
	member_opts(&mo, c);
	mo.on_change = on_member_change;
	mo.payload = &rn;
	/* Silent past the timeout, a node comes back as a new incarnation
	 * (reincarnate()). A Connector's routes keep its first name's id
	 * (link.h), so its clients' requests in flight still come back. */
	mo.reincarnate = true;
	rc = cl_member_create(&rn.m, loop, st, c->name, rn.role, addr, &mo);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: register %s: %s (%s)\n", c->name,
			im_strerror(rc), im_store_errmsg(st));
		goto out;
	}
	/* Slots are held by this incarnation: a restarted node is a new
	 * owner, and its previous life's slots are visibly someone else's. */
	snprintf(rn.owner, sizeof(rn.owner), "%.40s/%08llx", c->name,
		 (unsigned long long)cl_member_incarnation(rn.m));
	rn.inc = cl_member_incarnation(rn.m);
	ro.backoff_min_ms = 50;
	ro.backoff_max_ms = 1000;
	ro.seed = (uint64_t)getpid();
	rc = cl_link_create(&rn.link, loop, rn.m, rn.owner,
			    rn.role == IM_NODE_CONNECTOR
				    ? imrpc_Role_ROLE_CONNECTOR
				    : imrpc_Role_ROLE_CHATTER,
			    &ro);
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: link: %s\n", im_strerror(rc));
		goto out;
	}
	cl_link_on_slot_map(rn.link, reload_map, &rn);
	if (rn.role == IM_NODE_CONNECTOR) {
		connector_opts co = c->cn;

		rc = connector_create(&rn.cn, loop, st, rn.map, rn.owner,
				      router_node_id(rn.owner),
				      cl_link_router(rn.link), c->secret,
				      strlen(c->secret), &co);
		if (rc == IM_OK) {
			cl_link_set_connector(rn.link, rn.cn);
			connector_set_redirect(rn.cn, owner_address, &rn);
			rc = connector_listen(rn.cn, host, port, NULL);
		}
	} else {
		chatter_opts cho = c->ch;

		cho.seed = (uint64_t)getpid() << 32 ^ role_now_ms();
		rc = chatter_create(&rn.ch, loop, st, rn.map, rn.owner,
				    cl_link_router(rn.link), &cho);
		if (rc == IM_OK) {
			cl_link_set_chatter(rn.link, rn.ch);
		}
	}
	if (rc != IM_OK) {
		fprintf(stderr, "imnode: %s role: %s\n", c->role,
			im_strerror(rc));
		goto out;
	}
	balance(&rn);
	{
		/* Fast enough that failover finishes well within 3 s. */
		double period = c->balance_ms != 0 ? c->balance_ms / 1000.0
						   : 0.25;

		ev_timer_init(&rn.tick, on_tick, period, period);
	}
	rn.tick.data = &rn;
	ev_timer_start(loop, &rn.tick);
	if (c->port_file[0] != '\0' && write_port_file(c->port_file, port) !=
						0) {
		fprintf(stderr, "imnode: %s: %s\n", c->port_file,
			strerror(errno));
		goto out;
	}
	fprintf(stderr, "imnode: %s %s (%s) up\n", c->role, c->name,
		rn.owner);
	ev_run(loop, 0);
	ret = 0;
out:
	ev_timer_stop(loop, &rn.tick);
	if (rn.ch != NULL) {
		chatter_stats cs;

		chatter_flush(rn.ch);
		/* The same stats line as imd's (tests read it). */
		chatter_get_stats(rn.ch, &cs);
		LOG_I("chatter: %llu messages in %llu commits, %llu "
		      "duplicates, %llu fenced commits, %u hot groups",
		      (unsigned long long)cs.msgs,
		      (unsigned long long)cs.commits,
		      (unsigned long long)cs.dups, (unsigned long long)cs.stale,
		      cs.groups);
	}
	if (rn.cn != NULL) {
		connector_stop_accepting(rn.cn);
		connector_flush(rn.cn);
	}
	/* The link first: it refers to the roles, not the other way. */
	cl_link_destroy(rn.link);
	connector_destroy(rn.cn);
	chatter_destroy(rn.ch);
	cl_member_destroy(rn.m);
	im_shard_destroy(rn.map);
	return ret;
}

/*
 * A Chatter commits on a thread of its own (commit_thread): the thread and
 * the loop (heartbeats, the slot map, the Chatter's loads) share the one
 * store connection through two handles of a store_mux.
 */
static int
run_role_mux(struct ev_loop *loop, im_store *st, node_config *c)
{
	store_mux *mux = NULL;
	im_store *lst = NULL, *cst = NULL;
	int ret = 1;

	if (strcmp(c->role, "chatter") != 0 || !c->ch.commit_thread) {
		return run_role(loop, st, c);
	}
	if (store_mux_create(&mux, st) != IM_OK ||
	    store_mux_handle(mux, &lst) != IM_OK ||
	    store_mux_handle(mux, &cst) != IM_OK) {
		fprintf(stderr, "imnode: store handles: out of memory\n");
	} else {
		c->ch.commit_store = cst;
		ret = run_role(loop, lst, c);
	}
	im_store_close(cst);
	im_store_close(lst);
	store_mux_destroy(mux);
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
	c.expect = 1;
	{
		connector_opts co = CONNECTOR_OPTS_INIT;
		chatter_opts cho = CHATTER_OPTS_INIT;

		c.cn = co;
		c.ch = cho;
	}
	if (parse_args(&c, argc, argv) != 0) {
		return 2;
	}
	if (strcmp(c.role, "router") != 0 &&
	    strcmp(c.role, "connector") != 0 &&
	    strcmp(c.role, "chatter") != 0) {
		fprintf(stderr, "imnode: role '%s' is not available (router, "
				"connector or chatter)\n",
			c.role);
		return 2;
	}
	if (c.log_level[0] != '\0') {
		int level = role_log_level_parse(c.log_level);

		if (level < 0) {
			fprintf(stderr, "imnode: bad log_level '%s'\n",
				c.log_level);
			return 2;
		}
		role_log_set_level(level);
	}
	signal(SIGPIPE, SIG_IGN);
	/* Nodes of a cluster start together: a store busy with the others'
	 * migrations and registrations is retried for a while (bounded). */
	for (int i = 0;; i++) {
		int rc = open_store(&st, c.store);

		if (rc == IM_OK) {
			break;
		}
		if (rc != IM_EUNAVAIL || i >= 50) {
			return 1;
		}
		usleep(100 * 1000);
	}
	ev_signal_init(&sint, on_signal, SIGINT);
	ev_signal_init(&sterm, on_signal, SIGTERM);
	ev_signal_start(loop, &sint);
	ev_signal_start(loop, &sterm);
	if (strcmp(c.role, "router") != 0) {
		ret = run_role_mux(loop, st, &c);
	} else {
		ret = run_router(loop, st, &c);
	}
	im_store_close(st);
	return ret;
}
