#include "tuning.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool
role_key_eq(const char *a, const char *b)
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
role_keys_set(const role_key *keys, size_t n, void *base, const char *key,
              const char *value, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const role_key *k = &keys[i];
		char *p = (char *)base + k->off;
		char *end = NULL;

		if (!role_key_eq(k->name, key)) {
			continue;
		}
		errno = 0;
		switch (k->kind) {
		case ROLE_KEY_STR:
			if (strlen(value) >= k->size) {
				snprintf(err, errlen, "%s: value too long",
				         key);
				return -1;
			}
			memcpy(p, value, strlen(value) + 1);
			return 0;
		case ROLE_KEY_U32: {
			unsigned long long v = strtoull(value, &end, 10);

			if (errno != 0 || end == value || *end != '\0' ||
			    value[0] == '-' || v > UINT32_MAX) {
				break;
			}
			*(uint32_t *)(void *)p = (uint32_t)v;
			return 0;
		}
		case ROLE_KEY_U64: {
			unsigned long long v = strtoull(value, &end, 10);

			if (errno != 0 || end == value || *end != '\0' ||
			    value[0] == '-') {
				break;
			}
			*(uint64_t *)(void *)p = v;
			return 0;
		}
		case ROLE_KEY_BOOL:
			if (strcmp(value, "true") == 0 ||
			    strcmp(value, "false") == 0) {
				*(bool *)(void *)p = value[0] == 't';
				return 0;
			}
			break;
		case ROLE_KEY_SEC: {
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
	return 1;
}

void
role_key_format(const role_key *k, const void *base, char *out, size_t len)
{
	const char *p = (const char *)base + k->off;

	switch (k->kind) {
	case ROLE_KEY_STR:
		snprintf(out, len, "%s", p);
		break;
	case ROLE_KEY_U32:
		snprintf(out, len, "%u", *(const uint32_t *)(const void *)p);
		break;
	case ROLE_KEY_U64:
		snprintf(out, len, "%llu",
		         (unsigned long long)*(const uint64_t *)(const void *)p);
		break;
	case ROLE_KEY_SEC:
		snprintf(out, len, "%g", *(const double *)(const void *)p);
		break;
	case ROLE_KEY_BOOL:
		snprintf(out, len, "%s",
		         *(const bool *)(const void *)p ? "true" : "false");
		break;
	}
}

void
role_keys_usage(const role_key *keys, size_t n, const void *defaults,
                FILE *f)
{
	char def[256];
	size_t i;

	for (i = 0; i < n; i++) {
		role_key_format(&keys[i], defaults, def, sizeof(def));
		fprintf(f, "  --%-20s %s (default %s)\n", keys[i].name,
		        keys[i].help, def[0] != '\0' ? def : "none");
	}
}

#define CN(field) offsetof(connector_opts, field)
#define CH(field) offsetof(chatter_opts, field)

static const role_key cn_keys[] = {
        {"max_conns", ROLE_KEY_U32, CN(max_conns), 0, "connection limit"},
        {"max_sessions", ROLE_KEY_U32, CN(max_sessions), 0,
         "sessions per user"},
        {"frame_max", ROLE_KEY_U32, CN(frame_max), 0,
         "client frame payload limit"},
        {"wbuf_max", ROLE_KEY_U32, CN(wbuf_max), 0,
         "bytes queued for one slow reader before it is closed"},
        {"pushq_items", ROLE_KEY_U32, CN(pushq_items), 0,
         "unacked pushes/session"},
        {"pushq_bytes", ROLE_KEY_U32, CN(pushq_bytes), 0,
         "unacked bytes/session"},
        {"rto_ms", ROLE_KEY_U32, CN(rto_ms), 0, "retransmit timeout, ms"},
        {"max_convs", ROLE_KEY_U32, CN(max_convs), 0, "conversations per user"},
        {"replay_limit", ROLE_KEY_U32, CN(replay_limit), 0,
         "messages per cursor replayed from the store on resume"},
        {"login_timeout", ROLE_KEY_SEC, CN(login_timeout), 0,
         "seconds to log in"},
        {"idle_timeout", ROLE_KEY_SEC, CN(idle_timeout), 0,
         "seconds without a byte from a logged-in client before close"},
        {"frame_timeout", ROLE_KEY_SEC, CN(frame_timeout), 0,
         "seconds a begun frame has to arrive whole before close"},
        {"grace", ROLE_KEY_SEC, CN(grace), 0,
         "seconds a dropped session stays resumable"},
        {"uq_step", ROLE_KEY_U32, CN(uq_step), 0,
         "seqs per user-queue segment"},
};

static const role_key ch_keys[] = {
        {"max_groups", ROLE_KEY_U32, CH(max_groups), 0, "hot groups in memory"},
        {"max_members", ROLE_KEY_U32, CH(max_members), 0, "members per group"},
        {"max_batch", ROLE_KEY_U32, CH(max_batch), 0,
         "sends per commit"},
        {"seq_step", ROLE_KEY_U32, CH(seq_step), 0,
         "seqs per group segment"},
        {"dedup_capacity", ROLE_KEY_U32, CH(dedup_capacity), 0,
         "dedup cache entries"},
        {"dedup_ttl_ms", ROLE_KEY_U64, CH(dedup_ttl_ms), 0, "dedup cache TTL, ms"},
        {"group_idle_ms", ROLE_KEY_U64, CH(group_idle_ms), 0,
         "drop hot group state unused this long (0: never)"},
        {"commit_thread", ROLE_KEY_BOOL, CH(commit_thread), 0,
         "group commit on a thread of its own"},
};

#define NKEYS(a) (sizeof(a) / sizeof((a)[0]))

int
role_tuning_set(connector_opts *cn, chatter_opts *ch, const char *key,
                const char *value, char *err, size_t errlen)
{
	connector_opts cn_scratch = CONNECTOR_OPTS_INIT;
	chatter_opts ch_scratch = CHATTER_OPTS_INIT;
	int rc;

	/* A key of the other role is still checked (a typo or a bad value
	 * is refused the same on every node), then dropped. */
	rc = role_keys_set(cn_keys, NKEYS(cn_keys),
	                   cn != NULL ? (void *)cn : (void *)&cn_scratch, key,
	                   value, err, errlen);
	if (rc != 1) {
		return rc;
	}
	return role_keys_set(ch_keys, NKEYS(ch_keys),
	                     ch != NULL ? (void *)ch : (void *)&ch_scratch, key,
	                     value, err, errlen);
}

void
role_tuning_usage(FILE *f)
{
	static const connector_opts cn = CONNECTOR_OPTS_INIT;
	static const chatter_opts ch = CHATTER_OPTS_INIT;

	role_keys_usage(cn_keys, NKEYS(cn_keys), &cn, f);
	role_keys_usage(ch_keys, NKEYS(ch_keys), &ch, f);
}
