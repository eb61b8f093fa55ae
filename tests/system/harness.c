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
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>

#include <cmocka.h>
#include <pb_decode.h>
#include <pb_encode.h>

#include "im/frame.h"
#include "im/shard.h"
#include "im/store.h"
#include "im/token.h"
#ifdef H_HAVE_PG
#include "pg_fixture.h"
#endif

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

static int cluster_init(imd_proc *p);
static int cluster_start(imd_proc *p);
static int cluster_stop(imd_proc *p, int sig);

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
	if (h_target_cluster()) {
		return cluster_init(p);
	}
	return 0;
}

/* Start bin with its stdout and stderr appended to log; the child dies
 * with the test (a test killed mid-run, by a timeout or a crash, takes its
 * servers with it instead of leaving them running). -1 if fork failed. */
static pid_t
spawn_logged(const char *bin, const char **argv, const char *log)
{
	pid_t pid = fork();

	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);

		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
			close(fd);
		}
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

int
imd_start(imd_proc *p)
{
	const char *bin = getenv("IMD");
	const char *argv[H_MAX_ARGS + 32];
	uint64_t deadline;
	int n = 0, i;
	pid_t pid;

	if (p->cluster) {
		return cluster_start(p);
	}
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
	/* Extra imd flags for a whole suite run (e.g. the Chatter's
	 * commit on the loop: IM_TEST_IMD_ARGS="--commit_thread false"),
	 * split at spaces. */
	if (getenv("IM_TEST_IMD_ARGS") != NULL) {
		static char envargs[256];
		char *save = NULL, *tok;

		snprintf(envargs, sizeof(envargs), "%s",
		         getenv("IM_TEST_IMD_ARGS"));
		for (tok = strtok_r(envargs, " ", &save);
		     tok != NULL && n < H_MAX_ARGS + 30;
		     tok = strtok_r(NULL, " ", &save)) {
			argv[n++] = tok;
		}
	}
	argv[n] = NULL;
	if ((pid = spawn_logged(bin, argv, p->log)) < 0) {
		return -1;
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

	if (p->cluster) {
		return cluster_stop(p, sig);
	}
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

	if (p->cluster) {
		snprintf(cmd, sizeof(cmd), "tail -n 40 '%s'/*.log >&2", p->dir);
		if (system(cmd) != 0) {
			fprintf(stderr, "harness: no logs in %s\n", p->dir);
		}
		return;
	}
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
#ifdef H_HAVE_PG
	if (p->pg_schema[0] != '\0') {
		pg_fixture fx;

		memset(&fx, 0, sizeof(fx));
		snprintf(fx.schema, sizeof(fx.schema), "%s", p->pg_schema);
		pg_fixture_drop(&fx);
		p->pg_schema[0] = '\0';
	}
#endif
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

/* ---- The cluster target ---------------------------------------------- */

/* Tests of the all-in-one server that have no cluster meaning. */
static const struct {
	const char *test;
	const char *why;
} h_cluster_skips[] = {
        {"test_system_a_second_imd_fences_off_the_first",
         "a second whole server on the same store; the cluster's fencing "
         "is a slot handover between live nodes (cluster_e2e, "
         "test_cluster_router)"},
        {"test_system_a_second_imd_fences_off_group_creation",
         "as test_system_a_second_imd_fences_off_the_first"},
        {"test_system_a_second_imd_fences_off_membership_changes",
         "as test_system_a_second_imd_fences_off_the_first"},
        {"test_system_a_second_imd_fences_off_read_pointers",
         "as test_system_a_second_imd_fences_off_the_first"},
        {"test_system_a_second_imd_cannot_open_the_database_of_an_exclusive_"
         "one",
         "imd's exclusive sqlite lock; cluster nodes share the store by "
         "design"},
};

/* cmocka takes one skip pattern: it must match exactly the list above. */
#define H_CLUSTER_SKIP_PATTERN "test_system_a_second_imd_*"

bool
h_target_cluster(void)
{
	const char *t = getenv("IM_TEST_TARGET");

	return t != NULL && strcmp(t, "cluster") == 0;
}

/* Before main: say what runs, and skip what cannot. */
__attribute__((constructor)) static void
h_target_announce(void)
{
	const char *pg = getenv("IM_TEST_PG");
	size_t i;

	if (!h_target_cluster()) {
		return;
	}
	printf("# target: cluster (1 Router, 2 Chatters, 2 Connectors on %s)"
	       "\n",
	       pg != NULL && *pg != '\0' ? "PostgreSQL" : "sqlite");
	for (i = 0; i < sizeof(h_cluster_skips) / sizeof(h_cluster_skips[0]);
	     i++) {
		printf("# SKIP %s on the cluster target: %s\n",
		       h_cluster_skips[i].test, h_cluster_skips[i].why);
		fprintf(stderr, "harness: SKIP %s on the cluster target: %s\n",
		        h_cluster_skips[i].test, h_cluster_skips[i].why);
	}
	cmocka_set_skip_filter(H_CLUSTER_SKIP_PATTERN);
	fflush(stdout);
}

static int
cluster_init(imd_proc *p)
{
	static const char *const names[H_NODES] = {"router-1", "chatter-1",
	                                           "chatter-2", "connector-1",
	                                           "connector-2"};
	const char *pg = getenv("IM_TEST_PG");
	int i;

	p->cluster = true;
	snprintf(p->store, sizeof(p->store), "%s", p->db);
	if (pg != NULL && *pg != '\0') {
#ifdef H_HAVE_PG
		pg_fixture fx;

		if (pg_fixture_create(&fx) != 0) {
			fprintf(stderr, "harness: PostgreSQL: %s\n",
			        pg_fixture_error());
			return -1;
		}
		snprintf(p->pg_schema, sizeof(p->pg_schema), "%s", fx.schema);
		snprintf(p->store, sizeof(p->store), "%s", fx.conninfo);
#else
		fprintf(stderr, "harness: built without PostgreSQL\n");
		return -1;
#endif
	}
	for (i = 0; i < H_NODES; i++) {
		h_node *n = &p->nodes[i];

		snprintf(n->name, sizeof(n->name), "%s", names[i]);
		snprintf(n->role, sizeof(n->role), "%.*s",
		         (int)strcspn(names[i], "-"), names[i]);
		snprintf(n->log, sizeof(n->log), "%s/%s.log", p->dir, names[i]);
		snprintf(n->port_file, sizeof(n->port_file), "%s/%s.port",
		         p->dir, names[i]);
	}
	snprintf(p->log, sizeof(p->log), "%s/cluster.log", p->dir);
	return 0;
}

static int
free_port(uint16_t *out)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
		close(fd);
		return -1;
	}
	close(fd);
	*out = ntohs(sa.sin_port);
	return 0;
}

static long
file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Node logs are appended across restarts: each start reads from here. */
static long h_log_off[H_NODES];

static int
node_spawn(imd_proc *p, int i)
{
	const char *bin = getenv("IMNODE");
	h_node *n = &p->nodes[i];
	const char *argv[H_MAX_ARGS + 32];
	char listen[64];
	int a = 0, k;
	pid_t pid;

	if (bin == NULL) {
		fprintf(stderr, "harness: $IMNODE is not set\n");
		return -1;
	}
	unlink(n->port_file);
	if (strcmp(n->role, "connector") == 0) {
		if (free_port(&n->port) != 0) {
			return -1;
		}
		snprintf(listen, sizeof(listen), "127.0.0.1:%u", n->port);
	} else if (strcmp(n->role, "router") == 0) {
		snprintf(listen, sizeof(listen), "127.0.0.1:0");
	} else {
		snprintf(listen, sizeof(listen), "-");
	}
	argv[a++] = bin;
	argv[a++] = "--role";
	argv[a++] = n->role;
	argv[a++] = "--name";
	argv[a++] = n->name;
	argv[a++] = "--listen";
	argv[a++] = listen;
	argv[a++] = "--store";
	argv[a++] = p->store;
	argv[a++] = "--slots";
	argv[a++] = "64";
	argv[a++] = "--log-level";
	argv[a++] = "debug";
	argv[a++] = "--port-file";
	argv[a++] = n->port_file;
	/* Short membership and balance periods: a start takes a fraction of
	 * a second instead of seconds (the defaults are 1000 ms). */
	argv[a++] = "--heartbeat-ms";
	argv[a++] = "100";
	argv[a++] = "--refresh-ms";
	argv[a++] = "100";
	argv[a++] = "--balance-ms";
	argv[a++] = "100";
	if (strcmp(n->role, "router") != 0) {
		argv[a++] = "--expect";
		argv[a++] = "2";
		for (k = 0; k < p->nextra; k++) {
			argv[a++] = p->extra[k];
		}
	}
	if (strcmp(n->role, "connector") == 0) {
		argv[a++] = "--secret-file";
		argv[a++] = p->secret_file;
	}
	argv[a] = NULL;
	h_log_off[i] = file_size(n->log);
	if ((pid = spawn_logged(bin, argv, n->log)) < 0) {
		return -1;
	}
	n->pid = pid;
	return 0;
}

/* This run's part of a node's log (from its start), NUL terminated. */
static char *
node_log(const imd_proc *p, int i)
{
	FILE *f = fopen(p->nodes[i].log, "r");
	char *buf = NULL;
	long size;

	if (f == NULL) {
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f) - h_log_off[i];
	if (size >= 0 && (buf = malloc((size_t)size + 1)) != NULL) {
		fseek(f, h_log_off[i], SEEK_SET);
		size = (long)fread(buf, 1, (size_t)size, f);
		buf[size] = '\0';
	}
	fclose(f);
	return buf;
}

struct slot_count {
	char owner[H_NODES][IM_OWNER_MAX + 1];
	unsigned count[H_NODES];
	unsigned other;
	int user_owner[64]; /* node index owning each user slot */
};

static int
count_slot(const im_slot_row *row, void *payload)
{
	struct slot_count *sc = payload;
	int i;

	for (i = 0; i < H_NODES; i++) {
		if (sc->owner[i][0] != '\0' &&
		    strcmp(row->owner, sc->owner[i]) == 0) {
			sc->count[i]++;
			if (row->kind == IM_KIND_USER && row->slot < 64) {
				sc->user_owner[row->slot] = i;
			}
			return 0;
		}
	}
	sc->other++;
	return 0;
}

/* A probe user (900000 and up) in each of the 64 slots; 0 if none. */
static uint64_t
h_probe_uid(uint32_t slot)
{
	static uint64_t uids[64];
	static bool done;

	if (!done) {
		uint64_t uid;

		for (uid = 900000; uid < 1000000; uid++) {
			uint32_t s = im_shard_slot_of(uid, 64);

			if (uids[s] == 0) {
				uids[s] = uid;
			}
		}
		done = true;
	}
	return slot < 64 ? uids[slot] : 0;
}

/* A login of uid through the Connector on port, following a Redirect. */
static bool
probe_login(const imd_proc *p, uint16_t port, uint64_t uid)
{
	char tok[IM_TOKEN_BUF];
	tclient c;
	int rc;

	imd_token(p, uid, 60, tok, sizeof(tok));
	if (tc_connect(&c, port) != 0) {
		return false;
	}
	rc = tc_login(&c, tok, NULL, 0, NULL);
	tc_close(&c);
	return rc == 1;
}

/*
 * Ready: every node is up and linked to the Router, and the slots of each
 * kind are split evenly between this run's incarnations (owner strings
 * from the "up" lines), so no handover is still to come.
 */
static bool
cluster_ready(imd_proc *p)
{
	struct slot_count sc;
	im_store *st = NULL;
	bool ok = true;
	int i, rc;

	memset(&sc, 0, sizeof(sc));
	for (i = 1; i < H_NODES && ok; i++) {
		char *log = node_log(p, i);
		const char *up = log != NULL ? strstr(log, ") up") : NULL;
		const char *open;

		ok = up != NULL && strstr(log, " connected") != NULL;
		if (ok) {
			for (open = up; open > log && *open != '('; open--) {
			}
			snprintf(sc.owner[i], sizeof(sc.owner[i]), "%.*s",
			         (int)(up - open - 1), open + 1);
		}
		free(log);
	}
	if (!ok) {
		return false;
	}
	if (strchr(p->store, '=') != NULL) {
#ifdef H_HAVE_PG
		rc = im_store_pg_open(&st, p->store, NULL, NULL, 0);
#else
		rc = IM_ENOTSUP;
#endif
	} else {
		rc = im_store_sqlite_open(&st, p->store, NULL, NULL, 0);
	}
	if (rc != IM_OK) {
		return false;
	}
	ok = im_store_slot_load(st, IM_KIND_USER, count_slot, &sc) == IM_OK &&
	     im_store_slot_load(st, IM_KIND_GROUP, count_slot, &sc) == IM_OK;
	im_store_close(st);
	for (i = 1; i < H_NODES && ok; i++) {
		ok = sc.count[i] == 32;
	}
	if (!ok || sc.other != 0) {
		return false;
	}
	/* Each Connector sees all of the other's slots and knows its
	 * address: a user of any of them logging in here is redirected
	 * there (its slot map may still be older than the last claims). */
	for (i = 3; i < H_NODES && ok; i++) {
		int other = i == 3 ? 4 : 3;
		uint32_t slot;

		for (slot = 0; slot < 64 && ok; slot++) {
			uint64_t uid = h_probe_uid(slot);

			if (sc.user_owner[slot] == other) {
				ok = uid != 0 &&
				     probe_login(p, p->nodes[i].port, uid);
			}
		}
	}
	return ok;
}

static int
read_port(const char *path, uint16_t *port)
{
	unsigned v = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		return -1;
	}
	if (fscanf(f, "%u", &v) != 1 || v == 0 || v > 65535) {
		fclose(f);
		return -1;
	}
	fclose(f);
	*port = (uint16_t)v;
	return 0;
}

static int
cluster_start(imd_proc *p)
{
	uint64_t t0 = mono_ms(), deadline = t0 + 30000;
	int i, status;

	/* The Router first: the others find it in the store. */
	if (node_spawn(p, 0) != 0) {
		return -1;
	}
	while (read_port(p->nodes[0].port_file, &p->nodes[0].port) != 0) {
		if (mono_ms() > deadline ||
		    waitpid(p->nodes[0].pid, &status, WNOHANG) != 0) {
			fprintf(stderr, "harness: the router did not start\n");
			goto fail;
		}
		sleep_ms(10);
	}
	for (i = 1; i < H_NODES; i++) {
		if (node_spawn(p, i) != 0) {
			goto fail;
		}
	}
	p->pid = p->nodes[3].pid;
	p->port = p->nodes[3].port;
	p->starts++;
	while (!cluster_ready(p)) {
		for (i = 0; i < H_NODES; i++) {
			if (waitpid(p->nodes[i].pid, &status, WNOHANG) != 0) {
				fprintf(stderr,
				        "harness: %s exited at start (%d)\n",
				        p->nodes[i].name, status);
				p->nodes[i].pid = 0;
				goto fail;
			}
		}
		if (mono_ms() > deadline) {
			fprintf(stderr, "harness: the cluster did not take "
			                "its slots in 30 s\n");
			goto fail;
		}
		sleep_ms(20);
	}
	fprintf(stderr, "harness: cluster up in %llu ms\n",
	        (unsigned long long)(mono_ms() - t0));
	return 0;
fail:
	imd_dump_log(p);
	cluster_stop(p, SIGKILL);
	return -1;
}

/* The last "chatter: N messages in M commits" line of a log. */
static void
chatter_stats_of(const imd_proc *p, int i, unsigned long long *msgs,
                 unsigned long long *commits)
{
	char *log = node_log(p, i);
	const char *c = log;
	unsigned long long m, k;

	while (c != NULL && (c = strstr(c, "chatter: ")) != NULL) {
		if (sscanf(c, "chatter: %llu messages in %llu", &m, &k) == 2) {
			*msgs += m;
			*commits += k;
			break;
		}
		c++;
	}
	free(log);
}

static int
cluster_stop(imd_proc *p, int sig)
{
	uint64_t deadline = mono_ms() + 30000;
	unsigned long long msgs = 0, commits = 0;
	int result = 0, i, running = 0;
	FILE *f;

	for (i = 0; i < H_NODES; i++) {
		if (p->nodes[i].pid > 0) {
			kill(p->nodes[i].pid, sig);
			running++;
		}
	}
	if (running == 0) {
		return 0;
	}
	for (i = 0; i < H_NODES; i++) {
		int status = 0;

		while (p->nodes[i].pid > 0) {
			pid_t r = waitpid(p->nodes[i].pid, &status, WNOHANG);

			if (r == p->nodes[i].pid) {
				p->nodes[i].pid = 0;
				break;
			}
			if (mono_ms() > deadline) {
				kill(p->nodes[i].pid, SIGKILL);
				waitpid(p->nodes[i].pid, &status, 0);
				p->nodes[i].pid = 0;
				status = -1;
			}
			sleep_ms(10);
		}
		if (status != 0) {
			fprintf(stderr, "harness: %s exit status %d\n",
			        p->nodes[i].name, status);
			if (result == 0) {
				result = status;
			}
		}
	}
	p->pid = 0;
	/* The cluster's stats line, as imd's: the Chatters' sum. */
	chatter_stats_of(p, 1, &msgs, &commits);
	chatter_stats_of(p, 2, &msgs, &commits);
	if ((f = fopen(p->log, "a")) != NULL) {
		fprintf(f,
		        "harness: cluster chatter: %llu messages in %llu "
		        "commits (sum of the Chatters)\n",
		        msgs, commits);
		fclose(f);
	}
	return result;
}

/* ------------------------------------------------------------------ */

int
tc_connect(tclient *c, uint16_t port)
{
	return tc_connect_rcvbuf(c, port, 0);
}

static int
tc_dial(uint16_t port, int rcvbuf)
{
	struct sockaddr_in sa;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		return -1;
	}
	if (rcvbuf > 0) {
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	}
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

int
tc_connect_rcvbuf(tclient *c, uint16_t port, int rcvbuf)
{
	memset(c, 0, sizeof(*c));
	c->rcvbuf = rcvbuf;
	c->fd = tc_dial(port, rcvbuf);
	if (c->fd < 0) {
		return -1;
	}
	c->buf = malloc(IM_FRAME_HEADER + IM_FRAME_MAX + 65536);
	c->pushes = calloc(TC_PUSHES, sizeof(*c->pushes));
	c->env = malloc(sizeof(*c->env));
	/* Only the cluster target follows Redirects for the tests; others
	 * (tests/cluster) look at the Redirect itself. */
	c->replay = h_target_cluster() ? malloc(TC_REPLAY_MAX) : NULL;
	c->next_req = 1;
	if (c->buf == NULL || c->pushes == NULL || c->env == NULL ||
	    (c->replay == NULL && h_target_cluster())) {
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
	free(c->replay);
	c->replay = NULL;
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

static int
send_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

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
tc_send_raw(tclient *c, const void *data, size_t len)
{
	if (c->replay != NULL) {
		if (c->nreplay + len <= TC_REPLAY_MAX) {
			memcpy(c->replay + c->nreplay, data, len);
			c->nreplay += len;
		} else {
			/* Too much to replay: a Redirect is not followed. */
			free(c->replay);
			c->replay = NULL;
		}
	}
	return send_all(c->fd, data, len);
}

/* Login answered (or given up on): stop keeping what was sent. */
static void
tc_logged_in(tclient *c)
{
	free(c->replay);
	c->replay = NULL;
}

/*
 * Follow Redirect{address}: connect there and send again what was sent
 * since connecting (the Login or Resume, and anything pipelined behind
 * it). Only 127.0.0.0/8 addresses, at most 4 hops.
 */
static int
tc_follow(tclient *c, const char *address)
{
	const char *colon = strrchr(address, ':');
	unsigned long port;
	char *end;
	int fd;

	if (c->redirects >= 4 || colon == NULL ||
	    strncmp(address, "127.", 4) != 0) {
		return -1;
	}
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535) {
		return -1;
	}
	if ((fd = tc_dial((uint16_t)port, c->rcvbuf)) < 0) {
		return -1;
	}
	close(c->fd);
	c->fd = fd;
	c->len = 0;
	c->redirects++;
	return send_all(c->fd, c->replay, c->nreplay);
}

size_t
tc_frame(uint8_t *buf, size_t cap, const im_Envelope *env)
{
	pb_ostream_t os;

	if (cap < IM_FRAME_HEADER) {
		return 0;
	}
	os = pb_ostream_from_buffer(buf + IM_FRAME_HEADER,
	                            cap - IM_FRAME_HEADER);
	if (!pb_encode(&os, im_Envelope_fields, env)) {
		return 0;
	}
	im_frame_put_header(buf, (uint32_t)os.bytes_written);
	return IM_FRAME_HEADER + os.bytes_written;
}

int
tc_send(tclient *c, const im_Envelope *env)
{
	static uint8_t out[IM_FRAME_HEADER + IM_FRAME_MAX];
	size_t n = tc_frame(out, sizeof(out), env);

	return n == 0 ? -1 : tc_send_raw(c, out, n);
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
			if (c->env->which_msg == im_Envelope_redirect_tag &&
			    c->replay != NULL) {
				if (tc_follow(c,
				              c->env->msg.redirect.address) !=
				    0) {
					return -1;
				}
				continue;
			}
			if (c->env->which_msg == im_Envelope_login_ok_tag ||
			    c->env->which_msg == im_Envelope_resume_ok_tag) {
				tc_logged_in(c);
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
		p->prev_seq = e->prev_seq;
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
	/* A failed call says why in the test log: a bare "g > 0" failure
	 * cannot tell a timeout from a refusal. */
	if (rc != 1) {
		fprintf(stderr, "# call failed: no answer (rc %d)\n", rc);
		return -1000;
	}
	if (c->env->which_msg == im_Envelope_error_tag) {
		fprintf(stderr, "# call failed: error %d (%s)\n",
		        (int)c->env->msg.error.code, c->env->msg.error.text);
		return -(int64_t)c->env->msg.error.code;
	}
	fprintf(stderr, "# call failed: unexpected answer %u\n",
	        (unsigned)c->env->which_msg);
	return -1000;
}

static int64_t
create_group_once(tclient *c, const char *name, const uint64_t *members,
                  size_t n)
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

static int64_t
send_msg_once(tclient *c, uint64_t group, uint64_t dedup_id, const char *body,
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

/*
 * On the cluster, ERR_UNAVAILABLE is a normal answer while nodes (re)start:
 * a Router that has no Chatter connected yet, a slot being taken over. A
 * real client retries it (the same dedup id makes a send exactly-once), so
 * the tests do too, bounded: 50 tries 100 ms apart. imd answers it only
 * when fenced or its store failed, which tests expect to see at once.
 */
#define TC_UNAVAIL_TRIES 50

static bool
retry_unavailable(int64_t rc, int *tries)
{
	if (rc != -(int64_t)im_Code_ERR_UNAVAILABLE || !h_target_cluster() ||
	    ++*tries >= TC_UNAVAIL_TRIES) {
		return false;
	}
	usleep(100 * 1000);
	return true;
}

int64_t
tc_create_group(tclient *c, const char *name, const uint64_t *members, size_t n)
{
	int64_t rc;
	int tries = 0;

	do {
		rc = create_group_once(c, name, members, n);
	} while (retry_unavailable(rc, &tries));
	return rc;
}

int64_t
tc_send_msg(tclient *c, uint64_t group, uint64_t dedup_id, const char *body,
            bool *dup)
{
	int64_t rc;
	int tries = 0;

	do {
		rc = send_msg_once(c, group, dedup_id, body, dup);
	} while (retry_unavailable(rc, &tries));
	return rc;
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
