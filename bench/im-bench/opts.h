/* im-bench options: every scenario is a preset over these flags. */
#ifndef IMB_OPTS_H
#define IMB_OPTS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define IMB_ALL UINT32_MAX
#define IMB_MAX_TARGETS 16
#define IMB_MAX_SRC 64
#define IMB_MAX_SERVER_PIDS 16

typedef enum imb_scenario {
	IMB_SC_CHAT = 0,
	IMB_SC_IDLE,
	IMB_SC_BIGGROUP,
	IMB_SC_LOGIN,
	IMB_SC_RECONNECT,
} imb_scenario;

typedef struct imb_addr {
	uint32_t ip;   /* network order */
	uint16_t port; /* host order */
} imb_addr;

typedef struct imb_opts {
	imb_scenario scenario;
	const char *scenario_name;
	uint32_t users; /* U: connections / users, uids first_uid.. */
	uint64_t first_uid;
	uint32_t groups;       /* G, 0 = derived: users * convs / group_size */
	uint32_t group_size;   /* S */
	uint32_t convs;        /* conversations per user (login) */
	uint32_t senders;      /* users that send, IMB_ALL = all */
	uint32_t body;         /* body bytes, >= 16 (timestamp + sender) */
	uint32_t inflight;     /* closed loop: sends outstanding per sender */
	double rate;           /* open loop: total sends/s, 0 = closed loop */
	double duration;       /* measured seconds */
	double warmup;         /* seconds before the measured window */
	double login_rate;     /* logins/s total, 0 = as fast as possible */
	uint32_t login_window; /* logins in progress per worker */
	uint32_t procs;        /* worker processes */
	uint32_t max_fds;      /* per worker, under `ulimit -n` */
	imb_addr targets[IMB_MAX_TARGETS];
	uint32_t ntargets;
	uint32_t src[IMB_MAX_SRC]; /* source addresses, network order */
	uint32_t nsrc;
	const char *secret;
	uint64_t token_ttl;
	const char *json;
	int server_pids[IMB_MAX_SERVER_PIDS];
	uint32_t nserver_pids;
	/* Sampled for CPU and RSS too, but not counted in RSS per connection
	 * (a cluster's Routers and Chatters next to its Connectors). */
	int other_pids[IMB_MAX_SERVER_PIDS];
	uint32_t nother_pids;
	const char *server_name;
	/* --tls CAFILE: TLS to every target, its certificate checked
	 * against CAFILE and for the target's IP address; NULL = plain */
	const char *tls_ca;
	/* baseline */
	int baseline; /* run the sqlite baseline */
	double baseline_secs;
	uint32_t baseline_batch; /* 0 = derived from the load */
	const char *baseline_dir;
	const char *baseline_pg; /* conninfo: the baseline on PostgreSQL */
	/* reconnect */
	double down;      /* seconds the droppers stay away */
	uint32_t stayers; /* members per group that do not drop */
	/* limits */
	double setup_timeout;
	double login_timeout;
	double drain;          /* seconds to wait for outstanding replies */
	uint32_t setup_window; /* CreateGroup/AddMember in flight per worker */
	int quiet;
} imb_opts;

/* Defaults, then the scenario preset, then the flags. 0 ok; -1 with a
 * message in err (errlen bytes). argv[1] may be a scenario name. Sets
 * *help when --help was asked. */
int imb_opts_parse(imb_opts *o, int argc, char **argv, int *help, char *err,
                   size_t errlen);
void imb_opts_usage(FILE *f);
/* Fill the derived fields (groups, senders, baseline batch, procs). */
int imb_opts_finish(imb_opts *o, char *err, size_t errlen);
const char *imb_scenario_name(imb_scenario s);

#endif
