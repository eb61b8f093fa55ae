/*
 * The settings of the server binaries in one table: imd (every role in one
 * process), `imd token` and imnode (one cluster role) each take the rows
 * marked for them. Settings come from `key = value` lines (--config FILE,
 * '#' comments) and from flags (--key value or --key=value, '-' and '_'
 * alike) that override the file; the help text is generated from the same
 * table with every setting's default.
 *
 * Why one module: the binaries share most of what surrounds their roles
 * (secret, port file, log level, slots, the Connector/Chatter tuning keys
 * of servers/roles/tuning.h), and one parser keeps the names, limits,
 * defaults and messages of those settings the same everywhere.
 */
#ifndef IM_SRV_CONFIG_H
#define IM_SRV_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "chatter.h"
#include "connector.h"
#include "im/store.h"

/* Who reads the settings: a row of the table is taken by the binaries in
 * its mask, refused as unknown by the others. */
#define SRV_IMD 0x1u   /* imd, the all-in-one server */
#define SRV_TOKEN 0x2u /* imd token: mints a client token */
#define SRV_NODE 0x4u  /* imnode, one cluster role */

#define SRV_PATH_MAX 1024
#define SRV_SECRET_MAX 1024

typedef struct srv_config {
	unsigned who; /* SRV_IMD, SRV_TOKEN or SRV_NODE */
	/* imd: IPv4 address (port apart); imnode: HOST:PORT */
	char listen[IM_NODE_ADDR_MAX + 1];
	char name[IM_OWNER_MAX + 1];  /* imd: node; imnode: name */
	char store[SRV_PATH_MAX];     /* imd: db (sqlite); imnode: store */
	char secret[SRV_SECRET_MAX + 1];
	char secret_file[SRV_PATH_MAX];
	char port_file[SRV_PATH_MAX]; /* write the bound port here */
	char log_level[16];
	uint32_t slots;
	/* imd */
	uint32_t port;
	char sync[16];               /* full | normal */
	bool exclusive;              /* sqlite locking_mode=EXCLUSIVE */
	uint32_t wal_autocheckpoint; /* pages; 0 = sqlite's 1000 */
	uint32_t stats_interval;     /* s between memory lines; 0 = off */
	uint32_t trim_interval;      /* s between malloc_trim; 0 = off */
	uint32_t slot_watch_ms;      /* slot map reload period, 0 = off */
	/* imd token */
	uint64_t ttl; /* seconds */
	/* imnode */
	char role[16];
	uint32_t expect;
	uint32_t heartbeat_ms;  /* membership heartbeat period */
	uint32_t refresh_ms;    /* membership view reload period */
	uint32_t balance_ms;    /* slot balance period */
	uint32_t dead_after_ms; /* silence after which a node is dead */
	uint32_t stop_ms;       /* SIGTERM: graceful stop bound (node_leave.h) */
	/* router: what an RPC connection must do to keep its place */
	uint32_t router_admit_ms;
	uint32_t router_frame_ms;
	uint32_t router_per_peer_max;
	/* Connector: TLS on the client port (connector_tls_enable) */
	char tls_cert[SRV_PATH_MAX];
	char tls_key[SRV_PATH_MAX];
	char tls_client_ca[SRV_PATH_MAX];
	char tls_client_auth[16]; /* none | optional | require */
	/* Connector and Chatter tuning (servers/roles/tuning.h) */
	connector_opts cn;
	chatter_opts ch;
} srv_config;

/* The defaults of who's settings (the values the help text shows). */
void srv_config_init(srv_config *cfg, unsigned who);

/*
 * Set one setting. Returns 0, or -1 with a message in err (an unknown
 * key, a bad or out-of-range value; the field is then unchanged).
 */
int srv_config_set(srv_config *cfg, const char *key, const char *value,
                   char *err, size_t errlen);

/* Read a `key = value` file. Returns 0, or -1 with "path:line: why". */
int srv_config_load(srv_config *cfg, const char *path, char *err,
                    size_t errlen);

/*
 * argv[first..argc): every --config FILE is read first, then the other
 * flags override it; then the settings required for cfg->who are checked.
 * Returns 0, 1 when --help (-h) was asked (nothing else done), or -1 with
 * a message in err.
 */
int srv_config_parse(srv_config *cfg, int argc, char **argv, int first,
                     char *err, size_t errlen);

/*
 * The token secret: the first line of secret_file when one is set (it
 * replaces secret), then at least IM_TOKEN_SECRET_MIN bytes are required.
 * Returns 0, or -1 with a message in err.
 */
int srv_config_secret(srv_config *cfg, char *err, size_t errlen);

/*
 * The Connector's TLS settings as connector_tls_opts (pointing into cfg).
 * Returns 1 when TLS is on (tls_cert set), 0 when off, -1 with a message
 * in err for settings that do not go together (a certificate without a
 * key, a client_auth other than none | optional | require, optional or
 * require without tls_client_ca, client settings without tls_cert).
 */
int srv_config_tls(const srv_config *cfg, connector_tls_opts *out, char *err,
                   size_t errlen);

/* Set the process's log level from cfg->log_level. Returns 0, or -1 with
 * a message in err. */
int srv_config_log_level(const srv_config *cfg, char *err, size_t errlen);

/* Print who's settings, with their meaning and defaults, to f. */
void srv_config_usage(unsigned who, FILE *f);

/* Write "PORT\n" to path through a rename, so that a reader (a test, a
 * script waiting for the server) never sees half a file. 0 or -1 (errno). */
int srv_port_file_write(const char *path, uint16_t port);

#endif
