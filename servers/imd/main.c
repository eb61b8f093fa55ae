/*
 * imd: the all-in-one libim server. One libev loop runs a Connector and a
 * Chatter joined by the in-process router, over the sqlite store. At start
 * it claims every slot of both kinds in the store (compare-and-set, epoch
 * + 1), so every write it makes is fenced exactly as in a cluster and a
 * second imd on the same database fences the first one off. By default
 * (exclusive = true) imd holds the database file locked while it runs, so
 * a second imd cannot even open it; exclusive = false shares the file.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "config.h"
#include "im/shard.h"
#include "im/store.h"
#include "im/token.h"
#include "router_local.h"
#include "store/mux.h"

struct imd {
	struct ev_loop *loop;
	chatter *ch;
	connector *cn;
	ev_signal sigterm_w;
	ev_signal sigint_w;
	int signo;
};

static void
usage(void)
{
	fprintf(stderr, "usage: imd [--config FILE] [--KEY VALUE ...]\n"
	                "       imd token USER [--ttl SECONDS] [--config FILE] "
	                "[--secret S | --secret-file F]\n"
	                "keys (in the config file as `key = value`):\n");
	imd_config_usage();
}

static int
read_secret_file(imd_config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(cfg->secret_file, "r");
	size_t n;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", cfg->secret_file,
		         strerror(errno));
		return -1;
	}
	if (fgets(cfg->secret, sizeof(cfg->secret), f) == NULL) {
		cfg->secret[0] = '\0';
	}
	fclose(f);
	n = strlen(cfg->secret);
	while (n > 0 &&
	       (cfg->secret[n - 1] == '\n' || cfg->secret[n - 1] == '\r')) {
		cfg->secret[--n] = '\0';
	}
	return 0;
}

/*
 * Flags: --config FILE is read first, then every other --key value (or
 * --key=value) overrides it. --ttl is only for `imd token`.
 */
static int
parse_args(imd_config *cfg, int argc, char **argv, int first, uint64_t *ttl_out)
{
	char err[IMD_PATH_MAX + 512];
	int i;

	for (i = first; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			if (imd_config_load(cfg, argv[i + 1], err,
			                    sizeof(err)) != 0) {
				fprintf(stderr, "imd: %s\n", err);
				return -1;
			}
		}
	}
	for (i = first; i < argc; i++) {
		const char *a = argv[i];
		char key[64];
		const char *val;
		const char *eq;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage();
			exit(0);
		}
		if (strncmp(a, "--", 2) != 0) {
			fprintf(stderr, "imd: unexpected argument '%s'\n", a);
			return -1;
		}
		a += 2;
		eq = strchr(a, '=');
		if (eq != NULL) {
			snprintf(key, sizeof(key), "%.*s", (int)(eq - a), a);
			val = eq + 1;
		} else {
			if (i + 1 >= argc) {
				fprintf(stderr, "imd: --%s needs a value\n", a);
				return -1;
			}
			snprintf(key, sizeof(key), "%s", a);
			val = argv[++i];
		}
		if (strcmp(key, "config") == 0) {
			continue;
		}
		if (strcmp(key, "ttl") == 0 && ttl_out != NULL) {
			char *end;

			errno = 0;
			*ttl_out = strtoull(val, &end, 10);
			if (errno != 0 || *end != '\0' || *ttl_out == 0) {
				fprintf(stderr, "imd: bad --ttl '%s'\n", val);
				return -1;
			}
			continue;
		}
		if (imd_config_set(cfg, key, val, err, sizeof(err)) != 0) {
			fprintf(stderr, "imd: %s\n", err);
			return -1;
		}
	}
	if (cfg->secret_file[0] != '\0' &&
	    read_secret_file(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "imd: %s\n", err);
		return -1;
	}
	return 0;
}

static int
check_secret(const imd_config *cfg)
{
	size_t n = strlen(cfg->secret);

	if (n < IM_TOKEN_SECRET_MIN) {
		fprintf(stderr,
		        "imd: a token secret of at least %d bytes is "
		        "needed (--secret-file FILE or --secret S)\n",
		        IM_TOKEN_SECRET_MIN);
		return -1;
	}
	return 0;
}

static int
cmd_token(imd_config *cfg, int argc, char **argv)
{
	char tok[IM_TOKEN_BUF];
	uint64_t ttl = 86400;
	unsigned long long uid;
	char *end;
	int rc;

	if (argc < 3) {
		usage();
		return 2;
	}
	errno = 0;
	uid = strtoull(argv[2], &end, 10);
	if (errno != 0 || *end != '\0' || uid == 0 || argv[2][0] == '-') {
		fprintf(stderr, "imd: USER must be a nonzero number\n");
		return 2;
	}
	if (parse_args(cfg, argc, argv, 3, &ttl) != 0 ||
	    check_secret(cfg) != 0) {
		return 2;
	}
	rc = im_token_mint(tok, sizeof(tok), cfg->secret, strlen(cfg->secret),
	                   uid, (uint64_t)time(NULL) + ttl);
	if (rc != IM_OK) {
		fprintf(stderr, "imd: %s\n", im_strerror(rc));
		return 1;
	}
	printf("%s\n", tok);
	return 0;
}

static void
stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct imd *d = w->data;

	LOG_I("signal %d: shutting down", w->signum);
	d->signo = w->signum;
	/* No new clients; what was sent this turn is committed and acked
	 * (acks only ever follow commits), then the replies go out. */
	connector_stop_accepting(d->cn);
	chatter_flush(d->ch);
	connector_flush(d->cn);
	ev_break(loop, EVBREAK_ALL);
}

/* Every slot of kind for node, at the epochs the map holds, in one CAS. */
static int
claim_all(im_shard_map *map, im_store *st, im_kind kind, const char *node)
{
	uint32_t n = im_shard_nslots(map), slot;
	uint32_t *slots = calloc(n, sizeof(*slots));
	im_epoch *expect = calloc(n, sizeof(*expect));
	im_epoch *got = calloc(n, sizeof(*got));
	int rc = IM_ENOMEM;

	if (slots == NULL || expect == NULL || got == NULL) {
		goto out;
	}
	for (slot = 0; slot < n; slot++) {
		im_shard_entry e;

		(void)im_shard_get_slot(map, kind, slot, &e);
		slots[slot] = slot;
		expect[slot] = e.epoch;
	}
	rc = im_store_slot_cas_many(st, kind, slots, expect, n, node, got);
	for (slot = 0; rc == IM_OK && slot < n; slot++) {
		rc = im_shard_apply(map, kind, slot, got[slot], node);
	}
out:
	free(slots);
	free(expect);
	free(got);
	return rc;
}

/* For backends without slot_cas_many: one transaction per slot. */
static int
claim_one_by_one(im_shard_map *map, im_store *st, im_kind kind,
                 const char *node)
{
	uint32_t n = im_shard_nslots(map), slot;
	int rc = IM_OK;

	for (slot = 0; rc == IM_OK && slot < n; slot++) {
		rc = im_shard_claim(map, st, kind, slot, node, NULL);
		if (rc == IM_ECONFLICT) {
			/* The map was refreshed; one retry. */
			rc = im_shard_claim(map, st, kind, slot, node, NULL);
		}
	}
	return rc;
}

static int
claim_slots(im_shard_map *map, im_store *st, const char *node)
{
	int kind, rc, tries;

	for (kind = 0; kind < IM_KIND_COUNT; kind++) {
		/*
		 * All of a kind in one transaction (one fsync, not one per
		 * slot); a conflict means another node moved meanwhile: reload
		 * and try once more. Backends without the op claim one by one.
		 */
		for (tries = 0; tries < 2; tries++) {
			rc = claim_all(map, st, (im_kind)kind, node);
			if (rc != IM_ECONFLICT) {
				break;
			}
			if ((rc = im_shard_load(map, st)) != IM_OK) {
				break;
			}
			rc = IM_ECONFLICT;
		}
		if (rc == IM_ENOTSUP) {
			rc = claim_one_by_one(map, st, (im_kind)kind, node);
		}
		if (rc != IM_OK) {
			LOG_E("claiming %s slots: %s (%s)",
			      kind == IM_KIND_USER ? "user" : "group",
			      im_strerror(rc), im_store_errmsg(st));
			return rc;
		}
	}
	return IM_OK;
}

static int
write_port_file(const char *path, uint16_t port)
{
	char tmp[IMD_PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL) {
		return -1;
	}
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0) {
		return -1;
	}
	/* Rename: a reader never sees a half-written file. */
	return rename(tmp, path);
}

static int
run(imd_config *cfg)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	im_shard_opts sho = IM_SHARD_OPTS_INIT;
	im_store *st = NULL, *lst = NULL, *cst = NULL;
	im__store_mux *mux = NULL;
	im_shard_map *map = NULL;
	router_local router;
	struct imd d;
	char err[256];
	char owner[IM_OWNER_MAX + 1];
	uint32_t instance = 0;
	uint16_t port = 0;
	uint64_t t0;
	int rc, status = 1;

	memset(&d, 0, sizeof(d));
	if (strcmp(cfg->sync, "normal") == 0) {
		so.sync = IM_SQLITE_SYNC_NORMAL;
	} else if (strcmp(cfg->sync, "full") != 0) {
		LOG_E("sync must be full or normal, not '%s'", cfg->sync);
		return 2;
	}
	so.exclusive = cfg->exclusive;
	so.wal_autocheckpoint = cfg->wal_autocheckpoint;
	if (cfg->port > 65535) {
		LOG_E("port %u out of range", cfg->port);
		return 2;
	}
	rc = im_store_sqlite_open(&st, cfg->db, &so, err, sizeof(err));
	if (rc != IM_OK) {
		LOG_E("opening %s: %s (%s)", cfg->db, im_strerror(rc), err);
		return 1;
	}
	sho.nslots = cfg->slots;
	rc = im_shard_create(&map, &sho);
	if (rc == IM_OK) {
		rc = im_shard_load(map, st);
	}
	if (rc != IM_OK) {
		LOG_E("slot map: %s (%s)", im_strerror(rc),
		      im_store_errmsg(st));
		goto out;
	}
	/* The owner recorded in the store is this process, not just the
	 * node name: a restarted or duplicated imd is another owner, so an
	 * old one reloading the slot map never mistakes the new epochs for
	 * its own. */
	if (getrandom(&instance, sizeof(instance), 0) != sizeof(instance)) {
		instance = (uint32_t)role_now_ms() ^ (uint32_t)getpid();
	}
	if (strlen(cfg->node) + 9 > IM_OWNER_MAX) {
		LOG_E("node name longer than %d bytes", IM_OWNER_MAX - 9);
		goto out;
	}
	snprintf(owner, sizeof(owner), "%.*s/%08x", IM_OWNER_MAX - 9, cfg->node,
	         instance);
	t0 = role_now_ms();
	if (claim_slots(map, st, owner) != IM_OK) {
		goto out;
	}
	LOG_I("owner '%s' holds all %u slots of both kinds (%llu ms)", owner,
	      cfg->slots, (unsigned long long)(role_now_ms() - t0));

	d.loop = ev_default_loop(EVFLAG_AUTO);
	if (d.loop == NULL) {
		LOG_E("no event loop");
		goto out;
	}
	router_local_init(&router);
	cfg->ch.seed = role_now_ms() ^ ((uint64_t)getpid() << 32);
	/* The Chatter's commit thread and the loop (Connector reads, the
	 * Chatter's loads) share the one connection, each op under the
	 * mux's lock: an exclusive sqlite database has no second one. */
	lst = st;
	cfg->ch.commit_store = NULL;
	if (cfg->ch.commit_thread &&
	    (im__store_mux_create(&mux, st) != IM_OK ||
	     im__store_mux_handle(mux, &lst) != IM_OK ||
	     im__store_mux_handle(mux, &cst) != IM_OK)) {
		LOG_E("store handles for the commit thread: out of memory");
		goto out;
	}
	cfg->ch.commit_store = cst;
	rc = chatter_create(&d.ch, d.loop, lst, map, owner, &router.base,
	                    &cfg->ch);
	if (rc == IM_OK) {
		rc = connector_create(&d.cn, d.loop, lst, map, owner, 0,
		                      &router.base, cfg->secret,
		                      strlen(cfg->secret), &cfg->cn);
	}
	if (rc != IM_OK) {
		LOG_E("starting roles: %s (check the limits)", im_strerror(rc));
		goto out;
	}
	router.ch = d.ch;
	router.cn = d.cn;
	if (connector_listen(d.cn, cfg->listen, (uint16_t)cfg->port, &port) !=
	    IM_OK) {
		goto out;
	}
	if (cfg->port_file[0] != '\0' &&
	    write_port_file(cfg->port_file, port) != 0) {
		LOG_E("writing %s: %s", cfg->port_file, strerror(errno));
		goto out;
	}
	ev_signal_init(&d.sigterm_w, stop_cb, SIGTERM);
	d.sigterm_w.data = &d;
	ev_signal_start(d.loop, &d.sigterm_w);
	ev_signal_init(&d.sigint_w, stop_cb, SIGINT);
	d.sigint_w.data = &d;
	ev_signal_start(d.loop, &d.sigint_w);
	LOG_I("imd listening on %s:%u, db %s (sync %s%s%s)", cfg->listen,
	      port, cfg->db, cfg->sync, cfg->exclusive ? ", exclusive" : "",
	      cst != NULL ? ", commit thread" : "");
	ev_run(d.loop, 0);
	status = 0;
out:
	if (d.ch != NULL) {
		chatter_stats cs;

		chatter_flush(d.ch);
		chatter_get_stats(d.ch, &cs);
		LOG_I("chatter: %llu messages in %llu commits, %llu "
		      "duplicates, "
		      "%llu fenced commits, %u hot groups, %llu seq refills "
		      "(%llu inline), %llu on the commit thread (loop waited "
		      "%llu times)",
		      (unsigned long long)cs.msgs,
		      (unsigned long long)cs.commits,
		      (unsigned long long)cs.dups, (unsigned long long)cs.stale,
		      cs.groups, (unsigned long long)cs.refills,
		      (unsigned long long)cs.refills_inline,
		      (unsigned long long)cs.thread_commits,
		      (unsigned long long)cs.waits);
		LOG_I("chatter: created %llu groups in %llu commits",
		      (unsigned long long)cs.groups_created,
		      (unsigned long long)cs.create_commits);
	}
	if (d.cn != NULL) {
		connector_stats ns;

		connector_flush(d.cn);
		connector_get_stats(d.cn, &ns);
		LOG_I("connector: %llu accepted, %llu frames in, %llu frames "
		      "out in %llu writes",
		      (unsigned long long)ns.accepted,
		      (unsigned long long)ns.frames_in,
		      (unsigned long long)ns.frames_out,
		      (unsigned long long)ns.writes);
	}
	connector_destroy(d.cn);
	chatter_destroy(d.ch);
	if (d.loop != NULL) {
		ev_signal_stop(d.loop, &d.sigterm_w);
		ev_signal_stop(d.loop, &d.sigint_w);
		ev_loop_destroy(d.loop);
	}
	im_shard_destroy(map);
	if (lst != st) {
		im_store_close(lst);
	}
	im_store_close(cst);
	im__store_mux_destroy(mux);
	im_store_close(st);
	if (status == 0) {
		LOG_I("imd stopped");
	}
	return status;
}

int
main(int argc, char **argv)
{
	imd_config cfg;
	int level;

	imd_config_defaults(&cfg);
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "token") == 0) {
		return cmd_token(&cfg, argc, argv);
	}
	if (parse_args(&cfg, argc, argv, 1, NULL) != 0) {
		usage();
		return 2;
	}
	level = role_log_level_parse(cfg.log_level);
	if (level < 0) {
		fprintf(stderr, "imd: bad log_level '%s'\n", cfg.log_level);
		return 2;
	}
	role_log_set_level(level);
	if (check_secret(&cfg) != 0) {
		return 2;
	}
	return run(&cfg);
}
