/*
 * imd: the all-in-one libim server. One libev loop runs a Connector and a
 * Chatter joined by the in-process router, over the sqlite store. At start
 * it claims every slot of both kinds in the store (compare-and-set, epoch
 * + 1), so every write it makes is fenced exactly as in a cluster and a
 * second imd on the same database fences the first one off. So the order
 * at start is: check the settings, bind the client port, open the store,
 * load the slot map, create the roles, and only then claim: a process
 * that cannot serve (its port is the live imd's) fails before it has
 * taken anything. By default
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
#include "mem_stats.h"
#include "router_local.h"
#include "slot_policy.h"
#include "slot_watch.h"
#include "store/mux.h"

struct imd {
	srv_config *cfg;
	struct ev_loop *loop;
	im_store *st;  /* the connection */
	im_store *lst; /* the loop's handle (st, or a mux handle) */
	im_store *cst; /* the commit thread's handle, or NULL */
	im__store_mux *mux;
	im_shard_map *map;
	router_local router;
	chatter *ch;
	connector *cn;
	ev_signal sigterm_w;
	ev_signal sigint_w;
	ev_signal sighup_w; /* reload the TLS files */
	connector_tls_opts tls;
	bool tls_on;
	struct imd_mem mem;
	slot_watch watch; /* slots another process took */
	char owner[IM_OWNER_MAX + 1];
	int lfd;       /* the bound client port, until the Connector has it */
	uint16_t port; /* its number */
	int signo;
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: imd [--config FILE] [--KEY VALUE ...]\n"
	           "       imd token USER [--ttl SECONDS] [--config FILE] "
	           "[--secret S | --secret-file F]\n"
	           "         (--ttl: seconds the token is valid, default "
	           "86400)\n");
	srv_config_usage(SRV_IMD, f);
}

/* The settings from argv[first..), then the token secret. */
static int
configure(srv_config *cfg, int argc, char **argv, int first)
{
	char err[SRV_PATH_MAX + 512];
	int rc = srv_config_parse(cfg, argc, argv, first, err, sizeof(err));

	if (rc == 1) {
		usage(stdout);
		exit(0);
	}
	if (rc != 0) {
		fprintf(stderr, "imd: %s\n", err);
		usage(stderr);
		return -1;
	}
	if (srv_config_secret(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "imd: %s\n", err);
		return -1;
	}
	return 0;
}

static int
cmd_token(int argc, char **argv)
{
	srv_config cfg;
	char tok[IM_TOKEN_BUF];
	unsigned long long uid;
	char *end;
	int rc;

	if (argc < 3) {
		usage(stderr);
		return 2;
	}
	errno = 0;
	uid = strtoull(argv[2], &end, 10);
	if (errno != 0 || *end != '\0' || uid == 0 || argv[2][0] == '-') {
		fprintf(stderr, "imd: USER must be a nonzero number\n");
		return 2;
	}
	srv_config_init(&cfg, SRV_TOKEN);
	if (configure(&cfg, argc, argv, 3) != 0) {
		return 2;
	}
	rc = im_token_mint(tok, sizeof(tok), cfg.secret, strlen(cfg.secret),
	                   uid, (uint64_t)time(NULL) + cfg.ttl);
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

/*
 * The exit status of a start-up that found the store's disk full: distinct
 * (3), so that a supervisor can tell "free some space" from a crash or a
 * bad setting, and said in words. imd does not serve read-only: claiming
 * its slots is itself a write (a new epoch), and a node that cannot fence
 * its writes must not serve.
 */
#define IMD_EXIT_DISK_FULL 3

static int
disk_full_at_start(const char *what, const char *detail)
{
	LOG_E("%s: the store's disk is full (%s): imd cannot start; free "
	      "space on the filesystem of the database and start it again "
	      "(exit status %d)",
	      what, detail, IMD_EXIT_DISK_FULL);
	return IMD_EXIT_DISK_FULL;
}


/* SIGHUP: new connections get the TLS files as they are now; a file that
 * fails to load keeps the old ones (and says why). */
static void
reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct imd *d = w->data;
	char err[SRV_PATH_MAX + 256];

	if (!d->tls_on) {
		LOG_I("SIGHUP: nothing to reload (TLS is off)");
		return;
	}
	if (connector_tls_reload(d->cn, err, sizeof(err)) != IM_OK) {
		LOG_E("SIGHUP: TLS reload failed, still serving the previous "
		      "certificate: %s", err);
		return;
	}
	LOG_I("SIGHUP: TLS certificate %s reloaded for new connections",
	      d->cfg->tls_cert);
}

/* The settings nothing else checks. Returns 0 or 2 (a bad setting). */
static int
validate(struct imd *d)
{
	const srv_config *cfg = d->cfg;
	char err[256];
	int tls = srv_config_tls(cfg, &d->tls, err, sizeof(err));

	if (tls < 0) {
		LOG_E("%s", err);
		return 2;
	}
	d->tls_on = tls == 1;
	if (strcmp(cfg->sync, "normal") != 0 &&
	    strcmp(cfg->sync, "full") != 0) {
		LOG_E("sync must be full or normal, not '%s'", cfg->sync);
		return 2;
	}
	if (strlen(cfg->name) + 9 > IM_OWNER_MAX) {
		LOG_E("node name longer than %d bytes", IM_OWNER_MAX - 9);
		return 2;
	}
	return 0;
}

/* The client port, bound and listening before the store is opened. */
static int
bind_port(struct imd *d)
{
	const srv_config *cfg = d->cfg;

	if (connector_bind(cfg->listen, (uint16_t)cfg->port, &d->lfd,
	                   &d->port) != IM_OK) {
		LOG_E("cannot serve on %s:%u (see above): stopping before "
		      "opening the store, no slot taken",
		      cfg->listen, cfg->port);
		return -1;
	}
	return 0;
}

/* Returns 0, 1 (the store failed) or 3 (disk full). */
static int
open_store(struct imd *d)
{
	im_store_sqlite_opts so = IM_STORE_SQLITE_OPTS_INIT;
	const srv_config *cfg = d->cfg;
	char err[256];
	int rc;

	if (strcmp(cfg->sync, "normal") == 0) {
		so.sync = IM_SQLITE_SYNC_NORMAL;
	}
	so.exclusive = cfg->exclusive;
	so.wal_autocheckpoint = cfg->wal_autocheckpoint;
	rc = im_store_sqlite_open(&d->st, cfg->store, &so, err, sizeof(err));
	if (rc == IM_ENOSPC) {
		return disk_full_at_start(cfg->store, err);
	}
	if (rc != IM_OK) {
		LOG_E("opening %s: %s (%s)", cfg->store, im_strerror(rc), err);
		return 1;
	}
	return 0;
}

/* The slot map, loaded, and this process's owner string. */
static int
load_map(struct imd *d)
{
	im_shard_opts sho = IM_SHARD_OPTS_INIT;
	const srv_config *cfg = d->cfg;
	uint32_t instance = 0;
	int rc;

	sho.nslots = cfg->slots;
	rc = im_shard_create(&d->map, &sho);
	if (rc == IM_OK) {
		rc = im_shard_load(d->map, d->st);
	}
	if (rc != IM_OK) {
		LOG_E("slot map: %s (%s)", im_strerror(rc),
		      im_store_errmsg(d->st));
		return 1;
	}
	/* The owner recorded in the store is this process, not just the
	 * node name: a restarted or duplicated imd is another owner, so an
	 * old one reloading the slot map never mistakes the new epochs for
	 * its own. */
	if (getrandom(&instance, sizeof(instance), 0) != sizeof(instance)) {
		instance = (uint32_t)role_now_ms() ^ (uint32_t)getpid();
	}
	snprintf(d->owner, sizeof(d->owner), "%.*s/%08x", IM_OWNER_MAX - 9,
	         cfg->name, instance);
	return 0;
}

/* Every slot of both kinds claimed for this process (slot_policy.h).
 * Returns 0, 1 or 3 (disk full). */
static int
claim_slots(struct imd *d)
{
	const srv_config *cfg = d->cfg;
	im_kind kind = IM_KIND_USER;
	uint64_t t0 = role_now_ms();
	int rc;

	rc = slot_policy_claim_all(d->map, d->st, d->owner, &kind);
	if (rc == IM_ENOSPC) {
		return disk_full_at_start("claiming slots",
		                          im_store_errmsg(d->st));
	}
	if (rc != IM_OK) {
		LOG_E("claiming %s slots: %s (%s)",
		      kind == IM_KIND_USER ? "user" : "group", im_strerror(rc),
		      im_store_errmsg(d->st));
		return 1;
	}
	LOG_I("owner '%s' holds all %u slots of both kinds (%llu ms)", d->owner,
	      cfg->slots, (unsigned long long)(role_now_ms() - t0));
	return 0;
}

/* The loop, the Chatter and the Connector joined by the local router. */
static int
start_roles(struct imd *d)
{
	srv_config *cfg = d->cfg;
	int rc;

	d->loop = ev_default_loop(EVFLAG_AUTO);
	if (d->loop == NULL) {
		LOG_E("no event loop");
		return -1;
	}
	router_local_init(&d->router);
	cfg->ch.seed = role_now_ms() ^ ((uint64_t)getpid() << 32);
	/* The Chatter's commit thread and the loop (Connector reads, the
	 * Chatter's loads) share the one connection, each op under the
	 * mux's lock: an exclusive sqlite database has no second one. */
	d->lst = d->st;
	cfg->ch.commit_store = NULL;
	if (cfg->ch.commit_thread &&
	    (im__store_mux_create(&d->mux, d->st) != IM_OK ||
	     im__store_mux_handle(d->mux, &d->lst) != IM_OK ||
	     im__store_mux_handle(d->mux, &d->cst) != IM_OK)) {
		LOG_E("store handles for the commit thread: out of memory");
		return -1;
	}
	cfg->ch.commit_store = d->cst;
	rc = chatter_create(&d->ch, d->loop, d->lst, d->map, d->owner,
	                    &d->router.base, &cfg->ch);
	if (rc == IM_OK) {
		rc = connector_create(&d->cn, d->loop, d->lst, d->map, d->owner,
		                      0, &d->router.base, cfg->secret,
		                      strlen(cfg->secret), &cfg->cn);
	}
	if (rc != IM_OK) {
		LOG_E("starting roles: %s (check the limits)", im_strerror(rc));
		return -1;
	}
	d->router.ch = d->ch;
	d->router.cn = d->cn;
	return 0;
}

/* TLS files loaded before any slot is taken: a server that cannot serve
 * its clients must not fence off the one that can. Returns 0 or 2. */
static int
start_tls(struct imd *d)
{
	char err[SRV_PATH_MAX + 256];

	if (!d->tls_on) {
		return 0;
	}
	if (connector_tls_enable(d->cn, &d->tls, err, sizeof(err)) != IM_OK) {
		LOG_E("%s: stopping before taking any slot", err);
		return 2;
	}
	return 0;
}

/* Listen, say where, and run until SIGTERM or SIGINT. */
static int
serve(struct imd *d)
{
	const srv_config *cfg = d->cfg;
	uint16_t port = d->port;

	connector_listen_fd(d->cn, d->lfd);
	d->lfd = -1;
	if (slot_watch_start(&d->watch, d->loop, d->map, d->lst, d->owner,
	                     d->ch, d->cn, cfg->slot_watch_ms) != IM_OK) {
		LOG_E("slot watch: out of memory");
		return -1;
	}
	if (cfg->port_file[0] != '\0' &&
	    srv_port_file_write(cfg->port_file, port) != 0) {
		LOG_E("writing %s: %s", cfg->port_file, strerror(errno));
		return -1;
	}
	ev_signal_init(&d->sigterm_w, stop_cb, SIGTERM);
	d->sigterm_w.data = d;
	ev_signal_start(d->loop, &d->sigterm_w);
	ev_signal_init(&d->sigint_w, stop_cb, SIGINT);
	d->sigint_w.data = d;
	ev_signal_start(d->loop, &d->sigint_w);
	ev_signal_init(&d->sighup_w, reload_cb, SIGHUP);
	d->sighup_w.data = d;
	ev_signal_start(d->loop, &d->sighup_w);
	LOG_I("imd listening on %s:%u%s, db %s (sync %s%s%s)", cfg->listen,
	      port, d->tls_on ? " (TLS)" : "", cfg->store, cfg->sync,
	      cfg->exclusive ? ", exclusive" : "",
	      d->cst != NULL ? ", commit thread" : "");
	imd_mem_start(&d->mem, d->loop, d->cn, d->ch, cfg->stats_interval,
	              cfg->trim_interval);
	ev_run(d->loop, 0);
	imd_mem_stop(&d->mem, d->loop);
	return 0;
}

static void
log_stats(struct imd *d)
{
	if (d->ch != NULL) {
		chatter_stats cs;

		chatter_flush(d->ch);
		chatter_get_stats(d->ch, &cs);
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
		LOG_I("chatter: created %llu groups in %llu commits, %llu "
		      "retried creates answered with their first group",
		      (unsigned long long)cs.groups_created,
		      (unsigned long long)cs.create_commits,
		      (unsigned long long)cs.create_dups);
	}
	if (d->cn != NULL) {
		connector_stats ns;

		connector_flush(d->cn);
		connector_get_stats(d->cn, &ns);
		LOG_I("connector: %llu accepted, %llu frames in, %llu frames "
		      "out in %llu writes",
		      (unsigned long long)ns.accepted,
		      (unsigned long long)ns.frames_in,
		      (unsigned long long)ns.frames_out,
		      (unsigned long long)ns.writes);
	}
}

static void
stop(struct imd *d)
{
	connector_destroy(d->cn);
	chatter_destroy(d->ch);
	slot_watch_stop(&d->watch, d->loop);
	if (d->loop != NULL) {
		ev_signal_stop(d->loop, &d->sigterm_w);
		ev_signal_stop(d->loop, &d->sigint_w);
		ev_signal_stop(d->loop, &d->sighup_w);
		ev_loop_destroy(d->loop);
	}
	im_shard_destroy(d->map);
	if (d->lst != d->st) {
		im_store_close(d->lst);
	}
	im_store_close(d->cst);
	im__store_mux_destroy(d->mux);
	im_store_close(d->st);
	if (d->lfd >= 0) {
		close(d->lfd);
	}
}

static int
run(srv_config *cfg)
{
	struct imd d;
	int status;

	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	d.lfd = -1;
	if ((status = validate(&d)) != 0) {
		return status;
	}
	if (bind_port(&d) != 0) {
		return 1;
	}
	if ((status = open_store(&d)) != 0) {
		close(d.lfd);
		return status;
	}
	if (load_map(&d) != 0 || start_roles(&d) != 0) {
		status = 1;
	} else if ((status = start_tls(&d)) != 0) {
		/* said why */
	} else if ((status = claim_slots(&d)) == 0 && serve(&d) != 0) {
		status = 1;
	}
	log_stats(&d);
	stop(&d);
	if (status == 0) {
		LOG_I("imd stopped");
	}
	return status;
}

int
main(int argc, char **argv)
{
	srv_config cfg;
	char err[64];

	signal(SIGPIPE, SIG_IGN);
	if (argc >= 2 && strcmp(argv[1], "token") == 0) {
		return cmd_token(argc, argv);
	}
	srv_config_init(&cfg, SRV_IMD);
	if (configure(&cfg, argc, argv, 1) != 0) {
		return 2;
	}
	if (srv_config_log_level(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "imd: %s\n", err);
		return 2;
	}
	return run(&cfg);
}
