/*
 * TLS on the client port, end to end: a real imd with tls_cert/tls_key,
 * the real client library (im_client with opts.tls) and raw sockets, with
 * certificates made by the openssl CLI for each test (tls-certs.sh, path
 * in $TLS_CERTS). Every failure must be a clear error on the client and a
 * closed connection, with the server serving the next client as before:
 * an unknown CA, a wrong name, an expired certificate, plain text on the
 * TLS port, a handshake never finished (closed at login_timeout). SIGHUP
 * swaps the certificate for new connections only, and keeps the old one
 * when the new files are broken. tls_client_auth require refuses a client
 * without a certificate.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pb_decode.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "im/client.h"
#include "im/frame.h"

#define T H_TIMEOUT_MS

/* What the server is started with (the test's prestate). */
struct setup_args {
	const char *cert; /* file names in the certificate folder */
	const char *key;
	bool require_client_cert;
};

struct fixture {
	imd_proc imd;
	char certs[300]; /* the certificate folder */
	char live_cert[340], live_key[340], client_ca[340];
	const char *args[16];
};

/* What one client saw. */
struct seen {
	int nerrors;
	int last_err;
	char last_text[400];
	size_t ndeliv;
	char body[64];
	im_gid created;
};

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	struct seen *s = payload;

	(void)cl;
	s->nerrors++;
	/* The error of the connection, not the "gave up" that follows. */
	if (e->err != IM_EUNAVAIL || s->last_err == 0) {
		s->last_err = e->err;
		snprintf(s->last_text, sizeof(s->last_text), "%s", e->text);
	}
}

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	struct seen *s = payload;

	(void)cl;
	if (!m->history) {
		s->ndeliv++;
		snprintf(s->body, sizeof(s->body), "%.*s",
		         (int)(m->body_len < 63 ? m->body_len : 63),
		         (const char *)m->body);
	}
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	struct seen *s = payload;

	(void)cl;
	if (r->kind == IM_CLIENT_REPLY_CREATED) {
		s->created = r->group;
	}
}

static void
path(const struct fixture *f, const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", f->certs, name);
}

static int
copy_file(const char *from, const char *to)
{
	char buf[8192];
	size_t n;
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	int rc = in != NULL && out != NULL ? 0 : -1;

	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
		if (fwrite(buf, 1, n, out) != n) {
			rc = -1;
		}
	}
	if (in != NULL) {
		fclose(in);
	}
	if (out != NULL && fclose(out) != 0) {
		rc = -1;
	}
	return rc;
}

/* The served certificate and key become the named ones (for a reload). */
static void
serve_files(struct fixture *f, const char *cert, const char *key)
{
	char from[340];

	path(f, cert, from, sizeof(from));
	assert_int_equal(copy_file(from, f->live_cert), 0);
	path(f, key, from, sizeof(from));
	assert_int_equal(copy_file(from, f->live_key), 0);
}

static int
setup(void **state)
{
	const struct setup_args *a = *state;
	struct fixture *f = calloc(1, sizeof(*f));
	const char *script = getenv("TLS_CERTS");
	char cmd[800];
	char tmpl[] = "/tmp/imd-tls-XXXXXX";
	int n = 0;

	if (f == NULL || script == NULL || mkdtemp(tmpl) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->certs, sizeof(f->certs), "%s", tmpl);
	snprintf(cmd, sizeof(cmd), "'%s' '%s'", script, f->certs);
	if (system(cmd) != 0) {
		fprintf(stderr, "tls-certs.sh failed\n");
		free(f);
		return -1;
	}
	path(f, "live.pem", f->live_cert, sizeof(f->live_cert));
	path(f, "live.key", f->live_key, sizeof(f->live_key));
	path(f, "ca.pem", f->client_ca, sizeof(f->client_ca));
	f->args[n++] = "--tls_cert";
	f->args[n++] = f->live_cert;
	f->args[n++] = "--tls_key";
	f->args[n++] = f->live_key;
	/* The handshake counts against it: a silent client goes in 1 s. */
	f->args[n++] = "--login_timeout";
	f->args[n++] = "1";
	if (a->require_client_cert) {
		f->args[n++] = "--tls_client_ca";
		f->args[n++] = f->client_ca;
		f->args[n++] = "--tls_client_auth";
		f->args[n++] = "require";
	}
	f->args[n] = NULL;
	*state = f;
	serve_files(f, a->cert, a->key);
	if (imd_init(&f->imd, f->args) != 0 || imd_start(&f->imd) != 0) {
		imd_dump_log(&f->imd);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[400];
	int status = imd_cleanup(&f->imd);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->certs);
	(void)system(cmd);
	free(f);
	return status == 0 ? 0 : -1;
}

/* A TLS client of uid, not connected. ca, cert, key: file names in the
 * certificate folder (NULL: none); name: opts.tls_server_name; host:
 * what it connects to. It tries once (max_rounds 1). */
static im_client *
tls_client(struct fixture *f, uint64_t uid, const char *host, const char *ca,
           const char *name, const char *cert, const char *key,
           struct seen *s)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	char tok[IM_TOKEN_BUF], ca_path[340], cert_path[340], key_path[340];
	im_client *cl;

	memset(s, 0, sizeof(*s));
	imd_token(&f->imd, uid, 3600, tok, sizeof(tok));
	o.host = host;
	o.port = f->imd.port;
	o.token = tok;
	o.device = "test_tls";
	o.seed = uid;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 100;
	o.max_rounds = 1;
	o.cb.on_error = on_error;
	o.cb.on_deliver = on_deliver;
	o.cb.on_reply = on_reply;
	o.payload = s;
	o.tls = true;
	if (ca != NULL) {
		path(f, ca, ca_path, sizeof(ca_path));
		o.tls_ca_file = ca_path;
	}
	o.tls_server_name = name;
	if (cert != NULL) {
		path(f, cert, cert_path, sizeof(cert_path));
		path(f, key, key_path, sizeof(key_path));
		o.tls_cert_file = cert_path;
		o.tls_key_file = key_path;
	}
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	return cl;
}

/* A client of uid that must log in over TLS. */
static im_client *
good_client(struct fixture *f, uint64_t uid, const char *ca, struct seen *s)
{
	im_client *cl = tls_client(f, uid, "127.0.0.1", ca, NULL, NULL, NULL, s);
	int rc = im_client_connect_wait(cl, T);

	if (rc != IM_OK) {
		fprintf(stderr, "login over TLS: %s (%s)\n", im_strerror(rc),
		        s->last_text);
		imd_dump_log(&f->imd);
	}
	assert_int_equal(rc, IM_OK);
	assert_int_equal(im_client_get_state(cl), IM_CLIENT_CONNECTED);
	return cl;
}

/* A client that must fail: its error is IM_EPROTO and says want. */
static void
expect_tls_error(im_client *cl, struct seen *s, const char *want)
{
	int rc = im_client_connect_wait(cl, T);

	if (rc == IM_OK || s->last_err != IM_EPROTO ||
	    strstr(s->last_text, want) == NULL) {
		fprintf(stderr, "want an IM_EPROTO error with '%s', got %s, "
		                "last error %d '%s'\n",
		        want, im_strerror(rc), s->last_err, s->last_text);
	}
	assert_int_equal(rc, IM_EUNAVAIL); /* gave up after its one try */
	assert_int_equal(s->last_err, IM_EPROTO);
	assert_non_null(strstr(s->last_text, want));
	assert_true(im_client_get_state(cl) != IM_CLIENT_CONNECTED);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Occurrences of needle in imd's log. */
static int
log_count(const struct fixture *f, const char *needle)
{
	FILE *fp = fopen(f->imd.log, "r");
	char line[2048];
	int n = 0;

	while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
		n += strstr(line, needle) != NULL;
	}
	if (fp != NULL) {
		fclose(fp);
	}
	return n;
}

/* SIGHUP, then wait (bounded) for the log line that answers it. */
static void
sighup_and_wait(struct fixture *f, const char *answer)
{
	int before = log_count(f, answer);
	uint64_t end = now_ms() + T;

	assert_int_equal(kill(f->imd.pid, SIGHUP), 0);
	while (log_count(f, answer) == before && now_ms() < end) {
		struct timespec ts = {0, 20 * 1000000L};

		nanosleep(&ts, NULL);
	}
	if (log_count(f, answer) == before) {
		imd_dump_log(&f->imd);
	}
	assert_true(log_count(f, answer) > before);
}

static bool
delivered(im_client *cl, void *arg)
{
	(void)cl;
	return ((struct seen *)arg)->ndeliv > 0;
}

/* User 1 makes a group with user 2 and sends body; user 2 gets it. */
static void
chat(im_client *c1, struct seen *s1, im_client *c2, struct seen *s2,
     const char *body)
{
	im_uid two = 2;
	uint64_t req;
	int err = IM_ERR;
	im_seq seq = 0;

	s1->created = 0;
	assert_int_equal(im_client_create_group(c1, "tls", &two, 1, &req),
	                 IM_OK);
	assert_int_equal(im_client_wait_reply(c1, req, T, &err), IM_OK);
	assert_int_equal(err, IM_OK);
	assert_true(s1->created != 0);
	s2->ndeliv = 0;
	assert_int_equal(im_client_send_wait(c1, s1->created, body,
	                                     strlen(body), T, &seq),
	                 IM_OK);
	assert_true(seq > 0);
	assert_int_equal(im_client_run_until(c2, T, delivered, s2), IM_OK);
	assert_string_equal(s2->body, body);
}

static const struct setup_args plain_setup = {"server.pem", "server.key",
                                              false};
static const struct setup_args expired_setup = {"expired.pem", "expired.key",
                                                false};
static const struct setup_args require_setup = {"server.pem", "server.key",
                                                true};

static void
test_tls_two_users_chat_over_tls(void **state)
{
	struct fixture *f = *state;
	struct seen s1, s2;
	im_client *c1 = good_client(f, 1, "ca.pem", &s1);
	/* By DNS name this time: the default server name is the host. */
	im_client *c2 = tls_client(f, 2, "localhost", "ca.pem", NULL, NULL,
	                           NULL, &s2);

	assert_int_equal(im_client_connect_wait(c2, T), IM_OK);
	chat(c1, &s1, c2, &s2, "over tls");
	assert_int_equal(s1.nerrors, 0);
	assert_int_equal(s2.nerrors, 0);
	im_client_destroy(c1);
	im_client_destroy(c2);
}

/* After a failed client, a good one still logs in and chats. */
static void
server_still_serves(struct fixture *f)
{
	struct seen s1, s2;
	im_client *c1 = good_client(f, 1, "ca.pem", &s1);
	im_client *c2 = good_client(f, 2, "ca.pem", &s2);

	chat(c1, &s1, c2, &s2, "still here");
	im_client_destroy(c1);
	im_client_destroy(c2);
}

static void
test_tls_unknown_ca_is_a_verify_error(void **state)
{
	struct fixture *f = *state;
	struct seen s;
	im_client *cl = tls_client(f, 1, "127.0.0.1", "ca2.pem", NULL, NULL,
	                           NULL, &s);

	expect_tls_error(cl, &s, "tls: certificate verify failed: unable "
	                         "to get local issuer certificate");
	im_client_destroy(cl);
	assert_true(log_count(f, "tls handshake failed") >= 1);
	server_still_serves(f);
}

static void
test_tls_wrong_server_name_is_a_hostname_mismatch(void **state)
{
	struct fixture *f = *state;
	struct seen s;
	im_client *cl = tls_client(f, 1, "127.0.0.1", "ca.pem",
	                           "chat.example.org", NULL, NULL, &s);

	expect_tls_error(cl, &s, "certificate verify failed: hostname "
	                         "mismatch");
	im_client_destroy(cl);
	server_still_serves(f);
}

static void
test_tls_expired_certificate_is_refused(void **state)
{
	struct fixture *f = *state;
	struct seen s;
	im_client *cl = tls_client(f, 1, "127.0.0.1", "ca.pem", NULL, NULL,
	                           NULL, &s);

	expect_tls_error(cl, &s, "certificate verify failed: certificate "
	                         "has expired");
	im_client_destroy(cl);
	/* A new certificate by SIGHUP, and the same client gets in. */
	serve_files(f, "server.pem", "server.key");
	sighup_and_wait(f, "reloaded for new connections");
	server_still_serves(f);
}

static void
test_tls_plain_text_on_the_tls_port_is_closed(void **state)
{
	struct fixture *f = *state;
	char tok[IM_TOKEN_BUF];
	tclient c;
	int last = 0;

	imd_token(&f->imd, 1, 3600, tok, sizeof(tok));
	assert_int_equal(tc_connect(&c, f->imd.port), 0);
	/* A Login frame in plain text is no TLS record: no LoginOk, the
	 * connection is closed. */
	assert_int_equal(tc_login(&c, tok, NULL, 0, NULL), -1000);
	assert_true(tc_wait_closed(&c, T, &last));
	tc_close(&c);
	assert_true(log_count(f, "tls handshake failed: wrong version "
	                         "number") >= 1);
	server_still_serves(f);
}

static void
test_tls_a_handshake_never_finished_is_closed_at_login_timeout(void **state)
{
	struct fixture *f = *state;
	/* The start of a TLS record header, then silence. */
	static const uint8_t part[] = {0x16, 0x03, 0x01};
	tclient c;
	uint64_t t0;

	assert_int_equal(tc_connect(&c, f->imd.port), 0);
	t0 = now_ms();
	assert_int_equal(tc_send_raw(&c, part, sizeof(part)), 0);
	assert_true(tc_wait_closed(&c, 4000, NULL));
	/* login_timeout is 1 s: not sooner (within the timer's slack),
	 * and not much later. */
	assert_true(now_ms() - t0 >= 900);
	assert_true(now_ms() - t0 < 3000);
	tc_close(&c);
	server_still_serves(f);
}

static void
test_tls_sighup_serves_a_new_certificate_to_new_connections_only(
        void **state)
{
	struct fixture *f = *state;
	struct seen s1, s2, s3, s4;
	im_client *c1 = good_client(f, 1, "ca.pem", &s1);
	im_client *c2 = good_client(f, 2, "ca.pem", &s2);
	im_client *c3, *c4;

	/* server2 is signed by ca2, which the old clients do not trust. */
	serve_files(f, "server2.pem", "server2.key");
	sighup_and_wait(f, "reloaded for new connections");
	/* The established sessions go on, on the same connections. */
	chat(c1, &s1, c2, &s2, "after reload");
	assert_int_equal(s1.nerrors, 0);
	assert_int_equal(s2.nerrors, 0);
	/* A new connection gets the new certificate: trusted by ca2 ... */
	c3 = good_client(f, 1, "ca2.pem", &s3);
	/* ... and no longer by ca. */
	c4 = tls_client(f, 2, "127.0.0.1", "ca.pem", NULL, NULL, NULL, &s4);
	expect_tls_error(c4, &s4, "unable to get local issuer certificate");
	im_client_destroy(c1);
	im_client_destroy(c2);
	im_client_destroy(c3);
	im_client_destroy(c4);
}

static void
test_tls_sighup_with_a_broken_key_keeps_the_old_certificate(void **state)
{
	struct fixture *f = *state;
	struct seen s1, s2;
	FILE *key = fopen(f->live_key, "w");
	im_client *c1, *c2;

	assert_non_null(key);
	fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n"
	      "-----END PRIVATE KEY-----\n",
	      key);
	fclose(key);
	sighup_and_wait(f, "TLS reload failed, still serving the previous "
	                   "certificate");
	assert_true(log_count(f, f->live_key) >= 1); /* says which file */
	c1 = good_client(f, 1, "ca.pem", &s1);
	c2 = good_client(f, 2, "ca.pem", &s2);
	chat(c1, &s1, c2, &s2, "old certificate");
	im_client_destroy(c1);
	im_client_destroy(c2);
}

static void
test_tls_client_certificate_required(void **state)
{
	struct fixture *f = *state;
	struct seen s1, s2, s3;
	im_client *c1, *c2, *c3;

	/* No certificate: refused (TLS 1.3 says so after the handshake, in
	 * the first read: an alert). */
	c1 = tls_client(f, 1, "127.0.0.1", "ca.pem", NULL, NULL, NULL, &s1);
	expect_tls_error(c1, &s1, "certificate required");
	im_client_destroy(c1);
	/* A certificate of the client CA: in. */
	c2 = tls_client(f, 1, "127.0.0.1", "ca.pem", NULL, "client.pem",
	                "client.key", &s2);
	assert_int_equal(im_client_connect_wait(c2, T), IM_OK);
	c3 = tls_client(f, 2, "127.0.0.1", "ca.pem", NULL, "client.pem",
	                "client.key", &s3);
	assert_int_equal(im_client_connect_wait(c3, T), IM_OK);
	chat(c2, &s2, c3, &s3, "with client certificates");
	im_client_destroy(c2);
	im_client_destroy(c3);
}

/* A raw blocking TLS client (OpenSSL, trusting ca.pem) for bytes the
 * library would never send. */
struct raw_tls {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
};

static void
raw_open(struct fixture *f, struct raw_tls *r)
{
	struct sockaddr_in sa;
	struct timeval tv = {T / 1000, 0};
	char ca[340];

	path(f, "ca.pem", ca, sizeof(ca));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(f->imd.port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	r->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(r->fd >= 0);
	/* Every read is bounded. */
	assert_int_equal(setsockopt(r->fd, SOL_SOCKET, SO_RCVTIMEO, &tv,
	                            sizeof(tv)),
	                 0);
	assert_int_equal(connect(r->fd, (struct sockaddr *)&sa, sizeof(sa)),
	                 0);
	r->ctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(r->ctx);
	assert_int_equal(SSL_CTX_load_verify_locations(r->ctx, ca, NULL), 1);
	SSL_CTX_set_verify(r->ctx, SSL_VERIFY_PEER, NULL);
	r->ssl = SSL_new(r->ctx);
	assert_non_null(r->ssl);
	SSL_set_fd(r->ssl, r->fd);
	assert_int_equal(SSL_connect(r->ssl), 1);
}

static void
raw_close(struct raw_tls *r)
{
	SSL_free(r->ssl);
	SSL_CTX_free(r->ctx);
	close(r->fd);
}

/*
 * Read what the server sends until it closes: the code of the last Error
 * frame (-1 if none) in *code; true if the server closed (close_notify or
 * EOF) within the socket's read timeout.
 */
static bool
raw_until_closed(struct raw_tls *r, int *code)
{
	static uint8_t buf[IM_FRAME_HEADER + IM_FRAME_MAX];
	static im_Envelope env;
	size_t have = 0;

	*code = -1;
	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		int n = SSL_read(r->ssl, buf + have, (int)(sizeof(buf) - have));

		if (n <= 0) {
			int e = SSL_get_error(r->ssl, n);

			return e == SSL_ERROR_ZERO_RETURN ||
			       (e == SSL_ERROR_SYSCALL && errno == 0) ||
			       e == SSL_ERROR_SSL;
		}
		have += (size_t)n;
		while (im_frame_parse(buf, have, IM_FRAME_MAX, &payload, &plen,
		                      &used) == IM_OK) {
			pb_istream_t is = pb_istream_from_buffer(payload, plen);

			memset(&env, 0, sizeof(env));
			if (pb_decode(&is, im_Envelope_fields, &env) &&
			    env.which_msg == im_Envelope_error_tag) {
				*code = (int)env.msg.error.code;
			}
			memmove(buf, buf + used, have - used);
			have -= used;
		}
	}
}

static void
test_tls_the_frame_limits_hold_over_tls(void **state)
{
	struct fixture *f = *state;
	/* A length prefix over frame_max (8192): refused by the prefix. */
	static const uint8_t big[] = {0x00, 0x01, 0x00, 0x00, 0x0a};
	/* Half a frame, then the client's close_notify: truncated. */
	static const uint8_t half[] = {0x00, 0x00, 0x00, 0x10, 0x0a};
	struct raw_tls r;
	int code;

	raw_open(f, &r);
	assert_int_equal(SSL_write(r.ssl, big, sizeof(big)), (int)sizeof(big));
	assert_true(raw_until_closed(&r, &code));
	assert_int_equal(code, im_Code_ERR_TOO_BIG);
	raw_close(&r);

	raw_open(f, &r);
	assert_int_equal(SSL_write(r.ssl, half, sizeof(half)),
	                 (int)sizeof(half));
	(void)SSL_shutdown(r.ssl);
	assert_true(raw_until_closed(&r, &code));
	assert_int_equal(code, im_Code_ERR_BAD_REQUEST);
	raw_close(&r);
	assert_true(log_count(f, "truncated frame") >= 1);
	server_still_serves(f);
}

/* Files that do not load are refused at create, before any connection. */
static void
test_tls_client_refuses_files_that_do_not_load(void **state)
{
	struct fixture *f = *state;
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	char ca[340], cert[340], key[340];
	im_client *cl = NULL;

	path(f, "ca.pem", ca, sizeof(ca));
	path(f, "client.pem", cert, sizeof(cert));
	path(f, "client.key", key, sizeof(key));
	o.token = "1.2.3";
	o.tls = true;
	o.tls_ca_file = "/nonexistent/ca.pem";
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.tls_ca_file = ca;
	o.tls_cert_file = cert; /* without its key */
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.tls_key_file = f->live_key; /* the server's: not the cert's key */
	assert_int_equal(im_client_create(&cl, &o), IM_EINVAL);
	o.tls_key_file = key;
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	im_client_destroy(cl);
	/* A version 3 caller gets plain TCP, whatever follows in memory. */
	o.version = 3;
	o.tls_ca_file = "/nonexistent/ca.pem";
	assert_int_equal(im_client_create(&cl, &o), IM_OK);
	im_client_destroy(cl);
}

#define TLS_TEST(fn, args)                                                     \
	{                                                                      \
		#fn, fn, setup, teardown, (void *)(uintptr_t)(args)            \
	}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	        TLS_TEST(test_tls_two_users_chat_over_tls, &plain_setup),
	        TLS_TEST(test_tls_unknown_ca_is_a_verify_error, &plain_setup),
	        TLS_TEST(test_tls_wrong_server_name_is_a_hostname_mismatch,
	                 &plain_setup),
	        TLS_TEST(test_tls_expired_certificate_is_refused,
	                 &expired_setup),
	        TLS_TEST(test_tls_plain_text_on_the_tls_port_is_closed,
	                 &plain_setup),
	        TLS_TEST(
	                test_tls_a_handshake_never_finished_is_closed_at_login_timeout,
	                &plain_setup),
	        TLS_TEST(
	                test_tls_sighup_serves_a_new_certificate_to_new_connections_only,
	                &plain_setup),
	        TLS_TEST(test_tls_sighup_with_a_broken_key_keeps_the_old_certificate,
	                 &plain_setup),
	        TLS_TEST(test_tls_client_certificate_required, &require_setup),
	        TLS_TEST(test_tls_the_frame_limits_hold_over_tls,
	                 &plain_setup),
	        TLS_TEST(test_tls_client_refuses_files_that_do_not_load,
	                 &plain_setup),
	};

	return cmocka_run_group_tests_name("system_tls", tests, NULL, NULL);
}
