/*
 * TLS for the client driver (tls.h): OpenSSL's non-blocking client. The
 * server's certificate is always checked, chain and name: the name is
 * opts.tls_server_name or the host being connected to, checked as an IP
 * address when it is one (no SNI then), else as a DNS name (and sent as
 * SNI).
 */
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* "tls: REASON[: VERIFY RESULT]" of the last failure; empties OpenSSL's
 * error queue. what: for a failure OpenSSL has no reason for. */
static void
reason(SSL *ssl, const char *what, char *text, size_t len)
{
	unsigned long e = ERR_peek_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;

	if (r == NULL) {
		r = errno != 0 ? strerror(errno) : what;
	}
	if (vr != X509_V_OK) {
		snprintf(text, len, "tls: %s: %s", r,
		         X509_verify_cert_error_string(vr));
	} else {
		snprintf(text, len, "tls: %s", r);
	}
	ERR_clear_error();
}

int
im__tls_init(im__tls *t, const im_client_opts *opts)
{
	SSL_CTX *ctx;
	int ok;

	memset(t, 0, sizeof(*t));
	if (opts->version < 4 || !opts->tls) {
		return IM_OK;
	}
	if ((opts->tls_cert_file == NULL) != (opts->tls_key_file == NULL)) {
		return IM_EINVAL;
	}
	ERR_clear_error();
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		ERR_clear_error();
		return IM_ENOMEM;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* A server that closes without close_notify is a closed connection,
	 * as on plain TCP; the framing notices a cut frame. */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* The core's output buffer compacts and may move between tries. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	ok = opts->tls_ca_file != NULL
	             ? SSL_CTX_load_verify_locations(ctx, opts->tls_ca_file,
	                                             NULL)
	             : SSL_CTX_set_default_verify_paths(ctx);
	if (ok == 1 && opts->tls_cert_file != NULL) {
		ok = SSL_CTX_use_certificate_chain_file(ctx,
		                                        opts->tls_cert_file) ==
		                     1 &&
		     SSL_CTX_use_PrivateKey_file(ctx, opts->tls_key_file,
		                                 SSL_FILETYPE_PEM) == 1 &&
		     SSL_CTX_check_private_key(ctx) == 1;
	}
	ERR_clear_error();
	if (ok != 1) {
		SSL_CTX_free(ctx);
		return IM_EINVAL;
	}
	if (opts->tls_server_name != NULL) {
		t->server_name = strdup(opts->tls_server_name);
		if (t->server_name == NULL) {
			SSL_CTX_free(ctx);
			return IM_ENOMEM;
		}
	}
	t->ctx = ctx;
	return IM_OK;
}

void
im__tls_finish(im__tls *t)
{
	im__tls_stop(t);
	SSL_CTX_free(t->ctx);
	free(t->server_name);
	memset(t, 0, sizeof(*t));
}

static bool
is_ip(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, name, buf) == 1 ||
	       inet_pton(AF_INET6, name, buf) == 1;
}

int
im__tls_start(im__tls *t, int fd, const char *host, char *text, size_t len)
{
	const char *name = t->server_name != NULL ? t->server_name : host;
	SSL *ssl;
	int ok;

	im__tls_stop(t);
	ERR_clear_error();
	ssl = SSL_new(t->ctx);
	if (ssl == NULL) {
		snprintf(text, len, "tls: out of memory");
		return IM_ENOMEM;
	}
	if (is_ip(name)) {
		ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
	} else {
		ok = SSL_set_tlsext_host_name(ssl, name) == 1 &&
		     SSL_set1_host(ssl, name) == 1;
	}
	if (!ok || SSL_set_fd(ssl, fd) != 1) {
		reason(NULL, "bad server name", text, len);
		SSL_free(ssl);
		return IM_ENOMEM;
	}
	SSL_set_connect_state(ssl);
	t->ssl = ssl;
	return IM_OK;
}

/* n from an SSL call as a step result. */
static int
result(im__tls *t, int n, const char *what, char *text, size_t len)
{
	SSL *ssl = t->ssl;

	switch (SSL_get_error(ssl, n)) {
	case SSL_ERROR_NONE:
		return IM__TLS_DONE;
	case SSL_ERROR_WANT_READ:
		return IM__TLS_WANT_READ;
	case SSL_ERROR_WANT_WRITE:
		return IM__TLS_WANT_WRITE;
	case SSL_ERROR_ZERO_RETURN:
		return IM__TLS_DONE;
	default:
		break;
	}
	/* A failed session must not send close_notify. */
	SSL_set_quiet_shutdown(ssl, 1);
	reason(ssl, what, text, len);
	return IM__TLS_FAIL;
}

int
im__tls_handshake(im__tls *t, char *text, size_t len)
{
	int n;

	ERR_clear_error();
	errno = 0;
	n = SSL_do_handshake(t->ssl);
	if (n == 1) {
		return IM__TLS_DONE;
	}
	n = result(t, n, "connection closed during the handshake", text, len);
	if (n == IM__TLS_DONE) {
		/* close_notify before the handshake ended */
		snprintf(text, len, "tls: connection closed during the "
		                    "handshake");
		return IM__TLS_FAIL;
	}
	return n;
}

ssize_t
im__tls_read(im__tls *t, void *buf, size_t n, char *text, size_t len)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_read(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0) {
		return r;
	}
	return result(t, r, "connection closed by server", text, len);
}

ssize_t
im__tls_write(im__tls *t, const void *buf, size_t n, char *text, size_t len)
{
	int r;

	ERR_clear_error();
	errno = 0;
	r = SSL_write(t->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
	if (r > 0) {
		return r;
	}
	r = result(t, r, "write failed", text, len);
	if (r == IM__TLS_DONE) {
		snprintf(text, len, "tls: write after the server closed");
		return IM__TLS_FAIL;
	}
	return r;
}

bool
im__tls_pending(const im__tls *t)
{
	return t->ssl != NULL && SSL_pending(t->ssl) > 0;
}

void
im__tls_stop(im__tls *t)
{
	SSL *ssl = t->ssl;

	if (ssl == NULL) {
		return;
	}
	if (SSL_is_init_finished(ssl)) {
		ERR_clear_error();
		(void)SSL_shutdown(ssl);
	}
	ERR_clear_error();
	SSL_free(ssl);
	t->ssl = NULL;
}
