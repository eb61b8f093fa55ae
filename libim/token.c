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
#include <openssl/hmac.h>

#define MAC_LEN 32
#define HEX_LEN (2 * MAC_LEN)

static int
mac_of(uint8_t mac[MAC_LEN], const void *secret, size_t secret_len,
       const char *msg, size_t msg_len)
{
	unsigned int mlen = 0;

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
