/*
 * imd configuration: `key = value` lines in a file, each key also a flag
 * (--key value or --key=value, '-' and '_' alike) that overrides the file.
 */
#ifndef IMD_CONFIG_H
#define IMD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chatter.h"
#include "connector.h"

#define IMD_PATH_MAX 1024

typedef struct imd_config {
	char listen[64];
	uint32_t port;
	char db[IMD_PATH_MAX];
	char secret[1025];
	char secret_file[IMD_PATH_MAX];
	char node[IM_OWNER_MAX + 1];
	char log_level[16];
	char sync[16];                /* full | normal */
	bool exclusive; /* sqlite locking_mode=EXCLUSIVE: sole user */
	uint32_t wal_autocheckpoint; /* pages; 0 = sqlite's 1000 */
	char port_file[IMD_PATH_MAX]; /* write the bound port here */
	uint32_t slots;
	connector_opts cn;
	chatter_opts ch;
} imd_config;

void imd_config_defaults(imd_config *cfg);

/* Apply one key/value; returns 0, or -1 with a message in err. */
int imd_config_set(imd_config *cfg, const char *key, const char *value,
                   char *err, size_t errlen);

/* Read a config file; returns 0, or -1 with a message in err. */
int imd_config_load(imd_config *cfg, const char *path, char *err,
                    size_t errlen);

/* Print the keys with their meaning. */
void imd_config_usage(void);

#endif
