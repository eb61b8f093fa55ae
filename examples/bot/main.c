/*
 * A small bot on the libim client API: it logs in, and answers every
 * message of its groups that it did not send itself with "echo: <text>",
 * or with the answer to a command ("!ping", "!help", "!whoami"). Messages
 * from other bots ("echo: ...") get no answer, so two bots never loop.
 * Reconnects and resumes are the client library's job: nothing here.
 *
 *   bot --port 7700 --token TOKEN [--count N] [--timeout-ms MS]
 *
 * Prints "ready <uid>" after login and "reply <group> <seq>" per answer
 * sent; exits after N answers (if --count) or after --timeout-ms.
 */
#include <im/client.h>

#include <ev.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct bot {
	struct ev_loop *loop;
	im_client *cl;
	uint64_t count; /* 0 = forever */
	uint64_t answered;
	int exit_code;
} bot;

static size_t
answer(const bot *b, const im_client_msg *m, char *out, size_t cap)
{
	const char *text = m->body;
	size_t len = m->body_len;
	static const char echo[] = "echo: ";

	if (len >= sizeof(echo) - 1 &&
	    memcmp(text, echo, sizeof(echo) - 1) == 0) {
		return 0; /* another bot's answer */
	}
	if (len == 5 && memcmp(text, "!ping", 5) == 0) {
		return (size_t)snprintf(out, cap, "pong");
	}
	if (len == 5 && memcmp(text, "!help", 5) == 0) {
		return (size_t)snprintf(out, cap,
		                        "commands: !ping !help !whoami; "
		                        "anything else is echoed");
	}
	if (len == 7 && memcmp(text, "!whoami", 7) == 0) {
		return (size_t)snprintf(out, cap, "you are %" PRIu64,
		                        m->sender);
	}
	if (len > cap - (sizeof(echo) - 1)) {
		len = cap - (sizeof(echo) - 1);
	}
	memcpy(out, echo, sizeof(echo) - 1);
	memcpy(out + sizeof(echo) - 1, text, len);
	return sizeof(echo) - 1 + len;
}

static void
on_deliver(im_client *cl, const im_client_msg *m, void *payload)
{
	bot *b = payload;
	char out[IM_CLIENT_BODY_MAX];
	size_t n;
	int rc;

	if (m->own || m->history) {
		return;
	}
	n = answer(b, m, out, sizeof(out));
	if (n == 0) {
		return;
	}
	rc = im_client_send_ex(cl, m->group, out, n, m->seq, 0, 0, NULL);
	if (rc != IM_OK) {
		fprintf(stderr,
		        "bot: cannot answer %" PRIu64 "/%" PRIu64 ": %s\n",
		        m->group, m->seq, im_strerror(rc));
		return;
	}
	printf("reply %" PRIu64 " %" PRIu64 "\n", m->group, m->seq);
}

static void
on_ack(im_client *cl, im_gid group, uint64_t dedup, im_seq seq, bool dup,
       void *payload)
{
	bot *b = payload;

	b->answered++;
	if (b->count != 0 && b->answered >= b->count) {
		ev_break(b->loop, EVBREAK_ALL);
	}
}

static void
on_login(im_client *cl, im_uid user, const im_client_conv *convs, size_t n,
         void *payload)
{
	printf("ready %" PRIu64 " convs=%zu\n", user, n);
}

static void
on_error(im_client *cl, const im_client_error *e, void *payload)
{
	fprintf(stderr, "bot: %s: %s\n", im_strerror(e->err), e->text);
}

static void
on_state(im_client *cl, im_client_state st, void *payload)
{
	bot *b = payload;

	if (st == IM_CLIENT_STOPPED) {
		b->exit_code = 1; /* bad token: nothing left to do */
		ev_break(b->loop, EVBREAK_ALL);
	}
}

static void
stop_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void
signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

int
main(int argc, char **argv)
{
	im_client_opts o = IM_CLIENT_OPTS_INIT;
	bot b;
	ev_timer stop;
	ev_signal sigterm, sigint;
	uint64_t timeout_ms = 0;
	int i, rc;

	memset(&b, 0, sizeof(b));
	o.device = "bot";
	o.seed = (uint64_t)getpid() ^ ((uint64_t)time(NULL) << 20);
	for (i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--host") == 0) {
			o.host = argv[i + 1];
		} else if (strcmp(argv[i], "--port") == 0) {
			o.port = (uint16_t)strtoul(argv[i + 1], NULL, 10);
		} else if (strcmp(argv[i], "--token") == 0) {
			o.token = argv[i + 1];
		} else if (strcmp(argv[i], "--count") == 0) {
			b.count = strtoull(argv[i + 1], NULL, 10);
		} else if (strcmp(argv[i], "--timeout-ms") == 0) {
			timeout_ms = strtoull(argv[i + 1], NULL, 10);
		} else {
			break;
		}
	}
	if (i != argc || o.token == NULL) {
		fprintf(stderr, "usage: bot [--host H] [--port P] --token T "
		                "[--count N] [--timeout-ms MS]\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	b.loop = ev_default_loop(0);
	o.cb.on_deliver = on_deliver;
	o.cb.on_ack = on_ack;
	o.cb.on_login = on_login;
	o.cb.on_error = on_error;
	o.cb.on_state = on_state;
	o.payload = &b;
	rc = im_client_create(&b.cl, &o);
	if (rc == IM_OK) {
		rc = im_client_attach(b.cl, b.loop);
	}
	if (rc == IM_OK) {
		rc = im_client_connect(b.cl);
	}
	if (rc != IM_OK) {
		fprintf(stderr, "bot: %s\n", im_strerror(rc));
		im_client_destroy(b.cl);
		return 1;
	}
	ev_signal_init(&sigterm, signal_cb, SIGTERM);
	ev_signal_init(&sigint, signal_cb, SIGINT);
	ev_signal_start(b.loop, &sigterm);
	ev_signal_start(b.loop, &sigint);
	if (timeout_ms > 0) {
		ev_timer_init(&stop, stop_cb, (double)timeout_ms / 1000.0, 0.);
		ev_timer_start(b.loop, &stop);
	}
	ev_run(b.loop, 0);
	if (b.count != 0 && b.answered < b.count && b.exit_code == 0) {
		b.exit_code = 3; /* timed out before answering enough */
	}
	im_client_destroy(b.cl);
	return b.exit_code;
}
