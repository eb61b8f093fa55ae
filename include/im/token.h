/**
 * @file token.h
 * Login tokens: `<uid>.<expiry>.<hex hmac-sha256(secret, "<uid>.<expiry>")>`
 * where uid and expiry (unix seconds) are decimal without leading zeros.
 * A token is bearer auth for one user until its expiry; the server keeps no
 * state about it. The HMAC comes from OpenSSL's libcrypto.
 *
 * The core reads no clock: now_s is passed in.
 *
 * A server checks tokens through an im_token_verifier: it keys the HMAC
 * once at create (OpenSSL's key setup was most of a one-shot check) and
 * is owned, and freed, by whoever checks logins. im_token_verify is the
 * same check in one call, for tools and tests.
 *
 * Thread-safety: im_token_mint and im_token_verify are pure and
 * thread-safe; a verifier is used by one thread at a time.
 */
#ifndef IM_TOKEN_H
#define IM_TOKEN_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Longest token: two 20-digit numbers, two dots, 64 hex digits. */
#define IM_TOKEN_MAX (20 + 1 + 20 + 1 + 64)
/** Bytes a buffer needs for a token and its NUL. */
#define IM_TOKEN_BUF (IM_TOKEN_MAX + 1)
/** Shortest secret accepted (bytes). */
#define IM_TOKEN_SECRET_MIN 16
/** Longest secret accepted (bytes). */
#define IM_TOKEN_SECRET_MAX 1024

/**
 * Write the token of uid valid until expiry_s (unix seconds) into buf,
 * NUL terminated.
 * @param len buffer size; IM_TOKEN_BUF is always enough
 * @retval IM_OK
 * @retval IM_EINVAL NULL buf or secret, uid 0, expiry 0, secret_len outside
 *         IM_TOKEN_SECRET_MIN..IM_TOKEN_SECRET_MAX
 * @retval IM_ETOOBIG buf too small (buf is left as an empty string if len>0)
 * @retval IM_ERR libcrypto failed
 */
IM_API int im_token_mint(char *buf, size_t len, const void *secret,
                         size_t secret_len, im_uid uid, uint64_t expiry_s);

/**
 * Check a NUL-terminated token against the secret at now_s. The MAC is
 * compared in constant time. Parsing is strict: decimal numbers without
 * sign, spaces or leading zeros, exactly 64 lower-case hex digits.
 * @param uid_out the token's user on IM_OK (may be NULL); untouched else
 * @retval IM_OK
 * @retval IM_EINVAL malformed token (or NULL/bad arguments)
 * @retval IM_EPERM  well formed but the MAC is wrong or it expired
 *         (expiry_s <= now_s)
 * @retval IM_ERR    libcrypto failed
 */
IM_API int im_token_verify(const char *token, const void *secret,
                           size_t secret_len, uint64_t now_s, im_uid *uid_out);

/** Checks tokens against one secret; see im_token_verifier_create. */
typedef struct im_token_verifier im_token_verifier;

#define IM_TOKEN_VERIFIER_OPTS_VERSION 1
typedef struct im_token_verifier_opts {
	uint32_t version;
	im_allocator alloc; /**< for the verifier itself (OpenSSL allocates
	                         the HMAC context through its own) */
} im_token_verifier_opts;
#define IM_TOKEN_VERIFIER_OPTS_INIT {IM_TOKEN_VERIFIER_OPTS_VERSION, {0, 0}}

/**
 * Create a verifier for secret: the HMAC is keyed here, once. The secret is
 * borrowed for the call; only the keyed HMAC context keeps it (wiped at
 * destroy). The caller owns *out
 * (im_token_verifier_destroy). On error *out is NULL.
 * @param opts NULL for IM_TOKEN_VERIFIER_OPTS_INIT
 * @retval IM_OK
 * @retval IM_EINVAL NULL out or secret, secret_len outside
 *         IM_TOKEN_SECRET_MIN..IM_TOKEN_SECRET_MAX, bad opts version
 * @retval IM_ENOMEM
 * @retval IM_ERR libcrypto failed
 */
IM_API int im_token_verifier_create(im_token_verifier **out,
                                    const void *secret, size_t secret_len,
                                    const im_token_verifier_opts *opts);

/** Free the verifier and wipe its key; NULL is a no-op. */
IM_API void im_token_verifier_destroy(im_token_verifier *v);

/**
 * im_token_verify against the verifier's secret: the same parsing, the
 * same answers.
 * @param uid_out the token's user on IM_OK (may be NULL); untouched else
 * @retval IM_OK
 * @retval IM_EINVAL malformed token, NULL v or token
 * @retval IM_EPERM  well formed but the MAC is wrong or it expired
 * @retval IM_ERR    libcrypto failed
 */
IM_API int im_token_verifier_verify(im_token_verifier *v, const char *token,
                                    uint64_t now_s, im_uid *uid_out);

#ifdef __cplusplus
}
#endif

#endif
