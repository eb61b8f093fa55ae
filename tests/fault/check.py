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
  liveness    every send is acked by the end of the drain.

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
         "deliver-phantom", "loss", "unacked")


class History:
    def __init__(self):
        self.groups = {}      # gid -> [uid]
        self.sends = []       # (t, uid, gid, dedup)
        self.acks = []        # (t, uid, gid, dedup, seq, dup)
        self.delivers = []    # (t, uid, gid, seq, prev, sender, dedup)
        self.stored = []      # (gid, seq, prev, sender, dedup)
        self.faults = []      # (t, kind, target)
        self.phases = {}      # name -> t

    def parse_line(self, line, where="?"):
        f = line.split()
        if not f or f[0].startswith("#"):
            return
        k = f[0]
        need = {"G": 2, "S": 5, "A": 7, "D": 8, "M": 6, "F": 3, "X": 3}
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
