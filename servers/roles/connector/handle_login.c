/*
 * Login: token check, the owner check (Redirect to the owning Connector in
 * a cluster), the user's online state, a new session, then LoginOk and the
 * conversation pages. conn__login_user is shared with Resume.
 */
#include <string.h>

#include "connector_int.h"

struct user *
conn__login_user(struct conn *c, uint64_t req_id, const char *token)
{
	connector *cn = c->cn;
	im_uid uid = 0;
	struct user *u;
	im_shard_entry e;
	int rc;

	rc = im_token_verifier_verify(cn->tokens, token,
	                              role_now_ms() / 1000u, &uid);
	if (rc != IM_OK) {
		conn__fail(c, req_id, im_Code_ERR_AUTH,
		           rc == IM_EPERM ? "bad or expired token"
		                          : "malformed token");
		return NULL;
	}
	e = im_shard_get(cn->map, IM_KIND_USER, uid);
	if (strcmp(e.owner, cn->node) != 0) {
		const char *addr = conn__owner_address(cn, e.owner);

		if (addr != NULL) {
			LOG_D("user %llu: redirected to %s (%s)",
			      (unsigned long long)uid, addr, e.owner);
			conn__redirect(c, req_id, addr);
		} else {
			conn__fail(c, req_id, im_Code_ERR_UNAVAILABLE,
			           "user is not served here");
		}
		return NULL;
	}
	u = conn__user_get(cn, uid);
	if (u == NULL) {
		conn__fail(c, req_id, im_Code_ERR_INTERNAL, "out of memory");
		return NULL;
	}
	rc = conn__user_online(cn, u);
	if (rc != IM_OK) {
		LOG_W("login of %llu: %s (%s)", (unsigned long long)uid,
		      im_strerror(rc), im_store_errmsg(cn->st));
		conn__fail(c, req_id, im_code_of_err(rc),
		           rc == IM_EFULL ? "too many conversations"
		                          : "store unavailable");
		return NULL;
	}
	return u;
}

void
conn__handle_login(struct conn *c, uint64_t req_id, const im_Login *lg)
{
	im_LoginOk ok = im_LoginOk_init_zero;
	struct user *u = conn__login_user(c, req_id, lg->token);
	struct session *s;

	if (u == NULL) {
		return;
	}
	if ((s = conn__session_open(c, u, req_id)) == NULL) {
		return;
	}
	conn__session_attach(c, s);
	ok.user = u->uid;
	memcpy(ok.session, s->id, SESSION_ID_LEN);
	ok.server_time_ms = role_now_ms();
	ok.conv_count = (uint32_t)im_convlist_count(u->convs);
	ok.uq_last_seq = u->uq_last;
	LOG_I("user %llu logged in from %s (%s), %u conversations",
	      (unsigned long long)u->uid, c->peer, lg->device, ok.conv_count);
	conn__send(c, req_id, im_Envelope_login_ok_tag, im_LoginOk_fields, &ok);
	conn__send_conv_pages(c, u, req_id);
}
