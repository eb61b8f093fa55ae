/*
 * Conversation pages: the user's conversation list sent after LoginOk,
 * encoded by hand (see below), with the group names from a bounded cache.
 * Separate from the login handler because it is the largest cost of a
 * login after the store and has its own encoder.
 */
#include <stdlib.h>
#include <string.h>

#include "connector_int.h"

#define CONV_PAGE_MAX 32

static struct name_slot *
name_slot(connector *cn, im_gid gid)
{
	/* Group ids come from segments, mostly consecutive: the low bits
	 * spread them without collisions over a window of NAME_CACHE. */
	uint64_t x = gid ^ (gid >> 32);

	if (cn->names == NULL) {
		/* calloc: only the pages that get used are touched. */
		cn->names = calloc(NAME_CACHE, sizeof(*cn->names));
		if (cn->names == NULL) {
			return NULL;
		}
	}
	return &cn->names[x & (NAME_CACHE - 1)];
}

void
conn__name_put(connector *cn, im_gid gid, const char *name)
{
	struct name_slot *ns = name_slot(cn, gid);
	size_t len = strnlen(name, IM_GROUP_NAME_MAX);

	if (ns != NULL && gid != 0) {
		ns->gid = gid;
		ns->len = (uint8_t)len;
		memcpy(ns->name, name, len);
	}
}

/* A group's name for the conversation list: from the cache, else one
 * primary-key read (names are not part of the conv rows). */
static size_t
conv_name(connector *cn, im_gid gid, const char **out)
{
	struct name_slot *ns = name_slot(cn, gid);
	im_group g;

	if (ns != NULL && ns->gid == gid) {
		*out = ns->name;
		return ns->len;
	}
	if (im_store_group_lookup(cn->st, gid, &g) != IM_OK) {
		*out = "";
		return 0;
	}
	if (ns == NULL) {
		return 0; /* no memory for the cache: no name this time */
	}
	conn__name_put(cn, gid, g.name);
	*out = ns->name;
	return ns->len;
}

/*
 * ConvPage frames, encoded by hand: nanopb would walk (and test for
 * defaults) every field of 32 ConvInfo of ~200 bytes each, the largest
 * cost of a login after the store. Zero fields are left out, as proto3
 * (and nanopb) do; the client decodes them with nanopb like any frame.
 */
static uint8_t *
put_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Field `field` as a varint, left out when 0. */
static uint8_t *
put_u64(uint8_t *p, uint32_t field, uint64_t v)
{
	if (v == 0) {
		return p;
	}
	*p++ = (uint8_t)(field << 3); /* wire type 0; fields < 16 */
	return put_varint(p, v);
}

static uint8_t *
put_bytes(uint8_t *p, uint32_t field, const void *data, size_t len)
{
	if (len == 0) {
		return p;
	}
	*p++ = (uint8_t)(field << 3 | 2);
	p = put_varint(p, len);
	memcpy(p, data, len);
	return p + len;
}

/* Largest ConvInfo: 8 varints of 10 bytes, flags, preview, name. */
#define CONVINFO_MAX (1 + 2 + 8 * 11 + 6 + 2 * (2 + 64))

static uint8_t *
put_convinfo(connector *cn, uint8_t *p, const im_conv_entry *e)
{
	uint8_t tmp[CONVINFO_MAX], *q = tmp;
	const char *name;
	size_t nlen = conv_name(cn, e->conv, &name);

	q = put_u64(q, 1, e->conv);
	q = put_u64(q, 2, e->last.seq);
	q = put_u64(q, 3, e->last.ordinal);
	q = put_u64(q, 4, e->read.seq);
	q = put_u64(q, 5, e->read.ordinal);
	q = put_u64(q, 6, e->unread);
	q = put_u64(q, 7, e->last_sender);
	q = put_u64(q, 8, e->last_time_ms);
	q = put_u64(q, 9, e->flags);
	q = put_bytes(q, 10, e->preview,
	              e->preview_len <= IM_PREVIEW_MAX ? e->preview_len
	                                               : IM_PREVIEW_MAX);
	q = put_bytes(q, 11, name, nlen);
	return put_bytes(p, 1, tmp, (size_t)(q - tmp));
}

void
conn__send_conv_pages(struct conn *c, struct user *u, uint64_t req_id)
{
	connector *cn = c->cn;
	/* Envelope{req_id, conv_page = ConvPage{convs..., done}}: the page
	 * is built after room for its envelope header and length. */
	uint8_t *body = cn->obuf + IM_FRAME_HEADER + 32, *p, *h;
	size_t n = 0, i = 0;

	im_convlist_list(u->convs, cn->entries, cn->o.max_convs, &n);
	do {
		size_t k, blen;

		p = body;
		for (k = 0; i < n && k < CONV_PAGE_MAX; i++, k++) {
			p = put_convinfo(cn, p, &cn->entries[i]);
		}
		if (i >= n) {
			*p++ = 2 << 3; /* done = true */
			*p++ = 1;
		}
		blen = (size_t)(p - body);
		h = cn->obuf + IM_FRAME_HEADER;
		h = put_u64(h, 1, req_id);
		*h++ = 4 << 3 | 2; /* conv_page */
		h = put_varint(h, blen);
		memmove(h, body, blen);
		h += blen;
		im_frame_put_header(cn->obuf,
		                    (uint32_t)(h - cn->obuf - IM_FRAME_HEADER));
		conn__write(c, cn->obuf, (size_t)(h - cn->obuf));
	} while (i < n && !c->closed);
}
