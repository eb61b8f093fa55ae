/*
 * Who may take a slot, and how: the slot moves of every server in one
 * place. imd claims every slot at start; an imnode Connector or Chatter
 * takes its fair share, hands slots over to nodes that joined, takes
 * back what it held under an earlier incarnation and, only when no Router
 * is up, the slots of dead nodes; a Router moves the slots of the nodes
 * it judged dead. Each of these is a plan over the live owners
 * (im_shard_plan) and a compare-and-set per slot in the store
 * (im_shard_claim: epoch + 1, the old owner is fenced), so they are safe
 * together: whoever loses a CAS finds the winner in its reloaded map.
 *
 * Kept apart from the binaries (servers/imd, servers/cluster/node_main.c)
 * and the Router (router_judge.c) so that the rules are written once and
 * none of it needs a socket: only the store and the slot map.
 * Thread-safety: the caller's thread; map and st are borrowed.
 */
#ifndef IM_SRV_SLOT_POLICY_H
#define IM_SRV_SLOT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "im/shard.h"
#include "im/store.h"

/*
 * Claim every slot of both kinds for owner, at the epochs the map holds:
 * one transaction per kind where the store has slot_cas_many, else one
 * per slot. A conflict (another owner moved meanwhile) reloads the map
 * and tries once more.
 * @retval IM_OK, IM_ECONFLICT, or the store's error; *failed_kind says
 *         which kind failed
 */
int slot_policy_claim_all(im_shard_map *map, im_store *st, const char *owner,
                          im_kind *failed_kind);

typedef struct slot_policy_ops {
	/* Must provide: whether the planned move of mv->slot from cur->owner
	 * to mv->to goes ahead now. It may prepare the move (commit what is
	 * pending for the slot) before answering true. */
	bool (*admit)(void *payload, im_kind kind, const im_shard_move *mv,
	              const im_shard_entry *cur);
	/* May be NULL: the CAS moved the slot; epoch is its new one. */
	void (*moved)(void *payload, im_kind kind, const im_shard_move *mv,
	              const im_shard_entry *cur, im_epoch epoch);
} slot_policy_ops;

typedef struct slot_policy_result {
	uint32_t moved;     /* slots the CAS moved */
	uint32_t conflicts; /* moves another mover won first */
	uint32_t slot;      /* the slot whose CAS failed (error return) */
	bool planned;       /* false: im_shard_plan itself failed */
} slot_policy_result;

/*
 * Plan kind's slots over the live owners (the same plan on every node and
 * Router for the same map and set) and CAS each move that ops->admit
 * admits. A lost CAS (IM_ECONFLICT) is counted and skipped; any other
 * store error stops the walk. moves is the caller's scratch, max_moves
 * long (a longer plan is cut there and finished at a later call).
 * @retval IM_OK, IM_EINVAL, or the error of the plan or of a CAS
 */
int slot_policy_rebalance(im_shard_map *map, im_store *st, im_kind kind,
                          const char *const *live, size_t nlive,
                          im_shard_move *moves, size_t max_moves,
                          const slot_policy_ops *ops, void *payload,
                          slot_policy_result *res);

/*
 * A node's rule for one planned move (imnode Connector or Chatter; self
 * is its owner string). Take a slot planned for us only when its owner is
 * gone (owner_gone: unowned, unknown, dead, or an older incarnation), and
 * of a gone owner only the unowned slots and our own earlier life's
 * unless no Router is up: a dead node's slots are the Routers' to move,
 * we are the fallback. Hand over a slot of ours planned for another.
 */
typedef enum slot_node_action {
	SLOT_NODE_SKIP = 0,
	SLOT_NODE_TAKE,
	SLOT_NODE_HAND_OVER
} slot_node_action;

slot_node_action slot_policy_node_action(const char *name, const char *self,
                                         const im_shard_entry *cur,
                                         const im_shard_move *mv,
                                         bool owner_gone, bool routers_up);

/* owner is node `name` under an incarnation other than self ("NAME/..."). */
bool slot_policy_earlier_self(const char *name, const char *self,
                              const char *owner);

/*
 * A node back as a new incarnation takes back, by CAS from its old owner
 * string to the new one, the slots of kind nobody moved meanwhile. Returns
 * how many it took back; a slot whose CAS fails stays with its holder.
 */
uint32_t slot_policy_take_back(im_shard_map *map, im_store *st, im_kind kind,
                               const char *old_owner, const char *new_owner);

/*
 * Reload the map from the store and count owner's slots of kind that came
 * and went: *lost > 0 means another node took some while we could not
 * heartbeat (a Connector then sheds those users to the new owner), and
 * *gained > 0 that a Router moved some to us. On an error the counts are
 * 0 and the map is unchanged.
 * @retval IM_OK, or the store's error
 */
int slot_policy_reload(im_shard_map *map, im_store *st, im_kind kind,
                       const char *owner, uint32_t *lost, uint32_t *gained);

#endif
