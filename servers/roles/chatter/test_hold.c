/*
 * A test hook, compiled only in test builds (meson option test_hooks, which
 * defines IM_TEST_HOOKS): it holds one send batch's commit in flight, so a
 * test can pause or cut off the Chatter at that moment and prove that the
 * write, released after another Chatter took the slot, is refused by the
 * store (IM_ESTALE), never acked and never stored. Without the option this
 * file is not built and commit.c's call to it does not exist.
 *
 * Two environment variables, read once when the Chatter is created:
 *   IM_TEST_HOLD_ARM=PATH      when PATH exists and names a group id (one
 *                              line, "GID\n"), the next commit of a batch
 *                              with a message to that group is held; the
 *                              hook removes PATH as it holds (one hold per
 *                              arming)
 *   IM_TEST_HOLD_RELEASE=PATH  the held commit goes on once PATH exists
 *                              (the hook removes it), or after HOLD_MAX_MS
 *                              whatever happens
 * The arm is a file rather than a group id in the environment because the
 * group a test wants held is made by the running cluster, after the
 * Chatter started. The hook says "test hook: holding commit" in the log
 * (warn level) with the group, the seq the held message took and the
 * slot's fence, so the test knows when to act and what to look for.
 *
 * It runs where the commit runs, in place of chatter__run_commit: on the
 * commit thread, or on the loop without one (the loop then stops with
 * it). It reads only the batch and its own settings, fixed at create.
 * After the held commit it logs its outcome ("test hook: the held commit
 * of group G: IM_ESTALE"), so a test checks exactly that commit.
 */
#include "chatter_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A held commit goes on by itself after this long: a test that died
 * before releasing it must not leave a Chatter stuck. */
#define HOLD_MAX_MS 30000u
#define HOLD_POLL_MS 10u

static bool
copy_env(char *dst, size_t cap, const char *name)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0') {
		return false;
	}
	if (strlen(v) >= cap) {
		LOG_W("test hook: %s is longer than %zu bytes: ignored", name,
		      cap - 1);
		return false;
	}
	memcpy(dst, v, strlen(v) + 1);
	return true;
}

void
chatter__test_hold_init(struct test_hold *h)
{
	memset(h, 0, sizeof(*h));
	h->on = copy_env(h->arm, sizeof(h->arm), "IM_TEST_HOLD_ARM") &&
	        copy_env(h->release, sizeof(h->release),
	                 "IM_TEST_HOLD_RELEASE");
	if (h->on) {
		LOG_W("test hook: a commit to the group named in %s is held "
		      "until %s appears",
		      h->arm, h->release);
	}
}

/*
 * The group the arm file names. False when there is none yet: no file, or
 * one still being written (no newline yet). A file that names no group is
 * removed with a warning, so that a bad arm is said once, not per commit.
 */
static bool
armed_group(const struct test_hold *h, im_gid *gid)
{
	char buf[32];
	char *end;
	ssize_t n;
	int fd;

	fd = open(h->arm, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return false;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0 || memchr(buf, '\n', (size_t)n) == NULL) {
		return false;
	}
	buf[n] = '\0';
	errno = 0;
	*gid = strtoull(buf, &end, 10);
	if (errno != 0 || end == buf || *end != '\n' || *gid == 0) {
		LOG_W("test hook: %s does not name a group id: removed",
		      h->arm);
		(void)unlink(h->arm);
		return false;
	}
	return true;
}

/* The epoch the batch is fenced with for slot (0: already not ours). */
static im_epoch
fence_epoch_of(const struct batch *b, uint32_t slot)
{
	uint32_t k;

	for (k = 0; k < b->nfences; k++) {
		if (b->fences[k].slot == slot) {
			return b->fences[k].epoch;
		}
	}
	return 0;
}

/* Hold b if it is armed for: returns the held group, else 0. */
static im_gid
hold(const struct test_hold *h, const char *node, const struct batch *b)
{
	const struct timespec poll = {0, HOLD_POLL_MS * 1000000L};
	const im_msg *m = NULL;
	const struct group *g = NULL;
	uint64_t until;
	im_gid gid;
	uint32_t i;

	if (!h->on || b->nmsgs == 0 || !armed_group(h, &gid)) {
		return 0;
	}
	for (i = 0; i < b->nmsgs && m == NULL; i++) {
		if (b->msgs[i].conv == gid) {
			m = &b->msgs[i];
			g = b->msg_group[i];
		}
	}
	/* Claimed by removing it: one hold per arming. */
	if (m == NULL || unlink(h->arm) != 0) {
		return 0;
	}
	LOG_W("test hook: holding commit of %u messages on %s: group %llu "
	      "seq %llu, slot %u epoch %llu, until %s appears (at most %u ms)",
	      b->nmsgs, node, (unsigned long long)gid,
	      (unsigned long long)m->seq, g->slot,
	      (unsigned long long)fence_epoch_of(b, g->slot), h->release,
	      HOLD_MAX_MS);
	until = role_now_ms() + HOLD_MAX_MS;
	while (access(h->release, F_OK) != 0) {
		if (role_now_ms() >= until) {
			LOG_W("test hook: no release within %u ms: the held "
			      "commit of group %llu goes on",
			      HOLD_MAX_MS, (unsigned long long)gid);
			return gid;
		}
		nanosleep(&poll, NULL);
	}
	(void)unlink(h->release);
	LOG_W("test hook: released the held commit of group %llu",
	      (unsigned long long)gid);
	return gid;
}

void
chatter__test_run_commit(const struct test_hold *h, const char *node,
                         struct batch *b, im_store *st, bool with_prefetch)
{
	im_gid gid = hold(h, node, b);

	chatter__run_commit(b, st, with_prefetch);
	/* The outcome of exactly the held commit, for the test to check
	 * (other commits' failures are logged alike by apply). */
	if (gid != 0) {
		LOG_W("test hook: the held commit of group %llu: %s",
		      (unsigned long long)gid,
		      b->rc == IM_OK ? "stored" : im_strerror(b->rc));
	}
}
