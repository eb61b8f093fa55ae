/**
 * @file frame.h
 * Length-prefixed framing, shared by the client protocol and the RPC
 * between roles: a frame is a 4-byte big-endian payload length followed by
 * the payload. The length is checked against the reader's limit before any
 * allocation or decoding, so a hostile prefix costs nothing.
 *
 * Thread-safety: the functions are pure; an im_framebuf is one thread's.
 */
#ifndef IM_FRAME_H
#define IM_FRAME_H

#include "im.h"

#ifdef __cplusplus
extern "C" {
#endif

#define IM_FRAME_HEADER 4
/** Largest payload any libim peer sends (a full SyncPage fits). */
#define IM_FRAME_MAX (64u * 1024u)

/** Write the 4-byte header for a payload of len bytes. */
IM_API void im_frame_put_header(uint8_t out[IM_FRAME_HEADER], uint32_t len);

/**
 * Find the first complete frame in buf[0..len).
 * @retval IM_OK       *payload_out and *plen_out give the frame's payload (inside
 *                     buf) and *consumed_out the bytes it took with header
 * @retval IM_EAGAIN   not complete yet; read more
 * @retval IM_ETOOBIG  the prefix announces more than max_payload bytes
 * @retval IM_EPROTO   the prefix announces an empty frame
 */
IM_API int im_frame_parse(const uint8_t *buf, size_t len, uint32_t max_payload,
			  const uint8_t **payload_out, uint32_t *plen_out,
			  size_t *consumed_out);

#ifdef __cplusplus
}
#endif

#endif
