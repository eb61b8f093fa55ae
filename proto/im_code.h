/*
 * The wire error codes (im.Code in im.proto) as C knows them: one table
 * giving each code its short text and the im_err it stands for, used by
 * the servers (role.h, the Chatter, the Connector, the cluster) and the
 * client library alike. The numbers themselves come only from im.proto
 * (the generated im.pb.h); what the proto cannot say, the text and the
 * im_err, is said here once.
 *
 * Next to im.proto, not under servers/, so that libim/client can use it
 * too: it needs nothing but im.pb.h and im/im.h. Header-only (static
 * inline) so that neither side links anything for it.
 */
#ifndef IM_PROTO_CODE_H
#define IM_PROTO_CODE_H

#include <stdint.h>

#include "im.pb.h"
#include "im/im.h"

/*
 * X(name, err, text) for every im.Code, name without its im_Code_ prefix:
 * err is the im_err a client returns for the code (im_code_to_err); text
 * is what a server sends in Error.text when it has nothing more specific
 * to say (im_code_text).
 */
#define IM_CODES(X)                                                            \
	X(OK, IM_OK, "done")                                                   \
	X(ERR_INTERNAL, IM_ERR, "internal error")                              \
	X(ERR_BAD_REQUEST, IM_EINVAL, "malformed or missing fields")           \
	X(ERR_AUTH, IM_EPERM, "bad, expired or missing token")                 \
	X(ERR_NOT_LOGGED_IN, IM_EPROTO, "request before login")                \
	X(ERR_NOT_MEMBER, IM_EPERM, "not a member of the group")               \
	X(ERR_NOT_FOUND, IM_ENOTFOUND, "no such group")                        \
	X(ERR_TOO_BIG, IM_ETOOBIG, "frame or field over its limit")            \
	X(ERR_UNAVAILABLE, IM_EUNAVAIL,                                        \
	  "store unavailable; retry with the same dedup id")                   \
	X(ERR_FULL, IM_EFULL, "server bound reached")                          \
	X(ERR_REDIRECT, IM_EAGAIN, "user is served by another node")           \
	X(ERR_SESSION, IM_ENOTFOUND, "unknown or expired session")             \
	X(ERR_TIMEOUT, IM_EAGAIN, "idle or login timeout")                     \
	X(ERR_STORE_FULL, IM_ENOSPC, "store full")

/* Every im.Code is in the table once (a name missing from im.proto or
 * listed twice does not compile: each becomes a case label). */
#define IM_CODE_COUNT_(name, err, text) +1
_Static_assert(0 IM_CODES(IM_CODE_COUNT_) == _im_Code_ARRAYSIZE,
               "IM_CODES must list every im.Code of im.proto");
#undef IM_CODE_COUNT_

/* The code's text (see IM_CODES); "internal error" for a code this build
 * does not know. Static, never NULL. */
static inline const char *
im_code_text(uint32_t code)
{
	switch (code) {
#define IM_CODE_CASE_(name, err, text)                                         \
	case im_Code_##name:                                                   \
		return text;
		IM_CODES(IM_CODE_CASE_)
#undef IM_CODE_CASE_
	default:
		return "internal error";
	}
}

/* The code's name as in im.proto ("ERR_FULL"), NULL for an unknown code:
 * for logs and reports. */
static inline const char *
im_code_name(uint32_t code)
{
	switch (code) {
#define IM_CODE_CASE_(name, err, text)                                         \
	case im_Code_##name:                                                   \
		return #name;
		IM_CODES(IM_CODE_CASE_)
#undef IM_CODE_CASE_
	default:
		return NULL;
	}
}

/* code -> im_err: what a client returns for an Error it got (see
 * IM_CODES); IM_ERR for a code this build does not know. */
static inline int
im_code_to_err(uint32_t code)
{
	switch (code) {
#define IM_CODE_CASE_(name, err, text)                                         \
	case im_Code_##name:                                                   \
		return err;
		IM_CODES(IM_CODE_CASE_)
#undef IM_CODE_CASE_
	default:
		return IM_ERR;
	}
}

/*
 * im_err -> code: what a server answers for a request whose call into
 * libim or its store failed with err, the request itself having been
 * checked already. A bound hit is ERR_FULL and a full disk ERR_STORE_FULL
 * (both certain: nothing was stored), which the client can act on; any
 * other failure leaves the client unable to know what happened, so it
 * is ERR_UNAVAILABLE (retry with the same dedup id), never an error it
 * would give up on. Not the inverse of im_code_to_err: codes about the
 * request (bad, not allowed, not found) come from the server's checks,
 * never from an im_err.
 */
static inline uint32_t
im_code_of_err(int err)
{
	switch (err) {
	case IM_OK:
		return im_Code_OK;
	case IM_EFULL:
		return im_Code_ERR_FULL;
	case IM_ENOSPC:
		return im_Code_ERR_STORE_FULL;
	default:
		return im_Code_ERR_UNAVAILABLE;
	}
}

#endif
