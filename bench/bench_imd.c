/*
 * bench_imd: end-to-end send throughput of a real imd process.
 *
 * Starts imd (tests/system harness: temp db, free port), logs in N users
 * over loopback, pairs them into 2-member groups, and lets every client
 * keep W sends in flight for D seconds; deliveries are acked every 64.
 * Prints acked messages per second; imd's shutdown log line gives the
 * average group-commit batch (messages / commits).
 *
 *   IMD=build/servers/imd build/bench/bench_imd [N] [W] [D] [full|normal]
 *
 * `bench_imd idle N` instead logs in N users (each in one 2-member group)
 * and leaves them idle, printing imd's resident memory before and after:
 * the cost of one idle logged-in connection.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pb_decode.h>

#include "harness.h"
#include "im/frame.h"

struct bclient {
	tclient tc;
	uint64_t group;
	uint64_t next_dedup;
	uint32_t inflight;
	uint64_t acked;
	uint64_t delivered;
	uint64_t last_seq;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
send_one(struct bclient *b, im_Envelope *env)
{
	memset(env, 0, sizeof(*env));
	env->req_id = b->tc.next_req++;
	env->which_msg = im_Envelope_send_tag;
	env->msg.send.group = b->group;
	env->msg.send.dedup_id = ++b->next_dedup;
	env->msg.send.body.size = 100;
	memset(env->msg.send.body.bytes, 'b', 100);
	b->inflight++;
	return tc_send(&b->tc, env);
}

/* Parse every complete frame in the client's buffer. */
static int
drain(struct bclient *b, im_Envelope *env, bool sending)
{
	tclient *c = &b->tc;

	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		pb_istream_t is;
		int rc = im_frame_parse(c->buf, c->len, IM_FRAME_MAX, &payload,
		                        &plen, &used);

		if (rc == IM_EAGAIN) {
			return 0;
		}
		if (rc != IM_OK) {
			return -1;
		}
		is = pb_istream_from_buffer(payload, plen);
		if (!pb_decode(&is, im_Envelope_fields, c->env)) {
			return -1;
		}
		memmove(c->buf, c->buf + used, c->len - used);
		c->len -= used;
		switch (c->env->which_msg) {
		case im_Envelope_send_ack_tag:
			b->acked++;
			b->inflight--;
			if (sending && send_one(b, env) != 0) {
				return -1;
			}
			break;
		case im_Envelope_deliver_tag:
			b->delivered++;
			b->last_seq = c->env->msg.deliver.seq;
			if (b->delivered % 64 == 0) {
				tc_ack(c, b->group, b->last_seq);
			}
			break;
		case im_Envelope_error_tag:
			fprintf(stderr, "error %d: %s\n",
			        (int)c->env->msg.error.code,
			        c->env->msg.error.text);
			return -1;
		default:
			break;
		}
	}
}

static long
rss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) {
			break;
		}
	}
	fclose(f);
	return kb;
}

/* CPU seconds (user + system) the process used so far. */
static double
cpu_s(pid_t pid)
{
	char path[64];
	unsigned long ut = 0, st = 0;
	FILE *f;
	int r;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL) {
		return 0;
	}
	/* Fields 14 and 15; the command (field 2) has no spaces here. */
	r = fscanf(f,
	           "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
	           "%lu %lu",
	           &ut, &st);
	fclose(f);
	if (r != 2) {
		return 0;
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int
idle_main(int n)
{
	const char *extra[] = {"--log-level", "warn", "--max-conns", "20000",
	                       NULL};
	tclient *cl = calloc((size_t)n, sizeof(*cl));
	imd_proc imd;
	long before = 0, after;
	int i;

	if (cl == NULL || imd_init(&imd, extra) != 0 || imd_start(&imd) != 0) {
		fprintf(stderr, "bench_imd: cannot start imd ($IMD)\n");
		return 1;
	}
	/* Warm up allocators and sqlite's cache with a few users first. */
	for (i = 0; i < n; i++) {
		char tok[IM_TOKEN_BUF];

		if (i == 50) {
			sleep(1);
			before = rss_kb(imd.pid);
		}
		imd_token(&imd, (uint64_t)(i + 1), 3600, tok, sizeof(tok));
		if (tc_connect(&cl[i], imd.port) != 0 ||
		    tc_login(&cl[i], tok, NULL, 0, NULL) != 1) {
			fprintf(stderr, "bench_imd: login %d failed\n", i + 1);
			return 1;
		}
		if (i % 2 == 1) {
			uint64_t other = (uint64_t)i;

			(void)tc_create_group(&cl[i], "idle", &other, 1);
		}
		/* Keep the client's own buffers small: this measures imd. */
		free(cl[i].pushes);
		cl[i].pushes = NULL;
		cl[i].drop_pushes = true;
	}
	sleep(1);
	after = rss_kb(imd.pid);
	printf("bench_imd idle: %d logged-in connections: imd RSS %ld kB -> "
	       "%ld kB, %.2f KiB per connection (%d measured)\n",
	       n, before, after, (double)(after - before) / (n - 50), n - 50);
	for (i = 0; i < n; i++) {
		tc_close(&cl[i]);
	}
	imd_cleanup(&imd);
	free(cl);
	return 0;
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 50;
	int w = argc > 2 ? atoi(argv[2]) : 8;
	double dur = argc > 3 ? atof(argv[3]) : 5.0;
	const char *sync = argc > 4 ? argv[4] : "normal";
	const char *extra[] = {"--sync", sync, "--log-level", "info", NULL};
	struct bclient *cl;
	struct pollfd *pfd;
	im_Envelope *env = malloc(sizeof(*env));
	imd_proc imd;
	double t0, t1, c0, c1;
	uint64_t acked = 0, delivered = 0;
	char cmd[512];
	int i, k;

	if (argc > 2 && strcmp(argv[1], "idle") == 0) {
		free(env);
		return idle_main(atoi(argv[2]) < 100 ? 100 : atoi(argv[2]));
	}
	if (n < 2 || n % 2 != 0 || w < 1 || dur <= 0 || env == NULL) {
		fprintf(stderr, "usage: bench_imd [N even] [W] [D] [sync]\n");
		return 2;
	}
	cl = calloc((size_t)n, sizeof(*cl));
	pfd = calloc((size_t)n, sizeof(*pfd));
	if (cl == NULL || pfd == NULL || imd_init(&imd, extra) != 0 ||
	    imd_start(&imd) != 0) {
		fprintf(stderr, "bench_imd: cannot start imd ($IMD)\n");
		return 1;
	}
	for (i = 0; i < n; i++) {
		char tok[IM_TOKEN_BUF];

		imd_token(&imd, (uint64_t)(i + 1), 3600, tok, sizeof(tok));
		if (tc_connect(&cl[i].tc, imd.port) != 0 ||
		    tc_login(&cl[i].tc, tok, NULL, 0, NULL) != 1) {
			fprintf(stderr, "bench_imd: login %d failed\n", i + 1);
			return 1;
		}
		cl[i].tc.drop_pushes = true;
	}
	for (i = 0; i < n; i += 2) {
		uint64_t other = (uint64_t)(i + 2);
		int64_t g = tc_create_group(&cl[i].tc, "bench", &other, 1);

		if (g <= 0) {
			fprintf(stderr, "bench_imd: create group failed\n");
			return 1;
		}
		cl[i].group = cl[i + 1].group = (uint64_t)g;
	}
	t0 = now_s();
	c0 = cpu_s(imd.pid);
	for (i = 0; i < n; i++) {
		for (k = 0; k < w; k++) {
			send_one(&cl[i], env);
		}
		pfd[i].fd = cl[i].tc.fd;
		pfd[i].events = POLLIN;
	}
	while ((t1 = now_s()) - t0 < dur) {
		if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR) {
			break;
		}
		for (i = 0; i < n; i++) {
			tclient *c = &cl[i].tc;
			ssize_t r;

			if (!(pfd[i].revents & POLLIN)) {
				continue;
			}
			r = recv(c->fd, c->buf + c->len,
			         IM_FRAME_HEADER + IM_FRAME_MAX + 65536 -
			                 c->len,
			         0);
			if (r <= 0 || (c->len += (size_t)r,
			               drain(&cl[i], env, true) != 0)) {
				fprintf(stderr, "bench_imd: client %d failed\n",
				        i + 1);
				goto out;
			}
		}
	}
out:
	t1 = now_s();
	c1 = cpu_s(imd.pid);
	for (i = 0; i < n; i++) {
		acked += cl[i].acked;
		delivered += cl[i].delivered;
	}
	printf("bench_imd: %d clients, window %d, sync %s, %.1f s: "
	       "%llu sends acked (%.0f msg/s), %llu deliveries (%.0f/s)\n",
	       n, w, sync, t1 - t0, (unsigned long long)acked,
	       (double)acked / (t1 - t0), (unsigned long long)delivered,
	       (double)delivered / (t1 - t0));
	printf("bench_imd: imd used %.2f CPU s: %.1f us per acked send "
	       "(incl. its 2 deliveries)\n",
	       c1 - c0, acked ? (c1 - c0) * 1e6 / (double)acked : 0.0);
	for (i = 0; i < n; i++) {
		tc_close(&cl[i].tc);
	}
	imd_stop(&imd, SIGTERM);
	snprintf(cmd, sizeof(cmd), "grep -h 'chatter:\\|connector:' '%s'",
	         imd.log);
	if (system(cmd) != 0) {
		fprintf(stderr, "bench_imd: no stats in %s\n", imd.log);
	}
	imd_cleanup(&imd);
	free(cl);
	free(pfd);
	free(env);
	return 0;
}
