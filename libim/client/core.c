/*
 * Client core, the session: create/destroy, the timers, the connection's
 * life (connect, login or resume, lost, reconnect), the input side
 * (frames in, envelopes dispatched) and the output buffer. The rules per
 * conversation, per send and per request are in conv.c, outbox.c and
 * request.c; see core.h for what the driver gives and gets.
 */
#include "core.h"
#include "im/frame.h"
#include "internal.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <string.h>

uint64_t
im__cc_rng(im__cc *cc)
{
	uint64_t z = (cc->rng += 0x9e3779b97f4a7c15ULL);

	return im__mix64(z);
}

void
im__cc_set_state(im__cc *cc, im_client_state st)
{
	if (cc->state == st) {
		return;
	}
	cc->state = st;
	if (cc->cb.on_state != NULL) {
		cc->cb.on_state(cc->handle, st, cc->payload);
	}
}

void
im__cc_report(im__cc *cc, int err, uint32_t code, uint64_t req_id, im_gid group,
              uint64_t dedup_id, const char *text)
{
	im_client_error e;

	if (cc->cb.on_error == NULL) {
		return;
	}
	e.err = err;
	e.server_code = code;
	e.req_id = req_id;
	e.group = group;
	e.dedup_id = dedup_id;
	e.text = text != NULL ? text : "";
	cc->cb.on_error(cc->handle, &e, cc->payload);
}

/* ---- timers ---- */

void
im__cc_timer_set(im__cc *cc, enum im__cc_timer t, uint64_t due_ms)
{
	cc->due[t] = due_ms;
	cc->io->timers(cc->io_ud);
}

void
im__cc_timer_stop(im__cc *cc, enum im__cc_timer t)
{
	if (cc->due[t] != IM__CC_NEVER) {
		im__cc_timer_set(cc, t, IM__CC_NEVER);
	}
}

uint64_t
im__cc_next_due(const im__cc *cc)
{
	uint64_t next = IM__CC_NEVER;
	int t;

	for (t = 0; t < IM__CC_T_N; t++) {
		next = IM__MIN(next, cc->due[t]);
	}
	return next;
}

/* ---- output ---- */

im_Envelope *
im__cc_env(im__cc *cc, uint64_t req_id, pb_size_t which)
{
	memset(cc->out, 0, sizeof(*cc->out));
	cc->out->req_id = req_id;
	cc->out->which_msg = which;
	return cc->out;
}

/* Encode one frame into the output buffer. IM_EFULL: no room now (what
 * waits for room goes out after the driver drained the buffer). */
int
im__cc_put(im__cc *cc, const im_Envelope *e)
{
	size_t need;
	pb_ostream_t os;

	if (!cc->link) {
		return IM_EAGAIN;
	}
	if (!pb_get_encoded_size(&need, im_Envelope_fields, e) ||
	    need > IM__CC_WBUF_CAP - IM_FRAME_HEADER) {
		return IM_ETOOBIG;
	}
	if (cc->woff > 0 &&
	    cc->wlen + IM_FRAME_HEADER + need > IM__CC_WBUF_CAP) {
		memmove(cc->wbuf, cc->wbuf + cc->woff, cc->wlen - cc->woff);
		cc->wlen -= cc->woff;
		cc->woff = 0;
	}
	if (cc->wlen + IM_FRAME_HEADER + need > IM__CC_WBUF_CAP) {
		return IM_EFULL;
	}
	os = pb_ostream_from_buffer(cc->wbuf + cc->wlen + IM_FRAME_HEADER,
	                            need);
	if (!pb_encode(&os, im_Envelope_fields, e)) {
		return IM_ERR;
	}
	im_frame_put_header(cc->wbuf + cc->wlen, (uint32_t)os.bytes_written);
	cc->wlen += IM_FRAME_HEADER + os.bytes_written;
	if (!cc->connecting) {
		cc->io->want_write(cc->io_ud, true);
	}
	return IM_OK;
}

const uint8_t *
im__cc_output(const im__cc *cc, size_t *len_out)
{
	*len_out = cc->wlen - cc->woff;
	return cc->wbuf + cc->woff;
}

void
im__cc_wrote(im__cc *cc, uint64_t now_ms, size_t n)
{
	cc->now = now_ms;
	cc->woff += IM__MIN(n, cc->wlen - cc->woff);
	if (cc->woff < cc->wlen) {
		return;
	}
	cc->woff = cc->wlen = 0;
	cc->io->want_write(cc->io_ud, false);
	/* Room again: what waited for it. */
	im__cc_flush_acks(cc);
	im__cc_pump(cc);
}

/* ---- the connection ---- */

static void
close_link(im__cc *cc)
{
	im__cc_timer_stop(cc, IM__CC_T_LOGIN);
	im__cc_timer_stop(cc, IM__CC_T_PING);
	im__cc_timer_stop(cc, IM__CC_T_RESEND);
	im__cc_timer_stop(cc, IM__CC_T_ANSWER);
	if (cc->link) {
		cc->link = false;
		cc->io->close(cc->io_ud);
	}
	cc->connecting = false;
	cc->rlen = 0;
	cc->wlen = 0;
	cc->woff = 0;
	cc->gen++;
}

/* Forget what was in flight: sends and creates go again on the next
 * connection with the same dedup ids; repairs are asked again after the next login;
 * requests are answered as unavailable. */
static void
drop_inflight(im__cc *cc)
{
	size_t i;

	im__cc_outbox_unsent(cc);
	im__cc_creates_unsent(cc);
	for (i = 0; i < cc->conv_cap; i++) {
		cc->convs[i].syncing = false;
		cc->convs[i].want_repair = false;
		cc->convs[i].replay_cut = false;
	}
	cc->uq_syncing = false;
	cc->uq_replay_cut = false;
	cc->repairs_waiting = false;
	im__cc_req_drop(cc);
}

/* After a failed or lost try: schedule the next one (or give up) and say
 * what happened. */
static void
try_failed(im__cc *cc, int err, uint32_t code, const char *text)
{
	char gave[128];

	/* Reconnect first: a callback below may close the client for good,
	 * which cancels it again. */
	(void)im__cc_schedule_reconnect(cc);
	drop_inflight(cc);
	if (err != IM_OK) {
		im__cc_report(cc, err, code, 0, 0, 0, text);
	}
	if (cc->gave_up) {
		snprintf(gave, sizeof(gave),
		         "gave up: %u tries over %u server address(es) failed",
		         (unsigned)cc->attempt, (unsigned)cc->nsrv);
		im__cc_report(cc, IM_EUNAVAIL, 0, 0, 0, 0, gave);
	}
	im__cc_set_state(cc, cc->due[IM__CC_T_RETRY] != IM__CC_NEVER
	                             ? IM_CLIENT_DISCONNECTED
	                             : IM_CLIENT_STOPPED);
}

void
im__cc_conn_lost(im__cc *cc, int err, uint32_t code, const char *text)
{
	bool was_open = cc->link;

	close_link(cc);
	if (was_open) {
		try_failed(cc, err, code, text);
	}
}

void
im__cc_lost(im__cc *cc, uint64_t now_ms, int err, const char *text)
{
	cc->now = now_ms;
	im__cc_conn_lost(cc, err, 0, text);
}

static void
start_connect(im__cc *cc)
{
	const struct im__cc_addr *a = im__cc_cur_addr(cc);
	char text[400];

	im__cc_timer_stop(cc, IM__CC_T_RETRY);
	if (cc->link) {
		return;
	}
	if (cc->io->open(cc->io_ud, a->host, a->port, text, sizeof(text)) !=
	    IM_OK) {
		try_failed(cc, IM_EUNAVAIL, 0, text);
		return;
	}
	cc->link = true;
	cc->connecting = true;
	cc->rlen = cc->wlen = cc->woff = 0;
	if (cc->login_timeout_ms > 0) {
		im__cc_timer_set(cc, IM__CC_T_LOGIN,
		                 cc->now + cc->login_timeout_ms);
	}
	im__cc_set_state(cc, IM_CLIENT_CONNECTING);
}

void
im__cc_connect(im__cc *cc, uint64_t now_ms)
{
	cc->now = now_ms;
	cc->auth_failed = false;
	cc->gave_up = false;
	if (cc->link) {
		return;
	}
	if (cc->state == IM_CLIENT_STOPPED) {
		cc->state = IM_CLIENT_DISCONNECTED;
	}
	cc->attempt = 0;
	start_connect(cc);
}

void
im__cc_close(im__cc *cc)
{
	im__cc_timer_stop(cc, IM__CC_T_RETRY);
	if (cc->link) {
		close_link(cc);
		drop_inflight(cc);
	}
	im__cc_set_state(cc, IM_CLIENT_STOPPED);
}

static void
send_resume(im__cc *cc)
{
	struct im__cc_pending *p = im__cc_pend_new(cc, P_RESUME);
	im_Envelope *e = im__cc_env(cc, p->req_id, im_Envelope_resume_tag);
	size_t i, n = 0;

	snprintf(e->msg.resume.token, sizeof(e->msg.resume.token), "%s",
	         cc->token);
	memcpy(e->msg.resume.session, cc->session, 16);
	if (cc->uq_known) {
		e->msg.resume.cursors[n].group = 0;
		e->msg.resume.cursors[n].seq = cc->uq_cursor;
		n++;
	}
	for (i = 0; i < cc->conv_cap; i++) {
		struct im__cc_conv *c = &cc->convs[i];

		c->in_resume = false;
		if (c->group == 0 || !c->known || !c->member ||
		    n >= IM__CC_RESUME_CURSORS_MAX) {
			continue;
		}
		e->msg.resume.cursors[n].group = c->group;
		e->msg.resume.cursors[n].seq = c->cursor;
		c->in_resume = true;
		n++;
	}
	e->msg.resume.cursors_count = (pb_size_t)n;
	/* The write buffer is empty on a fresh connection and the pending
	 * table was just cleared, so neither can fail here. */
	(void)im__cc_put(cc, e);
}

static void
send_login(im__cc *cc)
{
	struct im__cc_pending *p;
	im_Envelope *e;

	if (cc->have_session) {
		send_resume(cc);
		return;
	}
	p = im__cc_pend_new(cc, P_LOGIN);
	e = im__cc_env(cc, p->req_id, im_Envelope_login_tag);
	snprintf(e->msg.login.token, sizeof(e->msg.login.token), "%s",
	         cc->token);
	snprintf(e->msg.login.device, sizeof(e->msg.login.device), "%s",
	         cc->device);
	(void)im__cc_put(cc, e); /* as in send_resume() */
}

void
im__cc_connected(im__cc *cc, uint64_t now_ms)
{
	cc->now = now_ms;
	if (!cc->link || !cc->connecting) {
		return;
	}
	cc->connecting = false;
	cc->last_rx = now_ms;
	send_login(cc);
	if (cc->wlen > 0) {
		cc->io->want_write(cc->io_ud, true);
	}
}

/* Login or resume done: catch up what the login or resume did not bring
 * up to date, then tell the application and send what waited. */
static void
became_connected(im__cc *cc, bool login)
{
	size_t i, n;

	im__cc_timer_stop(cc, IM__CC_T_LOGIN);
	cc->attempt = 0;
	if (cc->ping_ms > 0) {
		im__cc_timer_set(cc, IM__CC_T_PING, cc->now + cc->ping_ms);
	}
	cc->state = IM_CLIENT_CONNECTED;
	/* Behind after the login, or a resume's replay that was cut with
	 * nothing to replay (its end is the cursor already). */
	if (cc->uq_behind || im__cc_replay_reached(cc, NULL)) {
		cc->uq_behind = false;
		im__cc_repair(cc, NULL);
	}
	for (i = 0; i < cc->conv_cap && cc->link; i++) {
		struct im__cc_conv *c = &cc->convs[i];

		if (c->group == 0 || !c->known || !c->member) {
			continue;
		}
		if (c->want_repair || im__cc_replay_reached(cc, c) ||
		    (!login && !c->in_resume)) {
			c->want_repair = false;
			im__cc_repair(cc, c);
		}
	}
	if (!cc->link) {
		return;
	}
	if (login && cc->cb.on_login != NULL) {
		im__cc_convs(cc, cc->login_convs, cc->max_convs, &n);
		cc->cb.on_login(cc->handle, cc->user, cc->login_convs, n,
		                cc->payload);
		if (!cc->link) {
			return;
		}
	}
	if (cc->cb.on_state != NULL) {
		cc->cb.on_state(cc->handle, IM_CLIENT_CONNECTED, cc->payload);
		if (!cc->link) {
			return;
		}
	}
	im__cc_pump(cc);
}

static void
ping_due(im__cc *cc)
{
	im_Envelope *e;

	if (cc->state != IM_CLIENT_CONNECTED) {
		return;
	}
	uint64_t dead = cc->last_rx + 3 * (uint64_t)cc->ping_ms;

	if (cc->now > dead) {
		im__cc_conn_lost(cc, IM_EUNAVAIL, 0, "server silent");
		return;
	}
	/* The next ping, or the moment the silence passes 3 intervals if
	 * that comes first: a hung server is dropped 3 x ping_ms after its
	 * last bytes, not up to a whole interval later. */
	im__cc_timer_set(cc, IM__CC_T_PING,
	                 dead + 1 < cc->now + cc->ping_ms ? dead + 1
	                                                  : cc->now + cc->ping_ms);
	e = im__cc_env(cc, im__cc_new_req(cc), im_Envelope_ping_tag);
	e->msg.ping.time_ms = cc->now;
	(void)im__cc_put(cc, e);
}

static void
fire(im__cc *cc, enum im__cc_timer t)
{
	switch (t) {
	case IM__CC_T_RETRY:
		start_connect(cc);
		break;
	case IM__CC_T_LOGIN:
		if (cc->state != IM_CLIENT_CONNECTED) {
			im__cc_conn_lost(cc, IM_EAGAIN, 0, "login timed out");
		}
		break;
	case IM__CC_T_PING:
		ping_due(cc);
		break;
	case IM__CC_T_RESEND:
		im__cc_pump(cc);
		break;
	case IM__CC_T_ANSWER:
		im__cc_answer_due(cc);
		break;
	default:
		break;
	}
}

/* Each timer due fires once per tick, earliest first (what a fired one
 * arms again for now waits for the next tick: never a busy loop). */
void
im__cc_tick(im__cc *cc, uint64_t now_ms)
{
	bool fired[IM__CC_T_N] = {false};

	cc->now = now_ms;
	for (;;) {
		int t, best = -1;

		for (t = 0; t < IM__CC_T_N; t++) {
			if (!fired[t] && cc->due[t] <= now_ms &&
			    (best < 0 || cc->due[t] < cc->due[best])) {
				best = t;
			}
		}
		if (best < 0) {
			break;
		}
		fired[best] = true;
		im__cc_timer_stop(cc, (enum im__cc_timer)best);
		fire(cc, (enum im__cc_timer)best);
	}
}

/* ---- input ---- */

/* A Login or Resume refused: close; after a lost session (the server is
 * fine, the session is not) log in afresh there, right away. */
static void
login_refused(im__cc *cc, struct im__cc_pending *p, uint64_t req_id,
              const im_Error *er)
{
	enum im__cc_pkind k = p->kind;

	p->kind = P_FREE;
	if (er->code == im_Code_ERR_AUTH) {
		cc->auth_failed = true;
	} else if (k == P_RESUME && (er->code == im_Code_ERR_SESSION ||
	                             er->code == im_Code_ERR_NOT_FOUND)) {
		cc->have_session = false;
		cc->attempt = 0;
		cc->retry_same = true;
	}
	im__cc_report(cc, im_code_to_err((uint32_t)er->code),
	              (uint32_t)er->code, req_id, 0, 0, er->text);
	im__cc_conn_lost(cc, IM_OK, 0, NULL);
}

static void
handle_error(im__cc *cc, uint64_t req_id, const im_Error *er)
{
	struct im__cc_pending *p;

	if (im__cc_outbox_error(cc, req_id, er) ||
	    im__cc_creates_error(cc, req_id, er)) {
		return;
	}
	p = im__cc_pend_find(cc, req_id);
	if (p != NULL && (p->kind == P_LOGIN || p->kind == P_RESUME)) {
		login_refused(cc, p, req_id, er);
		return;
	}
	if (p != NULL) {
		im__cc_req_error(cc, p, er);
		return;
	}
	if (er->code == im_Code_OK) {
		return;
	}
	/* Connection level (req_id 0): the server closes after these. */
	if (er->code == im_Code_ERR_AUTH) {
		cc->auth_failed = true;
	}
	im__cc_report(cc, im_code_to_err((uint32_t)er->code),
	              (uint32_t)er->code, req_id, 0, 0, er->text);
	if (er->code == im_Code_ERR_AUTH) {
		im__cc_conn_lost(cc, IM_OK, 0, NULL);
	}
}

static void
handle_redirect(im__cc *cc, const im_Redirect *rd)
{
	char text[IM_CLIENT_ADDR_MAX + 32];

	if (!im__cc_parse_addr(&cc->redir, rd->address,
	                       strnlen(rd->address, sizeof(rd->address)))) {
		im__cc_conn_lost(cc, IM_EPROTO, im_Code_ERR_REDIRECT,
		                 "bad redirect address");
		return;
	}
	/* The hop counts as a try (attempt is not reset): two servers that
	 * keep sending the client to each other back off like dead ones,
	 * and only a login resets it. */
	cc->follow_redir = true;
	snprintf(text, sizeof(text), "redirected to %.*s",
	         (int)IM_CLIENT_ADDR_MAX, rd->address);
	im__cc_conn_lost(cc, IM_EAGAIN, im_Code_ERR_REDIRECT, text);
	if (cc->follow_redir) {
		/* Not followed now (no automatic reconnect): a later
		 * im_client_connect() starts there. */
		cc->follow_redir = false;
		cc->use_redir = true;
	}
}

static void
handle_login_ok(im__cc *cc, const im_LoginOk *ok)
{
	cc->user = ok->user;
	memcpy(cc->session, ok->session, 16);
	cc->have_session = true;
	if (!cc->uq_known) {
		cc->uq_cursor = ok->uq_last_seq;
		cc->uq_acked = cc->uq_cursor;
		cc->uq_known = true;
	}
	cc->uq_behind = cc->uq_cursor < ok->uq_last_seq;
}

/* Answers to Login and Resume; false: the envelope is something else. */
static bool
handle_session_env(im__cc *cc, struct im__cc_pending *p, const im_Envelope *e)
{
	pb_size_t i;

	switch (e->which_msg) {
	case im_Envelope_login_ok_tag:
		if (p != NULL && p->kind == P_LOGIN) {
			handle_login_ok(cc, &e->msg.login_ok);
		}
		return true;
	case im_Envelope_conv_page_tag:
		if (p == NULL || p->kind != P_LOGIN) {
			return true;
		}
		for (i = 0; i < e->msg.conv_page.convs_count; i++) {
			im__cc_conv_info(cc, &e->msg.conv_page.convs[i]);
		}
		if (e->msg.conv_page.done) {
			p->kind = P_FREE;
			became_connected(cc, true);
		}
		return true;
	case im_Envelope_resume_ok_tag:
		if (p == NULL || p->kind != P_RESUME) {
			return true;
		}
		p->kind = P_FREE;
		cc->user = e->msg.resume_ok.user;
		memcpy(cc->session, e->msg.resume_ok.session, 16);
		im__cc_replay_ends(cc, &e->msg.resume_ok);
		cc->uq_away_until = e->msg.resume_ok.uq_last_seq;
		became_connected(cc, false);
		return true;
	default:
		return false;
	}
}

static void
handle_env(im__cc *cc, const im_Envelope *e)
{
	struct im__cc_pending *p = im__cc_pend_find(cc, e->req_id);

	if (handle_session_env(cc, p, e)) {
		return;
	}
	switch (e->which_msg) {
	case im_Envelope_send_ack_tag:
		im__cc_send_ack(cc, e->req_id, &e->msg.send_ack);
		break;
	case im_Envelope_deliver_tag:
		im__cc_deliver(cc, &e->msg.deliver);
		break;
	case im_Envelope_user_event_tag:
		im__cc_event(cc, &e->msg.user_event, false);
		break;
	case im_Envelope_sync_page_tag:
		if (p != NULL && (p->kind == P_REPAIR || p->kind == P_HIST)) {
			im__cc_sync_page(cc, p, &e->msg.sync_page);
		}
		break;
	case im_Envelope_group_created_tag:
		(void)im__cc_creates_reply(cc, e->req_id,
		                           &e->msg.group_created);
		break;
	case im_Envelope_members_tag:
	case im_Envelope_pong_tag:
		if (p != NULL) {
			im__cc_req_reply(cc, e);
		}
		break;
	case im_Envelope_error_tag:
		handle_error(cc, e->req_id, &e->msg.error);
		break;
	case im_Envelope_redirect_tag:
		handle_redirect(cc, &e->msg.redirect);
		break;
	default:
		break; /* requests from a server, or unknown: ignore */
	}
}

uint8_t *
im__cc_rspace(im__cc *cc, size_t *cap_out)
{
	*cap_out = (size_t)cc->frame_max + IM_FRAME_HEADER - cc->rlen;
	return cc->rbuf + cc->rlen;
}

/* One frame at rbuf + *off: IM_OK handled (*off moved on), IM_EAGAIN
 * incomplete, else the connection is closed. */
static int
take_frame(im__cc *cc, size_t *off)
{
	const uint8_t *payload;
	uint32_t plen;
	size_t used;
	pb_istream_t is;
	char text[400];
	int rc;

	rc = im_frame_parse(cc->rbuf + *off, cc->rlen - *off, cc->frame_max,
	                    &payload, &plen, &used);
	if (rc == IM_EAGAIN) {
		return rc;
	}
	if (rc == IM_ETOOBIG) {
		snprintf(text, sizeof(text), "incoming frame over %u bytes",
		         (unsigned)cc->frame_max);
		im__cc_conn_lost(cc, IM_ETOOBIG, 0, text);
		return rc;
	}
	if (rc != IM_OK) {
		im__cc_conn_lost(cc, IM_EPROTO, 0, "empty frame");
		return rc;
	}
	is = pb_istream_from_buffer(payload, plen);
	if (!pb_decode(&is, im_Envelope_fields, cc->in)) {
		snprintf(text, sizeof(text), "bad frame: %s",
		         PB_GET_ERROR(&is));
		im__cc_conn_lost(cc, IM_EPROTO, 0, text);
		return IM_EPROTO;
	}
	*off += used;
	handle_env(cc, cc->in);
	return IM_OK;
}

void
im__cc_received(im__cc *cc, uint64_t now_ms, size_t n)
{
	uint64_t gen = cc->gen;
	size_t off = 0;
	int rc;

	cc->now = now_ms;
	if (!cc->link) {
		return;
	}
	cc->rlen +=
	        IM__MIN(n, (size_t)cc->frame_max + IM_FRAME_HEADER - cc->rlen);
	cc->last_rx = now_ms;
	do {
		rc = take_frame(cc, &off);
		if (cc->gen != gen) {
			return; /* closed by a handler or a callback */
		}
	} while (rc == IM_OK);
	if (off > 0) {
		memmove(cc->rbuf, cc->rbuf + off, cc->rlen - off);
		cc->rlen -= off;
	}
	im__cc_repair_next(cc);
	if (cc->gen != gen) {
		return;
	}
	im__cc_flush_acks(cc);
}

/* ---- create, destroy ---- */

static bool
opts_valid(const im_client_opts *opts)
{
	uint32_t nsrv = 0;

	return opts != NULL && opts->version != 0 &&
	       opts->version <= IM_CLIENT_OPTS_VERSION && opts->token != NULL &&
	       opts->token[0] != '\0' &&
	       strlen(opts->token) <= IM_CLIENT_TOKEN_MAX &&
	       opts->max_outbox != 0 && opts->max_convs != 0 &&
	       opts->max_convs <= (1u << 24) &&
	       opts->max_outbox <= (1u << 20) && opts->max_pending >= 4 &&
	       opts->max_pending <= 65536 && opts->frame_max >= 1024 &&
	       opts->frame_max <= IM_FRAME_MAX && opts->backoff_min_ms != 0 &&
	       opts->backoff_min_ms <= opts->backoff_max_ms &&
	       im__cc_opts_servers(NULL, &nsrv, opts);
}

static int
alloc_tables(im__cc *cc)
{
	const im_allocator *a = &cc->alloc;
	im_convlist_opts lo = IM_CONVLIST_OPTS_INIT;

	cc->rbuf = im__alloc(a, cc->frame_max + IM_FRAME_HEADER);
	cc->wbuf = im__alloc(a, IM__CC_WBUF_CAP);
	cc->in = im__alloc(a, sizeof(*cc->in));
	cc->out = im__alloc(a, sizeof(*cc->out));
	cc->convs = im__calloc(a, cc->conv_cap, sizeof(*cc->convs));
	cc->entries = im__calloc(a, cc->max_convs, sizeof(*cc->entries));
	cc->dirty = im__calloc(a, cc->max_convs, sizeof(im_gid));
	cc->obox = im__calloc(a, cc->max_outbox, sizeof(*cc->obox));
	cc->oorder = im__calloc(a, cc->max_outbox, sizeof(*cc->oorder));
	cc->oused = im__calloc(a, cc->max_outbox, sizeof(bool));
	cc->pend = im__calloc(a, cc->max_pending, sizeof(*cc->pend));
	cc->login_convs =
	        im__calloc(a, cc->max_convs, sizeof(*cc->login_convs));
	if (cc->rbuf == NULL || cc->wbuf == NULL || cc->in == NULL ||
	    cc->out == NULL || cc->convs == NULL || cc->entries == NULL ||
	    cc->dirty == NULL || cc->obox == NULL || cc->oorder == NULL ||
	    cc->oused == NULL || cc->pend == NULL || cc->login_convs == NULL) {
		return IM_ENOMEM;
	}
	lo.max_convs = (uint32_t)cc->max_convs;
	lo.alloc = cc->alloc;
	/* opts were checked (max_convs 1..2^24): only memory can fail. */
	return im_convlist_create(&cc->list, &lo) == IM_OK ? IM_OK : IM_ENOMEM;
}

int
im__cc_create(im__cc **out, const im_client_opts *opts, const im__cc_io *io,
              void *io_ud, im_client *handle)
{
	im__cc *cc;
	size_t cap = 16;
	int t;

	*out = NULL;
	if (!opts_valid(opts) || io == NULL) {
		return IM_EINVAL;
	}
	while (cap < (size_t)opts->max_convs * 2) {
		cap *= 2;
	}
	cc = im__calloc(&opts->alloc, 1, sizeof(*cc));
	if (cc == NULL) {
		return IM_ENOMEM;
	}
	cc->alloc = opts->alloc;
	cc->conv_cap = cap;
	cc->max_convs = opts->max_convs;
	cc->max_outbox = opts->max_outbox;
	cc->max_pending = opts->max_pending;
	cc->frame_max = opts->frame_max;
	if (alloc_tables(cc) != IM_OK) {
		im__cc_destroy(cc);
		return IM_ENOMEM;
	}
	cc->io = io;
	cc->io_ud = io_ud;
	cc->handle = handle;
	cc->cb = opts->cb;
	cc->payload = opts->payload;
	(void)im__cc_opts_servers(cc->srv, &cc->nsrv, opts);
	cc->max_rounds = opts->version >= 2 ? opts->max_rounds : 0;
	cc->send_timeout_ms = opts->version >= 3 ? opts->send_timeout_ms : 0;
	snprintf(cc->token, sizeof(cc->token), "%s", opts->token);
	snprintf(cc->device, sizeof(cc->device), "%s",
	         opts->device != NULL ? opts->device : "");
	cc->backoff_min = opts->backoff_min_ms;
	cc->backoff_max = opts->backoff_max_ms;
	cc->ping_ms = opts->ping_ms;
	cc->login_timeout_ms = opts->login_timeout_ms;
	cc->reconnect = opts->reconnect;
	cc->rng = opts->seed;
	cc->state = IM_CLIENT_STOPPED;
	for (t = 0; t < IM__CC_T_N; t++) {
		cc->due[t] = IM__CC_NEVER;
	}
	*out = cc;
	return IM_OK;
}

void
im__cc_destroy(im__cc *cc)
{
	im_allocator a;

	if (cc == NULL) {
		return;
	}
	a = cc->alloc;
	im__free(&a, cc->rbuf);
	im__free(&a, cc->wbuf);
	im__free(&a, cc->in);
	im__free(&a, cc->out);
	im__free(&a, cc->convs);
	im_convlist_destroy(cc->list);
	im__free(&a, cc->entries);
	im__free(&a, cc->dirty);
	im__free(&a, cc->obox);
	im__free(&a, cc->oorder);
	im__free(&a, cc->oused);
	im__free(&a, cc->pend);
	im__free(&a, cc->login_convs);
	im__free(&a, cc);
}
