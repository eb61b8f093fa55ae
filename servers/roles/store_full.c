#include "store_full.h"

#include "role.h"

#include <string.h>

bool
store_full_on(const store_full *f)
{
	return f->backoff_ms != 0;
}

bool
store_full_blocked(store_full *f, uint64_t now_ms, uint32_t n)
{
	if (f->backoff_ms == 0 || now_ms >= f->until_ms) {
		return false;
	}
	f->refused += n;
	f->total += n;
	return true;
}

void
store_full_failed(store_full *f, uint64_t now_ms, uint32_t n,
                  const char *what, const char *detail)
{
	bool first = f->backoff_ms == 0;

	if (first) {
		f->since_ms = now_ms;
		f->backoff_ms = STORE_FULL_BACKOFF_MIN_MS;
	}
	f->until_ms = now_ms + f->backoff_ms;
	f->backoff_ms = f->backoff_ms * 2 > STORE_FULL_BACKOFF_MAX_MS
	                        ? STORE_FULL_BACKOFF_MAX_MS
	                        : f->backoff_ms * 2;
	f->failed++;
	f->total += n;
	if (first) {
		LOG_W("%s: store full (%s): writes refused with ERR_STORE_FULL,"
		      " retried every %u..%u ms until space returns",
		      what, detail, STORE_FULL_BACKOFF_MIN_MS,
		      STORE_FULL_BACKOFF_MAX_MS);
	} else if (now_ms - f->last_log_ms >= STORE_FULL_LOG_MS) {
		LOG_W("%s: store still full after %llu ms (%s): %llu writes "
		      "failed, %llu requests refused unwritten since the last "
		      "line",
		      what, (unsigned long long)(now_ms - f->since_ms), detail,
		      (unsigned long long)f->failed,
		      (unsigned long long)f->refused);
	} else {
		return;
	}
	f->lines++;
	f->last_log_ms = now_ms;
	f->failed = 0;
	f->refused = 0;
}

void
store_full_ok(store_full *f, uint64_t now_ms, const char *what)
{
	uint64_t lines;

	if (f->backoff_ms == 0) {
		return;
	}
	LOG_I("%s: store has space again after %llu ms full; %llu requests "
	      "were refused",
	      what, (unsigned long long)(now_ms - f->since_ms),
	      (unsigned long long)f->total);
	lines = f->lines + 1;
	memset(f, 0, sizeof(*f));
	f->lines = lines;
}
