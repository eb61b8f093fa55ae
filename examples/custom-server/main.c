/*
 * A custom server in a few dozen lines: it links the installed libim
 * (pkg-config im) and drives the core modules over the sqlite store the
 * way a Chatter does, as a batch tool:
 *
 *   claim the group's slot (shard) -> a fresh group id (idseg) ->
 *   create the group with two members -> take seqs (idseg) -> append three
 *   messages in one fenced transaction -> retry one (dedup: same seq) ->
 *   read them back -> print user 2's conversation list (exact unread).
 *
 *   custom-server DB_PATH
 */
#include <im/convlist.h>
#include <im/idseg.h>
#include <im/shard.h>
#include <im/store.h>

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                            \
	do {                                                                   \
		int rc_ = (call);                                              \
		if (rc_ != IM_OK) {                                            \
			fprintf(stderr, "%s: %s (%s)\n", #call,                \
			        im_strerror(rc_), im_store_errmsg(st));        \
			goto out;                                              \
		}                                                              \
	} while (0)

static int
print_msg(const im_msg *m, void *payload)
{
	(void)payload;
	printf("msg %" PRIu64 " %" PRIu64 " prev=%" PRIu64 " %.*s\n", m->conv,
	       m->seq, m->prev_seq, (int)m->body_len, (const char *)m->body);
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *texts[3] = {"hello", "from a", "custom server"};
	im_store *st = NULL;
	im_shard_map *map = NULL;
	im_convlist *cl = NULL;
	im_shard_opts sopts = IM_SHARD_OPTS_INIT;
	im_idseg_opts iopts = IM_IDSEG_OPTS_INIT;
	im_convlist_opts copts = IM_CONVLIST_OPTS_INIT;
	im_idseg gids, seqs;
	im_seg_key gkey = {IM_SEG_GROUP_ID, 0}, skey = {IM_SEG_GROUP_SEQ, 0};
	im_group g;
	im_fence fence;
	im_msg msgs[3];
	im_append_result res[3];
	im_conv_entry convs[16];
	size_t n, i;
	uint64_t gid;
	im_seq prev = 0;
	char err[256];
	int ret = 1, ngseg = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: custom-server DB_PATH\n");
		return 2;
	}
	if (im_store_sqlite_open(&st, argv[1], NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "open %s: %s\n", argv[1], err);
		return 1;
	}
	CHECK(im_shard_create(&map, &sopts));
	CHECK(im_shard_load(map, st));
	CHECK(im_idseg_init(&gids, &gkey, &iopts));
	ngseg = 1;
	CHECK(im_idseg_refill(&gids, st));
	CHECK(im_idseg_next(&gids, &gid));

	/* Own the group's slot: every write below is fenced by its epoch. */
	fence.kind = IM_KIND_GROUP;
	fence.slot = im_shard_slot_of(gid, im_shard_nslots(map));
	CHECK(im_shard_claim(map, st, IM_KIND_GROUP, fence.slot, "custom",
	                     &fence.epoch));
	memset(&g, 0, sizeof(g));
	g.gid = gid;
	g.creator = 1;
	snprintf(g.name, sizeof(g.name), "demo-%" PRIu64, gid);
	CHECK(im_store_group_create(st, &g));
	CHECK(im_store_member_add(st, gid, 1, NULL));
	CHECK(im_store_member_add(st, gid, 2, NULL));

	skey.id = gid;
	CHECK(im_idseg_init(&seqs, &skey, &iopts));
	ngseg = 2;
	CHECK(im_idseg_refill(&seqs, st));
	memset(msgs, 0, sizeof(msgs));
	for (i = 0; i < 3; i++) {
		msgs[i].conv = gid;
		CHECK(im_idseg_next(&seqs, &msgs[i].seq));
		msgs[i].prev_seq = prev;
		msgs[i].ordinal = i + 1;
		msgs[i].sender = 1;
		msgs[i].dedup_id = 1000 + i;
		msgs[i].body = texts[i];
		msgs[i].body_len = (uint32_t)strlen(texts[i]);
		prev = msgs[i].seq;
	}
	CHECK(im_store_msg_append(st, &fence, 1, msgs, 3, res));
	/* A client retry of the last one: same dedup id, nothing stored. */
	CHECK(im_idseg_next(&seqs, &msgs[2].seq));
	msgs[2].prev_seq = res[2].seq;
	msgs[2].ordinal = 4;
	CHECK(im_store_msg_append(st, &fence, 1, &msgs[2], 1, res));
	printf("retry seq=%" PRIu64 " dup=%d\n", res[0].seq, res[0].dup);

	CHECK(im_store_msg_read(st, gid, 0, IM_SEQ_MAX, 0, print_msg, NULL));
	CHECK(im_convlist_create(&cl, &copts));
	CHECK(im_convlist_load(cl, st, 2));
	im_convlist_list(cl, convs, 16, &n);
	for (i = 0; i < n; i++) {
		printf("conv %" PRIu64 " unread=%" PRIu64 " last=%" PRIu64 "\n",
		       convs[i].conv, convs[i].unread, convs[i].last.seq);
	}
	ret = 0;
out:
	if (ngseg > 1) {
		im_idseg_finish(&seqs);
	}
	if (ngseg > 0) {
		im_idseg_finish(&gids);
	}
	im_convlist_destroy(cl);
	im_shard_destroy(map);
	im_store_close(st);
	return ret;
}
