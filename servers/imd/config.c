#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_STR, K_U32, K_U64, K_SEC, K_BOOL };

struct key {
	const char *name;
	enum kind kind;
	size_t off;
	size_t size; /* K_STR: buffer size */
	const char *help;
};

#define F(field) offsetof(imd_config, field)
#define S(field) sizeof(((imd_config *)0)->field)

static const struct key keys[] = {
        {"listen", K_STR, F(listen), S(listen),
         "IPv4 address to listen on (127.0.0.1)"},
        {"port", K_U32, F(port), 0, "TCP port, 0 = any (7600)"},
        {"db", K_STR, F(db), S(db), "sqlite database file (imd.db)"},
        {"secret", K_STR, F(secret), S(secret),
         "token secret, >= 16 bytes (prefer secret_file)"},
        {"secret_file", K_STR, F(secret_file), S(secret_file),
         "file holding the token secret (first line)"},
        {"node", K_STR, F(node), S(node), "this node's name in the slot map"},
        {"log_level", K_STR, F(log_level), S(log_level),
         "error | warn | info | debug"},
        {"sync", K_STR, F(sync), S(sync), "sqlite durability: full | normal"},
        {"exclusive", K_BOOL, F(exclusive), 0,
         "true: imd locks the db file while it runs, no other process "
         "(imctl, sqlite3) can open it; faster reads (true)"},
        {"wal_autocheckpoint", K_U32, F(wal_autocheckpoint), 0,
         "WAL pages between checkpoints, 0 = sqlite's 1000 (10000)"},
        {"port_file", K_STR, F(port_file), S(port_file),
         "write the bound port to this file once listening"},
        {"slots", K_U32, F(slots), 0, "slots per kind (1024)"},
        {"max_conns", K_U32, F(cn.max_conns), 0, "connection limit"},
        {"max_sessions", K_U32, F(cn.max_sessions), 0, "sessions per user"},
        {"frame_max", K_U32, F(cn.frame_max), 0,
         "client frame payload limit (8192)"},
        {"wbuf_max", K_U32, F(cn.wbuf_max), 0,
         "bytes queued for one slow reader before it is closed"},
        {"pushq_items", K_U32, F(cn.pushq_items), 0, "unacked pushes/session"},
        {"pushq_bytes", K_U32, F(cn.pushq_bytes), 0, "unacked bytes/session"},
        {"rto_ms", K_U32, F(cn.rto_ms), 0, "retransmit timeout (5000)"},
        {"max_convs", K_U32, F(cn.max_convs), 0, "conversations per user"},
        {"replay_limit", K_U32, F(cn.replay_limit), 0,
         "messages per cursor replayed from the store on resume"},
        {"login_timeout", K_SEC, F(cn.login_timeout), 0,
         "seconds to log in (10)"},
        {"idle_timeout", K_SEC, F(cn.idle_timeout), 0,
         "seconds without a frame before close (90)"},
        {"grace", K_SEC, F(cn.grace), 0,
         "seconds a dropped session stays resumable (60)"},
        {"max_groups", K_U32, F(ch.max_groups), 0, "hot groups in memory"},
        {"max_members", K_U32, F(ch.max_members), 0, "members per group"},
        {"max_batch", K_U32, F(ch.max_batch), 0, "sends per commit (1024)"},
        {"seq_step", K_U32, F(ch.seq_step), 0,
         "seqs per group segment (10000)"},
        {"uq_step", K_U32, F(cn.uq_step), 0, "seqs per user-queue segment"},
        {"dedup_capacity", K_U32, F(ch.dedup_capacity), 0,
         "dedup cache entries"},
        {"dedup_ttl_ms", K_U64, F(ch.dedup_ttl_ms), 0, "dedup cache TTL"},
};

void
imd_config_defaults(imd_config *cfg)
{
	connector_opts co = CONNECTOR_OPTS_INIT;
	chatter_opts cho = CHATTER_OPTS_INIT;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->listen, sizeof(cfg->listen), "127.0.0.1");
	cfg->port = 7600;
	snprintf(cfg->db, sizeof(cfg->db), "imd.db");
	snprintf(cfg->node, sizeof(cfg->node), "imd");
	snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
	snprintf(cfg->sync, sizeof(cfg->sync), "full");
	cfg->slots = 1024;
	cfg->exclusive = true;
	cfg->wal_autocheckpoint = 10000;
	cfg->cn = co;
	cfg->ch = cho;
}

static bool
key_eq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++) {
		char x = *a == '-' ? '_' : *a;
		char y = *b == '-' ? '_' : *b;

		if (x != y) {
			return false;
		}
	}
	return *a == *b;
}

int
imd_config_set(imd_config *cfg, const char *key, const char *value, char *err,
               size_t errlen)
{
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const struct key *k = &keys[i];
		char *p = (char *)cfg + k->off;
		char *end = NULL;

		if (!key_eq(k->name, key)) {
			continue;
		}
		errno = 0;
		switch (k->kind) {
		case K_STR:
			if (strlen(value) >= k->size) {
				snprintf(err, errlen, "%s: value too long",
				         key);
				return -1;
			}
			memcpy(p, value, strlen(value) + 1);
			return 0;
		case K_U32: {
			unsigned long long v = strtoull(value, &end, 10);

			if (errno != 0 || end == value || *end != '\0' ||
			    value[0] == '-' || v > UINT32_MAX) {
				break;
			}
			*(uint32_t *)(void *)p = (uint32_t)v;
			return 0;
		}
		case K_U64: {
			unsigned long long v = strtoull(value, &end, 10);

			if (errno != 0 || end == value || *end != '\0' ||
			    value[0] == '-') {
				break;
			}
			*(uint64_t *)(void *)p = v;
			return 0;
		}
		case K_BOOL:
			if (strcmp(value, "true") == 0) {
				*(bool *)(void *)p = true;
				return 0;
			}
			if (strcmp(value, "false") == 0) {
				*(bool *)(void *)p = false;
				return 0;
			}
			break;
		case K_SEC: {
			double v = strtod(value, &end);

			if (errno != 0 || end == value || *end != '\0' ||
			    !(v > 0 && v < 1e7)) {
				break;
			}
			*(double *)(void *)p = v;
			return 0;
		}
		}
		snprintf(err, errlen, "%s: bad value '%s'", key, value);
		return -1;
	}
	snprintf(err, errlen, "unknown key '%s'", key);
	return -1;
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
imd_config_load(imd_config *cfg, const char *path, char *err, size_t errlen)
{
	char line[2048];
	int lineno = 0;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *eq, *k, *v, *s;
		char sub[256];

		lineno++;
		if (strchr(line, '\n') == NULL && !feof(f)) {
			snprintf(err, errlen, "%s:%d: line too long", path,
			         lineno);
			fclose(f);
			return -1;
		}
		s = trim(line);
		if (*s == '\0' || *s == '#') {
			continue;
		}
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%d: expected key = value",
			         path, lineno);
			fclose(f);
			return -1;
		}
		*eq = '\0';
		k = trim(s);
		v = trim(eq + 1);
		if (imd_config_set(cfg, k, v, sub, sizeof(sub)) != 0) {
			snprintf(err, errlen, "%s:%d: %s", path, lineno, sub);
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

void
imd_config_usage(void)
{
	size_t i;

	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		fprintf(stderr, "  --%-16s %s\n", keys[i].name, keys[i].help);
	}
}
