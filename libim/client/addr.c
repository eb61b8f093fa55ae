/*
 * Client core: the server addresses and where the next try goes (the
 * list, a Redirect's target, the same address after a lost session) and
 * the reconnect backoff. Pure logic over the core's state, kept apart from
 * the session so its rules can be read (and ported) on their own.
 */
#include "core.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* "host:port" or "[v6]:port" into a; false if it is not one. */
bool
im__cc_parse_addr(struct im__cc_addr *a, const char *s, size_t len)
{
	const char *colon = NULL, *h = s;
	size_t i, hl;
	unsigned long port = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == ':') {
			colon = s + i;
		}
	}
	if (colon == NULL || colon == s || colon + 1 == s + len ||
	    (size_t)(s + len - colon - 1) > 5) {
		return false;
	}
	for (i = (size_t)(colon - s) + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return false;
		}
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	if (port == 0 || port > 65535) {
		return false;
	}
	hl = (size_t)(colon - s);
	if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
		h = s + 1;
		hl -= 2;
	}
	if (hl == 0 || hl >= sizeof(a->host) || memchr(h, '\0', hl) != NULL) {
		return false;
	}
	memcpy(a->host, h, hl);
	a->host[hl] = '\0';
	snprintf(a->port, sizeof(a->port), "%lu", port);
	return true;
}

/* The version 2 address list, or the version 1 host/port, into srv
 * (NULL: only check them). */
bool
im__cc_opts_servers(struct im__cc_addr *srv, uint32_t *n_out,
                    const im_client_opts *o)
{
	struct im__cc_addr scratch;
	uint32_t i;

	if (o->version >= 2 && o->nservers > 0) {
		if (o->nservers > IM_CLIENT_SERVERS_MAX || o->servers == NULL) {
			return false;
		}
		for (i = 0; i < o->nservers; i++) {
			const char *s = o->servers[i];
			size_t len;

			if (s == NULL ||
			    (len = strnlen(s, IM_CLIENT_ADDR_MAX + 1)) >
			            IM_CLIENT_ADDR_MAX ||
			    !im__cc_parse_addr(srv != NULL ? &srv[i] : &scratch,
			                       s, len)) {
				return false;
			}
		}
		*n_out = o->nservers;
		return true;
	}
	if (o->host == NULL || o->host[0] == '\0' ||
	    strlen(o->host) >= sizeof(scratch.host) || o->port == 0) {
		return false;
	}
	if (srv != NULL) {
		snprintf(srv[0].host, sizeof(srv[0].host), "%s", o->host);
		snprintf(srv[0].port, sizeof(srv[0].port), "%u",
		         (unsigned)o->port);
	}
	*n_out = 1;
	return true;
}

const struct im__cc_addr *
im__cc_cur_addr(const im__cc *cc)
{
	return cc->use_redir ? &cc->redir : &cc->srv[cc->cur];
}

const char *
im__cc_server(im__cc *cc)
{
	const struct im__cc_addr *a = im__cc_cur_addr(cc);

	/* An IPv6 literal gets its brackets back, as it was given. */
	snprintf(cc->addr_text, sizeof(cc->addr_text),
	         strchr(a->host, ':') != NULL ? "[%s]:%s" : "%s:%s", a->host,
	         a->port);
	return cc->addr_text;
}

static bool
addr_eq(const struct im__cc_addr *a, const struct im__cc_addr *b)
{
	return strcmp(a->host, b->host) == 0 && strcmp(a->port, b->port) == 0;
}

/* Where the try after a failed or lost one goes: the Redirect's target
 * when one was just received, the same address after a lost session,
 * else the next listed address that is not the one that just failed
 * (also after the Redirect's target failed: it is not ours to retry, and
 * when the list names it too, e.g. the dead Connector a live one still
 * redirects to, skipping it saves a try). */
static void
move_on(im__cc *cc)
{
	struct im__cc_addr failed;
	uint32_t i;

	if (cc->follow_redir) {
		cc->follow_redir = false;
		cc->use_redir = true;
		return;
	}
	if (cc->retry_same) {
		cc->retry_same = false;
		return;
	}
	failed = *im__cc_cur_addr(cc);
	cc->use_redir = false;
	for (i = 0; i < cc->nsrv; i++) {
		cc->cur = (cc->cur + 1) % cc->nsrv;
		if (!addr_eq(&cc->srv[cc->cur], &failed)) {
			break;
		}
	}
}

uint32_t
im_client_backoff_ms(uint32_t min_ms, uint32_t max_ms, uint32_t attempt,
                     uint64_t rnd)
{
	uint64_t d = min_ms;
	uint64_t half;

	if (max_ms < min_ms) {
		max_ms = min_ms;
	}
	while (attempt-- > 0 && d < max_ms) {
		d *= 2;
	}
	if (d > max_ms) {
		d = max_ms;
	}
	/* Equal jitter: never below half the delay, so a crowd of clients
	 * spreads out without any of them hammering the server. */
	half = d / 2;
	return (uint32_t)(half + (d - half == 0 ? 0 : rnd % (d - half + 1)));
}

/* After a failed or lost try: pick the next address and arm the retry.
 * false: no retry (stopped, bad token, or max_rounds reached). */
bool
im__cc_schedule_reconnect(im__cc *cc)
{
	uint32_t ms;

	if (!cc->reconnect || cc->auth_failed) {
		return false;
	}
	if (cc->attempt < UINT32_MAX) {
		cc->attempt++;
	}
	if (cc->max_rounds > 0 &&
	    (uint64_t)cc->attempt >= (uint64_t)cc->max_rounds * cc->nsrv) {
		cc->gave_up = true;
		return false;
	}
	move_on(cc);
	/* The delay grows per round over the list, not per address: the
	 * next Connector is worth a try right away when one died, and a
	 * fully dead list still backs off to backoff_max. */
	ms = im_client_backoff_ms(cc->backoff_min, cc->backoff_max,
	                          (cc->attempt - 1) / cc->nsrv, im__cc_rng(cc));
	im__cc_timer_set(cc, IM__CC_T_RETRY, cc->now + ms);
	return true;
}
