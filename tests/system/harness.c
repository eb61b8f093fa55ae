#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pb_decode.h>
#include <pb_encode.h>

#include "im/frame.h"
#include "im/token.h"

static uint64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

int
imd_init(imd_proc *p, const char *const *extra)
{
	FILE *f;
	unsigned i;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/imd-test-XXXXXX");
	if (mkdtemp(p->dir) == NULL) {
		return -1;
	}
	snprintf(p->db, sizeof(p->db), "%s/im.db", p->dir);
	snprintf(p->secret_file, sizeof(p->secret_file), "%s/secret", p->dir);
	snprintf(p->port_file, sizeof(p->port_file), "%s/port", p->dir);
	snprintf(p->log, sizeof(p->log), "%s/imd.log", p->dir);
	srand((unsigned)(mono_ms() ^ (uint64_t)getpid()));
	for (i = 0; i < 32; i++) {
		p->secret[i] = "abcdefghijklmnopqrstuvwxyz012345"[rand() % 32];
	}
	p->secret[32] = '\0';
	f = fopen(p->secret_file, "w");
	if (f == NULL) {
		return -1;
	}
	fprintf(f, "%s\n", p->secret);
	fclose(f);
	for (i = 0; extra != NULL && extra[i] != NULL && i < H_MAX_ARGS; i++) {
		p->extra[i] = extra[i];
	}
	p->nextra = (int)i;
	return 0;
}

int
imd_start(imd_proc *p)
{
	const char *bin = getenv("IMD");
	const char *argv[H_MAX_ARGS + 32];
	uint64_t deadline;
	int n = 0, i;
	pid_t pid;

	if (bin == NULL) {
		fprintf(stderr, "harness: $IMD is not set\n");
		return -1;
	}
	unlink(p->port_file);
	argv[n++] = bin;
	argv[n++] = "--db";
	argv[n++] = p->db;
	argv[n++] = "--secret-file";
	argv[n++] = p->secret_file;
	argv[n++] = "--port";
	argv[n++] = "0";
	argv[n++] = "--port-file";
	argv[n++] = p->port_file;
	argv[n++] = "--slots";
	argv[n++] = "64";
	argv[n++] = "--sync";
	argv[n++] = "normal";
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	for (i = 0; i < p->nextra; i++) {
		argv[n++] = p->extra[i];
	}
	argv[n] = NULL;
	pid = fork();
	if (pid < 0) {
		return -1;
	}
	if (pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
			close(fd);
		}
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	p->pid = pid;
	p->starts++;
	/* Bounded wait for the port file (written once listening). */
	deadline = mono_ms() + 30000;
	while (mono_ms() < deadline) {
		FILE *f = fopen(p->port_file, "r");
		int status;

		if (f != NULL) {
			unsigned port = 0;

			if (fscanf(f, "%u", &port) == 1 && port > 0) {
				fclose(f);
				p->port = (uint16_t)port;
				return 0;
			}
			fclose(f);
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "harness: imd exited at start (%d)\n",
			        status);
			p->pid = 0;
			imd_dump_log(p);
			return -1;
		}
		sleep_ms(20);
	}
	fprintf(stderr, "harness: imd did not listen in time\n");
	imd_stop(p, SIGKILL);
	return -1;
}

int
imd_stop(imd_proc *p, int sig)
{
	uint64_t deadline;
	int status = 0;

	if (p->pid <= 0) {
		return 0;
	}
	kill(p->pid, sig);
	deadline = mono_ms() + 30000;
	while (mono_ms() < deadline) {
		pid_t r = waitpid(p->pid, &status, WNOHANG);

		if (r == p->pid) {
			p->pid = 0;
			return status;
		}
		sleep_ms(10);
	}
	kill(p->pid, SIGKILL);
	waitpid(p->pid, &status, 0);
	p->pid = 0;
	return -1;
}

void
imd_dump_log(const imd_proc *p)
{
	char cmd[400];

	snprintf(cmd, sizeof(cmd), "tail -n 60 '%s' >&2", p->log);
	if (system(cmd) != 0) {
		fprintf(stderr, "harness: no log at %s\n", p->log);
	}
}

int
imd_cleanup(imd_proc *p)
{
	char cmd[400];
	int status = imd_stop(p, SIGTERM);

	if (status != 0) {
		fprintf(stderr, "harness: imd exit status %d\n", status);
		imd_dump_log(p);
	}
	if (getenv("IM_TEST_KEEP") == NULL && p->dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p->dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "harness: could not remove %s\n",
			        p->dir);
		}
	}
	return status;
}

void
imd_token(const imd_proc *p, uint64_t uid, int64_t ttl_s, char *out, size_t len)
{
	uint64_t now = (uint64_t)time(NULL);
	uint64_t exp =
	        ttl_s < 0 ? now - (uint64_t)(-ttl_s) : now + (uint64_t)ttl_s;

	if (im_token_mint(out, len, p->secret, strlen(p->secret), uid, exp) !=
	    IM_OK) {
		out[0] = '\0';
	}
}

/* ------------------------------------------------------------------ */

int
tc_connect(tclient *c, uint16_t port)
{
	return tc_connect_rcvbuf(c, port, 0);
}

int
tc_connect_rcvbuf(tclient *c, uint16_t port, int rcvbuf)
{
	struct sockaddr_in sa;
	int one = 1;

	memset(c, 0, sizeof(*c));
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		return -1;
	}
	if (rcvbuf > 0) {
		setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf,
		           sizeof(rcvbuf));
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->buf = malloc(IM_FRAME_HEADER + IM_FRAME_MAX + 65536);
	c->pushes = calloc(TC_PUSHES, sizeof(*c->pushes));
	c->env = malloc(sizeof(*c->env));
	c->next_req = 1;
	if (c->buf == NULL || c->pushes == NULL || c->env == NULL) {
		tc_close(c);
		return -1;
	}
	return 0;
}

void
tc_close(tclient *c)
{
	if (c->fd >= 0) {
		close(c->fd);
	}
	c->fd = -1;
	free(c->buf);
	free(c->pushes);
	free(c->env);
	c->buf = NULL;
	c->pushes = NULL;
	c->env = NULL;
}

void
tc_abort(tclient *c)
{
	struct linger lg = {1, 0};

	if (c->fd >= 0) {
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	tc_close(c);
}

int
tc_send_raw(tclient *c, const void *data, size_t len)
{
	const uint8_t *p = data;

	while (len > 0) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
tc_send(tclient *c, const im_Envelope *env)
{
	static uint8_t out[IM_FRAME_HEADER + IM_FRAME_MAX];
	pb_ostream_t os =
	        pb_ostream_from_buffer(out + IM_FRAME_HEADER, IM_FRAME_MAX);

	if (!pb_encode(&os, im_Envelope_fields, env)) {
		return -1;
	}
	im_frame_put_header(out, (uint32_t)os.bytes_written);
	return tc_send_raw(c, out, IM_FRAME_HEADER + os.bytes_written);
}

int
tc_recv(tclient *c, int timeout_ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;

	for (;;) {
		const uint8_t *payload;
		uint32_t plen;
		size_t used;
		struct pollfd pfd;
		uint64_t now;
		ssize_t n;
		int rc = im_frame_parse(c->buf, c->len, IM_FRAME_MAX, &payload,
		                        &plen, &used);

		if (rc == IM_OK) {
			pb_istream_t is = pb_istream_from_buffer(payload, plen);
			bool ok = pb_decode(&is, im_Envelope_fields, c->env);

			memmove(c->buf, c->buf + used, c->len - used);
			c->len -= used;
			if (!ok) {
				fprintf(stderr, "tc_recv: undecodable frame\n");
				return -1;
			}
			return 1;
		}
		if (rc != IM_EAGAIN) {
			fprintf(stderr, "tc_recv: bad frame header\n");
			return -1;
		}
		now = mono_ms();
		if (now >= deadline) {
			return 0;
		}
		pfd.fd = c->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		rc = poll(&pfd, 1, (int)(deadline - now));
		if (rc == 0) {
			return 0;
		}
		if (rc < 0) {
			if (errno == EINTR) {
				continue;
			}
			return -1;
		}
		n = recv(c->fd, c->buf + c->len,
		         IM_FRAME_HEADER + IM_FRAME_MAX + 65536 - c->len, 0);
		if (n <= 0) {
			return -1;
		}
		c->len += (size_t)n;
	}
}

static void
push_from_env(const im_Envelope *env, tpush *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = env->which_msg;
	if (env->which_msg == im_Envelope_deliver_tag) {
		const im_Deliver *d = &env->msg.deliver;

		p->group = d->group;
		p->seq = d->seq;
		p->prev_seq = d->prev_seq;
		p->ordinal = d->ordinal;
		p->sender = d->sender;
		p->dedup_id = d->dedup_id;
		p->body_len = d->body.size;
		memcpy(p->body, d->body.bytes,
		       d->body.size < sizeof(p->body) - 1
		               ? d->body.size
		               : sizeof(p->body) - 1);
	} else if (env->which_msg == im_Envelope_user_event_tag) {
		const im_UserEvent *e = &env->msg.user_event;

		p->group = e->group;
		p->seq = e->seq;
		p->ev_type = (uint32_t)e->type;
		p->actor = e->actor;
		p->read_seq = e->read_seq;
	}
}

static void
queue_push(tclient *c)
{
	if (c->drop_pushes) {
		return;
	}
	if (c->pcount == TC_PUSHES) {
		fprintf(stderr, "tc: push ring full, dropping\n");
		c->drop_pushes = true;
		return;
	}
	push_from_env(c->env, &c->pushes[(c->phead + c->pcount) % TC_PUSHES]);
	c->pcount++;
}

int
tc_wait_reply(tclient *c, uint64_t req_id, int timeout_ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;

	for (;;) {
		uint64_t now = mono_ms();
		int rc;

		if (now >= deadline) {
			return 0;
		}
		rc = tc_recv(c, (int)(deadline - now));
		if (rc != 1) {
			return rc;
		}
		if (c->env->req_id == req_id) {
			return 1;
		}
		if (c->env->req_id == 0) {
			if (c->env->which_msg == im_Envelope_error_tag) {
				/* A connection-level error: report it. */
				return 1;
			}
			queue_push(c);
		}
	}
}

int
tc_call(tclient *c, im_Envelope *env, int timeout_ms)
{
	env->req_id = c->next_req++;
	if (tc_send(c, env) != 0) {
		return -1;
	}
	return tc_wait_reply(c, env->req_id, timeout_ms);
}

int
tc_next_push(tclient *c, tpush *out, int timeout_ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;

	if (c->pcount > 0) {
		*out = c->pushes[c->phead];
		c->phead = (c->phead + 1) % TC_PUSHES;
		c->pcount--;
		return 1;
	}
	for (;;) {
		uint64_t now = mono_ms();
		int rc;

		if (now >= deadline) {
			return 0;
		}
		rc = tc_recv(c, (int)(deadline - now));
		if (rc != 1) {
			return rc;
		}
		if (c->env->which_msg == im_Envelope_deliver_tag ||
		    c->env->which_msg == im_Envelope_user_event_tag) {
			push_from_env(c->env, out);
			return 1;
		}
	}
}

bool
tc_wait_closed(tclient *c, int timeout_ms, int *last_error)
{
	uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;

	if (last_error != NULL) {
		*last_error = -1;
	}
	for (;;) {
		uint64_t now = mono_ms();
		int rc;

		if (now >= deadline) {
			return false;
		}
		rc = tc_recv(c, (int)(deadline - now));
		if (rc < 0) {
			return true;
		}
		if (rc == 0) {
			return false;
		}
		if (c->env->which_msg == im_Envelope_error_tag &&
		    last_error != NULL) {
			*last_error = (int)c->env->msg.error.code;
		}
	}
}

int
tc_login(tclient *c, const char *token, im_ConvInfo *convs, size_t max,
         size_t *nconvs)
{
	im_Envelope *env = calloc(1, sizeof(*env));
	uint64_t req;
	int rc;
	size_t n = 0;

	if (env == NULL) {
		return -1000;
	}
	env->which_msg = im_Envelope_login_tag;
	snprintf(env->msg.login.token, sizeof(env->msg.login.token), "%s",
	         token);
	snprintf(env->msg.login.device, sizeof(env->msg.login.device),
	         "harness");
	rc = tc_call(c, env, H_TIMEOUT_MS);
	req = env->req_id;
	free(env);
	if (rc != 1) {
		return -1000;
	}
	if (c->env->which_msg == im_Envelope_error_tag) {
		return -(int)c->env->msg.error.code;
	}
	if (c->env->which_msg != im_Envelope_login_ok_tag) {
		return -1000;
	}
	c->user = c->env->msg.login_ok.user;
	memcpy(c->session, c->env->msg.login_ok.session, 16);
	for (;;) {
		pb_size_t i;

		if (tc_wait_reply(c, req, H_TIMEOUT_MS) != 1 ||
		    c->env->which_msg != im_Envelope_conv_page_tag) {
			return -1000;
		}
		for (i = 0; i < c->env->msg.conv_page.convs_count; i++) {
			if (convs != NULL && n < max) {
				convs[n] = c->env->msg.conv_page.convs[i];
			}
			n++;
		}
		if (c->env->msg.conv_page.done) {
			break;
		}
	}
	if (nconvs != NULL) {
		*nconvs = n;
	}
	return 1;
}

static int64_t
reply_error(tclient *c, int rc)
{
	if (rc != 1) {
		return -1000;
	}
	if (c->env->which_msg == im_Envelope_error_tag) {
		return -(int64_t)c->env->msg.error.code;
	}
	return -1000;
}

int64_t
tc_create_group(tclient *c, const char *name, const uint64_t *members, size_t n)
{
	im_Envelope *env = calloc(1, sizeof(*env));
	size_t i;
	int rc;

	if (env == NULL) {
		return -1000;
	}
	env->which_msg = im_Envelope_create_group_tag;
	snprintf(env->msg.create_group.name, sizeof(env->msg.create_group.name),
	         "%s", name);
	for (i = 0; i < n && i < 64; i++) {
		env->msg.create_group.members[i] = members[i];
	}
	env->msg.create_group.members_count = (pb_size_t)i;
	rc = tc_call(c, env, H_TIMEOUT_MS);
	free(env);
	if (rc == 1 && c->env->which_msg == im_Envelope_group_created_tag) {
		return (int64_t)c->env->msg.group_created.group;
	}
	return reply_error(c, rc);
}

int64_t
tc_send_msg(tclient *c, uint64_t group, uint64_t dedup_id, const char *body,
            bool *dup)
{
	im_Envelope *env = calloc(1, sizeof(*env));
	int rc;

	if (env == NULL) {
		return -1000;
	}
	env->which_msg = im_Envelope_send_tag;
	env->msg.send.group = group;
	env->msg.send.dedup_id = dedup_id;
	env->msg.send.body.size = (pb_size_t)strlen(body);
	memcpy(env->msg.send.body.bytes, body, strlen(body));
	rc = tc_call(c, env, H_TIMEOUT_MS);
	free(env);
	if (rc == 1 && c->env->which_msg == im_Envelope_send_ack_tag) {
		if (dup != NULL) {
			*dup = c->env->msg.send_ack.dup;
		}
		return (int64_t)c->env->msg.send_ack.seq;
	}
	return reply_error(c, rc);
}

int
tc_simple(tclient *c, im_Envelope *env)
{
	int rc = tc_call(c, env, H_TIMEOUT_MS);

	if (rc == 1 && c->env->which_msg == im_Envelope_error_tag) {
		return (int)c->env->msg.error.code;
	}
	return -1000;
}

void
tc_ack(tclient *c, uint64_t group, uint64_t seq)
{
	im_Envelope env = {0};

	env.which_msg = im_Envelope_deliver_ack_tag;
	env.msg.deliver_ack.group = group;
	env.msg.deliver_ack.seq = seq;
	(void)tc_send(c, &env);
}

int
tc_sync_all(tclient *c, uint64_t group, uint64_t after, tpush *out, size_t max)
{
	im_Envelope *env = calloc(1, sizeof(*env));
	size_t n = 0;
	int pages = 0;

	if (env == NULL) {
		return -1000;
	}
	while (pages++ < 1000) {
		const im_SyncPage *pg;
		pb_size_t i;
		int rc;

		memset(env, 0, sizeof(*env));
		env->which_msg = im_Envelope_sync_tag;
		env->msg.sync.group = group;
		env->msg.sync.after = after;
		rc = tc_call(c, env, H_TIMEOUT_MS);
		if (rc != 1) {
			free(env);
			return -1000;
		}
		if (c->env->which_msg == im_Envelope_error_tag) {
			free(env);
			return -(int)c->env->msg.error.code;
		}
		if (c->env->which_msg != im_Envelope_sync_page_tag) {
			free(env);
			return -1000;
		}
		pg = &c->env->msg.sync_page;
		for (i = 0; i < pg->msgs_count; i++) {
			im_Envelope tmp;

			if (n < max) {
				tmp.which_msg = im_Envelope_deliver_tag;
				tmp.msg.deliver = pg->msgs[i];
				push_from_env(&tmp, &out[n]);
			}
			n++;
			after = pg->msgs[i].seq;
		}
		for (i = 0; i < pg->events_count; i++) {
			im_Envelope tmp;

			if (n < max) {
				tmp.which_msg = im_Envelope_user_event_tag;
				tmp.msg.user_event = pg->events[i];
				push_from_env(&tmp, &out[n]);
			}
			n++;
			after = pg->events[i].seq;
		}
		if (!pg->more) {
			break;
		}
	}
	free(env);
	return (int)n;
}
