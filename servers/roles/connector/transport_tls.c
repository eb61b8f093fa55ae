/*
 * TLS on the client port (transport.h, connector.h's connector_tls_*):
 * OpenSSL on the Connector's libev loop, one SSL per connection over its
 * non-blocking socket, no thread. The handshake is driven by the first
 * reads (the client speaks first), so it runs under the login deadline of
 * conn.c like any byte before the Login; what a read or write waits for
 * is OpenSSL's SSL_ERROR_WANT_READ/WANT_WRITE, handed to conn.c as
 * TR_WANT_READ/TR_WANT_WRITE.
 *
 * The context: one SSL_CTX made from the files named in the settings.
 * A reload builds a new one from the same paths and swaps it in only when
 * the whole of it loaded; connections hold a reference to the context
 * they were accepted with (OpenSSL counts them), so they go on untouched
 * and the old context is freed with its last connection.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "connector_int.h"

struct conn_tls {
	SSL_CTX *ctx; /* for new connections */
	char *cert, *key, *client_ca;
	connector_tls_client client_auth;
};

/* The reason of the last OpenSSL failure, for a log line or an error
 * message ("certificate verify failed: unable to get local issuer
 * certificate"); empties OpenSSL's error queue. */
static void
tls_reason(const SSL *ssl, char *out, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (r == NULL) {
		r = e != 0 ? "unknown error" : strerror(errno);
	}
	if (vr != X509_V_OK) {
		snprintf(out, len, "%s: %s", r, X509_verify_cert_error_string(vr));
	} else {
		snprintf(out, len, "%s", r);
	}
	ERR_clear_error();
}

/* A context from t's paths, or NULL with the reason in err. */
static SSL_CTX *
ctx_load(const struct conn_tls *t, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "libim";
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	const char *what = "context";
	char why[256];

	ERR_clear_error();
	if (ctx == NULL) {
		goto fail;
	}
	/* Renegotiation (TLS 1.2) would let a client make the server do
	 * handshakes at will; IGNORE_UNEXPECTED_EOF: a FIN without
	 * close_notify is an end of input as on plain TCP (a client that
	 * half-closes), truncation is caught by the framing. RELEASE_BUFFERS:
	 * an idle connection holds no TLS buffers, as it holds no frame
	 * buffer. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	                                 SSL_OP_IGNORE_UNEXPECTED_EOF |
	                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
	                              SSL_MODE_RELEASE_BUFFERS);
	what = t->cert;
	if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
		goto fail;
	}
	what = t->key;
	if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		goto fail;
	}
	if (t->client_auth != CONNECTOR_TLS_CLIENT_NONE) {
		STACK_OF(X509_NAME) *names;

		what = t->client_ca;
		if (SSL_CTX_load_verify_locations(ctx, t->client_ca, NULL) !=
		            1 ||
		    (names = SSL_load_client_CA_file(t->client_ca)) == NULL) {
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx,
		                   t->client_auth == CONNECTOR_TLS_CLIENT_REQUIRE
		                           ? SSL_VERIFY_PEER |
		                                     SSL_VERIFY_FAIL_IF_NO_PEER_CERT
		                           : SSL_VERIFY_PEER,
		                   NULL);
		/* Resumed sessions of verified clients need a context id. */
		SSL_CTX_set_session_id_context(ctx, sid_ctx,
		                               sizeof(sid_ctx) - 1);
	}
	return ctx;
fail:
	tls_reason(NULL, why, sizeof(why));
	snprintf(err, errlen, "tls: %s: %s", what, why);
	SSL_CTX_free(ctx);
	return NULL;
}

void
conn__tls_destroy(struct conn_tls *t)
{
	if (t == NULL) {
		return;
	}
	SSL_CTX_free(t->ctx);
	free(t->cert);
	free(t->key);
	free(t->client_ca);
	free(t);
}

int
connector_tls_enable(connector *cn, const connector_tls_opts *o, char *err,
                     size_t errlen)
{
	struct conn_tls *t;

	if (cn == NULL || o == NULL || o->cert == NULL || o->key == NULL ||
	    o->cert[0] == '\0' || o->key[0] == '\0' || cn->tls != NULL ||
	    (o->client_auth != CONNECTOR_TLS_CLIENT_NONE &&
	     (o->client_ca == NULL || o->client_ca[0] == '\0'))) {
		snprintf(err, errlen, "tls: a certificate and a key are "
		                      "needed (and a client CA file for "
		                      "client certificates)");
		return IM_EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "tls: out of memory");
		return IM_ENOMEM;
	}
	t->client_auth = o->client_auth;
	t->cert = strdup(o->cert);
	t->key = strdup(o->key);
	t->client_ca = strdup(o->client_ca != NULL ? o->client_ca : "");
	if (t->cert == NULL || t->key == NULL || t->client_ca == NULL) {
		conn__tls_destroy(t);
		snprintf(err, errlen, "tls: out of memory");
		return IM_ENOMEM;
	}
	t->ctx = ctx_load(t, err, errlen);
	if (t->ctx == NULL) {
		conn__tls_destroy(t);
		return IM_EINVAL;
	}
	cn->tls = t;
	cn->tr = &conn__tr_tls;
	return IM_OK;
}

int
connector_tls_reload(connector *cn, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (cn == NULL || cn->tls == NULL) {
		snprintf(err, errlen, "tls is not on");
		return IM_EINVAL;
	}
	ctx = ctx_load(cn->tls, err, errlen);
	if (ctx == NULL) {
		return IM_EINVAL;
	}
	/* Open connections keep their reference to the old context. */
	SSL_CTX_free(cn->tls->ctx);
	cn->tls->ctx = ctx;
	return IM_OK;
}

/* ---- the transport ---- */

static int
tls_open(struct conn *c)
{
	SSL *ssl = SSL_new(c->cn->tls->ctx);

	if (ssl == NULL || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return IM_ENOMEM;
	}
	SSL_set_accept_state(ssl);
	c->tr_state = ssl;
	return IM_OK;
}

/* n from SSL_read/SSL_write as a transport result. */
static ssize_t
tls_result(struct conn *c, SSL *ssl, int n, const char *op)
{
	char why[256];
	int e = SSL_get_error(ssl, n);

	switch (e) {
	case SSL_ERROR_NONE:
		return n;
	case SSL_ERROR_WANT_READ:
		return TR_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return TR_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN: /* close_notify, or a FIN (see above) */
		return TR_EOF;
	default:
		break;
	}
	/* A failed TLS session must not send close_notify. */
	SSL_set_quiet_shutdown(ssl, 1);
	tls_reason(ssl, why, sizeof(why));
	if (!SSL_is_init_finished(ssl)) {
		/* Info, not debug: a client that cannot connect (its CA,
		 * its clock, plain text on this port) shows up here only. */
		LOG_I("conn %s: tls handshake failed: %s", c->peer, why);
	} else {
		LOG_D("conn %s: tls %s: %s", c->peer, op, why);
	}
	return TR_FAIL;
}

static ssize_t
tls_read(struct conn *c, void *buf, size_t len)
{
	SSL *ssl = c->tr_state;
	int n;

	ERR_clear_error();
	errno = 0;
	n = SSL_read(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	return n > 0 ? n : tls_result(c, ssl, n, "read");
}

static ssize_t
tls_write(struct conn *c, const void *buf, size_t len)
{
	SSL *ssl = c->tr_state;
	int n;

	ERR_clear_error();
	errno = 0;
	n = SSL_write(ssl, buf, len > INT32_MAX ? INT32_MAX : (int)len);
	if (n > 0) {
		return n;
	}
	n = (int)tls_result(c, ssl, n, "write");
	/* Nothing written is no end of output: a write that returns 0
	 * without a want is broken. */
	return n == TR_EOF ? TR_FAIL : n;
}

static bool
tls_established(const struct conn *c)
{
	return SSL_is_init_finished(c->tr_state);
}

static bool
tls_pending(const struct conn *c)
{
	return SSL_pending(c->tr_state) > 0;
}

static void
tls_shutdown(struct conn *c)
{
	SSL *ssl = c->tr_state;

	if (SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl);
		ERR_clear_error();
	}
}

static void
tls_close(struct conn *c)
{
	SSL_free(c->tr_state);
	c->tr_state = NULL;
}

const struct conn_transport conn__tr_tls = {
        .name = "tls",
        .open = tls_open,
        .read = tls_read,
        .write = tls_write,
        .established = tls_established,
        .pending = tls_pending,
        .shutdown = tls_shutdown,
        .close = tls_close,
};
