/*
 * The settings table of imd and imnode and what reads it: files, flags,
 * the secret, the port file and the help text (config.h says why it is
 * one module). The generic key parsing is servers/roles/tuning.c's.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "im/shard.h"
#include "im/store.h"
#include "im/token.h"
#include "tuning.h"

/* Every imd row is also `imd token`'s: both read the same config file. */
#define SRV_IMDS (SRV_IMD | SRV_TOKEN)
#define SRV_ALL (SRV_IMD | SRV_TOKEN | SRV_NODE)

/* A row: the key (servers/roles/tuning.h), who takes it, who must set it
 * and, for numbers, the range (min == max == 0: any). */
typedef struct srv_key {
	role_key key;
	unsigned who;
	unsigned required;
	uint64_t min, max;
} srv_key;

#define F(field) offsetof(srv_config, field)
#define S(field) sizeof(((srv_config *)0)->field)
#define STR(name, field, who, req, help)                                       \
	{{name, ROLE_KEY_STR, F(field), S(field), help}, who, req, 0, 0}
#define NUM(name, kind, field, who, lo, hi, help)                              \
	{{name, kind, F(field), 0, help}, who, 0, lo, hi}

static const srv_key keys[] = {
        STR("role", role, SRV_NODE, SRV_NODE,
            "router | connector | chatter"),
        STR("name", name, SRV_NODE, SRV_NODE,
            "this node's name (connector, chatter: at most 40 bytes)"),
        STR("node", name, SRV_IMDS, 0, "this node's name in the slot map"),
        STR("listen", listen, SRV_IMDS, 0, "IPv4 address to listen on"),
        STR("listen", listen, SRV_NODE, SRV_NODE,
            "HOST:PORT to listen on (router: port 0 = any; chatter: -)"),
        NUM("port", ROLE_KEY_U32, port, SRV_IMDS, 0, 65535,
            "TCP port, 0 = any"),
        STR("db", store, SRV_IMDS, 0, "sqlite database file"),
        STR("store", store, SRV_NODE, SRV_NODE,
            "sqlite database file or PostgreSQL conninfo"),
        STR("secret", secret, SRV_ALL, 0,
            "token secret, >= 16 bytes (prefer secret_file)"),
        STR("secret_file", secret_file, SRV_ALL, 0,
            "file holding the token secret (first line)"),
        STR("port_file", port_file, SRV_ALL, 0,
            "write the bound port to this file once listening"),
        STR("log_level", log_level, SRV_ALL, 0,
            "error | warn | info | debug"),
        NUM("slots", ROLE_KEY_U32, slots, SRV_ALL, 1, IM_SHARD_SLOTS_MAX,
            "slots per kind"),
        STR("sync", sync, SRV_IMDS, 0, "sqlite durability: full | normal"),
        NUM("exclusive", ROLE_KEY_BOOL, exclusive, SRV_IMDS, 0, 0,
            "true: imd locks the db file while it runs, no other process "
            "(imctl, sqlite3) can open it; faster reads"),
        NUM("wal_autocheckpoint", ROLE_KEY_U32, wal_autocheckpoint, SRV_IMDS,
            0, 0, "WAL pages between checkpoints, 0 = sqlite's 1000"),
        NUM("stats_interval", ROLE_KEY_U32, stats_interval, SRV_IMDS, 0,
            86400, "seconds between 'mem:' info lines (RSS by part), "
                   "0 = off"),
        NUM("trim_interval", ROLE_KEY_U32, trim_interval, SRV_IMDS, 0,
            86400, "seconds between malloc_trim calls (freed heap back "
                   "to the kernel), 0 = off"),
        NUM("slot_watch_ms", ROLE_KEY_U32, slot_watch_ms, SRV_IMDS, 0, 3600000,
            "reload the slot map this often and log an ERROR naming the "
            "slots another process took (never taken back), 0 = off"),
        STR("tls_cert", tls_cert, SRV_ALL, 0,
            "connector: PEM certificate chain; set, the client port "
            "speaks TLS only (SIGHUP reloads the TLS files)"),
        STR("tls_key", tls_key, SRV_ALL, 0,
            "connector: PEM private key of tls_cert"),
        STR("tls_client_ca", tls_client_ca, SRV_ALL, 0,
            "connector: PEM CA certificates that sign client "
            "certificates"),
        STR("tls_client_auth", tls_client_auth, SRV_ALL, 0,
            "connector: client certificates: none | optional | require"),
        NUM("ttl", ROLE_KEY_U64, ttl, SRV_TOKEN, 1, UINT64_MAX,
            "seconds the token is valid"),
        NUM("expect", ROLE_KEY_U32, expect, SRV_NODE, 1, 4096,
            "connector, chatter: claim slots once N nodes of the role "
            "are alive"),
        NUM("heartbeat_ms", ROLE_KEY_U32, heartbeat_ms, SRV_NODE, 10, 60000,
            "membership heartbeat period, ms"),
        NUM("refresh_ms", ROLE_KEY_U32, refresh_ms, SRV_NODE, 10, 60000,
            "membership view reload period, ms"),
        NUM("balance_ms", ROLE_KEY_U32, balance_ms, SRV_NODE, 10, 60000,
            "slot balance period, ms"),
        NUM("dead_after_ms", ROLE_KEY_U32, dead_after_ms, SRV_NODE, 10,
            60000, "a node silent this long is dead: Routers move its "
                   "slots"),
        NUM("stop_ms", ROLE_KEY_U32, stop_ms, SRV_NODE, 0, 60000,
            "SIGTERM: hand the slots over and exit within this, ms "
            "(then exit anyway; 0 = exit at once, no handover)"),
        NUM("router_admit_ms", ROLE_KEY_U32, router_admit_ms, SRV_NODE, 0,
            600000, "router: a connection that has not said Hello this "
                    "long is closed, 0 = never"),
        NUM("router_frame_ms", ROLE_KEY_U32, router_frame_ms, SRV_NODE, 0,
            600000, "router: a frame begun must arrive whole, and the "
                    "peer must read what it is sent, within this, "
                    "0 = never"),
        NUM("router_per_peer_max", ROLE_KEY_U32, router_per_peer_max,
            SRV_NODE, 0, 65536, "router: connections at a time from one "
                                "address, 0 = no bound but the 256 in all"),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void
srv_config_init(srv_config *cfg, unsigned who)
{
	static const connector_opts cn = CONNECTOR_OPTS_INIT;
	static const chatter_opts ch = CHATTER_OPTS_INIT;

	memset(cfg, 0, sizeof(*cfg));
	cfg->who = who;
	snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
	cfg->slots = IM_SHARD_SLOTS_DEFAULT;
	cfg->cn = cn;
	cfg->ch = ch;
	snprintf(cfg->tls_client_auth, sizeof(cfg->tls_client_auth), "none");
	if (who & SRV_IMDS) {
		snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1");
		cfg->port = 7600;
		snprintf(cfg->store, sizeof(cfg->store), "imd.db");
		snprintf(cfg->name, sizeof(cfg->name), "imd");
		snprintf(cfg->sync, sizeof(cfg->sync), "full");
		cfg->exclusive = true;
		cfg->wal_autocheckpoint = 10000;
		cfg->trim_interval = 10;
		cfg->slot_watch_ms = 1000;
		cfg->ttl = 86400;
	} else {
		/* The membership defaults (include/im/store.h: failover of
		 * a crash in about 0.4 s, of a pause in about 1.6 s) and the
		 * 250 ms balance tick (handovers, the no-Router fallback). */
		cfg->expect = 1;
		cfg->heartbeat_ms = IM_NODE_HEARTBEAT_MS;
		cfg->refresh_ms = IM_NODE_HEARTBEAT_MS;
		cfg->balance_ms = 250;
		cfg->dead_after_ms = IM_NODE_DEAD_AFTER_MS;
		cfg->stop_ms = 2000;
		/* ROUTER_OPTS_INIT's limits (servers/cluster/router.h,
		 * which this table does not link): a Hello within 2 s, a
		 * frame within 5 s (the RPC call timeout), 64 connections
		 * from one host (nodes sharing a host, Routers' peers). */
		cfg->router_admit_ms = 2000;
		cfg->router_frame_ms = 5000;
		cfg->router_per_peer_max = 64;
	}
}

static bool
in_range(const srv_key *k, const srv_config *cfg)
{
	const char *p = (const char *)cfg + k->key.off;
	uint64_t v;

	if (k->min == 0 && k->max == 0) {
		return true;
	}
	if (k->key.kind == ROLE_KEY_U32) {
		v = *(const uint32_t *)(const void *)p;
	} else if (k->key.kind == ROLE_KEY_U64) {
		v = *(const uint64_t *)(const void *)p;
	} else {
		return true;
	}
	return v >= k->min && v <= k->max;
}

int
srv_config_set(srv_config *cfg, const char *key, const char *value,
               char *err, size_t errlen)
{
	size_t i;
	int rc;

	for (i = 0; i < NKEYS; i++) {
		const srv_key *k = &keys[i];
		char *field = (char *)cfg + k->key.off;
		size_t size = k->key.kind == ROLE_KEY_U32   ? sizeof(uint32_t)
		              : k->key.kind == ROLE_KEY_U64 ? sizeof(uint64_t)
		                                            : 0;
		char old[sizeof(uint64_t)];

		if (!(k->who & cfg->who) || !role_key_eq(k->key.name, key)) {
			continue;
		}
		memcpy(old, field, size);
		rc = role_keys_set(&k->key, 1, cfg, key, value, err, errlen);
		if (rc == 0 && !in_range(k, cfg)) {
			/* Out of range: the field stays as it was. */
			memcpy(field, old, size);
			snprintf(err, errlen, "%s: bad value '%s' (%llu to %llu)",
			         key, value, (unsigned long long)k->min,
			         (unsigned long long)k->max);
			return -1;
		}
		return rc;
	}
	rc = role_tuning_set(&cfg->cn, &cfg->ch, key, value, err, errlen);
	if (rc == 1) {
		snprintf(err, errlen, "unknown key '%s'", key);
		return -1;
	}
	return rc;
}

static char *
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s)) {
		s++;
	}
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1])) {
		*--e = '\0';
	}
	return s;
}

int
srv_config_load(srv_config *cfg, const char *path, char *err, size_t errlen)
{
	char line[2048], sub[256];
	int lineno = 0, rc = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		char *s, *eq;

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(sub, sizeof(sub), "line too long");
			rc = -1;
			break;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#') {
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(sub, sizeof(sub), "expected key = value");
			rc = -1;
			break;
		}
		*eq = '\0';
		rc = srv_config_set(cfg, trim(s), trim(eq + 1), sub,
		                    sizeof(sub));
	}
	fclose(f);
	if (rc != 0) {
		snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
	}
	return rc;
}

/*
 * The flag at argv[*i]: --key value or --key=value, '-' and '_' alike.
 * Moves *i past it. Returns 0, or -1 with a message in err.
 */
static int
next_flag(int argc, char **argv, int *i, char *key, size_t keylen,
          const char **val, char *err, size_t errlen)
{
	const char *a = argv[*i], *eq;

	if (strncmp(a, "--", 2) != 0) {
		snprintf(err, errlen, "unexpected argument '%s'", a);
		return -1;
	}
	a += 2;
	eq = strchr(a, '=');
	if (eq != NULL) {
		snprintf(key, keylen, "%.*s", (int)(eq - a), a);
		*val = eq + 1;
	} else if (*i + 1 >= argc) {
		snprintf(err, errlen, "--%s needs a value", a);
		return -1;
	} else {
		snprintf(key, keylen, "%s", a);
		*val = argv[++*i];
	}
	++*i;
	return 0;
}

static int
check_required(const srv_config *cfg, char *err, size_t errlen)
{
	size_t i, off = 0;

	err[0] = '\0';
	for (i = 0; i < NKEYS; i++) {
		const srv_key *k = &keys[i];

		if ((k->required & cfg->who) &&
		    ((const char *)cfg)[k->key.off] == '\0' && off < errlen) {
			off += (size_t)snprintf(err + off, errlen - off, "%s--%s",
			                        off == 0 ? "needed: " : " ",
			                        k->key.name);
		}
	}
	return off == 0 ? 0 : -1;
}

int
srv_config_parse(srv_config *cfg, int argc, char **argv, int first,
                 char *err, size_t errlen)
{
	char key[64];
	const char *val;
	int i;

	for (i = first; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			return 1;
		}
	}
	/* The files first, whatever their place: flags override them. */
	for (i = first; i < argc;) {
		if (next_flag(argc, argv, &i, key, sizeof(key), &val, err,
		              errlen) != 0) {
			return -1;
		}
		if (strcmp(key, "config") == 0 &&
		    srv_config_load(cfg, val, err, errlen) != 0) {
			return -1;
		}
	}
	for (i = first; i < argc;) {
		(void)next_flag(argc, argv, &i, key, sizeof(key), &val, err,
		                errlen);
		if (strcmp(key, "config") != 0 &&
		    srv_config_set(cfg, key, val, err, errlen) != 0) {
			return -1;
		}
	}
	return check_required(cfg, err, errlen);
}

int
srv_config_secret(srv_config *cfg, char *err, size_t errlen)
{
	FILE *f;
	size_t n;

	if (cfg->secret_file[0] != '\0') {
		if ((f = fopen(cfg->secret_file, "r")) == NULL) {
			snprintf(err, errlen, "%s: %s", cfg->secret_file,
			         strerror(errno));
			return -1;
		}
		if (fgets(cfg->secret, sizeof(cfg->secret), f) == NULL) {
			cfg->secret[0] = '\0';
		}
		fclose(f);
		n = strlen(cfg->secret);
		while (n > 0 && (cfg->secret[n - 1] == '\n' ||
		                 cfg->secret[n - 1] == '\r')) {
			cfg->secret[--n] = '\0';
		}
	}
	if (strlen(cfg->secret) < IM_TOKEN_SECRET_MIN) {
		snprintf(err, errlen,
		         "a token secret of at least %d bytes is needed "
		         "(--secret-file FILE or --secret S)",
		         IM_TOKEN_SECRET_MIN);
		return -1;
	}
	return 0;
}

int
srv_config_tls(const srv_config *cfg, connector_tls_opts *out, char *err,
               size_t errlen)
{
	static const char *const modes[] = {"none", "optional", "require"};
	size_t i;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < 3 && strcmp(cfg->tls_client_auth, modes[i]) != 0;
	     i++) {
	}
	if (i == 3) {
		snprintf(err, errlen, "tls_client_auth must be none, optional "
		                      "or require, not '%s'",
		         cfg->tls_client_auth);
		return -1;
	}
	if (cfg->tls_cert[0] == '\0') {
		if (cfg->tls_key[0] != '\0' || cfg->tls_client_ca[0] != '\0' ||
		    i != 0) {
			snprintf(err, errlen, "tls_key, tls_client_ca and "
			                      "tls_client_auth need tls_cert");
			return -1;
		}
		return 0;
	}
	if (cfg->tls_key[0] == '\0') {
		snprintf(err, errlen, "tls_cert needs tls_key");
		return -1;
	}
	if (i != 0 && cfg->tls_client_ca[0] == '\0') {
		snprintf(err, errlen, "tls_client_auth %s needs tls_client_ca",
		         modes[i]);
		return -1;
	}
	out->cert = cfg->tls_cert;
	out->key = cfg->tls_key;
	out->client_ca = cfg->tls_client_ca;
	out->client_auth = (connector_tls_client)i;
	return 1;
}

int
srv_config_log_level(const srv_config *cfg, char *err, size_t errlen)
{
	int level = role_log_level_parse(cfg->log_level);

	if (level < 0) {
		snprintf(err, errlen, "bad log_level '%s'", cfg->log_level);
		return -1;
	}
	role_log_set_level(level);
	return 0;
}

void
srv_config_usage(unsigned who, FILE *f)
{
	srv_config def;
	char val[256];
	size_t i;

	srv_config_init(&def, who);
	fprintf(f, "settings (--key value, or `key = value` in a --config "
	           "file; '-' and '_' alike):\n");
	for (i = 0; i < NKEYS; i++) {
		const srv_key *k = &keys[i];

		if (!(k->who & who)) {
			continue;
		}
		role_key_format(&k->key, &def, val, sizeof(val));
		if (k->required & who) {
			fprintf(f, "  --%-20s %s (required)\n", k->key.name,
			        k->key.help);
		} else {
			fprintf(f, "  --%-20s %s (default %s)\n", k->key.name,
			        k->key.help, val[0] != '\0' ? val : "none");
		}
	}
	fprintf(f, "Connector and Chatter tuning:\n");
	role_tuning_usage(f);
}

int
srv_port_file_write(const char *path, uint16_t port)
{
	char tmp[SRV_PATH_MAX + 8];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL) {
		return -1;
	}
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0) {
		return -1;
	}
	return rename(tmp, path);
}
