/*
 * End to end through a real local cluster (scripts/cluster: 2 Routers,
 * 3 Chatters, 2 Connectors as separate imnode processes on 127.0.0.1):
 * users on different Connectors in one group all receive every message,
 * in order, with an unbroken prev_seq chain, and a retried send is
 * answered as a duplicate with its original seq.
 *
 * The store is PostgreSQL when IM_TEST_PG_CLUSTER=1 (scripts/pg is started
 * by scripts/cluster), else one sqlite file shared by the processes.
 * Every wait is bounded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "im/shard.h"
#include "im/store.h"

#define SLOTS 64
#define NMSG 10

/* Which Connector (1 or 2) owns uid's slot, from the store. */
typedef struct owners {
	char user[SLOTS][IM_OWNER_MAX + 1];
} owners;

typedef struct cluster {
	char dir[128];
	char store[600];
	char secret[128];
	uint16_t port[2]; /* connector-1, connector-2 */
} cluster;

static const char *
env_or(const char *k, const char *dflt)
{
	const char *v = getenv(k);

	return v != NULL && *v != '\0' ? v : dflt;
}

static void
read_line(const char *path, char *out, size_t len)
{
	FILE *f = fopen(path, "r");

	assert_non_null(f);
	assert_non_null(fgets(out, (int)len, f));
	fclose(f);
	out[strcspn(out, "\n")] = '\0';
}

static int
cluster_cmd(const cluster *c, const char *what)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd),
		 "BUILD='%s' SLOTS=%d '%s/scripts/cluster' %s '%s' %s "
		 ">'%s.out' 2>&1",
		 env_or("IM_BUILD", "build"), SLOTS,
		 env_or("IM_SOURCE", "."), what, c->dir,
		 strcmp(what, "start") == 0 &&
				 strcmp(env_or("IM_TEST_PG_CLUSTER", "0"),
					"1") != 0
			 ? "--sqlite"
			 : "",
		 c->dir);
	return system(cmd);
}

static void
dump(const cluster *c)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "tail -n 30 '%s.out' '%s'/*.log >&2",
		 c->dir, c->dir);
	(void)system(cmd);
}


static int
on_slot(const im_slot_row *row, void *payload)
{
	owners *o = payload;

	if (row->slot < SLOTS) {
		snprintf(o->user[row->slot], sizeof(o->user[0]), "%s",
			 row->owner);
	}
	return 0;
}

static int
connector_of(const owners *o, uint64_t uid)
{
	const char *own = o->user[im_shard_slot_of(uid, SLOTS)];

	if (strncmp(own, "connector-1/", 12) == 0) {
		return 0;
	}
	return strncmp(own, "connector-2/", 12) == 0 ? 1 : -1;
}

/* The first uid >= from on connector k. */
static uint64_t
user_on(const owners *o, int k, uint64_t from)
{
	uint64_t u;

	for (u = from; u < from + 10000; u++) {
		if (connector_of(o, u) == k) {
			return u;
		}
	}
	fail_msg("no user on connector %d", k + 1);
	return 0;
}

static void
login(const cluster *c, tclient *t, const owners *o, uint64_t uid)
{
	char tok[IM_TOKEN_BUF];
	size_t n = 0;
	int k = connector_of(o, uid), rc = 0, i;

	assert_true(k >= 0);
	assert_int_equal(im_token_mint(tok, sizeof(tok), c->secret,
				       strlen(c->secret), uid,
				       (uint64_t)time(NULL) + 600),
			 IM_OK);
	for (i = 0; i < 50; i++) {
		assert_int_equal(tc_connect(t, c->port[k]), 0);
		rc = tc_login(t, tok, NULL, 0, &n);
		if (rc == 1) {
			return;
		}
		tc_close(t);
		usleep(100000);
	}
	fail_msg("login of %llu on connector-%d: %d", (unsigned long long)uid,
		 k + 1, rc);
}

static void
load_owners(const cluster *c, owners *o)
{
	im_store *st = NULL;

	if (strncmp(c->store, "host=", 5) == 0) {
#ifdef IM_E2E_HAVE_PG
		assert_int_equal(im_store_pg_open(&st, c->store, NULL, NULL,
						  0),
				 IM_OK);
#else
		fail_msg("built without the PostgreSQL backend");
#endif
	} else {
		assert_int_equal(im_store_sqlite_open(&st, c->store, NULL,
						      NULL, 0),
				 IM_OK);
	}
	assert_int_equal(im_store_slot_load(st, IM_KIND_USER, on_slot, o),
			 IM_OK);
	im_store_close(st);
}

/* SIGKILL the cluster's process called name (from DIR/pids). */
static void
kill_node(const cluster *c, const char *name)
{
	char path[256], line[128], who[64];
	FILE *f;
	int pid;

	snprintf(path, sizeof(path), "%s/pids", c->dir);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "%d %63s", &pid, who) == 2 &&
		    strcmp(who, name) == 0) {
			assert_int_equal(kill(pid, SIGKILL), 0);
			fclose(f);
			return;
		}
	}
	fclose(f);
	fail_msg("no process %s", name);
}

/*
 * What a correct client sees of group gid: pushes in order, and when a
 * push's prev_seq shows a gap (or nothing comes), the missing messages
 * from a Sync. Returns when `want` messages were applied; checks that
 * they are exactly want_seqs, in order, with an unbroken chain.
 */
static void
collect(tclient *t, uint64_t gid, const uint64_t *want_seqs, int want)
{
	static tpush synced[256];
	uint64_t last = 0;
	int got = 0, guard, syncs = 0;

	for (guard = 0; guard < 2000 && got < want; guard++) {
		tpush p;
		int rc = tc_next_push(t, &p, 2000), n, i;

		if (rc == 1 && (p.kind != im_Envelope_deliver_tag ||
				p.group != gid || p.seq <= last)) {
			continue; /* events, or a retransmission */
		}
		if (rc == 1 && p.prev_seq == last) {
			assert_int_equal(p.seq, want_seqs[got]);
			last = p.seq;
			got++;
			tc_ack(t, gid, p.seq);
			continue;
		}
		/* A gap (a push lost with a dying Router) or silence: sync. */
		assert_true(rc == 1 || rc == 0);
		syncs++;
		n = tc_sync_all(t, gid, last, synced, 256);
		assert_true(n >= 0 && n <= 256);
		for (i = 0; i < n && got < want; i++) {
			assert_int_equal(synced[i].prev_seq, last);
			assert_int_equal(synced[i].seq, want_seqs[got]);
			last = synced[i].seq;
			got++;
		}
		if (rc == 1 && p.seq > last) {
			assert_int_equal(p.prev_seq, last);
			assert_int_equal(p.seq, want_seqs[got]);
			last = p.seq;
			got++;
		}
		tc_ack(t, gid, last);
	}
	assert_int_equal(got, want);
	if (syncs > 0) {
		print_message("# member repaired %d gap(s) with Sync\n", syncs);
	}
}

/*
 * Three users (two on connector-1, one on connector-2) in one group; two
 * of them send 2*NMSG messages, interleaved; after `kill_after` sends
 * router-1 is killed (-1: never). Sends answered ERR_UNAVAILABLE are
 * retried with the same dedup id, as clients do.
 */
static void
scenario(cluster *c, uint64_t uid_base, int kill_after)
{
	owners *o = calloc(1, sizeof(*o));
	tclient t[3];
	uint64_t uid[3], members[2];
	uint64_t seqs[2 * NMSG];
	int64_t gid = -1, seq;
	int i, k, retries = 0, timeouts = 0;
	bool dup = true;

	assert_non_null(o);
	memset(t, 0, sizeof(t));
	load_owners(c, o);
	uid[0] = user_on(o, 0, uid_base);
	uid[1] = user_on(o, 1, uid_base);
	uid[2] = user_on(o, 0, uid[0] + 1);
	for (i = 0; i < 3; i++) {
		login(c, &t[i], o, uid[i]);
	}
	/* The links to the Routers may still be coming up right after
	 * start: retry while unavailable. */
	members[0] = uid[1];
	members[1] = uid[2];
	for (i = 0; i < 50 && gid < 0; i++) {
		gid = tc_create_group(&t[0], "e2e", members, 2);
		if (gid < 0) {
			assert_int_equal(gid, -im_Code_ERR_UNAVAILABLE);
			usleep(100000);
		}
	}
	assert_true(gid > 0);
	for (i = 0; i < 2 * NMSG; i++) {
		char body[32];
		tclient *from = &t[i % 2];

		if (i == kill_after) {
			kill_node(c, "router-1");
		}
		snprintf(body, sizeof(body), "m%d", i);
		seq = -1;
		for (k = 0; k < 100 && seq < 0; k++) {
			seq = tc_send_msg(from, (uint64_t)gid, 100 + i, body,
					  &dup);
			if (seq == -1000) {
				/* No answer in time (it was lost with the
				 * Router): a client retries the same dedup id,
				 * on a fresh connection if this one is gone. */
				timeouts++;
			} else if (seq < 0) {
				assert_int_equal(seq, -im_Code_ERR_UNAVAILABLE);
				retries++;
				usleep(50000);
			}
		}
		assert_true(seq > 0);
		assert_true(i == 0 || (uint64_t)seq > seqs[i - 1]);
		seqs[i] = (uint64_t)seq;
	}
	/* A retry of the first send: the same seq, marked duplicate. */
	seq = tc_send_msg(&t[0], (uint64_t)gid, 100, "m0", &dup);
	assert_int_equal(seq, (int64_t)seqs[0]);
	assert_true(dup);
	if (retries > 0 || timeouts > 0) {
		print_message("# sends retried: %d after ERR_UNAVAILABLE, %d "
			      "after a timeout\n",
			      retries, timeouts);
	}
	/* Every member has every message once, in seq order, chained. */
	for (i = 0; i < 3; i++) {
		collect(&t[i], (uint64_t)gid, seqs, 2 * NMSG);
	}
	for (i = 0; i < 3; i++) {
		tc_close(&t[i]);
	}
	free(o);
}

static void
test_cluster_users_on_two_connectors_get_every_message_in_order(
	void **state)
{
	scenario(*state, 1000, -1);
}

static void
test_cluster_a_user_at_the_wrong_connector_is_redirected_to_its_owner(
	void **state)
{
	cluster *c = *state;
	owners *o = calloc(1, sizeof(*o));
	im_Envelope *env = calloc(1, sizeof(*env));
	char tok[IM_TOKEN_BUF], want[32];
	tclient t, t2;
	uint64_t uid;
	size_t n = 0;
	int err = 0;

	assert_non_null(o);
	assert_non_null(env);
	memset(&t, 0, sizeof(t));
	memset(&t2, 0, sizeof(t2));
	load_owners(c, o);
	uid = user_on(o, 1, 9000); /* owned by connector-2 */
	assert_int_equal(im_token_mint(tok, sizeof(tok), c->secret,
				       strlen(c->secret), uid,
				       (uint64_t)time(NULL) + 600),
			 IM_OK);
	assert_int_equal(tc_connect(&t, c->port[0]), 0); /* connector-1 */
	env->which_msg = im_Envelope_login_tag;
	env->req_id = 1;
	snprintf(env->msg.login.token, sizeof(env->msg.login.token), "%s",
		 tok);
	assert_int_equal(tc_send(&t, env), 0);
	assert_int_equal(tc_recv(&t, H_TIMEOUT_MS), 1);
	assert_int_equal(t.env->which_msg, im_Envelope_redirect_tag);
	snprintf(want, sizeof(want), "127.0.0.1:%u", c->port[1]);
	assert_string_equal(t.env->msg.redirect.address, want);
	assert_true(tc_wait_closed(&t, H_TIMEOUT_MS, &err));
	tc_close(&t);
	/* Where it was sent, the login works. */
	assert_int_equal(tc_connect(&t2, c->port[1]), 0);
	assert_int_equal(tc_login(&t2, tok, NULL, 0, &n), 1);
	tc_close(&t2);
	free(env);
	free(o);
}

#define NGROUPS 24
#define ROUNDS 4

typedef struct gslots {
	char owner[SLOTS][IM_OWNER_MAX + 1];
	im_epoch epoch[SLOTS];
} gslots;

static int
on_gslot(const im_slot_row *row, void *payload)
{
	gslots *g = payload;

	if (row->slot < SLOTS) {
		snprintf(g->owner[row->slot], sizeof(g->owner[0]), "%s",
			 row->owner);
		g->epoch[row->slot] = row->epoch;
	}
	return 0;
}

static void
load_group_slots(const cluster *c, gslots *g)
{
	im_store *st = NULL;

	if (strncmp(c->store, "host=", 5) == 0) {
#ifdef IM_E2E_HAVE_PG
		assert_int_equal(im_store_pg_open(&st, c->store, NULL, NULL,
						  0),
				 IM_OK);
#endif
	} else {
		assert_int_equal(im_store_sqlite_open(&st, c->store, NULL,
						      NULL, 0),
				 IM_OK);
	}
	assert_non_null(st);
	assert_int_equal(im_store_slot_load(st, IM_KIND_GROUP, on_gslot, g),
			 IM_OK);
	im_store_close(st);
}

static int
chatter4_slots(const gslots *g)
{
	int s, n = 0;

	for (s = 0; s < SLOTS; s++) {
		n += strncmp(g->owner[s], "chatter-4/", 10) == 0;
	}
	return n;
}

/*
 * A Chatter joins a running cluster while clients keep sending to 24
 * groups: it takes its share of group slots by handover (the old owner
 * commits what is pending, then moves the slot by CAS), sends caught in
 * the move are answered ERR_UNAVAILABLE and retried with their dedup id,
 * and the store holds, per group, exactly the acked messages, in order,
 * with an unbroken prev_seq chain.
 */
static void
test_cluster_a_chatter_added_while_sending_takes_slots_without_loss(
	void **state)
{
	cluster *c = *state;
	owners *o = calloc(1, sizeof(*o));
	gslots *gs = calloc(1, sizeof(*gs));
	static tpush synced[64];
	static uint64_t acked[NGROUPS][ROUNDS];
	tclient t[3];
	uint64_t uid[3], members[2];
	int64_t gid[NGROUPS];
	int i, g, r, k, retries = 0, moved = 0;
	char cmd[512];
	bool dup;

	assert_non_null(o);
	assert_non_null(gs);
	memset(t, 0, sizeof(t));
	load_owners(c, o);
	uid[0] = user_on(o, 0, 20000);
	uid[1] = user_on(o, 1, 20000);
	uid[2] = user_on(o, 0, uid[0] + 1);
	for (i = 0; i < 3; i++) {
		login(c, &t[i], o, uid[i]);
	}
	members[0] = uid[1];
	members[1] = uid[2];
	for (g = 0; g < NGROUPS; g++) {
		gid[g] = -1;
		for (k = 0; k < 50 && gid[g] < 0; k++) {
			gid[g] = tc_create_group(&t[0], "add", members, 2);
			if (gid[g] < 0) {
				usleep(100000);
			}
		}
		assert_true(gid[g] > 0);
	}
	for (r = 0; r < ROUNDS; r++) {
		if (r == 1) {
			snprintf(cmd, sizeof(cmd),
				 "BUILD='%s' SLOTS=%d '%s/scripts/cluster' add "
				 "'%s' chatter chatter-4",
				 env_or("IM_BUILD", "build"), SLOTS,
				 env_or("IM_SOURCE", "."), c->dir);
			assert_int_equal(system(cmd), 0);
		}
		for (g = 0; g < NGROUPS; g++) {
			char body[32];
			int64_t seq = -1;

			snprintf(body, sizeof(body), "g%d r%d", g, r);
			for (k = 0; k < 200 && seq < 0; k++) {
				seq = tc_send_msg(&t[g % 2], (uint64_t)gid[g],
						  1000 + (uint64_t)r, body,
						  &dup);
				if (seq < 0) {
					assert_true(
						seq == -im_Code_ERR_UNAVAILABLE ||
						seq == -1000);
					retries++;
					usleep(20000);
				}
			}
			assert_true(seq > 0);
			assert_true(r == 0 || (uint64_t)seq > acked[g][r - 1]);
			acked[g][r] = (uint64_t)seq;
		}
		if (r == 1) {
			/* Let the newcomer's share settle mid-stream. */
			for (k = 0; k < 100; k++) {
				load_group_slots(c, gs);
				if (chatter4_slots(gs) >= SLOTS / 4) {
					break;
				}
				usleep(100000);
			}
		}
	}
	load_group_slots(c, gs);
	assert_true(chatter4_slots(gs) >= SLOTS / 4 - 1);
	/* Per group: exactly the acked messages, in order, chained. */
	for (g = 0; g < NGROUPS; g++) {
		int n = tc_sync_all(&t[1], (uint64_t)gid[g], 0, synced, 64);
		uint64_t last = 0;

		assert_int_equal(n, ROUNDS);
		for (r = 0; r < ROUNDS; r++) {
			assert_int_equal(synced[r].seq, acked[g][r]);
			assert_int_equal(synced[r].prev_seq, last);
			last = synced[r].seq;
		}
		moved += strncmp(gs->owner[im_shard_slot_of((uint64_t)gid[g],
							    SLOTS)],
				 "chatter-4/", 10) == 0;
	}
	print_message("# chatter-4 took %d of %d group slots; %d of our %d "
		      "groups moved to it mid-stream; %d sends retried\n",
		      chatter4_slots(gs), SLOTS, moved, NGROUPS, retries);
	assert_true(moved > 0);
	for (i = 0; i < 3; i++) {
		tc_close(&t[i]);
	}
	free(gs);
	free(o);
}

static void
test_cluster_group_keeps_order_and_exactly_once_when_a_router_dies(
	void **state)
{
	scenario(*state, 5000, NMSG / 2);
}

static int
setup(void **state)
{
	static cluster c;
	char path[256];

	memset(&c, 0, sizeof(c));
	snprintf(c.dir, sizeof(c.dir), "/tmp/im-cluster-e2e-%d", getpid());
	if (cluster_cmd(&c, "start") != 0) {
		dump(&c);
		cluster_cmd(&c, "stop");
		snprintf(path, sizeof(path), "%s.out", c.dir);
		unlink(path);
		return -1;
	}
	snprintf(path, sizeof(path), "%s/store", c.dir);
	read_line(path, c.store, sizeof(c.store));
	snprintf(path, sizeof(path), "%s/secret", c.dir);
	read_line(path, c.secret, sizeof(c.secret));
	for (int k = 0; k < 2; k++) {
		char line[16];

		snprintf(path, sizeof(path), "%s/connector-%d.port", c.dir,
			 k + 1);
		read_line(path, line, sizeof(line));
		c.port[k] = (uint16_t)atoi(line);
	}
	*state = &c;
	return 0;
}

static int
teardown(void **state)
{
	cluster *c = *state;

	char out[160];

	if (getenv("IM_E2E_KEEP") != NULL) {
		/* Debugging: leave the cluster and its logs in c->dir. */
		fprintf(stderr, "# kept: scripts/cluster stop %s\n", c->dir);
		return 0;
	}
	if (cluster_cmd(c, "stop") != 0) {
		dump(c);
		return -1;
	}
	snprintf(out, sizeof(out), "%s.out", c->dir);
	unlink(out);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			test_cluster_users_on_two_connectors_get_every_message_in_order),
		cmocka_unit_test(
			test_cluster_a_user_at_the_wrong_connector_is_redirected_to_its_owner),
		cmocka_unit_test(
			test_cluster_a_chatter_added_while_sending_takes_slots_without_loss),
		/* Kills router-1: keep it last. */
		cmocka_unit_test(
			test_cluster_group_keeps_order_and_exactly_once_when_a_router_dies),
	};

	return cmocka_run_group_tests_name("cluster_e2e", tests, setup,
					   teardown);
}
