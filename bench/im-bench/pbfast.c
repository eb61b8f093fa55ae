#include "pbfast.h"

#include <string.h>

#include "im.pb.h"

size_t
imb_pb_varint_len(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

void
imb_pbw_varint(imb_pbw *w, uint64_t v)
{
	if ((size_t)(w->end - w->p) < imb_pb_varint_len(v)) {
		w->bad = 1;
		return;
	}
	while (v >= 0x80) {
		*w->p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*w->p++ = (uint8_t)v;
}

void
imb_pbw_u64(imb_pbw *w, uint32_t field, uint64_t v)
{
	if (v == 0) {
		return; /* proto3: defaults are not encoded */
	}
	imb_pbw_varint(w, (uint64_t)field << 3);
	imb_pbw_varint(w, v);
}

void
imb_pbw_bytes(imb_pbw *w, uint32_t field, const void *b, size_t n)
{
	imb_pbw_varint(w, ((uint64_t)field << 3) | 2);
	imb_pbw_varint(w, n);
	if (w->bad || (size_t)(w->end - w->p) < n) {
		w->bad = 1;
		return;
	}
	if (n > 0) {
		memcpy(w->p, b, n);
	}
	w->p += n;
}

static int
rd_varint(const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
	const uint8_t *p = *pp;
	uint64_t v = 0;
	unsigned shift = 0;

	while (p < end && shift < 64) {
		uint8_t b = *p++;

		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*pp = p;
			*out = v;
			return 0;
		}
		shift += 7;
	}
	return -1;
}

int
imb_pb_next(const uint8_t **pp, const uint8_t *end, imb_pbf *f)
{
	uint64_t key, n;

	if (*pp >= end) {
		return 0;
	}
	if (rd_varint(pp, end, &key) != 0 || (key >> 3) == 0 ||
	    (key >> 3) > UINT32_MAX) {
		return -1;
	}
	f->num = (uint32_t)(key >> 3);
	f->wire = (uint32_t)(key & 7);
	f->v = 0;
	f->ptr = NULL;
	f->len = 0;
	switch (f->wire) {
	case 0:
		return rd_varint(pp, end, &f->v) == 0 ? 1 : -1;
	case 1:
		if (end - *pp < 8) {
			return -1;
		}
		memcpy(&f->v, *pp, 8);
		*pp += 8;
		return 1;
	case 5:
		if (end - *pp < 4) {
			return -1;
		}
		{
			uint32_t x;

			memcpy(&x, *pp, 4);
			f->v = x;
		}
		*pp += 4;
		return 1;
	case 2:
		if (rd_varint(pp, end, &n) != 0 || n > (uint64_t)(end - *pp)) {
			return -1;
		}
		f->ptr = *pp;
		f->len = (size_t)n;
		*pp += n;
		return 1;
	default:
		return -1;
	}
}

/* Field numbers: the oneof members are distinct messages, but the ones the
 * bench reads share small numbers, so one switch per kind keeps it exact. */
static int
scan_sub(imb_msg *m)
{
	const uint8_t *p = m->sub, *end = m->sub + m->sublen;
	imb_pbf f;
	int r;

	while ((r = imb_pb_next(&p, end, &f)) == 1) {
		switch (m->kind) {
		case im_Envelope_send_ack_tag:
			if (f.num == im_SendAck_group_tag) {
				m->group = f.v;
			} else if (f.num == im_SendAck_dedup_id_tag) {
				m->dedup_id = f.v;
			} else if (f.num == im_SendAck_seq_tag) {
				m->seq = f.v;
			} else if (f.num == im_SendAck_dup_tag) {
				m->dup = f.v;
			}
			break;
		case im_Envelope_deliver_tag:
			if (f.num == im_Deliver_group_tag) {
				m->group = f.v;
			} else if (f.num == im_Deliver_seq_tag) {
				m->seq = f.v;
			} else if (f.num == im_Deliver_prev_seq_tag) {
				m->prev_seq = f.v;
			} else if (f.num == im_Deliver_sender_tag) {
				m->sender = f.v;
			} else if (f.num == im_Deliver_dedup_id_tag) {
				m->dedup_id = f.v;
			} else if (f.num == im_Deliver_body_tag &&
			           f.wire == 2) {
				m->body = f.ptr;
				m->body_len = f.len;
			}
			break;
		case im_Envelope_user_event_tag:
			if (f.num == im_UserEvent_seq_tag) {
				m->seq = f.v;
			} else if (f.num == im_UserEvent_group_tag) {
				m->group = f.v;
			}
			break;
		case im_Envelope_error_tag:
			if (f.num == im_Error_code_tag) {
				m->code = f.v;
			} else if (f.num == im_Error_group_tag) {
				m->group = f.v;
			} else if (f.num == im_Error_dedup_id_tag) {
				m->dedup_id = f.v;
			} else if (f.num == im_Error_text_tag && f.wire == 2) {
				m->text = f.ptr;
				m->text_len = f.len;
			}
			break;
		case im_Envelope_login_ok_tag:
			if (f.num == im_LoginOk_user_tag) {
				m->user = f.v;
			} else if (f.num == im_LoginOk_session_tag &&
			           f.wire == 2) {
				m->session = f.ptr;
				m->session_len = f.len;
			} else if (f.num == im_LoginOk_conv_count_tag) {
				m->conv_count = f.v;
			} else if (f.num == im_LoginOk_uq_last_seq_tag) {
				m->uq_last_seq = f.v;
			}
			break;
		case im_Envelope_resume_ok_tag:
			if (f.num == im_ResumeOk_user_tag) {
				m->user = f.v;
			} else if (f.num == im_ResumeOk_session_tag &&
			           f.wire == 2) {
				m->session = f.ptr;
				m->session_len = f.len;
			} else if (f.num == im_ResumeOk_resumed_tag) {
				m->resumed = f.v;
			}
			break;
		case im_Envelope_conv_page_tag:
			if (f.num == im_ConvPage_convs_tag) {
				m->nconvs++;
			} else if (f.num == im_ConvPage_done_tag) {
				m->done = f.v;
			}
			break;
		case im_Envelope_group_created_tag:
			if (f.num == im_GroupCreated_group_tag) {
				m->group = f.v;
			}
			break;
		case im_Envelope_redirect_tag:
			if (f.num == im_Redirect_address_tag && f.wire == 2) {
				m->text = f.ptr;
				m->text_len = f.len;
			}
			break;
		default:
			break;
		}
	}
	return r == 0 ? 0 : -1;
}

int
imb_pb_scan(const uint8_t *buf, size_t len, imb_msg *m)
{
	const uint8_t *p = buf, *end = buf + len;
	imb_pbf f;
	int r;

	memset(m, 0, sizeof(*m));
	while ((r = imb_pb_next(&p, end, &f)) == 1) {
		if (f.num == im_Envelope_req_id_tag && f.wire == 0) {
			m->req_id = f.v;
		} else if (f.wire == 2 && f.num >= im_Envelope_login_tag &&
		           f.num <= im_Envelope_redirect_tag) {
			m->kind = f.num;
			m->sub = f.ptr;
			m->sublen = f.len;
		}
	}
	if (r != 0) {
		return -1;
	}
	return m->kind != 0 ? scan_sub(m) : 0;
}

static size_t
finish(uint8_t *out, imb_pbw *w)
{
	size_t n;

	if (w->bad) {
		return 0;
	}
	n = (size_t)(w->p - out) - 4;
	out[0] = (uint8_t)(n >> 24);
	out[1] = (uint8_t)(n >> 16);
	out[2] = (uint8_t)(n >> 8);
	out[3] = (uint8_t)n;
	return n + 4;
}

static void
begin(imb_pbw *w, uint8_t *out, size_t cap)
{
	w->p = out;
	w->end = out + cap;
	w->bad = cap < 4;
	if (!w->bad) {
		w->p += 4;
	}
}

/* A submessage is written after its length, which needs its size first. */
static void
sub_header(imb_pbw *w, uint32_t field, size_t sublen)
{
	imb_pbw_varint(w, ((uint64_t)field << 3) | 2);
	imb_pbw_varint(w, sublen);
}

static size_t
u64_len(uint32_t field, uint64_t v)
{
	return v ? imb_pb_varint_len((uint64_t)field << 3) +
	                       imb_pb_varint_len(v)
	         : 0;
}

size_t
imb_enc_send(uint8_t *out, size_t cap, uint64_t req_id, uint64_t group,
             uint64_t dedup_id, const void *body, size_t body_len)
{
	imb_pbw w;
	size_t sub;

	begin(&w, out, cap);
	sub = u64_len(im_Send_group_tag, group) +
	      u64_len(im_Send_dedup_id_tag, dedup_id) +
	      (body_len ? 1 + imb_pb_varint_len(body_len) + body_len : 0);
	imb_pbw_u64(&w, im_Envelope_req_id_tag, req_id);
	sub_header(&w, im_Envelope_send_tag, sub);
	imb_pbw_u64(&w, im_Send_group_tag, group);
	imb_pbw_u64(&w, im_Send_dedup_id_tag, dedup_id);
	if (body_len) {
		imb_pbw_bytes(&w, im_Send_body_tag, body, body_len);
	}
	return finish(out, &w);
}

size_t
imb_enc_deliver_ack(uint8_t *out, size_t cap, uint64_t group, uint64_t seq)
{
	imb_pbw w;

	begin(&w, out, cap);
	sub_header(&w, im_Envelope_deliver_ack_tag,
	           u64_len(im_DeliverAck_group_tag, group) +
	                   u64_len(im_DeliverAck_seq_tag, seq));
	imb_pbw_u64(&w, im_DeliverAck_group_tag, group);
	imb_pbw_u64(&w, im_DeliverAck_seq_tag, seq);
	return finish(out, &w);
}

size_t
imb_enc_ping(uint8_t *out, size_t cap, uint64_t req_id, uint64_t time_ms)
{
	imb_pbw w;

	begin(&w, out, cap);
	imb_pbw_u64(&w, im_Envelope_req_id_tag, req_id);
	sub_header(&w, im_Envelope_ping_tag,
	           u64_len(im_Ping_time_ms_tag, time_ms));
	imb_pbw_u64(&w, im_Ping_time_ms_tag, time_ms);
	return finish(out, &w);
}
