/**
 * @file im.h
 * Common definitions of libim: error codes, id types, the allocator hook.
 *
 * Every fallible libim call returns an int: IM_OK (0) on success or one of
 * the negative im_err codes below. Counts and results travel through
 * out-parameters. A call that fails leaves its object unchanged unless its
 * documentation says otherwise.
 *
 * Thread-safety: libim objects have no internal locking. One thread may use
 * an object at a time; distinct objects may be used from distinct threads.
 */
#ifndef IM_IM_H
#define IM_IM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(IM_BUILDING) && defined(__GNUC__)
#define IM_API __attribute__((visibility("default")))
#else
#define IM_API
#endif

/** libim's version, as numbers and as a string. */
#define IM_VERSION_MAJOR 0
#define IM_VERSION_MINOR 1
#define IM_VERSION_PATCH 0
#define IM_VERSION_STRING "0.1.0"

/** Error codes. 0 is success, every error is negative. */
typedef enum im_err {
	IM_OK = 0,
	IM_ERR = -1,        /**< unexpected failure; see the handle's errmsg */
	IM_ENOMEM = -2,     /**< allocation failed; nothing changed */
	IM_EINVAL = -3,     /**< bad argument; checked before any side effect */
	IM_ENOTFOUND = -4,  /**< no such item */
	IM_EFULL = -5,      /**< a bound was hit; nothing changed */
	IM_ESTALE = -6,     /**< the writer's slot epoch is fenced off */
	IM_ECONFLICT = -7,  /**< compare-and-set lost */
	IM_EUNAVAIL = -8,   /**< outcome unknown; retry with the same dedup key */
	IM_ESCHEMA = -9,    /**< store schema is newer than this build */
	IM_ENOTSUP = -10,   /**< operation not provided by this backend/version */
	IM_EPROTO = -11,    /**< malformed input from the network */
	IM_ETOOBIG = -12,   /**< a size limit was exceeded */
	IM_EAGAIN = -13,    /**< not ready yet (e.g. waiting on a refill) */
	IM_EPERM = -14,     /**< not allowed (not a member, bad token) */
	IM_ENOSPC = -15,    /**< the store's disk is full; nothing was written */
} im_err;

/**
 * Static, human readable name of an error code ("IM_ESTALE: ...").
 * Never returns NULL; unknown codes get a generic text. Thread-safe.
 */
IM_API const char *im_strerror(int err);

/** A user id. 0 is never a valid user. */
typedef uint64_t im_uid;
/** A conversation (group) id. 0 is never a valid group. */
typedef uint64_t im_gid;
/** A sequence number inside one group or one user queue. 0 means "none". */
typedef uint64_t im_seq;
/** A slot ownership epoch; 0 means "never owned". */
typedef uint64_t im_epoch;

#define IM_SEQ_MAX UINT64_MAX

/** What a slot map shards: users (Connectors) or groups (Chatters). */
typedef enum im_kind {
	IM_KIND_USER = 0,
	IM_KIND_GROUP = 1,
} im_kind;
#define IM_KIND_COUNT 2

/**
 * Allocator hook, one per object, set through the object's opts.
 * realloc(ud, NULL, n) allocates, realloc(ud, p, 0) frees and returns NULL,
 * otherwise it resizes. Returning NULL for n > 0 means out of memory.
 * A zeroed im_allocator (realloc == NULL) means the C library's allocator.
 */
typedef struct im_allocator {
	void *(*realloc)(void *ud, void *p, size_t n);
	void *ud;
} im_allocator;

#ifdef __cplusplus
}
#endif

#endif
