/*
 * im-cli: an interactive terminal client on the libim client API. It reads
 * commands from stdin line by line (a terminal or a pipe) and prints one
 * stable, parseable line per thing that happens:
 *
 *   login <uid> convs=<n>            state <connected|disconnected|...>
 *                                    (connecting/connected: + host:port)
 *   conv <group> unread=<n> last=<seq> read=<seq> name=<name>
 *   list done n=<n>                  open <group>
 *   msg <group> <seq> <sender> <text>          (live, every group)
 *   history <group> <seq> <sender> <text>      (from /open)
 *   ack <group> <seq> [dup]          created <group>
 *   members <group> <uid>...         ok <command> ...
 *   event <joined|left|created|read> <group> ...
 *   error <where> <code> <text>
 *
 * Commands: /login TOKEN, /list, /open GROUP, /send GROUP TEXT, a plain
 * line (send to the open group), /create NAME [UID...], /add GROUP UID,
 * /remove GROUP UID, /members GROUP, /read GROUP [SEQ], /wait (until every
 * send is acked), /sleep MS, /quit.
 *
 * Commands that need the server wait for the connection; a command that
 * expects a reply holds the next line until the reply came, so a script
 * piped in runs in order. At end of input the client waits for its sends
 * to be acked (at most --linger-ms) and for --wait-ms more, then exits.
 *
 * --connect host:port[,host:port...] (repeatable, at most
 * IM_CLIENT_SERVERS_MAX in all) gives several servers, e.g. every
 * Connector of a cluster: the client moves on to the next one when one
 * fails. Without it, --host/--port name the one server.
 *
 * --tls speaks TLS and checks the server's certificate: against the CAs
 * of --ca FILE (default: the system's), for the name --server-name NAME
 * (default: the host connected to). --cert FILE --key FILE present a
 * client certificate to a server that asks for one. A failed check is an
 * `error client EPROTO tls: ...` line, and the client tries again.
 */
#include <im/client.h>

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_ 4200
/* A reply may come inside the request call (a sync with nothing to
 * fetch): the command is marked busy before the call, with a req id that
 * matches any reply until the call told the real one. */
#define REQ_UNKNOWN UINT64_MAX
#define QUEUE_MAX 256

typedef struct cli {
	struct ev_loop *loop;
	im_client *cl;
	const char *host;
	uint16_t port;
	char srv[IM_CLIENT_SERVERS_MAX][IM_CLIENT_ADDR_MAX + 1];
	const char *srvp[IM_CLIENT_SERVERS_MAX];
	uint32_t nsrv;
	const char *device;
	uint64_t seed;
	bool tls;
	const char *ca, *server_name, *cert, *key;
	ev_io in;
	ev_timer tick;    /* the exit grace */
	ev_timer sleep_t; /* /sleep */
	char rbuf[LINE_MAX_ * 2];
	size_t rlen;
	char *queue[QUEUE_MAX];
	size_t qhead, qlen;
	bool eof;
	bool busy; /* a command waits for its reply */
	uint64_t busy_req;
	const char *busy_what;
	bool sleeping;
	bool waiting_acks;
	bool quitting;
	int exit_code;
	im_gid open;
	im_gid members_group;
	double linger_s, wait_s;
	double eof_at;
	bool in_queue;
} cli;

static void run_queue(cli *c);
static void split_lines(cli *c);

static void
print_text(const void *body, uint32_t len)
{
	const unsigned char *p = body;
	uint32_t i;

	for (i = 0; i < len; i++) {
		putchar(p[i] >= 0x20 && p[i] != 0x7f ? p[i] : '?');
	}
	putchar('\n');
}

/* "IM_EPERM" out of "IM_EPERM: ...": one token, easy to match. */
static const char *
err_name(int err)
{
	static char buf[32];
	const char *s = im_strerror(err);
	size_t n = strcspn(s, ": ");

	snprintf(buf, sizeof(buf), "%.*s", (int)n, s);
	return buf;
}

static const char *
state_name(im_client_state s)
{
	switch (s) {
	case IM_CLIENT_CONNECTED:
		return "connected";
	case IM_CLIENT_CONNECTING:
		return "connecting";
	case IM_CLIENT_DISCONNECTED:
		return "disconnected";
	default:
		return "stopped";
	}
}

static void
on_login(im_client *cl, im_uid user, const im_client_conv *convs, size_t n,
         void *payload)
{
	printf("login %" PRIu64 " convs=%zu\n", user, n);
}

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	printf("%s %" PRIu64 " %" PRIu64 " %" PRIu64 " ",
	       m->history ? "history" : "msg", m->group, m->seq, m->sender);
	print_text(m->body, m->body_len);
}

static void
on_ack(im_client *cl, im_gid group, uint64_t dedup, im_seq seq, bool dup,
       void *payload)
{
	cli *c = payload;

	printf("ack %" PRIu64 " %" PRIu64 "%s\n", group, seq,
	       dup ? " dup" : "");
	run_queue(c);
}

static void
on_event(im_client *cl, const im_client_event *ev, void *payload)
{
	switch (ev->type) {
	case IM_CLIENT_EV_JOINED:
		printf("event joined %" PRIu64 " actor=%" PRIu64 " name=%s\n",
		       ev->group, ev->actor, ev->name);
		break;
	case IM_CLIENT_EV_LEFT:
		printf("event left %" PRIu64 " actor=%" PRIu64 "\n", ev->group,
		       ev->actor);
		break;
	case IM_CLIENT_EV_GROUP_CREATED:
		printf("event created %" PRIu64 " actor=%" PRIu64 " name=%s\n",
		       ev->group, ev->actor, ev->name);
		break;
	case IM_CLIENT_EV_READ:
		printf("event read %" PRIu64 " %" PRIu64 "\n", ev->group,
		       ev->read_seq);
		break;
	default:
		printf("event %u %" PRIu64 "\n", ev->type, ev->group);
		break;
	}
}

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	cli *c = payload;

	if (e->dedup_id != 0) {
		printf("error send %s group=%" PRIu64 " %s\n", err_name(e->err),
		       e->group, e->text);
		/* A refused send left the outbox like an acked one: a line
		 * waiting for room goes on (when every send of a full
		 * outbox is refused, as on a full store, no ack ever comes). */
		run_queue(c);
	} else {
		printf("error client %s %s\n", err_name(e->err), e->text);
	}
	if (im_client_get_state(cl) == IM_CLIENT_STOPPED &&
	    e->err == IM_EPERM) {
		c->exit_code = 1;
	}
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	cli *c = payload;

	if (st == IM_CLIENT_CONNECTING || st == IM_CLIENT_CONNECTED) {
		printf("state %s %s\n", state_name(st), im_client_server(cl));
	} else {
		printf("state %s\n", state_name(st));
	}
	if (st == IM_CLIENT_STOPPED && !c->quitting) {
		/* nothing more will happen: a bad token or no reconnect */
		c->quitting = true;
		if (c->exit_code == 0) {
			c->exit_code = 1;
		}
		ev_break(c->loop, EVBREAK_ALL);
		return;
	}
	run_queue(c);
}

static void
finish_busy(cli *c)
{
	c->busy = false;
	c->busy_req = 0;
	run_queue(c);
}

static void
on_reply(im_client *cl, const im_client_reply *r, void *payload)
{
	cli *c = payload;
	size_t i;
	int rc;

	if (!c->busy ||
	    (r->req_id != c->busy_req && c->busy_req != REQ_UNKNOWN)) {
		return;
	}
	if (r->kind == IM_CLIENT_REPLY_ERROR) {
		printf("error %s %s %s\n", c->busy_what, err_name(r->err),
		       r->text);
		finish_busy(c);
		return;
	}
	switch (r->kind) {
	case IM_CLIENT_REPLY_CREATED:
		/* dup: a retry (same create key) found the first try's
		 * group; still one group. */
		printf("created %" PRIu64 "%s\n", r->group,
		       r->dup ? " dup" : "");
		break;
	case IM_CLIENT_REPLY_MEMBERS:
		if (c->members_group != r->group) {
			c->members_group = r->group;
			printf("members %" PRIu64, r->group);
		}
		for (i = 0; i < r->nusers; i++) {
			printf(" %" PRIu64, r->users[i]);
		}
		if (r->more && r->nusers > 0) {
			rc = im_client_list_members(cl, r->group,
			                            r->users[r->nusers - 1],
			                            &c->busy_req);
			if (rc == IM_OK) {
				return;
			}
		}
		printf("\n");
		c->members_group = 0;
		break;
	case IM_CLIENT_REPLY_SYNCED:
		c->open = r->group;
		printf("open %" PRIu64 "\n", r->group);
		break;
	default:
		printf("ok %s\n", c->busy_what);
		break;
	}
	finish_busy(c);
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (s == NULL || *s == '\0') {
		return -1;
	}
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

static int
make_client(cli *c, const char *token)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	int rc;

	if (c->cl != NULL) {
		printf("error login already logged in\n");
		return -1;
	}
	o.host = c->host;
	o.port = c->port;
	o.servers = c->srvp;
	o.nservers = c->nsrv;
	o.token = token;
	o.device = c->device;
	o.seed = c->seed;
	o.tls = c->tls;
	o.tls_ca_file = c->ca;
	o.tls_server_name = c->server_name;
	o.tls_cert_file = c->cert;
	o.tls_key_file = c->key;
	o.cb.on_login = on_login;
	o.cb.on_deliver = on_deliver;
	o.cb.on_ack = on_ack;
	o.cb.on_event = on_event;
	o.cb.on_error = on_error;
	o.cb.on_state = on_state;
	o.cb.on_reply = on_reply;
	o.payload = c;
	rc = im_client_create(&c->cl, &o);
	if (rc == IM_OK) {
		rc = im_client_attach(c->cl, c->loop);
	}
	if (rc == IM_OK) {
		rc = im_client_connect(c->cl);
	}
	if (rc != IM_OK) {
		printf("error login %s\n", err_name(rc));
		im_client_destroy(c->cl);
		c->cl = NULL;
		return -1;
	}
	return 0;
}

static void
busy_pre(cli *c, const char *what)
{
	c->busy = true;
	c->busy_req = REQ_UNKNOWN;
	c->busy_what = what;
}

static void
busy_on(cli *c, int rc, uint64_t req, const char *what)
{
	if (rc != IM_OK) {
		printf("error %s %s\n", what, err_name(rc));
		c->busy = false;
		return;
	}
	if (c->busy && c->busy_req == REQ_UNKNOWN) {
		c->busy_req = req;
	}
}

/* false: the outbox is full, retry the line once a send is answered */
static bool
do_send(cli *c, im_gid g, const char *text)
{
	int rc = im_client_send(c->cl, g, text, strlen(text), NULL);

	if (rc == IM_EFULL) {
		return false;
	}
	if (rc != IM_OK) {
		printf("error send %s group=%" PRIu64 "\n", err_name(rc), g);
	}
	return true;
}

static void
list_convs(cli *c)
{
	static im_client_conv convs[4096];
	size_t n, i;

	im_client_convs(c->cl, convs, 4096, &n);
	for (i = 0; i < n; i++) {
		printf("conv %" PRIu64 " unread=%" PRIu64 " last=%" PRIu64
		       " read=%" PRIu64 " name=%s\n",
		       convs[i].group, convs[i].unread, convs[i].last_seq,
		       convs[i].read_seq, convs[i].name);
	}
	printf("list done n=%zu\n", n);
}

static void
sleep_done(struct ev_loop *loop, ev_timer *w, int revents)
{
	cli *c = w->data;

	c->sleeping = false;
	run_queue(c);
}

/* Returns false when the line must wait (not connected yet, outbox full). */
static bool
exec_line(cli *c, const char *orig)
{
	/* A line may be retried (not connected yet): tokenize a copy. */
	static char line[LINE_MAX_ * 2 + 1];
	char *argv[70];
	int argc = 0;
	char *p = line;
	uint64_t a = 0, b = 0;
	uint64_t req = 0;
	int rc;
	bool connected = c->cl != NULL &&
	                 im_client_get_state(c->cl) == IM_CLIENT_CONNECTED;

	snprintf(line, sizeof(line), "%s", orig);
	if (line[0] == '\0' || line[0] == '#') {
		return true;
	}
	if (line[0] != '/') {
		if (c->cl == NULL || !connected) {
			return false;
		}
		if (c->open == 0) {
			printf("error send no open group\n");
			return true;
		}
		return do_send(c, c->open, line);
	}
	if (strncmp(line, "/send ", 6) == 0) {
		/* /send GROUP TEXT: the text keeps its spaces */
		char *text;

		p = line + 6;
		while (*p == ' ') {
			p++;
		}
		text = strchr(p, ' ');
		if (text == NULL) {
			printf("error send usage: /send GROUP TEXT\n");
			return true;
		}
		*text++ = '\0';
		if (parse_u64(p, &a) != 0 || a == 0) {
			printf("error send usage: /send GROUP TEXT\n");
			return true;
		}
		if (c->cl == NULL) {
			printf("error /send not logged in\n");
			return true;
		}
		if (!connected) {
			return false;
		}
		return do_send(c, a, text);
	}
	while (*p != '\0' && argc < 70) {
		while (*p == ' ') {
			p++;
		}
		if (*p == '\0') {
			break;
		}
		argv[argc++] = p;
		while (*p != '\0' && *p != ' ') {
			p++;
		}
		if (*p == ' ') {
			*p++ = '\0';
		}
	}
	if (strcmp(argv[0], "/quit") == 0) {
		c->quitting = true;
		ev_break(c->loop, EVBREAK_ALL);
		return true;
	}
	if (strcmp(argv[0], "/sleep") == 0) {
		if (argc != 2 || parse_u64(argv[1], &a) != 0) {
			printf("error sleep usage: /sleep MS\n");
			return true;
		}
		c->sleeping = true;
		ev_timer_set(&c->sleep_t, a / 1000.0, 0.);
		ev_timer_start(c->loop, &c->sleep_t);
		return true;
	}
	if (strcmp(argv[0], "/login") == 0) {
		if (argc != 2) {
			printf("error login usage: /login TOKEN\n");
			return true;
		}
		(void)make_client(c, argv[1]);
		return true;
	}
	if (c->cl == NULL) {
		printf("error %s not logged in (use /login TOKEN)\n", argv[0]);
		return true;
	}
	if (strcmp(argv[0], "/wait") == 0) {
		if (im_client_outbox_count(c->cl) > 0) {
			return false;
		}
		printf("ok wait\n");
		return true;
	}
	if (!connected) {
		return false;
	}
	if (strcmp(argv[0], "/list") == 0) {
		list_convs(c);
	} else if (strcmp(argv[0], "/open") == 0) {
		if (argc != 2 || parse_u64(argv[1], &a) != 0 || a == 0) {
			printf("error open usage: /open GROUP\n");
			return true;
		}
		busy_pre(c, "open");
		rc = im_client_sync(c->cl, a, 0, 0, 1000, &req);
		busy_on(c, rc, req, "open");
	} else if (strcmp(argv[0], "/create") == 0) {
		im_uid uids[64];
		int i;

		if (argc < 2 || argc - 2 > 64) {
			printf("error create usage: /create NAME [UID...]\n");
			return true;
		}
		for (i = 2; i < argc; i++) {
			if (parse_u64(argv[i], &uids[i - 2]) != 0) {
				printf("error create bad uid %s\n", argv[i]);
				return true;
			}
		}
		busy_pre(c, "create");
		rc = im_client_create_group(c->cl, argv[1], uids,
		                            (size_t)(argc - 2), &req);
		busy_on(c, rc, req, "create");
	} else if (strcmp(argv[0], "/add") == 0 ||
	           strcmp(argv[0], "/remove") == 0) {
		bool add = argv[0][1] == 'a';

		if (argc != 3 || parse_u64(argv[1], &a) != 0 ||
		    parse_u64(argv[2], &b) != 0) {
			printf("error %s usage: %s GROUP UID\n", argv[0] + 1,
			       argv[0]);
			return true;
		}
		busy_pre(c, add ? "add" : "remove");
		rc = add ? im_client_add_member(c->cl, a, b, &req)
		         : im_client_remove_member(c->cl, a, b, &req);
		busy_on(c, rc, req, add ? "add" : "remove");
	} else if (strcmp(argv[0], "/members") == 0) {
		if (argc != 2 || parse_u64(argv[1], &a) != 0) {
			printf("error members usage: /members GROUP\n");
			return true;
		}
		c->members_group = 0;
		busy_pre(c, "members");
		rc = im_client_list_members(c->cl, a, 0, &req);
		busy_on(c, rc, req, "members");
	} else if (strcmp(argv[0], "/read") == 0) {
		if (argc < 2 || argc > 3 || parse_u64(argv[1], &a) != 0 ||
		    (argc == 3 && parse_u64(argv[2], &b) != 0)) {
			printf("error read usage: /read GROUP [SEQ]\n");
			return true;
		}
		busy_pre(c, "read");
		rc = im_client_mark_read(c->cl, a, b, &req);
		busy_on(c, rc, req, "read");
	} else {
		printf("error unknown command %s\n", argv[0]);
	}
	return true;
}

static void
maybe_exit(cli *c)
{
	if (!c->eof) {
		return;
	}
	if (ev_now(c->loop) - c->eof_at >= c->linger_s + c->wait_s) {
		if (c->qlen > 0 || c->busy) {
			printf("error quit gave up waiting at end of input\n");
		}
		ev_break(c->loop, EVBREAK_ALL);
		return;
	}
	if (c->qlen > 0 || c->busy || c->sleeping) {
		return;
	}
	if (c->cl != NULL && im_client_outbox_count(c->cl) > 0 &&
	    ev_now(c->loop) - c->eof_at < c->linger_s) {
		return; /* tick re-checks */
	}
	if (ev_now(c->loop) - c->eof_at < c->wait_s) {
		return;
	}
	ev_break(c->loop, EVBREAK_ALL);
}

static void
run_queue(cli *c)
{
	/* Callbacks inside a command call back here: the loop below goes on
	 * by itself once the command returns. */
	if (c->in_queue) {
		return;
	}
	c->in_queue = true;
	split_lines(c);
	while (c->qlen > 0 && !c->busy && !c->sleeping && !c->quitting) {
		char *line = c->queue[c->qhead];

		if (!exec_line(c, line)) {
			break;
		}
		free(line);
		c->qhead = (c->qhead + 1) % QUEUE_MAX;
		c->qlen--;
		split_lines(c);
	}
	c->in_queue = false;
	/* Read more only when the buffer holds no complete line and has
	 * room: a read of 0 bytes would look like end of input. */
	if (c->qlen < QUEUE_MAX && !c->eof && !c->quitting &&
	    c->rlen < sizeof(c->rbuf) &&
	    memchr(c->rbuf, '\n', c->rlen) == NULL) {
		ev_io_start(c->loop, &c->in);
	}
	maybe_exit(c);
}

static void
push_line(cli *c, const char *s, size_t n)
{
	char *line = malloc(n + 1);

	if (line == NULL) {
		printf("error input out of memory\n");
		return;
	}
	memcpy(line, s, n);
	line[n] = '\0';
	if (n > 0 && line[n - 1] == '\r') {
		line[n - 1] = '\0';
	}
	c->queue[(c->qhead + c->qlen) % QUEUE_MAX] = line;
	c->qlen++;
}

/* Move complete lines from the read buffer to the queue while it has room;
 * at end of input a last line without a newline counts too. */
static void
split_lines(cli *c)
{
	size_t start = 0, i;

	for (i = 0; i < c->rlen && c->qlen < QUEUE_MAX; i++) {
		if (c->rbuf[i] == '\n') {
			push_line(c, c->rbuf + start, i - start);
			start = i + 1;
		}
	}
	memmove(c->rbuf, c->rbuf + start, c->rlen - start);
	c->rlen -= start;
	if (c->rlen == sizeof(c->rbuf)) {
		printf("error input line too long\n");
		c->rlen = 0;
	}
	if (c->eof && c->rlen > 0 && c->qlen < QUEUE_MAX &&
	    memchr(c->rbuf, '\n', c->rlen) == NULL) {
		push_line(c, c->rbuf, c->rlen);
		c->rlen = 0;
	}
}

static void
stdin_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	cli *c = w->data;
	ssize_t n;

	n = read(0, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
	if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
		return;
	}
	ev_io_stop(loop, w); /* run_queue restarts it when there is room */
	if (n <= 0) {
		c->eof = true;
		c->eof_at = ev_now(loop);
		ev_timer_set(&c->tick, 0.05, 0.05);
		ev_timer_start(loop, &c->tick);
	} else {
		c->rlen += (size_t)n;
	}
	run_queue(c);
}

static void
tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	cli *c = w->data;

	if (c->eof && c->qlen > 0) {
		run_queue(c);
	}
	maybe_exit(c);
}

static void
usage(void)
{
	fprintf(stderr, "usage: im-cli [--host H] [--port P] [--token T] "
	                "[--device D] [--seed N]\n"
	                "              [--connect H:P[,H:P...]]... "
	                "[--linger-ms MS] [--wait-ms MS]\n"
	                "              [--tls [--ca FILE] [--server-name NAME] "
	                "[--cert FILE --key FILE]]\n"
	                "commands on stdin: /login TOKEN, /list, /open G, "
	                "/send G TEXT, TEXT,\n"
	                "  /create NAME [UID...], /add G UID, /remove G UID, "
	                "/members G,\n"
	                "  /read G [SEQ], /wait, /sleep MS, /quit\n");
}

/* Append the comma separated addresses of one --connect. */
static int
add_servers(cli *c, const char *list)
{
	const char *p = list;

	for (;;) {
		size_t len = strcspn(p, ",");

		if (len == 0 || len > IM_CLIENT_ADDR_MAX ||
		    c->nsrv >= IM_CLIENT_SERVERS_MAX) {
			return -1;
		}
		memcpy(c->srv[c->nsrv], p, len);
		c->srv[c->nsrv][len] = '\0';
		c->srvp[c->nsrv] = c->srv[c->nsrv];
		c->nsrv++;
		if (p[len] == '\0') {
			return 0;
		}
		p += len + 1;
	}
}

/* The TLS flags, checked here so that a typo in a path gets its own
 * message (the library only says IM_EINVAL). */
static int
check_tls_files(const cli *c)
{
	const char *files[] = {c->ca, c->cert, c->key};
	size_t i;

	if (!c->tls && (c->ca || c->server_name || c->cert || c->key)) {
		fprintf(stderr, "im-cli: --ca, --server-name, --cert and --key "
		                "need --tls\n");
		return -1;
	}
	if ((c->cert == NULL) != (c->key == NULL)) {
		fprintf(stderr, "im-cli: --cert and --key go together\n");
		return -1;
	}
	for (i = 0; i < 3; i++) {
		FILE *f = files[i] != NULL ? fopen(files[i], "r") : NULL;

		if (files[i] != NULL && f == NULL) {
			fprintf(stderr, "im-cli: %s: %s\n", files[i],
			        strerror(errno));
			return -1;
		}
		if (f != NULL) {
			fclose(f);
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	cli c;
	const char *token = NULL;
	uint64_t v;
	int i;

	memset(&c, 0, sizeof(c));
	c.host = "127.0.0.1";
	c.port = 7600;
	c.device = "im-cli";
	c.seed = (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20);
	c.linger_s = 10.0;
	for (i = 1; i < argc; i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			usage();
			return 0;
		}
		if (strcmp(argv[i], "--tls") == 0) {
			c.tls = true;
			continue;
		}
		if (val == NULL) {
			usage();
			return 2;
		}
		if (strcmp(argv[i], "--host") == 0) {
			c.host = val;
		} else if (strcmp(argv[i], "--port") == 0 &&
		           parse_u64(val, &v) == 0 && v > 0 && v < 65536) {
			c.port = (uint16_t)v;
		} else if (strcmp(argv[i], "--connect") == 0 &&
		           add_servers(&c, val) == 0) {
			/* appended */
		} else if (strcmp(argv[i], "--token") == 0) {
			token = val;
		} else if (strcmp(argv[i], "--device") == 0) {
			c.device = val;
		} else if (strcmp(argv[i], "--ca") == 0) {
			c.ca = val;
		} else if (strcmp(argv[i], "--server-name") == 0) {
			c.server_name = val;
		} else if (strcmp(argv[i], "--cert") == 0) {
			c.cert = val;
		} else if (strcmp(argv[i], "--key") == 0) {
			c.key = val;
		} else if (strcmp(argv[i], "--seed") == 0 &&
		           parse_u64(val, &v) == 0) {
			c.seed = v;
		} else if (strcmp(argv[i], "--linger-ms") == 0 &&
		           parse_u64(val, &v) == 0) {
			c.linger_s = (double)v / 1000.0;
		} else if (strcmp(argv[i], "--wait-ms") == 0 &&
		           parse_u64(val, &v) == 0) {
			c.wait_s = (double)v / 1000.0;
		} else {
			usage();
			return 2;
		}
		i++;
	}
	if (check_tls_files(&c) != 0) {
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	c.loop = ev_default_loop(0);
	ev_io_init(&c.in, stdin_cb, 0, EV_READ);
	c.in.data = &c;
	ev_timer_init(&c.tick, tick_cb, 0., 0.);
	c.tick.data = &c;
	ev_timer_init(&c.sleep_t, sleep_done, 0., 0.);
	c.sleep_t.data = &c;
	(void)fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	if (token != NULL && make_client(&c, token) != 0) {
		return 1;
	}
	ev_io_start(c.loop, &c.in);
	ev_run(c.loop, 0);
	while (c.qlen > 0) {
		free(c.queue[c.qhead]);
		c.qhead = (c.qhead + 1) % QUEUE_MAX;
		c.qlen--;
	}
	if (c.cl != NULL && im_client_outbox_count(c.cl) > 0) {
		printf("error quit %zu sends not acked\n",
		       im_client_outbox_count(c.cl));
		if (c.exit_code == 0) {
			c.exit_code = 3;
		}
	}
	im_client_destroy(c.cl);
	printf("bye\n");
	return c.exit_code;
}
