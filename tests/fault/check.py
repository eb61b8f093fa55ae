#!/usr/bin/env python3
"""The history checker of the fault tests (tests/fault/README.md).

Reads one or more history files (fault_load's lines G S A D C E X M, and
the fault script's F lines) and proves over the whole history:

  no loss     every acked send is stored with the acked seq, and every
              stored message is delivered to every member of its group
              (the driver drains until members are online and caught up,
              so a member that missed a push must have synced it);
  no dup      no member sees a (group, seq) twice after client dedup, no
              dedup key (group, sender, dedup) is stored twice;
  order       per member and group, delivered seqs strictly increase and
              every delivery's prev_seq is the member's previous seq (the
              first is 0: members are in from the group's creation); the
              stored chain is unbroken (prev_seq = previous stored seq);
  no phantom  no ack and no delivery of a message that is not stored
              (committed) as it was acked or delivered;
  liveness    every send is acked by the end of the drain;
  membership  no member lost (a member whose last change answered done
              was an add, with no remove asked after it, is in the
              store's final members) and no phantom member (one in the
              store whose last done change was a remove with no add asked
              after it, or that nobody ever added);
  reads       read pointers never go back: the READ events a client gets
              for a group never move backwards, and neither the store's
              final pointer nor the client's is behind any of them; every
              READ event answers a MarkRead of that user that asked at
              least that far, every JOINED/LEFT event a change asked for
              that user and group (no phantom event);
  unread      at the end, each client's unread count of each of its
              groups equals what the store implies: last ordinal - read
              ordinal (as the server counts unread; a message of the
              user's own is read, in the lists and in the store).

Each violation names its kind and the events involved. For every fault
(F t kind target) it reports the unavailability window: the longest time
from the fault to the first ack in a group, over the groups (a group the
fault did not touch acks within the send interval).

Usage: check.py [--json] HISTORY [HISTORY...]
Exit status: 0 no violations, 1 violations, 2 bad input.
"""
import json
import sys

KINDS = ("lost-ack", "ack-seq-mismatch", "ack-conflict", "store-dup",
         "store-chain", "deliver-dup", "deliver-order", "deliver-chain",
         "deliver-phantom", "loss", "unacked", "member-lost",
         "member-phantom", "read-backwards", "event-phantom",
         "unread-mismatch")

EV_JOINED, EV_LEFT, EV_CREATED, EV_READ = 1, 2, 3, 4


class History:
    def __init__(self):
        self.groups = {}      # gid -> [uid]
        self.sends = []       # (t, uid, gid, dedup)
        self.acks = []        # (t, uid, gid, dedup, seq, dup)
        self.delivers = []    # (t, uid, gid, seq, prev, sender, dedup)
        self.stored = []      # (gid, seq, prev, sender, dedup)
        self.faults = []      # (t, kind, target)
        self.phases = {}      # name -> t
        self.changes = []     # (t, actor, gid, user, "add"|"remove", req)
        self.reads = []       # (t, uid, gid, seq, req)
        self.replies = {}     # (uid, req) -> (t, code)
        self.events = []      # (t, uid, type, gid, read_seq, actor)
        self.final_members = {}  # gid -> set of uids (store, at the end)
        self.store_reads = {}    # (uid, gid) -> (rseq, rord, lseq, lord)
        self.client_reads = {}   # (uid, gid) -> (rseq, rord, lseq, lord,
                                 #                unread)

    def parse_line(self, line, where="?"):
        f = line.split()
        if not f or f[0].startswith("#"):
            return
        k = f[0]
        need = {"G": 2, "S": 5, "A": 7, "D": 8, "M": 6, "F": 3, "X": 3,
                "B": 7, "K": 6, "R": 5, "V": 7, "N": 2, "P": 7, "U": 8}
        try:
            if len(f) < need.get(k, 1):
                raise ValueError("too few fields")
            if k == "G":
                self.groups[int(f[1])] = [int(x) for x in f[2:]]
            elif k == "S":
                self.sends.append(tuple(int(x) for x in f[1:5]))
            elif k == "A":
                self.acks.append(tuple(int(x) for x in f[1:7]))
            elif k == "D":
                self.delivers.append(tuple(int(x) for x in f[1:8]))
            elif k == "M":
                self.stored.append(tuple(int(x) for x in f[1:6]))
            elif k == "F":
                self.faults.append((int(f[1]), f[2],
                                    f[3] if len(f) > 3 else ""))
            elif k == "X":
                self.phases[f[2]] = int(f[1])
            elif k == "B":
                if f[5] not in ("add", "remove"):
                    raise ValueError("bad change " + f[5])
                self.changes.append((int(f[1]), int(f[2]), int(f[3]),
                                     int(f[4]), f[5], int(f[6])))
            elif k == "K":
                self.reads.append(tuple(int(x) for x in f[1:6]))
            elif k == "R":
                self.replies[(int(f[2]), int(f[3]))] = (int(f[1]),
                                                        int(f[4]))
            elif k == "V":
                self.events.append(tuple(int(x) for x in f[1:7]))
            elif k == "N":
                self.final_members[int(f[1])] = {int(x) for x in f[2:]}
            elif k == "P":
                self.store_reads[(int(f[1]), int(f[2]))] = tuple(
                    int(x) for x in f[3:7])
            elif k == "U":
                self.client_reads[(int(f[1]), int(f[2]))] = tuple(
                    int(x) for x in f[3:8])
            elif k in ("C", "E"):
                pass
            else:
                raise ValueError("unknown record " + k)
        except (IndexError, ValueError) as e:
            raise ValueError("%s: bad line %r: %s" % (where, line, e))

    def load(self, path):
        with open(path) as fh:
            for n, line in enumerate(fh, 1):
                self.parse_line(line, "%s:%d" % (path, n))


def check(h):
    """Return (violations, faults): violations is a list of
    {kind, msg, events}; faults a list of {t, kind, target, unavail_ms,
    group}."""
    v = []

    def bad(kind, msg, *events):
        v.append({"kind": kind, "msg": msg, "events": list(events)})

    # the store: dedup keys unique, chain unbroken
    by_key = {}
    by_seq = {}
    per_group = {}
    for m in h.stored:
        gid, seq, prev, sender, dedup = m
        key = (gid, sender, dedup)
        if key in by_key:
            bad("store-dup", "dedup key %s stored twice" % (key,),
                ("M",) + by_key[key], ("M",) + m)
        else:
            by_key[key] = m
        if (gid, seq) in by_seq:
            bad("store-dup", "(group, seq) %s stored twice" % ((gid, seq),),
                ("M",) + by_seq[(gid, seq)], ("M",) + m)
        by_seq[(gid, seq)] = m
        per_group.setdefault(gid, []).append(m)
    for gid, ms in per_group.items():
        ms.sort(key=lambda m: m[1])
        last = 0
        for m in ms:
            if m[2] != last:
                bad("store-chain", "group %d: seq %d has prev_seq %d, "
                    "the previous stored seq is %d" % (gid, m[1], m[2], last),
                    ("M",) + m)
            last = m[1]

    # acks: stored as acked, one seq per dedup key
    acked = {}
    for a in h.acks:
        t, uid, gid, dedup, seq, dup = a
        key = (gid, uid, dedup)
        if key in acked and acked[key][4] != seq:
            bad("ack-conflict", "dedup key %s acked with seq %d and %d"
                % (key, acked[key][4], seq), ("A",) + acked[key], ("A",) + a)
        acked.setdefault(key, a)
        m = by_key.get(key)
        if m is None:
            bad("lost-ack", "acked seq %d of %s is not in the store"
                % (seq, key), ("A",) + a,
                ("M",) + by_seq[(gid, seq)] if (gid, seq) in by_seq else
                ("M", "none"))
        elif m[1] != seq:
            bad("ack-seq-mismatch", "acked seq %d of %s, stored as seq %d"
                % (seq, key, m[1]), ("A",) + a, ("M",) + m)

    # sends: every one acked
    for s in h.sends:
        t, uid, gid, dedup = s
        if (gid, uid, dedup) not in acked:
            bad("unacked", "send %s never acked" % ((gid, uid, dedup),),
                ("S",) + s)

    # deliveries per member and group
    seen = {}   # (uid, gid) -> {seq: event}
    lastd = {}  # (uid, gid) -> last delivery
    for d in h.delivers:
        t, uid, gid, seq, prev, sender, dedup = d
        mk = (uid, gid)
        s = seen.setdefault(mk, {})
        if seq in s:
            bad("deliver-dup", "member %d saw group %d seq %d twice"
                % (uid, gid, seq), ("D",) + s[seq], ("D",) + d)
        s.setdefault(seq, d)
        p = lastd.get(mk)
        pseq = p[3] if p is not None else 0
        if p is not None and seq <= pseq:
            bad("deliver-order", "member %d group %d: seq %d after %d"
                % (uid, gid, seq, pseq), ("D",) + p, ("D",) + d)
        elif prev != pseq:
            bad("deliver-chain", "member %d group %d: seq %d has prev_seq "
                "%d, the member's previous seq is %d"
                % (uid, gid, seq, prev, pseq),
                ("D",) + p if p is not None else ("D", "none"), ("D",) + d)
        lastd[mk] = d
        m = by_seq.get((gid, seq))
        if m is None or m[2] != prev or m[3] != sender or m[4] != dedup:
            bad("deliver-phantom", "member %d got group %d seq %d that is "
                "not stored as delivered" % (uid, gid, seq), ("D",) + d,
                ("M",) + m if m is not None else ("M", "none"))

    # no loss: every stored message reached every member
    for m in h.stored:
        gid, seq = m[0], m[1]
        for uid in h.groups.get(gid, []):
            if seq not in seen.get((uid, gid), {}):
                bad("loss", "member %d never got group %d seq %d"
                    % (uid, gid, seq), ("M",) + m)

    check_members(h, bad)
    check_reads(h, bad)

    # unavailability per fault: fault to the first ack in each group
    faults = []
    acks_by_group = {}
    acks_by_user = {}
    for a in sorted(h.acks):
        acks_by_group.setdefault(a[2], []).append(a[0])
        acks_by_user.setdefault(a[1], []).append(a[0])
    end = h.phases.get("drain")
    for t, kind, target in sorted(h.faults):
        worst, wg = 0, None
        for gid in h.groups:
            first = next((x for x in acks_by_group.get(gid, []) if x > t),
                         None)
            if first is None:
                if end is not None and end > t:
                    first = end  # no ack until the load ended
                else:
                    continue
            if first - t > worst:
                worst, wg = first - t, gid
        # the same per client: a Connector fault stops its users, not
        # their groups (the other members keep acking)
        cworst, cu = 0, None
        for uid, ts in acks_by_user.items():
            first = next((x for x in ts if x > t), None)
            if first is None:
                if end is not None and end > t:
                    first = end
                else:
                    continue
            if first - t > cworst:
                cworst, cu = first - t, uid
        faults.append({"t": t, "kind": kind, "target": target,
                       "unavail_ms": worst, "group": wg,
                       "client_unavail_ms": cworst, "client": cu})
    return v, faults


def check_members(h, bad):
    """No lost and no phantom member, from the changes asked (B), their
    answers (R) and the store's final members (N)."""
    if not h.final_members:
        return
    per_pair = {}
    for c in sorted(h.changes):
        per_pair.setdefault((c[2], c[3]), []).append(c)
    for (gid, user), cs in sorted(per_pair.items()):
        if gid not in h.final_members:
            continue
        done = [i for i, c in enumerate(cs)
                if h.replies.get((c[1], c[5]), (0, None))[1] == 0]
        present = user in h.final_members[gid]
        if not done:
            if present and not any(c[4] == "add" for c in cs):
                bad("member-phantom", "user %d is in group %d, never "
                    "added" % (user, gid), ("N", gid, user))
            continue
        last = cs[done[-1]]
        later = {c[4] for c in cs[done[-1] + 1:]}
        want = last[4] == "add"
        if ("remove" if want else "add") in later:
            continue  # the opposite asked later, never done: unknown
        if want and not present:
            bad("member-lost", "user %d added to group %d (answered "
                "done) is not a member at the end" % (user, gid),
                ("B",) + last, ("N", gid, "without", user))
        elif not want and present:
            bad("member-phantom", "user %d removed from group %d "
                "(answered done) is a member at the end" % (user, gid),
                ("B",) + last, ("N", gid, "with", user))
    # members nobody added: not in the group's first members, no change
    for gid, users in h.final_members.items():
        for user in users:
            if user in h.groups.get(gid, []) or (gid, user) in per_pair:
                continue
            bad("member-phantom", "user %d is in group %d, never added"
                % (user, gid), ("N", gid, user))


def check_reads(h, bad):
    """Read pointers never go back, user events answer a request, and
    unread counts equal what the store implies."""
    asked = {}   # (uid, gid) -> [(t, seq)] MarkReads asked
    for t, uid, gid, seq, req in h.reads:
        asked.setdefault((uid, gid), []).append((t, seq))
    changed = {}  # (user, gid, kind) -> first time asked
    for t, actor, gid, user, kind, req in h.changes:
        changed.setdefault((user, gid, kind), t)
    high = {}    # (uid, gid) -> the READ event with the highest pointer
    for e in sorted(h.events):
        t, uid, typ, gid, rseq, actor = e
        if typ == EV_READ:
            p = high.get((uid, gid))
            if p is not None and rseq < p[4]:
                bad("read-backwards", "user %d group %d: a READ event at "
                    "seq %d after one at %d" % (uid, gid, rseq, p[4]),
                    ("V",) + p, ("V",) + e)
            if p is None or rseq > p[4]:
                high[(uid, gid)] = e
            if not any(s >= rseq and at <= t
                       for at, s in asked.get((uid, gid), [])):
                bad("event-phantom", "user %d got a READ of group %d at "
                    "seq %d that no MarkRead asked" % (uid, gid, rseq),
                    ("V",) + e)
        elif typ in (EV_JOINED, EV_LEFT):
            kind = "add" if typ == EV_JOINED else "remove"
            at = changed.get((uid, gid, kind))
            if at is None or at > t:
                bad("event-phantom", "user %d got %s for group %d that "
                    "nobody asked" % (uid, "JOINED" if typ == EV_JOINED
                                      else "LEFT", gid), ("V",) + e)
    for (uid, gid), e in sorted(high.items()):
        for what, seen in (("store", h.store_reads), ("client",
                                                      h.client_reads)):
            r = seen.get((uid, gid))
            if r is not None and r[0] < e[4]:
                bad("read-backwards", "user %d group %d: the %s's read "
                    "pointer ends at %d, behind a READ at %d"
                    % (uid, gid, what, r[0], e[4]), ("V",) + e,
                    (what[0].upper(), uid, gid) + r)
    # The server's unread (libim/convlist.c): last ordinal - read
    # ordinal, where a message the user sent counts as read (its list
    # moves the pointer to it, and so does the store's msg_append).
    for (uid, gid), c in sorted(h.client_reads.items()):
        s = h.store_reads.get((uid, gid))
        if s is None:
            continue
        unread = max(0, s[3] - s[1])
        if c[4] != unread:
            bad("unread-mismatch", "user %d group %d: the client counts "
                "%d unread, the store implies %d (last ordinal %d, read "
                "ordinal %d)" % (uid, gid, c[4], unread, s[3], s[1]),
                ("U", uid, gid) + c, ("P", uid, gid) + s)


def main(argv):
    as_json = False
    paths = []
    for a in argv[1:]:
        if a == "--json":
            as_json = True
        else:
            paths.append(a)
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    h = History()
    try:
        for p in paths:
            h.load(p)
    except (OSError, ValueError) as e:
        print("check.py: %s" % e, file=sys.stderr)
        return 2
    v, faults = check(h)
    print("history: %d groups, %d sends, %d acks, %d deliveries, "
          "%d stored, %d faults" % (len(h.groups), len(h.sends),
                                    len(h.acks), len(h.delivers),
                                    len(h.stored), len(h.faults)))
    print("history: %d membership changes asked (%d answered done), "
          "%d MarkReads asked (%d done), %d user events, %d unread "
          "counts compared"
          % (len(h.changes),
             sum(1 for c in h.changes
                 if h.replies.get((c[1], c[5]), (0, None))[1] == 0),
             len(h.reads),
             sum(1 for r in h.reads
                 if h.replies.get((r[1], r[4]), (0, None))[1] == 0),
             len(h.events),
             sum(1 for k in h.client_reads if k in h.store_reads)))
    shown = {}
    for x in v:
        shown[x["kind"]] = shown.get(x["kind"], 0) + 1
        if shown[x["kind"]] <= 10:
            print("VIOLATION %s: %s" % (x["kind"], x["msg"]))
            for e in x["events"]:
                print("    " + " ".join(str(f) for f in e))
    for k, n in sorted(shown.items()):
        if n > 10:
            print("... %d more %s" % (n - 10, k))
    for f in faults:
        print("fault %s %s at %d: unavailable %d ms (group %s), "
              "a client waited %d ms (user %s)"
              % (f["kind"], f["target"], f["t"], f["unavail_ms"],
                 f["group"], f["client_unavail_ms"], f["client"]))
    print("violations: %d" % len(v))
    if as_json:
        print("RESULT " + json.dumps({"violations": len(v),
                                      "by_kind": shown,
                                      "faults": faults}))
    return 1 if v else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
