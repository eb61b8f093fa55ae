/*
 * HMAC login tokens. Parsing is deliberately strict (one spelling per
 * token) so two different strings never authenticate the same claim and a
 * hostile client cannot probe the parser with odd spellings.
 */
#include "im/token.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#define MAC_LEN 32
#define HEX_LEN (2 * MAC_LEN)

/*
 * The HMAC context of the last secret, per thread. OpenSSL 3's one-shot
 * HMAC() fetches the algorithm, builds a context and keys it on every
 * call: that was most of a token check, i.e. ~10 % of a login's CPU in
 * imd. With the keyed context kept, a check is init (same key) + update +
 * final. Anything unusual (another secret, an OpenSSL failure) takes the
 * one-shot path, so the result never depends on the cache.
 */
static _Thread_local struct {
	EVP_MAC_CTX *ctx;
	size_t len;
	uint8_t secret[IM_TOKEN_SECRET_MAX];
} tl_mac;

static EVP_MAC_CTX *
mac_ctx(const void *secret, size_t secret_len)
{
	OSSL_PARAM params[2];
	EVP_MAC *m;
	EVP_MAC_CTX *ctx;

	if (tl_mac.ctx != NULL && tl_mac.len == secret_len &&
	    memcmp(tl_mac.secret, secret, secret_len) == 0) {
		/* A NULL key keeps the one set before. */
		return EVP_MAC_init(tl_mac.ctx, NULL, 0, NULL) == 1
		               ? tl_mac.ctx
		               : NULL;
	}
	EVP_MAC_CTX_free(tl_mac.ctx);
	OPENSSL_cleanse(tl_mac.secret, sizeof(tl_mac.secret));
	tl_mac.ctx = NULL;
	if ((m = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL) {
		return NULL;
	}
	ctx = EVP_MAC_CTX_new(m);
	EVP_MAC_free(m); /* the context keeps its own reference */
	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx == NULL ||
	    EVP_MAC_init(ctx, secret, secret_len, params) != 1) {
		EVP_MAC_CTX_free(ctx);
		return NULL;
	}
	tl_mac.ctx = ctx;
	tl_mac.len = secret_len;
	memcpy(tl_mac.secret, secret, secret_len);
	return ctx;
}

static int
mac_of(uint8_t mac[MAC_LEN], const void *secret, size_t secret_len,
       const char *msg, size_t msg_len)
{
	EVP_MAC_CTX *ctx = mac_ctx(secret, secret_len);
	unsigned int mlen = 0;
	size_t olen = 0;

	if (ctx != NULL &&
	    EVP_MAC_update(ctx, (const unsigned char *)msg, msg_len) == 1 &&
	    EVP_MAC_final(ctx, mac, &olen, MAC_LEN) == 1 && olen == MAC_LEN) {
		return IM_OK;
	}
	if (HMAC(EVP_sha256(), secret, (int)secret_len,
	         (const unsigned char *)msg, msg_len, mac, &mlen) == NULL ||
	    mlen != MAC_LEN) {
		return IM_ERR;
	}
	return IM_OK;
}

static void
to_hex(char *out, const uint8_t *in, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0xf];
	}
}

static bool
secret_ok(const void *secret, size_t secret_len)
{
	return secret != NULL && secret_len >= IM_TOKEN_SECRET_MIN &&
	       secret_len <= IM_TOKEN_SECRET_MAX;
}

int
im_token_mint(char *buf, size_t len, const void *secret, size_t secret_len,
              im_uid uid, uint64_t expiry_s)
{
	char msg[IM_TOKEN_BUF];
	uint8_t mac[MAC_LEN];
	int n;

	if (buf == NULL || !secret_ok(secret, secret_len) || uid == 0 ||
	    expiry_s == 0) {
		return IM_EINVAL;
	}
	n = snprintf(msg, sizeof(msg), "%" PRIu64 ".%" PRIu64, uid, expiry_s);
	if (n < 0 || (size_t)n + 1 + HEX_LEN + 1 > len) {
		if (len > 0) {
			buf[0] = '\0';
		}
		return len > 0 && n >= 0 ? IM_ETOOBIG : IM_EINVAL;
	}
	if (mac_of(mac, secret, secret_len, msg, (size_t)n) != IM_OK) {
		buf[0] = '\0';
		return IM_ERR;
	}
	memcpy(buf, msg, (size_t)n);
	buf[n] = '.';
	to_hex(buf + n + 1, mac, MAC_LEN);
	buf[n + 1 + HEX_LEN] = '\0';
	OPENSSL_cleanse(mac, sizeof(mac));
	return IM_OK;
}

/* A decimal u64 without sign, blanks or leading zeros, ended by '.'. */
static const char *
parse_u64(const char *p, uint64_t *out)
{
	uint64_t v = 0;
	const char *start = p;

	if (*p == '0') {
		return NULL;
	}
	while (*p >= '0' && *p <= '9') {
		unsigned d = (unsigned)(*p - '0');

		if (v > (UINT64_MAX - d) / 10) {
			return NULL;
		}
		v = v * 10 + d;
		p++;
	}
	if (p == start || *p != '.') {
		return NULL;
	}
	*out = v;
	return p;
}

static bool
is_lower_hex(const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (!((p[i] >= '0' && p[i] <= '9') ||
		      (p[i] >= 'a' && p[i] <= 'f'))) {
			return false;
		}
	}
	return true;
}

int
im_token_verify(const char *token, const void *secret, size_t secret_len,
                uint64_t now_s, im_uid *uid_out)
{
	uint8_t mac[MAC_LEN];
	char want[HEX_LEN];
	const char *p;
	uint64_t uid, expiry;
	size_t claim_len, tlen;
	int ok;

	if (token == NULL || !secret_ok(secret, secret_len)) {
		return IM_EINVAL;
	}
	tlen = strnlen(token, IM_TOKEN_MAX + 1);
	if (tlen > IM_TOKEN_MAX) {
		return IM_EINVAL;
	}
	p = parse_u64(token, &uid);
	if (p == NULL) {
		return IM_EINVAL;
	}
	p = parse_u64(p + 1, &expiry);
	if (p == NULL) {
		return IM_EINVAL;
	}
	claim_len = (size_t)(p - token);
	p++;
	if (strlen(p) != HEX_LEN || !is_lower_hex(p, HEX_LEN)) {
		return IM_EINVAL;
	}
	if (mac_of(mac, secret, secret_len, token, claim_len) != IM_OK) {
		return IM_ERR;
	}
	to_hex(want, mac, MAC_LEN);
	ok = CRYPTO_memcmp(want, p, HEX_LEN) == 0;
	OPENSSL_cleanse(mac, sizeof(mac));
	OPENSSL_cleanse(want, sizeof(want));
	if (!ok || expiry <= now_s) {
		return IM_EPERM;
	}
	if (uid_out != NULL) {
		*uid_out = uid;
	}
	return IM_OK;
}
