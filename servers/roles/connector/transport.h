/*
 * The seam between a client connection (conn.c) and the bytes on its
 * socket: plain TCP (transport_plain.c) or TLS (transport_tls.c). conn.c
 * keeps everything else (framing, limits, deadlines, back-pressure, the
 * write buffer) and calls only these ops, so a transport changes how
 * bytes are read and written, never what the Connector does with them.
 *
 * Why ops and not an `if (tls)`: the next transport is WebSocket (RFC
 * 6455, through libwslay), plain and over TLS. A WebSocket transport
 * keeps its own state in tr_state and reaches the socket through a lower
 * transport (plain or TLS) of its own, so WebSocket over TLS is WebSocket
 * stacked on these TLS ops, with conn.c unchanged. Each op works on the
 * one connection, never blocks, and reports "not now" as TR_WANT_READ or
 * TR_WANT_WRITE: what the transport waits for may be the other direction
 * (a TLS read may have to write a handshake record, a write may have to
 * read one), and conn.c arms the matching libev watcher.
 *
 * Ownership: the transport allocates its per-connection state in open
 * (c->tr_state) and frees it in close; the socket (c->fd) is conn.c's.
 */
#ifndef IM_ROLE_CONNECTOR_TRANSPORT_H
#define IM_ROLE_CONNECTOR_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct conn;
struct connector;

/* What read and write return besides a byte count (> 0). */
enum {
	TR_EOF = 0,         /* read: the peer closed its sending side */
	TR_WANT_READ = -1,  /* wait until the socket is readable */
	TR_WANT_WRITE = -2, /* wait until the socket is writable */
	TR_FAIL = -3        /* broken (the transport logged why): close */
};

struct conn_transport {
	const char *name;
	/* Set up c (accepted, c->fd non-blocking). IM_OK, or IM_ENOMEM:
	 * the connection is then closed without a word. */
	int (*open)(struct conn *c);
	/* Up to len decoded bytes into buf: a count, TR_EOF, TR_WANT_READ,
	 * TR_WANT_WRITE or TR_FAIL. */
	ssize_t (*read)(struct conn *c, void *buf, size_t len);
	/* Write a prefix of buf: a count, TR_WANT_WRITE, TR_WANT_READ or
	 * TR_FAIL. After a "want", the next call passes the same bytes
	 * again (at a possibly moved address, possibly with more after
	 * them): conn.c's write buffer only ever grows at its end. */
	ssize_t (*write)(struct conn *c, const void *buf, size_t len);
	/* Can frames be written yet? False while a TLS handshake is under
	 * way: a final Error then has no way to the client, the connection
	 * is just closed (the TLS alert, if any, is its goodbye). */
	bool (*established)(const struct conn *c);
	/* Decoded bytes already taken off the socket, waiting inside the
	 * transport: libev sees only the socket, so the reader must ask. */
	bool (*pending)(const struct conn *c);
	/* The transport's goodbye (TLS: close_notify), before the socket
	 * is shut down; one try, never blocks. May be NULL. */
	void (*shutdown)(struct conn *c);
	/* Free the per-connection state (the socket stays conn.c's). */
	void (*close)(struct conn *c);
};

extern const struct conn_transport conn__tr_plain;
extern const struct conn_transport conn__tr_tls;

/* transport_tls.c: the server's TLS context (cn->tls), see connector.h. */
struct conn_tls;
void conn__tls_destroy(struct conn_tls *t);

#endif
