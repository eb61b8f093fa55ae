/*
 * Slot map: a cache of the store's slot table, plus the planner that
 * decides which slots move when nodes join or die.
 *
 * Everything is allocated at create: the slot arrays, a staging copy used
 * to make im_shard_load all-or-nothing, the interned owner names with their
 * hash index, per-owner counts and the planner's scratch. Lookups, apply,
 * load, claim and plan never allocate.
 */
#include "im/shard.h"

#include "im/sys/store.h"
#include "internal.h"

#include <assert.h>


/* Owner index 0 is the empty name: an unowned slot. */
#define UNOWNED 0u

typedef struct shard_slot {
	im_epoch epoch;
	uint32_t owner; /* index into names */
} shard_slot;

typedef char owner_name[IM_OWNER_MAX + 1];

struct im_shard_map {
	im_allocator alloc;
	uint32_t nslots;
	uint32_t max_nodes;

	shard_slot *slots[IM_KIND_COUNT];
	/* im_shard_load fills these, then swaps them with slots. */
	shard_slot *staging[IM_KIND_COUNT];

	/* names[0] is "", names[1..nnames-1] the interned owners. */
	owner_name *names;
	uint32_t nnames;
	/* Open addressing over names: 0 = empty bucket, else a name index. */
	uint32_t *index;
	uint32_t index_mask;

	/* counts[kind][owner]: slots of kind held by owner (0 = unowned). */
	uint32_t *counts[IM_KIND_COUNT];

	/*
	 * Planner scratch, max_nodes entries each (node_of: max_nodes + 1).
	 * im_shard_plan takes a const map but uses these; that is safe under
	 * the one-thread-per-map rule and keeps plan free of allocation.
	 */
	int32_t *node_of;  /* owner index -> node index, -1 = not live */
	uint32_t *load;    /* slots per live node */
	uint32_t *quota;   /* target per live node */
	uint32_t *left;    /* excess (donors) or deficit (receivers) */
	uint32_t *order;   /* node indexes, sorted */
};

uint32_t
im_shard_slot_of(uint64_t id, uint32_t nslots)
{
	/*
	 * slot = splitmix64_finalizer(id) mod nslots, where the finalizer is
	 * x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27;
	 * x *= 0x94d049bb133111eb; x ^= x >> 31 (im__mix64). Every node of a
	 * cluster and every stored slot row depends on this: never change it.
	 * tests/unit/test_shard.c pins known values.
	 */
	if (nslots == 0) {
		return 0;
	}
	return (uint32_t)(im__mix64(id) % nslots);
}

static bool
kind_ok(im_kind kind)
{
	return kind == IM_KIND_USER || kind == IM_KIND_GROUP;
}

static uint32_t
name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 0x100000001b3ULL;
	}
	return (uint32_t)im__mix64(h);
}

/* Index of an interned name, UNOWNED for "", or -1 if not interned. */
static int64_t
name_lookup(const im_shard_map *map, const char *name)
{
	uint32_t b;

	if (name[0] == '\0') {
		return UNOWNED;
	}
	for (b = name_hash(name) & map->index_mask;;
	     b = (b + 1) & map->index_mask) {
		uint32_t i = map->index[b];

		if (i == 0) {
			return -1;
		}
		if (strcmp(map->names[i], name) == 0) {
			return i;
		}
	}
}

static void
index_insert(im_shard_map *map, uint32_t i)
{
	uint32_t b;

	for (b = name_hash(map->names[i]) & map->index_mask; map->index[b] != 0;
	     b = (b + 1) & map->index_mask) {
	}
	map->index[b] = i;
}

/* Drop names interned after `keep` (undo of a failed load). */
static void
names_truncate(im_shard_map *map, uint32_t keep)
{
	uint32_t i;

	if (keep == map->nnames) {
		return;
	}
	map->nnames = keep;
	memset(map->index, 0, ((size_t)map->index_mask + 1) * sizeof(uint32_t));
	for (i = 1; i < keep; i++) {
		index_insert(map, i);
	}
}

/* The caller checked that name fits IM_OWNER_MAX. */
static int
name_intern(im_shard_map *map, const char *name, uint32_t *idx_out)
{
	int64_t found = name_lookup(map, name);
	uint32_t i;

	if (found >= 0) {
		*idx_out = (uint32_t)found;
		return IM_OK;
	}
	if (map->nnames > map->max_nodes) {
		return IM_EFULL;
	}
	i = map->nnames++;
	strcpy(map->names[i], name);
	index_insert(map, i);
	*idx_out = i;
	return IM_OK;
}

static bool
owner_ok(const char *owner)
{
	return owner != NULL && memchr(owner, '\0', IM_OWNER_MAX + 1) != NULL;
}

void
im_shard_destroy(im_shard_map *map)
{
	const im_allocator *a;
	int k;

	if (map == NULL) {
		return;
	}
	a = &map->alloc;
	for (k = 0; k < IM_KIND_COUNT; k++) {
		im__free(a, map->slots[k]);
		im__free(a, map->staging[k]);
		im__free(a, map->counts[k]);
	}
	im__free(a, map->names);
	im__free(a, map->index);
	im__free(a, map->node_of);
	im__free(a, map->load);
	im__free(a, map->quota);
	im__free(a, map->left);
	im__free(a, map->order);
	im__free(a, map);
}

int
im_shard_create(im_shard_map **out, const im_shard_opts *opts)
{
	im_shard_opts def = IM_SHARD_OPTS_INIT;
	im_shard_map *map;
	uint32_t buckets;
	size_t nn;
	int k;

	if (out == NULL) {
		return IM_EINVAL;
	}
	*out = NULL;
	if (opts == NULL) {
		opts = &def;
	}
	if (opts->version == 0 || opts->version > IM_SHARD_OPTS_VERSION ||
	    opts->nslots == 0 || opts->nslots > IM_SHARD_SLOTS_MAX ||
	    opts->max_nodes == 0 || opts->max_nodes > IM_SHARD_NODES_MAX) {
		return IM_EINVAL;
	}
	map = im__calloc(&opts->alloc, 1, sizeof(*map));
	if (map == NULL) {
		return IM_ENOMEM;
	}
	map->alloc = opts->alloc;
	map->nslots = opts->nslots;
	map->max_nodes = opts->max_nodes;
	nn = (size_t)opts->max_nodes + 1;
	/* At most half full, so probes stay short. */
	for (buckets = 2; buckets < 2 * nn; buckets *= 2) {
	}
	map->index_mask = buckets - 1;

	for (k = 0; k < IM_KIND_COUNT; k++) {
		map->slots[k] = im__calloc(&map->alloc, map->nslots,
					   sizeof(shard_slot));
		map->staging[k] = im__calloc(&map->alloc, map->nslots,
					     sizeof(shard_slot));
		map->counts[k] = im__calloc(&map->alloc, nn, sizeof(uint32_t));
		if (map->slots[k] == NULL || map->staging[k] == NULL ||
		    map->counts[k] == NULL) {
			goto fail;
		}
		map->counts[k][UNOWNED] = map->nslots;
	}
	map->names = im__calloc(&map->alloc, nn, sizeof(owner_name));
	map->index = im__calloc(&map->alloc, buckets, sizeof(uint32_t));
	map->node_of = im__calloc(&map->alloc, nn, sizeof(int32_t));
	map->load = im__calloc(&map->alloc, nn, sizeof(uint32_t));
	map->quota = im__calloc(&map->alloc, nn, sizeof(uint32_t));
	map->left = im__calloc(&map->alloc, nn, sizeof(uint32_t));
	map->order = im__calloc(&map->alloc, nn, sizeof(uint32_t));
	if (map->names == NULL || map->index == NULL || map->node_of == NULL ||
	    map->load == NULL || map->quota == NULL || map->left == NULL ||
	    map->order == NULL) {
		goto fail;
	}
	map->nnames = 1; /* names[0] = "" */
	*out = map;
	return IM_OK;
fail:
	im_shard_destroy(map);
	return IM_ENOMEM;
}

uint32_t
im_shard_nslots(const im_shard_map *map)
{
	return map != NULL ? map->nslots : 0;
}

static im_shard_entry
entry_of(const im_shard_map *map, im_kind kind, uint32_t s)
{
	im_shard_entry e;
	const shard_slot *sl = &map->slots[kind][s];

	e.slot = s;
	e.epoch = sl->epoch;
	e.owner = map->names[sl->owner];
	return e;
}

im_shard_entry
im_shard_get(const im_shard_map *map, im_kind kind, uint64_t id)
{
	im_shard_entry e = {0, 0, ""};

	if (map == NULL || !kind_ok(kind)) {
		return e;
	}
	return entry_of(map, kind, im_shard_slot_of(id, map->nslots));
}

int
im_shard_get_slot(const im_shard_map *map, im_kind kind, uint32_t slot,
		  im_shard_entry *out)
{
	if (map == NULL || !kind_ok(kind) || slot >= map->nslots ||
	    out == NULL) {
		return IM_EINVAL;
	}
	*out = entry_of(map, kind, slot);
	return IM_OK;
}

int
im_shard_apply(im_shard_map *map, im_kind kind, uint32_t s, im_epoch epoch,
	       const char *owner)
{
	shard_slot *sl;
	uint32_t idx;
	int rc;

	if (map == NULL || !kind_ok(kind) || s >= map->nslots ||
	    !owner_ok(owner)) {
		return IM_EINVAL;
	}
	sl = &map->slots[kind][s];
	if (epoch < sl->epoch) {
		return IM_OK;
	}
	if ((rc = name_intern(map, owner, &idx)) != IM_OK) {
		return rc;
	}
	map->counts[kind][sl->owner]--;
	map->counts[kind][idx]++;
	sl->epoch = epoch;
	sl->owner = idx;
	return IM_OK;
}

typedef struct load_ctx {
	im_shard_map *map;
	im_store *st;
	im_kind kind;
} load_ctx;

static int
load_row(const im_slot_row *row, void *payload)
{
	load_ctx *c = payload;
	im_shard_map *map = c->map;
	shard_slot *sl;
	uint32_t idx;
	int rc;

	/* Rows are the store's data: check them, never trust them. */
	if (row->kind != c->kind || !owner_ok(row->owner)) {
		im_store_set_error(c->st, "bad slot row (kind %d slot %u)",
				   (int)row->kind, row->slot);
		return IM_ERR;
	}
	if (row->slot >= map->nslots) {
		/* The cluster runs with another nslots than this map. */
		im_store_set_error(c->st, "slot %u out of range (nslots %u)",
				   row->slot, map->nslots);
		return IM_EINVAL;
	}
	sl = &map->staging[c->kind][row->slot];
	if (row->epoch < sl->epoch) {
		return IM_OK;
	}
	if ((rc = name_intern(map, row->owner, &idx)) != IM_OK) {
		im_store_set_error(c->st, "more than %u slot owners",
				   map->max_nodes);
		return rc;
	}
	sl->epoch = row->epoch;
	sl->owner = idx;
	return IM_OK;
}

static void
recount(im_shard_map *map)
{
	uint32_t k, s;

	for (k = 0; k < IM_KIND_COUNT; k++) {
		memset(map->counts[k], 0,
		       ((size_t)map->max_nodes + 1) * sizeof(uint32_t));
		for (s = 0; s < map->nslots; s++) {
			map->counts[k][map->slots[k][s].owner]++;
		}
	}
}

int
im_shard_load(im_shard_map *map, im_store *st)
{
	uint32_t keep;
	load_ctx c;
	int k, rc = IM_OK;

	if (map == NULL || st == NULL) {
		return IM_EINVAL;
	}
	/*
	 * Merge into a copy so a failure halfway (store error, too many
	 * owners) leaves the map as it was. Epochs only move forward: a map
	 * that learnt a newer epoch by im_shard_apply keeps it.
	 */
	keep = map->nnames;
	c.map = map;
	c.st = st;
	for (k = 0; k < IM_KIND_COUNT; k++) {
		memcpy(map->staging[k], map->slots[k],
		       (size_t)map->nslots * sizeof(shard_slot));
	}
	for (k = 0; k < IM_KIND_COUNT && rc == IM_OK; k++) {
		c.kind = (im_kind)k;
		rc = im_store_slot_load(st, c.kind, load_row, &c);
	}
	if (rc != IM_OK) {
		names_truncate(map, keep);
		return rc;
	}
	for (k = 0; k < IM_KIND_COUNT; k++) {
		shard_slot *t = map->slots[k];

		map->slots[k] = map->staging[k];
		map->staging[k] = t;
	}
	recount(map);
	return IM_OK;
}

typedef struct find_ctx {
	uint32_t slot;
	bool found;
	im_epoch epoch;
	owner_name owner;
} find_ctx;

static int
find_row(const im_slot_row *row, void *payload)
{
	find_ctx *f = payload;

	if (row->slot == f->slot && owner_ok(row->owner) &&
	    (!f->found || row->epoch >= f->epoch)) {
		f->found = true;
		f->epoch = row->epoch;
		strcpy(f->owner, row->owner);
	}
	return 0;
}

/* Learn what the store has for one slot after a lost CAS. */
static int
refresh_slot(im_shard_map *map, im_store *st, im_kind kind, uint32_t s)
{
	find_ctx f;
	int rc;

	memset(&f, 0, sizeof(f));
	f.slot = s;
	if ((rc = im_store_slot_load(st, kind, find_row, &f)) != IM_OK) {
		return rc;
	}
	if (!f.found) {
		return IM_OK;
	}
	return im_shard_apply(map, kind, s, f.epoch, f.owner);
}

int
im_shard_claim(im_shard_map *map, im_store *st, im_kind kind, uint32_t s,
	       const char *owner, im_epoch *epoch_out)
{
	im_epoch got = 0;
	int rc;

	if (map == NULL || st == NULL || !kind_ok(kind) || s >= map->nslots ||
	    !owner_ok(owner)) {
		return IM_EINVAL;
	}
	/*
	 * Check the name fits before the CAS: once the store says we own
	 * the slot, the map must be able to say so too.
	 */
	if (name_lookup(map, owner) < 0 && map->nnames > map->max_nodes) {
		return IM_EFULL;
	}
	rc = im_store_slot_cas(st, kind, s, map->slots[kind][s].epoch, owner,
			       &got);
	if (rc == IM_OK) {
		rc = im_shard_apply(map, kind, s, got, owner);
		assert(rc == IM_OK);
		if (epoch_out != NULL) {
			*epoch_out = got;
		}
		return rc;
	}
	if (rc == IM_ECONFLICT) {
		int rrc = refresh_slot(map, st, kind, s);

		if (epoch_out != NULL) {
			*epoch_out = got;
		}
		/* A failed refresh means a retry cannot work yet: say why. */
		return rrc != IM_OK ? rrc : IM_ECONFLICT;
	}
	return rc;
}

uint32_t
im_shard_count(const im_shard_map *map, im_kind kind, const char *owner)
{
	int64_t idx;

	if (map == NULL || !kind_ok(kind) || !owner_ok(owner)) {
		return 0;
	}
	idx = name_lookup(map, owner);
	return idx < 0 ? 0 : map->counts[kind][idx];
}

/*
 * Planner order: a node sorts before another when it has more slots, then
 * by name, so the plan does not depend on the order of the node list.
 */
static bool
heavier(const im_shard_map *map, const char *const *nodes, uint32_t a,
	uint32_t b)
{
	if (map->load[a] != map->load[b]) {
		return map->load[a] > map->load[b];
	}
	return strcmp(nodes[a], nodes[b]) < 0;
}

/* Insertion sort: n is bounded by max_nodes and plan is not hot. */
static void
sort_heavy_first(const im_shard_map *map, const char *const *nodes,
		 uint32_t n)
{
	uint32_t i, j;

	for (i = 0; i < n; i++) {
		map->order[i] = i;
	}
	for (i = 1; i < n; i++) {
		uint32_t v = map->order[i];

		for (j = i; j > 0 && heavier(map, nodes, v, map->order[j - 1]);
		     j--) {
			map->order[j] = map->order[j - 1];
		}
		map->order[j] = v;
	}
}

/* Hands pooled slots to receivers, lightest first. */
typedef struct plan_out {
	im_shard_move *moves;
	size_t max_moves;
	size_t nmoves;
	uint32_t cursor; /* position in order, counting down */
} plan_out;

static void
emit(im_shard_map *map, const char *const *nodes, plan_out *po, uint32_t s,
     im_epoch epoch)
{
	uint32_t node;

	/* The pool is exactly the sum of deficits, so a receiver exists. */
	while (map->left[map->order[po->cursor - 1]] == 0) {
		po->cursor--;
		assert(po->cursor > 0);
	}
	node = map->order[po->cursor - 1];
	map->left[node]--;
	if (po->nmoves < po->max_moves) {
		po->moves[po->nmoves].slot = s;
		po->moves[po->nmoves].epoch = epoch;
		po->moves[po->nmoves].to = nodes[node];
	}
	po->nmoves++;
}

int
im_shard_plan(const im_shard_map *cmap, im_kind kind, const char *const *nodes,
	      size_t n, im_shard_move *moves_out, size_t max_moves,
	      size_t *nmoves_out)
{
	im_shard_map *map = (im_shard_map *)cmap;
	uint32_t i, s, base, rem;
	const shard_slot *sl;
	plan_out po;

	if (map == NULL || !kind_ok(kind) || nodes == NULL || n == 0 ||
	    n > map->max_nodes || (moves_out == NULL && max_moves > 0) ||
	    nmoves_out == NULL) {
		return IM_EINVAL;
	}
	for (i = 0; i < n; i++) {
		if (!owner_ok(nodes[i]) || nodes[i][0] == '\0') {
			return IM_EINVAL;
		}
	}
	sl = map->slots[kind];

	/* Which live node (if any) each interned owner is. */
	for (i = 0; i < map->nnames; i++) {
		map->node_of[i] = -1;
	}
	for (i = 0; i < n; i++) {
		int64_t idx = name_lookup(map, nodes[i]);

		map->load[i] = 0;
		if (idx < 0) {
			continue;
		}
		if (map->node_of[idx] >= 0) {
			return IM_EINVAL; /* listed twice */
		}
		map->node_of[idx] = (int32_t)i;
	}
	for (s = 0; s < map->nslots; s++) {
		int32_t node = map->node_of[sl[s].owner];

		if (node >= 0) {
			map->load[node]++;
		}
	}
	/* Names not yet interned have no slots; duplicates among them. */
	sort_heavy_first(map, nodes, (uint32_t)n);
	for (i = 1; i < n; i++) {
		if (strcmp(nodes[map->order[i - 1]], nodes[map->order[i]]) ==
		    0) {
			return IM_EINVAL;
		}
	}

	/*
	 * Targets: every node ends with floor or ceil of nslots/n; the ceil
	 * goes to the heaviest nodes, which minimises what has to move. Donors
	 * (load > quota) sort before receivers (load < quota): a donor holds
	 * more than base, a receiver at most base.
	 */
	base = map->nslots / (uint32_t)n;
	rem = map->nslots % (uint32_t)n;
	for (i = 0; i < n; i++) {
		uint32_t node = map->order[i];

		map->quota[node] = base + (i < rem ? 1 : 0);
		map->left[node] = map->load[node] < map->quota[node]
					  ? map->quota[node] - map->load[node]
					  : 0;
	}

	/*
	 * The pool: slots of dead or unowned owners (lowest first), then each
	 * donor's excess (its highest slots), handed to the lightest receivers
	 * first. The pool is exactly the sum of the deficits.
	 */
	po.moves = moves_out;
	po.max_moves = max_moves;
	po.nmoves = 0;
	po.cursor = (uint32_t)n;
	for (s = 0; s < map->nslots; s++) {
		if (map->node_of[sl[s].owner] < 0) {
			emit(map, nodes, &po, s, sl[s].epoch);
		}
	}
	for (s = map->nslots; s-- > 0;) {
		int32_t node = map->node_of[sl[s].owner];

		if (node >= 0 && map->load[node] > map->quota[node]) {
			map->load[node]--;
			emit(map, nodes, &po, s, sl[s].epoch);
		}
	}
	*nmoves_out = po.nmoves;
	return po.nmoves > max_moves ? IM_EFULL : IM_OK;
}
