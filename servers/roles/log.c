#include "role.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* One process, one log level: set once at start, read everywhere. */
static int log_level = ROLE_LOG_INFO;

void
role_log_set_level(int level)
{
	log_level = level;
}

int
role_log_level_parse(const char *s)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	int i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(s, names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

bool
role_log_enabled(int level)
{
	return level <= log_level;
}

void
role_log(int level, const char *fmt, ...)
{
	static const char tags[] = "EWID";
	char line[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n;

	if (level > log_level) {
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof(line),
	             "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %c ",
	             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	             tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	             tags[level < 0   ? 0
	                  : level > 3 ? 3
	                              : level]);
	if (n < 0) {
		return;
	}
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One fputs per line so concurrent processes do not interleave. */
	fprintf(stderr, "%s\n", line);
}

uint64_t
role_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
