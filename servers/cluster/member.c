/*
 * Cluster membership and peer connections: see member.h.
 */
#include "member.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cl_member {
	struct ev_loop *loop;
	im_store *st;
	cl_member_opts opts;
	char name[IM_NODE_NAME_MAX + 1];
	char address[IM_NODE_ADDR_MAX + 1];
	im_node_role role;
	uint64_t incarnation;
	uint64_t last_beat; /* our last heartbeat (or register) stored */
	uint64_t next_hb, next_refresh;
	bool muted; /* cl_member_mute(): no heartbeats */
	cl_node *nodes, *scratch;
	size_t n, nscratch;
	ev_timer timer;
	uint64_t errors;
	char errmsg[320];
};

typedef struct peer {
	char name[IM_NODE_NAME_MAX + 1];
	char address[IM_NODE_ADDR_MAX + 1];
	rpc_conn *conn;
	bool seen;
} peer;

struct cl_peers {
	struct ev_loop *loop;
	cl_member *m;
	im_node_role role;
	rpc_opts opts;
	peer *peers; /* sorted by name */
	size_t n, cap;
};

static uint64_t
wall_ms(void *clock)
{
	(void)clock;
	return (uint64_t)(ev_time() * 1000.0);
}

static uint64_t
now_of(const cl_member *m)
{
	return m->opts.now_ms(m->opts.clock);
}

static void
set_err(cl_member *m, const char *what, int rc)
{
	m->errors++;
	snprintf(m->errmsg, sizeof(m->errmsg), "%s: %s (%s)", what,
		 im_store_errmsg(m->st), im_strerror(rc));
}

static int
do_register(cl_member *m, uint64_t now)
{
	int rc = im_store_node_register(m->st, m->name, m->role, m->address,
					now, &m->incarnation);

	if (rc != IM_OK) {
		set_err(m, "node_register", rc);
	} else {
		m->last_beat = now;
	}
	return rc;
}

static int
collect(const im_node_row *row, void *payload)
{
	cl_member *m = payload;
	cl_node *n;

	if (m->nscratch >= m->opts.max_nodes) {
		return 0;
	}
	n = &m->scratch[m->nscratch++];
	snprintf(n->name, sizeof(n->name), "%s", row->name);
	snprintf(n->address, sizeof(n->address), "%s", row->address);
	n->role = row->role;
	n->heartbeat_ms = row->heartbeat_ms;
	n->incarnation = row->incarnation;
	return 0;
}

static bool
node_same(const cl_node *a, const cl_node *b)
{
	return a->role == b->role && a->alive == b->alive &&
	       a->incarnation == b->incarnation &&
	       strcmp(a->name, b->name) == 0 &&
	       strcmp(a->address, b->address) == 0;
}

/* Reload the view; *changed_out when anything a peer set cares about
 * moved (heartbeat times alone do not count). */
static int
reload(cl_member *m, uint64_t now, bool *changed_out)
{
	cl_node *t;
	size_t i;
	int rc;

	m->nscratch = 0;
	rc = im_store_node_list(m->st, collect, m);
	if (rc != IM_OK) {
		set_err(m, "node_list", rc);
		return rc;
	}
	for (i = 0; i < m->nscratch; i++) {
		cl_node *n = &m->scratch[i];
		uint64_t age = now > n->heartbeat_ms ? now - n->heartbeat_ms
						     : 0;

		n->alive = age <= m->opts.dead_after_ms;
	}
	*changed_out = m->nscratch != m->n;
	for (i = 0; i < m->nscratch && !*changed_out; i++) {
		*changed_out = !node_same(&m->scratch[i], &m->nodes[i]);
	}
	t = m->nodes;
	m->nodes = m->scratch;
	m->scratch = t;
	m->n = m->nscratch;
	return IM_OK;
}

int
cl_member_tick(cl_member *m)
{
	uint64_t now;
	bool changed = false, reborn = false;
	int rc = IM_OK, rc2;

	if (m == NULL) {
		return IM_EINVAL;
	}
	now = now_of(m);
	if (now >= m->next_hb && !m->muted) {
		uint64_t inc = m->incarnation;

		m->next_hb = now + m->opts.heartbeat_ms;
		if (m->opts.reincarnate && now > m->last_beat &&
		    now - m->last_beat > m->opts.dead_after_ms) {
			/* We were silent past the timeout: whatever the
			 * others decided meanwhile, we are a new node. */
			rc = do_register(m, now);
		} else {
			rc = im_store_node_heartbeat(m->st, m->name, now);
			if (rc == IM_OK) {
				m->last_beat = now;
			}
		}
		if (rc == IM_ENOTFOUND) {
			/* Our row is gone (an operator removed it): come
			 * back as a new incarnation. */
			rc = do_register(m, now);
		} else if (rc != IM_OK) {
			set_err(m, "node_heartbeat", rc);
		}
		reborn = m->incarnation != inc;
	}
	if (now >= m->next_refresh) {
		m->next_refresh = now + m->opts.refresh_ms;
		rc2 = reload(m, now, &changed);
		if (rc == IM_OK) {
			rc = rc2;
		}
	}
	if ((changed || reborn) && m->opts.on_change != NULL) {
		m->opts.on_change(m, m->opts.payload);
	}
	return rc;
}

static void
on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	(void)cl_member_tick(w->data);
}

int
cl_member_create(cl_member **out, struct ev_loop *loop, im_store *st,
		 const char *name, im_node_role role, const char *address,
		 const cl_member_opts *opts)
{
	static const cl_member_opts defaults = CL_MEMBER_OPTS_INIT;
	cl_member *m;
	uint64_t now;
	int rc;

	if (opts == NULL) {
		opts = &defaults;
	}
	if (out == NULL || loop == NULL || st == NULL || name == NULL ||
	    address == NULL || name[0] == '\0' || address[0] == '\0' ||
	    strlen(name) > IM_NODE_NAME_MAX ||
	    strlen(address) > IM_NODE_ADDR_MAX ||
	    opts->version != CL_MEMBER_OPTS_VERSION ||
	    opts->heartbeat_ms == 0 || opts->refresh_ms == 0 ||
	    opts->max_nodes == 0 || opts->max_nodes > 65536 ||
	    opts->dead_after_ms < opts->heartbeat_ms) {
		return IM_EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (m == NULL) {
		return IM_ENOMEM;
	}
	m->nodes = calloc(opts->max_nodes, sizeof(cl_node));
	m->scratch = calloc(opts->max_nodes, sizeof(cl_node));
	if (m->nodes == NULL || m->scratch == NULL) {
		cl_member_destroy(m);
		return IM_ENOMEM;
	}
	m->loop = loop;
	m->st = st;
	m->opts = *opts;
	if (m->opts.now_ms == NULL) {
		m->opts.now_ms = wall_ms;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->address, sizeof(m->address), "%s", address);
	m->role = role;
	now = now_of(m);
	if ((rc = do_register(m, now)) != IM_OK) {
		cl_member_destroy(m);
		return rc;
	}
	m->next_hb = now + m->opts.heartbeat_ms;
	m->next_refresh = now + m->opts.refresh_ms;
	/* The first view; on_change is not called for it. A failure here
	 * only leaves the view empty until the next refresh. */
	{
		bool changed;

		(void)reload(m, now, &changed);
	}
	ev_init(&m->timer, on_timer);
	m->timer.data = m;
	if (m->opts.timers) {
		uint32_t p = m->opts.heartbeat_ms < m->opts.refresh_ms
				     ? m->opts.heartbeat_ms
				     : m->opts.refresh_ms;

		m->timer.repeat = (double)p / 1000.0;
		ev_timer_again(loop, &m->timer);
	}
	*out = m;
	return IM_OK;
}

void
cl_member_destroy(cl_member *m)
{
	if (m == NULL) {
		return;
	}
	if (m->loop != NULL) {
		ev_timer_stop(m->loop, &m->timer);
	}
	free(m->nodes);
	free(m->scratch);
	free(m);
}

void
cl_member_mute(cl_member *m, bool mute)
{
	if (m != NULL) {
		m->muted = mute;
	}
}

uint64_t
cl_member_incarnation(const cl_member *m)
{
	return m != NULL ? m->incarnation : 0;
}

size_t
cl_member_count(const cl_member *m)
{
	return m != NULL ? m->n : 0;
}

const cl_node *
cl_member_node(const cl_member *m, size_t i)
{
	return m != NULL && i < m->n ? &m->nodes[i] : NULL;
}

const cl_node *
cl_member_find(const cl_member *m, const char *name)
{
	size_t i;

	for (i = 0; m != NULL && name != NULL && i < m->n; i++) {
		if (strcmp(m->nodes[i].name, name) == 0) {
			return &m->nodes[i];
		}
	}
	return NULL;
}

bool
cl_member_fresh(const cl_member *m, const cl_node *n)
{
	uint64_t now;

	if (m == NULL || n == NULL || !n->alive) {
		return false;
	}
	now = now_of(m);
	return now <= n->heartbeat_ms ||
	       now - n->heartbeat_ms <= m->opts.dead_after_ms;
}

void
cl_owner_of(char *out, size_t len, const char *name, uint64_t incarnation)
{
	snprintf(out, len, "%.40s/%08llx", name,
		 (unsigned long long)incarnation);
}

uint64_t
cl_member_errors(const cl_member *m)
{
	return m != NULL ? m->errors : 0;
}

const char *
cl_member_errmsg(const cl_member *m)
{
	return m != NULL ? m->errmsg : "";
}

bool
cl_split_address(const char *address, char *host, size_t hostlen,
		 uint16_t *port_out)
{
	const char *colon;
	unsigned long port;
	char *end;
	size_t hl;

	if (address == NULL || (colon = strrchr(address, ':')) == NULL) {
		return false;
	}
	hl = (size_t)(colon - address);
	if (hl == 0 || hl >= hostlen || colon[1] == '\0') {
		return false;
	}
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535 || colon[1] == '-' ||
	    colon[1] == '+') {
		return false;
	}
	memcpy(host, address, hl);
	host[hl] = '\0';
	*port_out = (uint16_t)port;
	return true;
}

/* ---- peers ----------------------------------------------------------- */

int
cl_peers_create(cl_peers **out, struct ev_loop *loop, cl_member *m,
		im_node_role role, uint32_t max_peers, const rpc_opts *opts)
{
	cl_peers *p;

	if (out == NULL || loop == NULL || m == NULL || opts == NULL ||
	    max_peers == 0 || max_peers > 65536) {
		return IM_EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (p == NULL) {
		return IM_ENOMEM;
	}
	p->peers = calloc(max_peers, sizeof(peer));
	if (p->peers == NULL) {
		free(p);
		return IM_ENOMEM;
	}
	p->loop = loop;
	p->m = m;
	p->role = role;
	p->opts = *opts;
	p->cap = max_peers;
	*out = p;
	return IM_OK;
}

static size_t
peer_index(const cl_peers *p, const char *name, bool *found)
{
	size_t lo = 0, hi = p->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(p->peers[mid].name, name);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	*found = false;
	return lo;
}

static rpc_conn *
connect_to(cl_peers *p, const char *address)
{
	char host[64];
	uint16_t port;
	rpc_conn *c = NULL;

	if (!cl_split_address(address, host, sizeof(host), &port) ||
	    rpc_conn_connect(&c, p->loop, host, port, &p->opts) != IM_OK) {
		return NULL;
	}
	return c;
}

void
cl_peers_sync(cl_peers *p)
{
	size_t i, j;

	if (p == NULL) {
		return;
	}
	for (i = 0; i < p->n; i++) {
		p->peers[i].seen = false;
	}
	for (i = 0; i < cl_member_count(p->m); i++) {
		const cl_node *n = cl_member_node(p->m, i);
		bool found;
		size_t at;
		rpc_conn *c;

		if (n->role != p->role || !n->alive ||
		    strcmp(n->name, p->m->name) == 0) {
			continue;
		}
		at = peer_index(p, n->name, &found);
		if (found && strcmp(p->peers[at].address, n->address) == 0) {
			p->peers[at].seen = true;
			continue;
		}
		if (!found && p->n >= p->cap) {
			continue;
		}
		if ((c = connect_to(p, n->address)) == NULL) {
			continue;
		}
		if (found) {
			/* The node moved: its old address is history. */
			rpc_conn_destroy(p->peers[at].conn);
		} else {
			memmove(&p->peers[at + 1], &p->peers[at],
				(p->n - at) * sizeof(peer));
			p->n++;
			snprintf(p->peers[at].name, sizeof(p->peers[at].name),
				 "%s", n->name);
		}
		snprintf(p->peers[at].address, sizeof(p->peers[at].address),
			 "%s", n->address);
		p->peers[at].conn = c;
		p->peers[at].seen = true;
	}
	for (i = 0, j = 0; i < p->n; i++) {
		if (!p->peers[i].seen) {
			rpc_conn_destroy(p->peers[i].conn);
			continue;
		}
		p->peers[j++] = p->peers[i];
	}
	p->n = j;
}

size_t
cl_peers_count(const cl_peers *p)
{
	return p != NULL ? p->n : 0;
}

size_t
cl_peers_up(const cl_peers *p)
{
	size_t i, up = 0;

	for (i = 0; p != NULL && i < p->n; i++) {
		up += rpc_conn_is_up(p->peers[i].conn);
	}
	return up;
}

void
cl_peers_each(cl_peers *p, void (*fn)(rpc_conn *c, void *payload),
	      void *payload)
{
	size_t i;

	for (i = 0; p != NULL && i < p->n; i++) {
		if (rpc_conn_is_up(p->peers[i].conn)) {
			fn(p->peers[i].conn, payload);
		}
	}
}

rpc_conn *
cl_peers_get(cl_peers *p, const char *name)
{
	bool found;
	size_t at;

	if (p == NULL || name == NULL) {
		return NULL;
	}
	at = peer_index(p, name, &found);
	return found && rpc_conn_is_up(p->peers[at].conn) ? p->peers[at].conn
							  : NULL;
}

rpc_conn *
cl_peers_pick(cl_peers *p, uint64_t key)
{
	size_t i, start;

	if (p == NULL || p->n == 0) {
		return NULL;
	}
	/* Home peer by key over all held peers; if it is down, the next
	 * one up. Keys whose home is up never move when another peer goes
	 * down. */
	start = (size_t)(key % p->n);
	for (i = 0; i < p->n; i++) {
		peer *q = &p->peers[(start + i) % p->n];

		if (rpc_conn_is_up(q->conn)) {
			return q->conn;
		}
	}
	return NULL;
}

void
cl_peers_destroy(cl_peers *p)
{
	size_t i;

	if (p == NULL) {
		return;
	}
	for (i = 0; i < p->n; i++) {
		rpc_conn_destroy(p->peers[i].conn);
	}
	free(p->peers);
	free(p);
}
