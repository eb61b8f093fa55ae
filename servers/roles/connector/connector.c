/*
 * The Connector role (connector.h): create and destroy, and the flush at
 * the end of every loop turn that writes the dirty connections and frees
 * what closed in the turn. The role's other jobs are in the files listed
 * in connector_int.h.
 */
#include <stdlib.h>
#include <string.h>

#include "connector_int.h"

void
connector_flush(connector *cn)
{
	struct conn *c, *next;

	while (cn->dirty != NULL) {
		c = cn->dirty;
		cn->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->dirty = false;
		if (!c->closed) {
			conn__flush_one(c);
		}
	}
	/* Closed connections may sit on the dirty list above, so they are
	 * freed only after the walk. */
	for (c = cn->dead; c != NULL; c = next) {
		next = c->dead_next;
		free(c->wbuf);
		free(c->rbuf);
		free(c);
	}
	cn->dead = NULL;
	while (cn->gc != NULL) {
		struct user *u = cn->gc;

		cn->gc = u->gc_next;
		u->in_gc = false;
		if (u->nsessions == 0) {
			conn__user_free(cn, u);
		}
	}
}

static void
flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	connector_flush(w->data);
}

void
connector_get_stats(const connector *cn, connector_stats *out)
{
	*out = cn->stats;
	out->conns = cn->nconns;
	out->users = cn->nusers;
	out->sessions = cn->nsessions;
}

static bool
opts_valid(const connector_opts *o)
{
	return o->max_conns > 0 && o->max_sessions > 0 && o->frame_max > 0 &&
	       o->frame_max <= IM_FRAME_MAX &&
	       o->wbuf_max >= IM_FRAME_MAX * 2 && o->pushq_items > 0 &&
	       o->pushq_bytes > 0 && o->rto_ms > 0 && o->max_convs > 0 &&
	       o->uq_step > 0 && o->login_timeout > 0 && o->idle_timeout > 0 &&
	       o->grace > 0 && o->frame_timeout > 0;
}

int
connector_create(connector **out, struct ev_loop *loop, im_store *st,
                 im_shard_map *map, const char *node, uint32_t index,
                 role_router *router, const void *secret, size_t secret_len,
                 const connector_opts *opts)
{
	connector_opts o = CONNECTOR_OPTS_INIT;
	connector *cn;
	uint32_t i;

	if (out == NULL || loop == NULL || st == NULL || map == NULL ||
	    node == NULL || router == NULL || secret == NULL ||
	    secret_len < IM_TOKEN_SECRET_MIN ||
	    secret_len > IM_TOKEN_SECRET_MAX) {
		return IM_EINVAL;
	}
	if (opts != NULL) {
		o = *opts;
	}
	if (!opts_valid(&o)) {
		return IM_EINVAL;
	}
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL) {
		return IM_ENOMEM;
	}
	cn->loop = loop;
	cn->st = st;
	cn->map = map;
	cn->node = node;
	cn->index = index;
	cn->router = router;
	cn->o = o;
	cn->lfd = -1;
	cn->tr = &conn__tr_plain;
	cn->nub = 1024;
	while (cn->nub < o.max_conns && cn->nub < (1u << 20)) {
		cn->nub <<= 1;
	}
	/* Read more than one frame per syscall when clients pipeline. */
	cn->rcap = IM_FRAME_HEADER + o.frame_max + 65536;
	cn->conns = calloc(o.max_conns, sizeof(*cn->conns));
	cn->free_idx = calloc(o.max_conns, sizeof(*cn->free_idx));
	cn->ub = calloc(cn->nub, sizeof(*cn->ub));
	cn->rbuf = malloc(cn->rcap);
	cn->obuf = malloc(IM_FRAME_HEADER + IM_FRAME_MAX);
	cn->env = malloc(sizeof(*cn->env));
	cn->page = malloc(sizeof(*cn->page));
	cn->members = malloc(sizeof(*cn->members));
	cn->dl = malloc(sizeof(*cn->dl));
	cn->entries = calloc(o.max_convs, sizeof(*cn->entries));
	if (im_token_verifier_create(&cn->tokens, secret, secret_len,
	                             NULL) != IM_OK ||
	    cn->conns == NULL || cn->free_idx == NULL || cn->ub == NULL ||
	    cn->rbuf == NULL || cn->obuf == NULL || cn->env == NULL ||
	    cn->page == NULL || cn->members == NULL ||
	    cn->dl == NULL || cn->entries == NULL ||
	    conn__uev_scratch_init(&cn->uev, UEV_BATCH_MAX) != IM_OK) {
		connector_destroy(cn);
		return IM_ENOMEM;
	}
	for (i = 0; i < o.max_conns; i++) {
		cn->free_idx[i] = o.max_conns - 1 - i;
	}
	cn->nfree = o.max_conns;
	ev_prepare_init(&cn->flush_w, flush_cb);
	cn->flush_w.data = cn;
	ev_set_priority(&cn->flush_w, EV_MINPRI);
	ev_prepare_start(loop, &cn->flush_w);
	*out = cn;
	return IM_OK;
}

void
connector_destroy(connector *cn)
{
	uint32_t i;

	if (cn == NULL) {
		return;
	}
	connector_stop_accepting(cn);
	for (i = 0; cn->conns != NULL && i < cn->o.max_conns; i++) {
		if (cn->conns[i] != NULL) {
			conn__close(cn->conns[i], "shutdown");
		}
	}
	for (i = 0; cn->ub != NULL && i < cn->nub; i++) {
		while (cn->ub[i] != NULL) {
			struct user *u = cn->ub[i];

			conn__user_drop_sessions(u);
			conn__user_free(cn, u);
		}
	}
	cn->gc = NULL;
	connector_flush(cn);
	if (ev_is_active(&cn->flush_w)) {
		ev_prepare_stop(cn->loop, &cn->flush_w);
	}
	free(cn->conns);
	free(cn->free_idx);
	free(cn->ub);
	free(cn->rbuf);
	free(cn->obuf);
	free(cn->fbuf);
	free(cn->foffs);
	free(cn->env);
	free(cn->page);
	free(cn->members);
	free(cn->dl);
	free(cn->entries);
	free(cn->names);
	conn__uev_scratch_finish(&cn->uev);
	im_token_verifier_destroy(cn->tokens);
	conn__tls_destroy(cn->tls);
	free(cn);
}
