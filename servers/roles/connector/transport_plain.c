/*
 * The plain TCP transport (transport.h): read() and write() on the
 * socket, nothing kept per connection.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "connector_int.h"

static int
plain_open(struct conn *c)
{
	c->tr_state = NULL;
	return IM_OK;
}

static ssize_t
plain_read(struct conn *c, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(c->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n >= 0) {
		return n;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK) {
		return TR_WANT_READ;
	}
	LOG_D("conn %s: read: %s", c->peer, strerror(errno));
	return TR_FAIL;
}

static ssize_t
plain_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t n;

	do {
		n = write(c->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	if (n > 0) {
		return n;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		return TR_WANT_WRITE;
	}
	LOG_D("conn %s: write: %s", c->peer,
	      n < 0 ? strerror(errno) : "wrote nothing");
	return TR_FAIL;
}

static bool
plain_established(const struct conn *c)
{
	return true;
}

static bool
plain_pending(const struct conn *c)
{
	return false;
}

static void
plain_close(struct conn *c)
{
}

const struct conn_transport conn__tr_plain = {
        .name = "tcp",
        .open = plain_open,
        .read = plain_read,
        .write = plain_write,
        .established = plain_established,
        .pending = plain_pending,
        .shutdown = NULL,
        .close = plain_close,
};
