/*
 * TLS for the client driver (client.c): an OpenSSL client context made
 * from im_client_opts' tls fields, and one SSL per connection over the
 * driver's non-blocking socket. The core never sees it: the driver
 * finishes the handshake before it tells the core the connection is up,
 * and moves decrypted bytes where it moved plain ones.
 *
 * OpenSSL allocates with its own malloc, not opts.alloc: the client's
 * bounds still hold (the core's buffers are its own), the TLS state of
 * the one connection comes on top.
 */
#ifndef IM_CLIENT_TLS_H
#define IM_CLIENT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "im/client.h"

/* What a TLS step returns besides a byte count (> 0). */
enum {
	IM__TLS_DONE = 0,        /* handshake: finished; read: EOF */
	IM__TLS_WANT_READ = -1,  /* wait until the socket is readable */
	IM__TLS_WANT_WRITE = -2, /* wait until the socket is writable */
	IM__TLS_FAIL = -3        /* broken: why in the text */
};

typedef struct im__tls {
	void *ctx; /* SSL_CTX, NULL: TLS off */
	void *ssl; /* SSL of the open connection, or NULL */
	char *server_name; /* opts.tls_server_name, or NULL */
} im__tls;

/* From opts (version 4, tls set; else t stays off). IM_OK, IM_EINVAL (a
 * file that does not load), IM_ENOMEM. */
int im__tls_init(im__tls *t, const im_client_opts *opts);
void im__tls_finish(im__tls *t);
static inline bool
im__tls_on(const im__tls *t)
{
	return t->ctx != NULL;
}

/* A connection on fd to host (the name checked unless server_name was
 * given). IM_OK, or IM_ENOMEM with a text. */
int im__tls_start(im__tls *t, int fd, const char *host, char *text,
                  size_t len);
/* One handshake step: IM__TLS_DONE, _WANT_READ, _WANT_WRITE or _FAIL
 * (text: "tls: certificate verify failed: ..."). */
int im__tls_handshake(im__tls *t, char *text, size_t len);
/* Decrypted bytes: a count, IM__TLS_DONE (the server closed), a want,
 * or IM__TLS_FAIL with a text. */
ssize_t im__tls_read(im__tls *t, void *buf, size_t n, char *text, size_t len);
/* Bytes out: a count, a want or IM__TLS_FAIL with a text. After a want
 * the same bytes are passed again (the core's buffer keeps them). */
ssize_t im__tls_write(im__tls *t, const void *buf, size_t n, char *text,
                      size_t len);
/* Decrypted bytes waiting inside OpenSSL (no socket event comes). */
bool im__tls_pending(const im__tls *t);
/* Say goodbye (one try) and free the connection's SSL. */
void im__tls_stop(im__tls *t);

#endif
