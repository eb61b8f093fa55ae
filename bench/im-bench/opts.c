#include "opts.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const names[] = {
        [IMB_SC_CHAT] = "chat",           [IMB_SC_IDLE] = "idle",
        [IMB_SC_BIGGROUP] = "biggroup",   [IMB_SC_LOGIN] = "login",
        [IMB_SC_RECONNECT] = "reconnect",
};

const char *
imb_scenario_name(imb_scenario s)
{
	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

void
imb_opts_usage(FILE *f)
{
	fputs("usage: im-bench [SCENARIO] [flags]\n"
	      "scenarios (presets over the flags below): chat idle biggroup "
	      "login reconnect\n"
	      "  --target HOST:PORT[,..]  server address(es), default "
	      "127.0.0.1:7000\n"
	      "  --src A[-B]              127.0.0.x source addresses to bind, "
	      "default\n"
	      "                           127.0.0.2-127.0.0.5 (each gives ~28k "
	      "ports)\n"
	      "  --secret S | --secret-file F   HMAC secret of the server's "
	      "tokens\n"
	      "  --users N                users (= connections), uids from "
	      "--first-uid\n"
	      "  --first-uid N            default 1000\n"
	      "  --groups G               groups (default "
	      "users*convs/group-size)\n"
	      "  --group-size S           members per group\n"
	      "  --convs C                conversations per user (groups wrap "
	      "around)\n"
	      "  --senders N|all          users that send (spread evenly), "
	      "default all\n"
	      "  --body B                 body bytes (>= 16), default 64\n"
	      "  --inflight K             closed loop: sends outstanding per "
	      "sender\n"
	      "  --rate R                 open loop: total sends/s (latency "
	      "from the\n"
	      "                           intended send time); overrides "
	      "--inflight\n"
	      "  --duration S, --warmup S measured window and warm-up, "
	      "seconds\n"
	      "  --login-rate L           logins/s in total, 0 = as fast as "
	      "possible\n"
	      "  --login-window W         logins in progress per worker, "
	      "default 256\n"
	      "  --procs N                worker processes (default: enough "
	      "for the\n"
	      "                           fd limit, at least 2 when users > "
	      "1000)\n"
	      "  --server-pid PID[,..]    server processes to sample from "
	      "/proc\n"
	      "  --server-name NAME       or find them by comm name (default "
	      "imd)\n"
	      "  --other-pid PID[,..]     more server processes to sample, "
	      "not counted\n"
	      "                           in RSS per connection (Routers, "
	      "Chatters)\n"
	      "  --tls CAFILE             TLS to the targets, certificate "
	      "checked against\n"
	      "                           CAFILE and for the target's IP "
	      "(handshake in\n"
	      "                           the login latency)\n"
	      "  --json FILE              write the results as JSON\n"
	      "  --no-baseline            skip the sqlite raw-insert baseline\n"
	      "  --baseline-secs S        default 3\n"
	      "  --baseline-batch N       rows per transaction (default: sends "
	      "in flight)\n"
	      "  --baseline-dir D         where the baseline db goes (default "
	      "/tmp)\n"
	      "  --baseline-pg CONNINFO   the baseline on PostgreSQL instead: "
	      "a prepared\n"
	      "                           multi-row INSERT of the same rows, "
	      "autocommit\n"
	      "  --down S                 reconnect: seconds the droppers stay "
	      "away\n"
	      "  --stayers K              reconnect: members per group that "
	      "stay\n"
	      "  --setup-timeout S, --login-timeout S, --drain S\n"
	      "  --setup-window N         CreateGroup/AddMember in flight per "
	      "worker (256)\n"
	      "  --token-ttl S            token lifetime, default 86400\n"
	      "  --quiet                  no progress lines on stderr\n",
	      f);
}

static void
defaults(imb_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->scenario = IMB_SC_CHAT;
	o->users = 1000;
	o->first_uid = 1000;
	o->group_size = 10;
	o->convs = 1;
	o->senders = IMB_ALL;
	o->body = 64;
	o->inflight = 1;
	o->duration = 10;
	o->warmup = 2;
	o->login_window = 256;
	o->token_ttl = 86400;
	o->server_name = "imd";
	o->baseline = 1;
	o->baseline_secs = 3;
	o->baseline_dir = "/tmp";
	o->down = 2;
	o->stayers = 1;
	o->setup_timeout = 900;
	o->login_timeout = 120;
	o->drain = 5;
	o->setup_window = 256;
	o->targets[0].ip = htonl(0x7f000001);
	o->targets[0].port = 7000;
	o->ntargets = 1;
	for (o->nsrc = 0; o->nsrc < 4; o->nsrc++) {
		o->src[o->nsrc] = htonl(0x7f000002 + o->nsrc);
	}
}

static void
preset(imb_opts *o, imb_scenario s)
{
	o->scenario = s;
	switch (s) {
	case IMB_SC_CHAT:
		break;
	case IMB_SC_IDLE:
		o->users = 10000;
		o->senders = 0;
		o->convs = 0;
		o->duration = 3;
		o->warmup = 1;
		o->baseline = 0;
		break;
	case IMB_SC_BIGGROUP:
		o->users = 2000;
		o->group_size = 2000;
		o->groups = 1;
		o->senders = 20;
		o->inflight = 2;
		break;
	case IMB_SC_LOGIN:
		o->users = 2000;
		o->convs = 20;
		o->group_size = 10;
		o->senders = 0;
		o->duration = 0;
		o->warmup = 0;
		o->baseline = 0;
		break;
	case IMB_SC_RECONNECT:
		o->duration = 3;
		o->warmup = 1;
		o->baseline = 0;
		break;
	}
}

static int
parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s == '\0' || *s == '-') {
		return -1;
	}
	v = strtoull(s, &end, 10);
	if (*end != '\0') {
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;

	if (parse_u64(s, &v) != 0 || v > UINT32_MAX - 1) {
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

static int
parse_dbl(const char *s, double *out)
{
	char *end;
	double v;

	if (s == NULL || *s == '\0') {
		return -1;
	}
	v = strtod(s, &end);
	if (*end != '\0' || !(v >= 0) || v > 1e9) {
		return -1;
	}
	*out = v;
	return 0;
}

static int
parse_ip(const char *s, size_t n, uint32_t *out)
{
	char buf[32];
	struct in_addr a;

	if (n == 0 || n >= sizeof(buf)) {
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1) {
		return -1;
	}
	/* The bench only ever talks to loopback (bench/README.md, im-bench). */
	if ((ntohl(a.s_addr) >> 24) != 127) {
		return -1;
	}
	*out = a.s_addr;
	return 0;
}

static int
parse_targets(imb_opts *o, const char *s)
{
	o->ntargets = 0;
	while (*s) {
		const char *comma = strchr(s, ','), *colon;
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		uint32_t port;
		char pbuf[8];

		colon = memchr(s, ':', n);
		if (colon == NULL || o->ntargets == IMB_MAX_TARGETS ||
		    parse_ip(s, (size_t)(colon - s),
		             &o->targets[o->ntargets].ip) != 0) {
			return -1;
		}
		if ((size_t)(s + n - colon - 1) >= sizeof(pbuf)) {
			return -1;
		}
		memcpy(pbuf, colon + 1, (size_t)(s + n - colon - 1));
		pbuf[s + n - colon - 1] = '\0';
		if (parse_u32(pbuf, &port) != 0 || port == 0 || port > 65535) {
			return -1;
		}
		o->targets[o->ntargets++].port = (uint16_t)port;
		s += n;
		if (*s == ',') {
			s++;
		}
	}
	return o->ntargets > 0 ? 0 : -1;
}

static int
parse_src(imb_opts *o, const char *s)
{
	const char *dash = strchr(s, '-');
	uint32_t a, b, i;

	if (parse_ip(s, dash ? (size_t)(dash - s) : strlen(s), &a) != 0) {
		return -1;
	}
	b = a;
	if (dash && parse_ip(dash + 1, strlen(dash + 1), &b) != 0) {
		return -1;
	}
	a = ntohl(a);
	b = ntohl(b);
	if (b < a || b - a >= IMB_MAX_SRC) {
		return -1;
	}
	o->nsrc = 0;
	for (i = a; i <= b; i++) {
		o->src[o->nsrc++] = htonl(i);
	}
	return 0;
}

static int
parse_pids(int *pids, uint32_t *n, const char *s)
{
	char buf[256], *tok, *save = NULL;
	uint32_t pid;

	if (strlen(s) >= sizeof(buf)) {
		return -1;
	}
	strcpy(buf, s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		if (*n == IMB_MAX_SERVER_PIDS || parse_u32(tok, &pid) != 0 ||
		    pid == 0) {
			return -1;
		}
		pids[(*n)++] = (int)pid;
	}
	return *n ? 0 : -1;
}

static int
read_secret(imb_opts *o, const char *path, char *err, size_t errlen)
{
	static char buf[1025];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL) {
		return fail(err, errlen, "cannot open secret file %s", path);
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
		n--;
	}
	buf[n] = '\0';
	o->secret = buf;
	return 0;
}

enum {
	O_TARGET = 256,
	O_SRC,
	O_SECRET,
	O_SECRET_FILE,
	O_USERS,
	O_FIRST_UID,
	O_GROUPS,
	O_GROUP_SIZE,
	O_CONVS,
	O_SENDERS,
	O_BODY,
	O_INFLIGHT,
	O_RATE,
	O_DURATION,
	O_WARMUP,
	O_LOGIN_RATE,
	O_LOGIN_WINDOW,
	O_PROCS,
	O_SERVER_PID,
	O_SERVER_NAME,
	O_JSON,
	O_NO_BASELINE,
	O_BASELINE_SECS,
	O_BASELINE_BATCH,
	O_BASELINE_DIR,
	O_DOWN,
	O_STAYERS,
	O_SETUP_TIMEOUT,
	O_LOGIN_TIMEOUT,
	O_DRAIN,
	O_TTL,
	O_QUIET,
	O_SCENARIO,
	O_HELP,
	O_SETUP_WINDOW,
	O_OTHER_PID,
	O_BASELINE_PG,
	O_TLS,
};

static const struct option longopts[] = {
        {"target", required_argument, NULL, O_TARGET},
        {"src", required_argument, NULL, O_SRC},
        {"secret", required_argument, NULL, O_SECRET},
        {"secret-file", required_argument, NULL, O_SECRET_FILE},
        {"users", required_argument, NULL, O_USERS},
        {"first-uid", required_argument, NULL, O_FIRST_UID},
        {"groups", required_argument, NULL, O_GROUPS},
        {"group-size", required_argument, NULL, O_GROUP_SIZE},
        {"convs", required_argument, NULL, O_CONVS},
        {"senders", required_argument, NULL, O_SENDERS},
        {"body", required_argument, NULL, O_BODY},
        {"inflight", required_argument, NULL, O_INFLIGHT},
        {"rate", required_argument, NULL, O_RATE},
        {"duration", required_argument, NULL, O_DURATION},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"login-rate", required_argument, NULL, O_LOGIN_RATE},
        {"login-window", required_argument, NULL, O_LOGIN_WINDOW},
        {"procs", required_argument, NULL, O_PROCS},
        {"server-pid", required_argument, NULL, O_SERVER_PID},
        {"server-name", required_argument, NULL, O_SERVER_NAME},
        {"json", required_argument, NULL, O_JSON},
        {"no-baseline", no_argument, NULL, O_NO_BASELINE},
        {"baseline-secs", required_argument, NULL, O_BASELINE_SECS},
        {"baseline-batch", required_argument, NULL, O_BASELINE_BATCH},
        {"baseline-dir", required_argument, NULL, O_BASELINE_DIR},
        {"down", required_argument, NULL, O_DOWN},
        {"stayers", required_argument, NULL, O_STAYERS},
        {"setup-timeout", required_argument, NULL, O_SETUP_TIMEOUT},
        {"login-timeout", required_argument, NULL, O_LOGIN_TIMEOUT},
        {"drain", required_argument, NULL, O_DRAIN},
        {"token-ttl", required_argument, NULL, O_TTL},
        {"quiet", no_argument, NULL, O_QUIET},
        {"scenario", required_argument, NULL, O_SCENARIO},
        {"help", no_argument, NULL, O_HELP},
        {"setup-window", required_argument, NULL, O_SETUP_WINDOW},
        {"other-pid", required_argument, NULL, O_OTHER_PID},
        {"baseline-pg", required_argument, NULL, O_BASELINE_PG},
        {"tls", required_argument, NULL, O_TLS},
        {NULL, 0, NULL, 0},
};

static int
scenario_of(const char *s, imb_scenario *out)
{
	unsigned i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (imb_scenario)i;
			return 0;
		}
	}
	return -1;
}

int
imb_opts_parse(imb_opts *o, int argc, char **argv, int *help, char *err,
               size_t errlen)
{
	imb_scenario sc = IMB_SC_CHAT;
	int c, i, first = 1;
	uint64_t u64 = 0;

	*help = 0;
	defaults(o);
	/* The preset goes first so that every flag can override it. */
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc) {
			if (scenario_of(argv[i + 1], &sc) != 0) {
				return fail(err, errlen, "unknown scenario %s",
				            argv[i + 1]);
			}
		} else if (strncmp(argv[i], "--scenario=", 11) == 0) {
			if (scenario_of(argv[i] + 11, &sc) != 0) {
				return fail(err, errlen, "unknown scenario %s",
				            argv[i] + 11);
			}
		}
	}
	if (argc > 1 && argv[1][0] != '-') {
		if (scenario_of(argv[1], &sc) != 0) {
			return fail(err, errlen, "unknown scenario %s",
			            argv[1]);
		}
		first = 2;
	}
	preset(o, sc);
	optind = first;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		const char *a = optarg;
		int bad = 0;

		switch (c) {
		case O_TARGET:
			bad = parse_targets(o, a);
			break;
		case O_SRC:
			bad = parse_src(o, a);
			break;
		case O_SECRET:
			o->secret = a;
			break;
		case O_SECRET_FILE:
			if (read_secret(o, a, err, errlen) != 0) {
				return -1;
			}
			break;
		case O_USERS:
			bad = parse_u32(a, &o->users);
			break;
		case O_FIRST_UID:
			bad = parse_u64(a, &o->first_uid) || o->first_uid == 0;
			break;
		case O_GROUPS:
			bad = parse_u32(a, &o->groups);
			break;
		case O_GROUP_SIZE:
			bad = parse_u32(a, &o->group_size);
			break;
		case O_CONVS:
			bad = parse_u32(a, &o->convs);
			break;
		case O_SENDERS:
			if (strcmp(a, "all") == 0) {
				o->senders = IMB_ALL;
			} else {
				bad = parse_u32(a, &o->senders);
			}
			break;
		case O_BODY:
			bad = parse_u32(a, &o->body);
			break;
		case O_INFLIGHT:
			bad = parse_u32(a, &o->inflight);
			break;
		case O_RATE:
			bad = parse_dbl(a, &o->rate);
			break;
		case O_DURATION:
			bad = parse_dbl(a, &o->duration);
			break;
		case O_WARMUP:
			bad = parse_dbl(a, &o->warmup);
			break;
		case O_LOGIN_RATE:
			bad = parse_dbl(a, &o->login_rate);
			break;
		case O_LOGIN_WINDOW:
			bad = parse_u32(a, &o->login_window) ||
			      o->login_window == 0;
			break;
		case O_PROCS:
			bad = parse_u32(a, &o->procs) || o->procs == 0 ||
			      o->procs > 64;
			break;
		case O_SERVER_PID:
			bad = parse_pids(o->server_pids, &o->nserver_pids, a);
			break;
		case O_OTHER_PID:
			bad = parse_pids(o->other_pids, &o->nother_pids, a);
			break;
		case O_BASELINE_PG:
			o->baseline_pg = a;
			break;
		case O_TLS:
			o->tls_ca = a;
			break;
		case O_SERVER_NAME:
			o->server_name = a;
			break;
		case O_JSON:
			o->json = a;
			break;
		case O_NO_BASELINE:
			o->baseline = 0;
			break;
		case O_BASELINE_SECS:
			bad = parse_dbl(a, &o->baseline_secs);
			o->baseline = 1;
			break;
		case O_BASELINE_BATCH:
			bad = parse_u32(a, &o->baseline_batch);
			break;
		case O_BASELINE_DIR:
			o->baseline_dir = a;
			break;
		case O_DOWN:
			bad = parse_dbl(a, &o->down);
			break;
		case O_STAYERS:
			bad = parse_u32(a, &o->stayers);
			break;
		case O_SETUP_TIMEOUT:
			bad = parse_dbl(a, &o->setup_timeout);
			break;
		case O_LOGIN_TIMEOUT:
			bad = parse_dbl(a, &o->login_timeout);
			break;
		case O_DRAIN:
			bad = parse_dbl(a, &o->drain);
			break;
		case O_TTL:
			bad = parse_u64(a, &u64) || u64 == 0;
			o->token_ttl = u64;
			break;
		case O_QUIET:
			o->quiet = 1;
			break;
		case O_SETUP_WINDOW:
			bad = parse_u32(a, &o->setup_window) ||
			      o->setup_window == 0;
			break;
		case O_SCENARIO:
			break;
		case O_HELP:
		case 'h':
			*help = 1;
			return 0;
		default:
			return fail(err, errlen,
			            "unknown or incomplete flag %s",
			            argv[optind - 1]);
		}
		if (bad) {
			return fail(err, errlen, "bad value '%s' for --%s",
			            a ? a : "", longopts[c - O_TARGET].name);
		}
	}
	if (optind < argc) {
		return fail(err, errlen, "unexpected argument %s",
		            argv[optind]);
	}
	o->scenario_name = names[o->scenario];
	return 0;
}

int
imb_opts_finish(imb_opts *o, char *err, size_t errlen)
{
	struct rlimit rl;
	uint64_t g, per;

	if (o->users == 0) {
		return fail(err, errlen, "--users must be > 0");
	}
	if (o->group_size == 0 || o->group_size > o->users) {
		return fail(err, errlen, "--group-size must be 1..users");
	}
	if (o->body < 16 || o->body > 4096) {
		return fail(err, errlen, "--body must be 16..4096");
	}
	if (o->secret == NULL || strlen(o->secret) < 16) {
		return fail(err, errlen,
		            "--secret or --secret-file (>= 16 bytes) needed");
	}
	if (o->groups == 0 && o->convs > 0) {
		g = ((uint64_t)o->users * o->convs + o->group_size - 1) /
		    o->group_size;
		if (g == 0 || g > 10000000) {
			return fail(err, errlen, "bad group count %llu",
			            (unsigned long long)g);
		}
		o->groups = (uint32_t)g;
	}
	if (o->senders == IMB_ALL || o->senders > o->users) {
		o->senders = o->users;
	}
	if (o->groups == 0) {
		o->senders = 0; /* nobody to send to */
	}
	if (o->convs > 127) {
		return fail(err, errlen,
		            "--convs must be <= 127 (resume cursors)");
	}
	if (o->inflight == 0) {
		o->inflight = 1;
	}
	if (o->stayers >= o->group_size && o->scenario == IMB_SC_RECONNECT) {
		return fail(err, errlen, "--stayers must be < group size");
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
		rl.rlim_cur = 1024;
	}
	/* Keep a margin for the loop's own fds, the pipe and /proc reads. */
	o->max_fds = rl.rlim_cur > 64 ? (uint32_t)(rl.rlim_cur - 64) : 1;
	if (o->procs == 0) {
		per = o->max_fds;
		o->procs = (uint32_t)((o->users + per - 1) / per);
		if (o->procs < 2 && o->users > 1000) {
			o->procs = 2; /* two cores */
		}
		if (o->procs == 0) {
			o->procs = 1;
		}
	}
	if ((o->users + o->procs - 1) / o->procs > o->max_fds) {
		return fail(err, errlen,
		            "%u users over %u procs exceed %u fds a process",
		            o->users, o->procs, o->max_fds);
	}
	if ((uint64_t)o->users > (uint64_t)o->nsrc * 28000 * o->ntargets) {
		return fail(err, errlen, "%u users need more --src addresses",
		            o->users);
	}
	if (o->baseline_batch == 0) {
		/* What a closed loop at --inflight can put in one commit;
		 * open-loop runs use the same figure so their ratio compares
		 * with the same baseline. */
		per = (uint64_t)o->senders * o->inflight;
		o->baseline_batch = per > 1000 ? 1000 : per ? (uint32_t)per : 1;
	}
	return 0;
}
