/*
 * Configuration keys shared by every server binary: one table parser
 * (`key = value` lines and --key flags, '-' and '_' alike) and the
 * Connector/Chatter tuning keys, so imd and imnode accept the same names
 * with the same meaning and limits.
 */
#ifndef IM_ROLE_TUNING_H
#define IM_ROLE_TUNING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "chatter.h"
#include "connector.h"

typedef enum role_key_kind {
	ROLE_KEY_STR, /* char[size] */
	ROLE_KEY_U32,
	ROLE_KEY_U64,
	ROLE_KEY_SEC, /* double seconds, > 0 and < 1e7 */
	ROLE_KEY_BOOL /* bool: true | false */
} role_key_kind;

typedef struct role_key {
	const char *name;
	role_key_kind kind;
	size_t off;  /* offset of the field in the struct at base */
	size_t size; /* ROLE_KEY_STR: buffer size */
	const char *help;
} role_key;

/* Key names equal with '-' and '_' alike. */
bool role_key_eq(const char *a, const char *b);

/*
 * Set key in the struct at base from keys[0..n). Returns 0 when set, 1
 * when the key is not in the table (nothing written), -1 on a bad value
 * (message in err, the field unchanged).
 */
int role_keys_set(const role_key *keys, size_t n, void *base, const char *key,
                  const char *value, char *err, size_t errlen);

/* The value of key's field in the struct at base as text ("true",
 * "8192", "1.5"; a string as is). */
void role_key_format(const role_key *k, const void *base, char *out,
                     size_t len);

/* Print "  --name  help (default VALUE)" for each key to f, VALUE read
 * from the struct at defaults (an empty string: "none"). */
void role_keys_usage(const role_key *keys, size_t n, const void *defaults,
                     FILE *f);

/*
 * The Connector and Chatter tuning keys (max_conns, pushq_items, rto_ms,
 * login_timeout, seq_step, ...). Either opts pointer may be NULL: that
 * role's keys are then accepted and ignored (a Chatter node given a
 * Connector key). Returns 0, 1 (unknown key), -1 (bad value) as
 * role_keys_set.
 */
int role_tuning_set(connector_opts *cn, chatter_opts *ch, const char *key,
                    const char *value, char *err, size_t errlen);

/* Print the tuning keys with their meaning and defaults (the
 * CONNECTOR_OPTS_INIT and CHATTER_OPTS_INIT values). */
void role_tuning_usage(FILE *f);

#endif
