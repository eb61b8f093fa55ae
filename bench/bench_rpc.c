/*
 * bench_rpc: round trips of the role-to-role RPC over 127.0.0.1.
 *
 * A server thread (its own libev loop) answers every Forward with an Ack;
 * the main thread keeps `window` calls in flight on one connection, each a
 * Forward of one op with a body of `bytes` bytes, for `secs` seconds per
 * cell, and reports calls/s and the mean round trip.
 *
 *   ./build/bench/bench_rpc [-t secs] [-w window] [-b bytes]
 *
 * Without -w/-b it runs windows 1, 16, 256 x bodies 64, 1024.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rpc.h"

typedef struct srv {
	struct ev_loop *loop;
	rpc_server *s;
	ev_async stop;
	uint16_t port;
	imrpc_Rpc *ack;
} srv;

static void
on_request(rpc_conn *c, uint64_t req_id, const imrpc_Rpc *m, void *payload)
{
	srv *s = payload;

	(void)m;
	if (req_id != 0) {
		(void)rpc_conn_reply(c, req_id, s->ack);
	}
}

static void
on_stop(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void *
srv_main(void *arg)
{
	srv *s = arg;

	ev_run(s->loop, 0);
	return NULL;
}

typedef struct cli {
	struct ev_loop *loop;
	rpc_conn *c;
	imrpc_Rpc *req;
	uint32_t window;
	uint64_t done, failed, sent;
	bool stopping;
	ev_tstamp end;
} cli;

static void on_reply(rpc_conn *c, int status, const imrpc_Rpc *r, void *p);

static void
fill(cli *k)
{
	rpc_stats st;

	rpc_conn_get_stats(k->c, &st);
	while (!k->stopping && st.inflight < k->window) {
		if (rpc_conn_call(k->c, k->req, 10000, on_reply, k) != IM_OK) {
			break;
		}
		k->sent++;
		st.inflight++;
	}
}

static void
on_reply(rpc_conn *c, int status, const imrpc_Rpc *r, void *p)
{
	cli *k = p;

	(void)c;
	(void)r;
	if (status == IM_OK) {
		k->done++;
	} else {
		k->failed++;
	}
	if (ev_now(k->loop) >= k->end) {
		k->stopping = true;
	}
	fill(k);
}

static void
on_state(rpc_conn *c, bool up, int err, const char *why, void *payload)
{
	(void)c;
	(void)err;
	(void)why;
	(void)payload;
	if (up) {
		ev_break(((cli *)payload)->loop, EVBREAK_ONE);
	}
}

static void
on_idle_check(struct ev_loop *loop, ev_timer *w, int revents)
{
	cli *k = w->data;
	rpc_stats st;

	(void)revents;
	rpc_conn_get_stats(k->c, &st);
	if (k->stopping && st.inflight == 0) {
		ev_break(loop, EVBREAK_ONE);
	}
	if (ev_now(loop) >= k->end) {
		k->stopping = true;
	}
}

static int
cell(uint16_t port, uint32_t window, uint32_t bytes, double secs)
{
	rpc_opts o = RPC_OPTS_INIT;
	cli k;
	ev_timer check;
	ev_tstamp t0;

	memset(&k, 0, sizeof(k));
	k.loop = ev_loop_new(EVFLAG_AUTO);
	k.window = window;
	k.req = calloc(1, sizeof(*k.req));
	k.req->which_body = imrpc_Rpc_forward_tag;
	k.req->body.forward.ops_count = 1;
	k.req->body.forward.ops[0].kind = 1;
	k.req->body.forward.ops[0].group = 42;
	k.req->body.forward.ops[0].body.size = (pb_size_t)bytes;
	memset(k.req->body.forward.ops[0].body.bytes, 'x', bytes);
	o.on_state = on_state;
	o.payload = &k;
	o.max_inflight = window > 1024 ? window : 1024;
	if (rpc_conn_connect(&k.c, k.loop, "127.0.0.1", port, &o) != IM_OK) {
		fprintf(stderr, "connect failed\n");
		return 1;
	}
	ev_run(k.loop, 0); /* until up */
	ev_timer_init(&check, on_idle_check, 0.05, 0.05);
	check.data = &k;
	ev_timer_start(k.loop, &check);
	ev_now_update(k.loop);
	t0 = ev_now(k.loop);
	k.end = t0 + secs;
	fill(&k);
	ev_run(k.loop, 0);
	ev_now_update(k.loop);
	{
		double el = ev_now(k.loop) - t0;

		printf("| %6u | %5u | %10.0f | %8.1f | %6llu |\n", window,
		       bytes, (double)k.done / el,
		       el * 1e6 / (double)k.done * (double)window,
		       (unsigned long long)k.failed);
	}
	ev_timer_stop(k.loop, &check);
	rpc_conn_destroy(k.c);
	ev_loop_destroy(k.loop);
	free(k.req);
	return 0;
}

int
main(int argc, char **argv)
{
	static const uint32_t windows[] = {1, 16, 256};
	static const uint32_t sizes[] = {64, 1024};
	rpc_opts so = RPC_OPTS_INIT;
	double secs = 1.0;
	int w = 0, b = -1, opt;
	pthread_t th;
	srv s;
	size_t i, j;

	while ((opt = getopt(argc, argv, "t:w:b:")) != -1) {
		switch (opt) {
		case 't':
			secs = atof(optarg);
			break;
		case 'w':
			w = atoi(optarg);
			break;
		case 'b':
			b = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: %s [-t secs] [-w window] "
					"[-b bytes]\n",
				argv[0]);
			return 2;
		}
	}
	if (secs <= 0 || secs > 60 || w < 0 || w > 65536 || b > 4096) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	memset(&s, 0, sizeof(s));
	s.loop = ev_loop_new(EVFLAG_AUTO);
	s.ack = calloc(1, sizeof(*s.ack));
	s.ack->which_body = imrpc_Rpc_ack_tag;
	so.on_request = on_request;
	so.payload = &s;
	if (rpc_server_open(&s.s, s.loop, "127.0.0.1", 0, 16, &so) != IM_OK) {
		fprintf(stderr, "listen failed\n");
		return 1;
	}
	ev_async_init(&s.stop, on_stop);
	ev_async_start(s.loop, &s.stop);
	pthread_create(&th, NULL, srv_main, &s);
	printf("| window | bytes |    calls/s | rtt us   | failed |\n");
	printf("|-------:|------:|-----------:|---------:|-------:|\n");
	for (i = 0; i < sizeof(windows) / sizeof(windows[0]); i++) {
		for (j = 0; j < sizeof(sizes) / sizeof(sizes[0]); j++) {
			uint32_t ww = w > 0 ? (uint32_t)w : windows[i];
			uint32_t bb = b >= 0 ? (uint32_t)b : sizes[j];

			if (cell(rpc_server_port(s.s), ww, bb, secs) != 0) {
				return 1;
			}
			if (b >= 0) {
				break;
			}
		}
		if (w > 0) {
			break;
		}
	}
	ev_async_send(s.loop, &s.stop);
	pthread_join(th, NULL);
	rpc_server_close(s.s);
	ev_loop_destroy(s.loop);
	free(s.ack);
	return 0;
}
