#include "imbench.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Same format as libim's im_token_mint (include/im/token.h); minted here so
 * the bench needs only the secret, not libim. */
int
imb_token(char *buf, size_t len, const char *secret, uint64_t uid,
          uint64_t expiry_s)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0, i;
	int n;

	n = snprintf(buf, len, "%llu.%llu", (unsigned long long)uid,
	             (unsigned long long)expiry_s);
	if (n < 0 || (size_t)n + 1 + 64 + 1 > len) {
		return -1;
	}
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret),
	         (const unsigned char *)buf, (size_t)n, mac, &maclen) == NULL ||
	    maclen != 32) {
		return -1;
	}
	buf[n++] = '.';
	for (i = 0; i < maclen; i++) {
		buf[n++] = hex[mac[i] >> 4];
		buf[n++] = hex[mac[i] & 15];
	}
	buf[n] = '\0';
	return 0;
}
