/*
 * A minimal protobuf reader/writer for the bench's hot path: encoding Send,
 * DeliverAck and Ping and scanning SendAck, Deliver and UserEvent without a
 * full nanopb decode (a Deliver's 4 KiB body is skipped, never copied). The
 * field numbers come from nanopb's generated im.pb.h, and the unit tests
 * check both directions against nanopb itself. Cold messages (Login,
 * CreateGroup, LoginOk, ConvPage, Error, ...) go through nanopb.
 */
#ifndef IMB_PBFAST_H
#define IMB_PBFAST_H

#include <stddef.h>
#include <stdint.h>

/* Write cursor over caller memory; `bad` is set on overflow. */
typedef struct imb_pbw {
	uint8_t *p;
	uint8_t *end;
	int bad;
} imb_pbw;

void imb_pbw_varint(imb_pbw *w, uint64_t v);
void imb_pbw_u64(imb_pbw *w, uint32_t field, uint64_t v);
void imb_pbw_bytes(imb_pbw *w, uint32_t field, const void *b, size_t n);
size_t imb_pb_varint_len(uint64_t v);

/* One field of a message as scanned. */
typedef struct imb_pbf {
	uint32_t num;
	uint32_t wire;      /* 0 varint, 1 fixed64, 2 len, 5 fixed32 */
	uint64_t v;         /* varint/fixed value */
	const uint8_t *ptr; /* len-delimited payload */
	size_t len;
} imb_pbf;

/* Read the next field at *pp (< end). 1 = a field, 0 = end, -1 = bad. */
int imb_pb_next(const uint8_t **pp, const uint8_t *end, imb_pbf *f);

/* Fields the bench reads from any server reply or push. */
typedef struct imb_msg {
	uint64_t req_id;
	uint32_t kind;      /* im_Envelope_*_tag of the oneof member, 0 none */
	const uint8_t *sub; /* the oneof member's encoding */
	size_t sublen;
	/* SendAck, Deliver, UserEvent, Error, LoginOk, ResumeOk */
	uint64_t group;
	uint64_t seq;
	uint64_t prev_seq;
	uint64_t sender;
	uint64_t dedup_id;
	uint64_t code;       /* Error.code */
	uint64_t user;       /* LoginOk/ResumeOk.user */
	uint64_t conv_count; /* LoginOk.conv_count */
	uint64_t uq_last_seq;
	uint64_t done;       /* ConvPage.done */
	uint64_t nconvs;     /* ConvPage: number of ConvInfo */
	uint64_t resumed;    /* ResumeOk.resumed */
	uint64_t dup;        /* SendAck.dup */
	const uint8_t *body; /* Deliver.body */
	size_t body_len;
	const uint8_t *session; /* LoginOk/ResumeOk.session */
	size_t session_len;
	const uint8_t *text; /* Error.text, Redirect.address */
	size_t text_len;
} imb_msg;

/* Scan an Envelope. 0 ok, -1 malformed. */
int imb_pb_scan(const uint8_t *buf, size_t len, imb_msg *m);

/* Encoders into out (cap bytes), each writing the 4-byte frame header too.
 * Return the frame's total length, 0 when out is too small. */
size_t imb_enc_send(uint8_t *out, size_t cap, uint64_t req_id, uint64_t group,
                    uint64_t dedup_id, const void *body, size_t body_len);
size_t imb_enc_deliver_ack(uint8_t *out, size_t cap, uint64_t group,
                           uint64_t seq);
size_t imb_enc_ping(uint8_t *out, size_t cap, uint64_t req_id,
                    uint64_t time_ms);

#endif
