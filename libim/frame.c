#include "im/frame.h"

void
im_frame_put_header(uint8_t out[IM_FRAME_HEADER], uint32_t len)
{
	out[0] = (uint8_t)(len >> 24);
	out[1] = (uint8_t)(len >> 16);
	out[2] = (uint8_t)(len >> 8);
	out[3] = (uint8_t)len;
}

int
im_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload,
	       const uint8_t **payload_out, uint32_t *plen_out,
	       size_t *consumed_out)
{
	uint32_t plen;

	if (buf == NULL || len < IM_FRAME_HEADER) {
		return IM_EAGAIN;
	}
	plen = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	       (uint32_t)buf[2] << 8 | (uint32_t)buf[3];
	if (plen == 0) {
		return IM_EPROTO;
	}
	if (plen > max_payload) {
		return IM_ETOOBIG;
	}
	if (len - IM_FRAME_HEADER < plen) {
		return IM_EAGAIN;
	}
	*payload_out = buf + IM_FRAME_HEADER;
	*plen_out = plen;
	*consumed_out = (size_t)plen + IM_FRAME_HEADER;
	return IM_OK;
}
