#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tuning.h"

#define F(field) offsetof(imd_config, field)
#define S(field) sizeof(((imd_config *)0)->field)

/* imd's own keys; the Connector/Chatter tuning keys are the shared table
 * of servers/roles/tuning.c (imnode takes the same). */
static const role_key keys[] = {
        {"listen", ROLE_KEY_STR, F(listen), S(listen),
         "IPv4 address to listen on (127.0.0.1)"},
        {"port", ROLE_KEY_U32, F(port), 0, "TCP port, 0 = any (7600)"},
        {"db", ROLE_KEY_STR, F(db), S(db), "sqlite database file (imd.db)"},
        {"secret", ROLE_KEY_STR, F(secret), S(secret),
         "token secret, >= 16 bytes (prefer secret_file)"},
        {"secret_file", ROLE_KEY_STR, F(secret_file), S(secret_file),
         "file holding the token secret (first line)"},
        {"node", ROLE_KEY_STR, F(node), S(node),
         "this node's name in the slot map"},
        {"log_level", ROLE_KEY_STR, F(log_level), S(log_level),
         "error | warn | info | debug"},
        {"sync", ROLE_KEY_STR, F(sync), S(sync),
         "sqlite durability: full | normal"},
        {"exclusive", ROLE_KEY_BOOL, F(exclusive), 0,
         "true: imd locks the db file while it runs, no other process "
         "(imctl, sqlite3) can open it; faster reads (true)"},
        {"wal_autocheckpoint", ROLE_KEY_U32, F(wal_autocheckpoint), 0,
         "WAL pages between checkpoints, 0 = sqlite's 1000 (10000)"},
        {"port_file", ROLE_KEY_STR, F(port_file), S(port_file),
         "write the bound port to this file once listening"},
        {"slots", ROLE_KEY_U32, F(slots), 0, "slots per kind (1024)"},
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

int
imd_config_set(imd_config *cfg, const char *key, const char *value, char *err,
               size_t errlen)
{
	int rc = role_keys_set(keys, sizeof(keys) / sizeof(keys[0]), cfg, key,
	                       value, err, errlen);

	if (rc == 1) {
		rc = role_tuning_set(&cfg->cn, &cfg->ch, key, value, err,
		                     errlen);
	}
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
	role_keys_usage(keys, sizeof(keys) / sizeof(keys[0]), stderr);
	role_tuning_usage(stderr);
}
