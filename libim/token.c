/*
 * HMAC login tokens. Parsing is deliberately strict (one spelling per
 * token) so two different strings never authenticate the same claim and a
 * hostile client cannot probe the parser with odd spellings.
 */
#include "im/token.h"
#include "internal.h"

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
 * A verifier owns one HMAC context keyed at create: OpenSSL 3's one-shot
 * HMAC() fetches the algorithm, builds a context and keys it on every
 * call, which was most of a token check (~10 % of a login's CPU in imd).
 * With the keyed context kept, a check is init (same key) + update +
 * final. The context (OpenSSL keeps the key inside it and wipes it when
 * the context is freed) is all there is: no copy of the secret of our own,
 * and nothing per thread.
 */
struct im_token_verifier {
	EVP_MAC_CTX *ctx;
	im_allocator alloc;
};

/* The one-shot MAC, for minting and for im_token_verify. */
static int
mac_once(uint8_t mac[MAC_LEN], const void *secret, size_t secret_len,
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

/* The verifier's MAC: the context is re-initialised with the key it has. */
static int
mac_keyed(uint8_t mac[MAC_LEN], EVP_MAC_CTX *ctx, const char *msg,
          size_t msg_len)
{
	size_t olen = 0;

	/* A NULL key keeps the one set at create. */
	if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 ||
	    EVP_MAC_update(ctx, (const unsigned char *)msg, msg_len) != 1 ||
	    EVP_MAC_final(ctx, mac, &olen, MAC_LEN) != 1 || olen != MAC_LEN) {
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
	if (mac_once(mac, secret, secret_len, msg, (size_t)n) != IM_OK) {
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

/* A well-formed token: its claim ("<uid>.<expiry>") and its hex MAC. */
struct claim {
	uint64_t uid, expiry;
	size_t len;      /* of the claim, at the start of the token */
	const char *mac; /* HEX_LEN lower-case hex digits */
};

static int
parse_token(const char *token, struct claim *c)
{
	const char *p;

	if (strnlen(token, IM_TOKEN_MAX + 1) > IM_TOKEN_MAX) {
		return IM_EINVAL;
	}
	p = parse_u64(token, &c->uid);
	if (p == NULL) {
		return IM_EINVAL;
	}
	p = parse_u64(p + 1, &c->expiry);
	if (p == NULL) {
		return IM_EINVAL;
	}
	c->len = (size_t)(p - token);
	c->mac = p + 1;
	if (strlen(c->mac) != HEX_LEN || !is_lower_hex(c->mac, HEX_LEN)) {
		return IM_EINVAL;
	}
	return IM_OK;
}

/* The verdict on a parsed token given the MAC its claim should carry. */
static int
judge(const struct claim *c, uint8_t mac[MAC_LEN], uint64_t now_s,
      im_uid *uid_out)
{
	char want[HEX_LEN];
	int ok;

	to_hex(want, mac, MAC_LEN);
	ok = CRYPTO_memcmp(want, c->mac, HEX_LEN) == 0;
	OPENSSL_cleanse(mac, MAC_LEN);
	OPENSSL_cleanse(want, sizeof(want));
	if (!ok || c->expiry <= now_s) {
		return IM_EPERM;
	}
	if (uid_out != NULL) {
		*uid_out = c->uid;
	}
	return IM_OK;
}

int
im_token_verify(const char *token, const void *secret, size_t secret_len,
                uint64_t now_s, im_uid *uid_out)
{
	uint8_t mac[MAC_LEN];
	struct claim c;

	if (token == NULL || !secret_ok(secret, secret_len)) {
		return IM_EINVAL;
	}
	if (parse_token(token, &c) != IM_OK) {
		return IM_EINVAL;
	}
	if (mac_once(mac, secret, secret_len, token, c.len) != IM_OK) {
		return IM_ERR;
	}
	return judge(&c, mac, now_s, uid_out);
}

int
im_token_verifier_create(im_token_verifier **out, const void *secret,
                         size_t secret_len, const im_token_verifier_opts *opts)
{
	im_token_verifier_opts def = IM_TOKEN_VERIFIER_OPTS_INIT;
	OSSL_PARAM params[2];
	im_token_verifier *v;
	EVP_MAC *m;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	if (opts == NULL) {
		opts = &def;
	}
	if (!secret_ok(secret, secret_len) || opts->version == 0 ||
	    opts->version > IM_TOKEN_VERIFIER_OPTS_VERSION) {
		return IM_EINVAL;
	}
	v = im__calloc(&opts->alloc, 1, sizeof(*v));
	if (v == NULL) {
		return IM_ENOMEM;
	}
	v->alloc = opts->alloc;
	if ((m = EVP_MAC_fetch(NULL, "HMAC", NULL)) != NULL) {
		v->ctx = EVP_MAC_CTX_new(m);
		EVP_MAC_free(m); /* the context keeps its own reference */
	}
	params[0] = OSSL_PARAM_construct_utf8_string("digest", "SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if (v->ctx == NULL ||
	    EVP_MAC_init(v->ctx, secret, secret_len, params) != 1) {
		im_token_verifier_destroy(v);
		return IM_ERR;
	}
	*out = v;
	return IM_OK;
}

void
im_token_verifier_destroy(im_token_verifier *v)
{
	if (v == NULL) {
		return;
	}
	EVP_MAC_CTX_free(v->ctx); /* wipes the key with it */
	im__free(&v->alloc, v);
}

int
im_token_verifier_verify(im_token_verifier *v, const char *token,
                         uint64_t now_s, im_uid *uid_out)
{
	uint8_t mac[MAC_LEN];
	struct claim c;

	if (v == NULL || token == NULL) {
		return IM_EINVAL;
	}
	if (parse_token(token, &c) != IM_OK) {
		return IM_EINVAL;
	}
	if (mac_keyed(mac, v->ctx, token, c.len) != IM_OK) {
		return IM_ERR;
	}
	return judge(&c, mac, now_s, uid_out);
}
