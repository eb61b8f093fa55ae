/*
 * imctl: see imctl.h. A one-shot reader of the store: it loads the nodes
 * and the slot rows once, then prints. Bounded: at most NODES_MAX nodes and
 * OWNERS_MAX distinct owners per kind are shown (the rest are counted).
 */
#include "imctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "im/shard.h"
#include "im/store.h"

#define NODES_MAX 4096
#define OWNERS_MAX 4096

typedef struct node {
	char name[IM_NODE_NAME_MAX + 1];
	char address[IM_NODE_ADDR_MAX + 1];
	im_node_role role;
	uint64_t registered_ms;
	uint64_t heartbeat_ms;
	uint64_t incarnation;
} node;

typedef struct owner {
	char name[IM_OWNER_MAX + 1];
	uint32_t slots;
	im_epoch min_epoch, max_epoch;
} owner;

typedef struct kind_view {
	owner *owners;
	uint32_t nowners;
	uint32_t owners_dropped; /* slots of owners past OWNERS_MAX */
	uint32_t claimed;
	im_epoch max_epoch;
} kind_view;

typedef struct view {
	node *nodes;
	uint32_t nnodes;
	uint32_t nodes_dropped;
	kind_view kinds[IM_KIND_COUNT];
	uint64_t now_ms;
	uint64_t dead_after_ms;
	uint32_t nslots;
} view;

static const char *
role_name(im_node_role r)
{
	switch (r) {
	case IM_NODE_CONNECTOR:
		return "connector";
	case IM_NODE_ROUTER:
		return "router";
	case IM_NODE_CHATTER:
		return "chatter";
	}
	return "?";
}

static const char *
kind_name(int k)
{
	return k == IM_KIND_USER ? "user" : "group";
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int
on_node(const im_node_row *row, void *payload)
{
	view *v = payload;
	node *n;

	if (v->nnodes >= NODES_MAX) {
		v->nodes_dropped++;
		return 0;
	}
	n = &v->nodes[v->nnodes++];
	snprintf(n->name, sizeof(n->name), "%s", row->name);
	snprintf(n->address, sizeof(n->address), "%s", row->address);
	n->role = row->role;
	n->registered_ms = row->registered_ms;
	n->heartbeat_ms = row->heartbeat_ms;
	n->incarnation = row->incarnation;
	return 0;
}

static int
on_slot(const im_slot_row *row, void *payload)
{
	kind_view *kv = payload;
	uint32_t i;

	kv->claimed++;
	if (row->epoch > kv->max_epoch) {
		kv->max_epoch = row->epoch;
	}
	for (i = 0; i < kv->nowners; i++) {
		if (strcmp(kv->owners[i].name, row->owner) == 0) {
			break;
		}
	}
	if (i == kv->nowners) {
		if (kv->nowners >= OWNERS_MAX) {
			kv->owners_dropped++;
			return 0;
		}
		snprintf(kv->owners[i].name, sizeof(kv->owners[i].name), "%s",
			 row->owner);
		kv->owners[i].min_epoch = row->epoch;
		kv->nowners++;
	}
	kv->owners[i].slots++;
	if (row->epoch < kv->owners[i].min_epoch) {
		kv->owners[i].min_epoch = row->epoch;
	}
	if (row->epoch > kv->owners[i].max_epoch) {
		kv->owners[i].max_epoch = row->epoch;
	}
	return 0;
}

static const node *
find_node(const view *v, const char *name)
{
	uint32_t i;

	for (i = 0; i < v->nnodes; i++) {
		if (strcmp(v->nodes[i].name, name) == 0) {
			return &v->nodes[i];
		}
	}
	return NULL;
}

static uint64_t
age_ms(const view *v, const node *n)
{
	return v->now_ms > n->heartbeat_ms ? v->now_ms - n->heartbeat_ms : 0;
}

static bool
alive(const view *v, const node *n)
{
	return age_ms(v, n) <= v->dead_after_ms;
}

static void
print_nodes(const view *v, FILE *out)
{
	uint32_t i;

	fprintf(out, "%-24s %-9s %-22s %5s %11s  %s\n", "NODE", "ROLE",
		"ADDRESS", "INC", "HEARTBEAT", "STATE");
	for (i = 0; i < v->nnodes; i++) {
		const node *n = &v->nodes[i];
		char age[32];

		snprintf(age, sizeof(age), "%.1fs ago",
			 (double)age_ms(v, n) / 1000.0);
		fprintf(out, "%-24s %-9s %-22s %5" PRIu64 " %11s  %s\n",
			n->name, role_name(n->role), n->address,
			n->incarnation, age, alive(v, n) ? "alive" : "dead");
	}
	if (v->nodes_dropped > 0) {
		fprintf(out, "... and %u more nodes\n", v->nodes_dropped);
	}
	if (v->nnodes == 0) {
		fprintf(out, "(no node registered)\n");
	}
}

/*
 * A slot owner is a node name, or "name/INCARNATION" (hex) when the node
 * records which incarnation of it claimed the slot (as the cluster roles
 * do, so that slots of a restarted node's previous life show up here).
 */
static const char *
owner_state(const view *v, const char *who)
{
	char name[IM_OWNER_MAX + 1];
	const char *slash = strchr(who, '/');
	unsigned long long inc = 0;
	bool has_inc = false;
	const node *n;

	snprintf(name, sizeof(name), "%s", who);
	if (slash != NULL) {
		char *end;

		name[slash - who] = '\0';
		errno = 0;
		inc = strtoull(slash + 1, &end, 16);
		has_inc = errno == 0 && *end == '\0' && slash[1] != '\0';
	}
	n = find_node(v, name);
	if (n == NULL) {
		return "not registered";
	}
	if (has_inc && inc != n->incarnation) {
		return "old incarnation";
	}
	return alive(v, n) ? "alive" : "dead";
}

static void
print_slots(const view *v, FILE *out)
{
	int k;
	uint32_t i;

	fprintf(out, "%-6s %-24s %6s %-13s %s\n", "KIND", "OWNER", "SLOTS",
		"EPOCHS", "STATE");
	for (k = 0; k < IM_KIND_COUNT; k++) {
		const kind_view *kv = &v->kinds[k];

		for (i = 0; i < kv->nowners; i++) {
			const owner *o = &kv->owners[i];
			char ep[48];

			snprintf(ep, sizeof(ep), "%" PRIu64 "..%" PRIu64,
				 o->min_epoch, o->max_epoch);
			fprintf(out, "%-6s %-24s %6u %-13s %s\n", kind_name(k),
				o->name, o->slots, ep, owner_state(v, o->name));
		}
		if (kv->owners_dropped > 0) {
			fprintf(out, "%-6s %-24s %6u\n", kind_name(k),
				"(more owners)", kv->owners_dropped);
		}
		if (kv->claimed < v->nslots) {
			fprintf(out, "%-6s %-24s %6u\n", kind_name(k),
				"(unowned)", v->nslots - kv->claimed);
		}
	}
}

static void
print_status(const view *v, const char *backend, uint32_t schema, FILE *out)
{
	uint32_t total[4] = {0}, up[4] = {0}, nalive = 0, i;
	int k;

	for (i = 0; i < v->nnodes; i++) {
		const node *n = &v->nodes[i];
		uint32_t r = (uint32_t)n->role <= 3 ? (uint32_t)n->role : 0;

		total[r]++;
		if (alive(v, n)) {
			up[r]++;
			nalive++;
		}
	}
	fprintf(out, "store: %s (schema %u)\n", backend, schema);
	fprintf(out,
		"nodes: %u registered, %u alive (connector %u/%u, "
		"router %u/%u, chatter %u/%u)\n",
		v->nnodes, nalive, up[1], total[1], up[2], total[2], up[3],
		total[3]);
	for (k = 0; k < IM_KIND_COUNT; k++) {
		const kind_view *kv = &v->kinds[k];

		fprintf(out,
			"%s slots: %u/%u owned by %u nodes, max epoch %" PRIu64
			"\n",
			kind_name(k), kv->claimed, v->nslots, kv->nowners,
			kv->max_epoch);
	}
	for (k = 0; k < IM_KIND_COUNT; k++) {
		const kind_view *kv = &v->kinds[k];

		for (i = 0; i < kv->nowners; i++) {
			const owner *o = &kv->owners[i];
			const char *st = owner_state(v, o->name);

			if (strcmp(st, "alive") != 0) {
				fprintf(out,
					"warning: %s holds %u %s slots but is "
					"%s\n",
					o->name, o->slots, kind_name(k), st);
			}
		}
	}
	fprintf(out, "\n");
	print_nodes(v, out);
	fprintf(out, "\n");
	print_slots(v, out);
}

typedef struct slot_pick {
	uint32_t slot;
	bool found;
	im_epoch epoch;
	char owner[IM_OWNER_MAX + 1];
} slot_pick;

static int
on_slot_pick(const im_slot_row *row, void *payload)
{
	slot_pick *p = payload;

	if (row->slot == p->slot) {
		p->found = true;
		p->epoch = row->epoch;
		snprintf(p->owner, sizeof(p->owner), "%s", row->owner);
		return 1;
	}
	return 0;
}

/* Where a user or a group is served: its slot, the owner and the owner's
 * address (a user's Connector: where its clients connect; a Chatter's RPC
 * address). The address is the last field, for scripts. */
static int
print_owner_of(const view *v, im_store *st, im_kind kind, uint64_t id,
	       FILE *out, FILE *err)
{
	slot_pick p;
	char name[IM_OWNER_MAX + 1];
	const node *n;
	int rc;

	memset(&p, 0, sizeof(p));
	p.slot = im_shard_slot_of(id, v->nslots);
	rc = im_store_slot_load(st, kind, on_slot_pick, &p);
	if (rc != IM_OK && rc != 1) {
		fprintf(err, "imctl: reading %s slots: %s\n", kind_name(kind),
			im_store_errmsg(st));
		return rc;
	}
	if (!p.found) {
		fprintf(out, "%s %llu: slot %u, unowned\n", kind_name(kind),
			(unsigned long long)id, p.slot);
		return IM_OK;
	}
	snprintf(name, sizeof(name), "%s", p.owner);
	name[strcspn(name, "/")] = '\0';
	n = find_node(v, name);
	fprintf(out, "%s %llu: slot %u, epoch %llu, owner %s (%s), %s\n",
		kind_name(kind), (unsigned long long)id, p.slot,
		(unsigned long long)p.epoch, p.owner, owner_state(v, p.owner),
		n != NULL ? n->address : "-");
	return IM_OK;
}

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: imctl --store CONNINFO_OR_PATH [options] "
		"nodes|slots|status|user UID|group GID\n"
		"  --store S          sqlite file (must exist) or PostgreSQL "
		"conninfo\n"
		"  --slots N          slots per kind (default %u)\n"
		"  --dead-after MS    heartbeat age that counts as dead "
		"(default %u, as the Routers)\n"
		"  --now-ms MS        judge ages at this time (default: now)\n",
		1024u, (unsigned)IM_NODE_DEAD_AFTER_MS);
}

static bool
is_conninfo(const char *s)
{
	return strncmp(s, "postgres://", 11) == 0 ||
	       strncmp(s, "postgresql://", 13) == 0 || strchr(s, '=') != NULL;
}

static int
open_store(im_store **st, const char *spec, FILE *err)
{
	char msg[256] = "";
	int rc;

	if (is_conninfo(spec)) {
		rc = im_store_pg_open(st, spec, NULL, msg, sizeof(msg));
	} else if (access(spec, F_OK) != 0) {
		/* Opening would create an empty store: never from imctl. */
		snprintf(msg, sizeof(msg), "no such file");
		rc = IM_ENOTFOUND;
	} else {
		rc = im_store_sqlite_open(st, spec, NULL, msg, sizeof(msg));
	}
	if (rc != IM_OK) {
		fprintf(err, "imctl: cannot open store %s: %s (%s)\n", spec,
			msg, im_strerror(rc));
	}
	return rc;
}

static bool
parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (s == NULL || *s == '\0' || *s == '-') {
		return false;
	}
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno == 0 && *end == '\0';
}

static int
load(view *v, im_store *st, FILE *err)
{
	int rc, k;

	rc = im_store_node_list(st, on_node, v);
	if (rc != IM_OK) {
		fprintf(err, "imctl: reading nodes: %s (%s)\n",
			im_store_errmsg(st), im_strerror(rc));
		return rc;
	}
	for (k = 0; k < IM_KIND_COUNT; k++) {
		rc = im_store_slot_load(st, (im_kind)k, on_slot, &v->kinds[k]);
		if (rc != IM_OK) {
			fprintf(err, "imctl: reading %s slots: %s (%s)\n",
				kind_name(k), im_store_errmsg(st),
				im_strerror(rc));
			return rc;
		}
	}
	return IM_OK;
}

int
imctl_main(int argc, char **argv, FILE *out, FILE *err)
{
	static const struct option longopts[] = {
		{"store", required_argument, NULL, 's'},
		{"slots", required_argument, NULL, 'n'},
		{"dead-after", required_argument, NULL, 'd'},
		{"now-ms", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *spec = NULL, *cmd;
	view v;
	im_store *st = NULL;
	uint64_t num, id = 0;
	uint32_t schema = 0;
	int c, k, ret = 1;

	memset(&v, 0, sizeof(v));
	v.nslots = 1024;
	v.dead_after_ms = IM_NODE_DEAD_AFTER_MS;
	v.now_ms = wall_ms();
	optind = 0; /* GNU: rescan from the start (imctl_main may rerun) */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			spec = optarg;
			break;
		case 'n':
			if (!parse_u64(optarg, &num) || num == 0 ||
			    num > 65536) {
				fprintf(err, "imctl: bad --slots\n");
				return 2;
			}
			v.nslots = (uint32_t)num;
			break;
		case 'd':
			if (!parse_u64(optarg, &v.dead_after_ms)) {
				fprintf(err, "imctl: bad --dead-after\n");
				return 2;
			}
			break;
		case 't':
			if (!parse_u64(optarg, &v.now_ms)) {
				fprintf(err, "imctl: bad --now-ms\n");
				return 2;
			}
			break;
		case 'h':
			usage(out);
			return 0;
		default:
			usage(err);
			return 2;
		}
	}
	if (spec == NULL || optind >= argc) {
		usage(err);
		return 2;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "user") == 0 || strcmp(cmd, "group") == 0) {
		if (optind != argc - 2 || !parse_u64(argv[optind + 1], &id) ||
		    id == 0) {
			fprintf(err, "imctl: %s needs one nonzero id\n", cmd);
			return 2;
		}
	} else if (optind != argc - 1) {
		usage(err);
		return 2;
	} else if (strcmp(cmd, "nodes") != 0 && strcmp(cmd, "slots") != 0 &&
		   strcmp(cmd, "status") != 0) {
		fprintf(err, "imctl: unknown command '%s'\n", cmd);
		usage(err);
		return 2;
	}
	v.nodes = calloc(NODES_MAX, sizeof(*v.nodes));
	for (k = 0; k < IM_KIND_COUNT; k++) {
		v.kinds[k].owners = calloc(OWNERS_MAX, sizeof(owner));
	}
	if (v.nodes == NULL || v.kinds[0].owners == NULL ||
	    v.kinds[1].owners == NULL) {
		fprintf(err, "imctl: out of memory\n");
		goto out;
	}
	if (open_store(&st, spec, err) != IM_OK) {
		goto out;
	}
	if (im_store_migrate(st, &schema) != IM_OK || load(&v, st, err) !=
							      IM_OK) {
		goto out;
	}
	if (strcmp(cmd, "user") == 0 || strcmp(cmd, "group") == 0) {
		if (print_owner_of(&v, st,
				   cmd[0] == 'u' ? IM_KIND_USER : IM_KIND_GROUP,
				   id, out, err) != IM_OK) {
			goto out;
		}
	} else if (strcmp(cmd, "nodes") == 0) {
		print_nodes(&v, out);
	} else if (strcmp(cmd, "slots") == 0) {
		print_slots(&v, out);
	} else {
		print_status(&v, im_store_name(st), schema, out);
	}
	ret = 0;
out:
	im_store_close(st);
	free(v.nodes);
	for (k = 0; k < IM_KIND_COUNT; k++) {
		free(v.kinds[k].owners);
	}
	return ret;
}
