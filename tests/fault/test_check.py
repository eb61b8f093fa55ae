#!/usr/bin/env python3
"""Unit test of check.py on small hand-made histories: a clean one passes,
and each kind of violation is caught (and only where it is)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402

# Group 7 of users 1 and 2; user 1 sends two messages, both acked, stored
# and delivered to both members in order; one fault.
CLEAN = """
G 7 1 2
X 900 load
S 1000 1 7 11
A 1010 1 7 11 5 0
D 1011 1 7 5 0 1 11
D 1012 2 7 5 0 1 11
F 1100 kill-chatter chatter-1
S 1200 1 7 12
A 2600 1 7 12 9 0
A 2700 1 7 12 9 1
D 2601 1 7 9 5 1 12
D 2602 2 7 9 5 1 12
X 3000 drain
M 7 5 0 1 11
M 7 9 5 1 12
"""


def run(text):
    h = check.History()
    for line in text.strip().splitlines():
        h.parse_line(line)
    return check.check(h)


def kinds(text):
    return sorted({x["kind"] for x in run(text)[0]})


def edit(text, old, new):
    assert old in text, old
    return text.replace(old, new, 1)


class CheckerCatchesEveryViolation(unittest.TestCase):
    def test_a_clean_history_has_no_violation(self):
        v, faults = run(CLEAN)
        self.assertEqual(v, [])

    def test_the_unavailability_window_runs_to_the_first_ack(self):
        v, faults = run(CLEAN)
        self.assertEqual(len(faults), 1)
        self.assertEqual(faults[0]["unavail_ms"], 2600 - 1100)
        self.assertEqual(faults[0]["kind"], "kill-chatter")

    def test_a_client_waits_until_its_own_first_ack_after_a_fault(self):
        # user 2 acks at once after the fault, user 1 only at 2600
        text = CLEAN + "S 1150 2 7 50\nA 1160 2 7 50 10 0\n" + \
            "M 7 10 9 2 50\nD 1161 1 7 10 9 2 50\n" + \
            "D 1162 2 7 10 9 2 50\n"
        v, faults = run(text)
        self.assertEqual(faults[0]["client_unavail_ms"], 2600 - 1100)
        self.assertEqual(faults[0]["client"], 1)
        self.assertEqual(faults[0]["unavail_ms"], 1160 - 1100)

    def test_a_group_without_acks_is_unavailable_until_the_drain(self):
        text = CLEAN.replace("A 2600 1 7 12 9 0\n", "").replace(
            "A 2700 1 7 12 9 1\n", "")
        v, faults = run(text)
        self.assertEqual(faults[0]["unavail_ms"], 3000 - 1100)
        self.assertIn("unacked", {x["kind"] for x in v})

    def test_an_acked_message_missing_from_the_store_is_lost(self):
        self.assertIn("lost-ack", kinds(edit(CLEAN, "M 7 9 5 1 12\n", "")))

    def test_an_ack_for_another_seq_than_stored_is_caught(self):
        self.assertIn("ack-seq-mismatch",
                      kinds(edit(CLEAN, "A 1010 1 7 11 5 0",
                                 "A 1010 1 7 11 6 0")))

    def test_two_acks_of_one_dedup_key_with_different_seqs_conflict(self):
        self.assertIn("ack-conflict",
                      kinds(edit(CLEAN, "A 2700 1 7 12 9 1",
                                 "A 2700 1 7 12 10 1")))

    def test_an_ack_of_an_uncommitted_message_is_caught(self):
        # acked, but what is stored under that seq is someone else's
        text = edit(CLEAN, "A 1010 1 7 11 5 0", "A 1010 1 7 13 5 0")
        self.assertIn("lost-ack", kinds(text))

    def test_a_dedup_key_stored_twice_is_caught(self):
        text = CLEAN + "M 7 10 9 1 12\n"
        self.assertIn("store-dup", kinds(text))

    def test_a_broken_stored_chain_is_caught(self):
        self.assertIn("store-chain",
                      kinds(edit(CLEAN, "M 7 9 5 1 12", "M 7 9 4 1 12")))

    def test_a_member_seeing_a_seq_twice_is_caught(self):
        text = CLEAN + "D 2800 2 7 9 5 1 12\n"
        self.assertIn("deliver-dup", kinds(text))

    def test_deliveries_out_of_order_are_caught(self):
        text = CLEAN.replace("D 1012 2 7 5 0 1 11\n", "") + \
            "D 2900 2 7 5 0 1 11\n"
        self.assertIn("deliver-order", kinds(text))

    def test_a_skipped_prev_seq_is_caught(self):
        text = CLEAN.replace("D 1012 2 7 5 0 1 11\n", "")
        k = kinds(text)
        self.assertIn("deliver-chain", k)
        self.assertIn("loss", k)

    def test_a_delivery_of_an_unstored_message_is_caught(self):
        text = CLEAN + "D 2900 1 7 12 9 1 99\n"
        self.assertIn("deliver-phantom", kinds(text))

    def test_a_delivery_differing_from_the_store_is_caught(self):
        self.assertIn("deliver-phantom",
                      kinds(edit(CLEAN, "D 2602 2 7 9 5 1 12",
                                 "D 2602 2 7 9 5 1 77")))

    def test_a_member_that_never_got_a_message_is_a_loss(self):
        text = CLEAN.replace("D 2602 2 7 9 5 1 12\n", "")
        self.assertEqual(kinds(text), ["loss"])

    def test_a_send_never_acked_is_caught(self):
        text = CLEAN + "S 2900 2 7 40\n"
        self.assertEqual(kinds(text), ["unacked"])

    def test_violations_name_the_events_involved(self):
        v, _ = run(CLEAN + "D 2800 2 7 9 5 1 12\n")
        self.assertEqual(v[0]["events"][1], ("D", 2800, 2, 7, 9, 5, 1, 12))

    def test_a_malformed_line_is_rejected(self):
        h = check.History()
        with self.assertRaises(ValueError):
            h.parse_line("A 1 2")
        with self.assertRaises(ValueError):
            h.parse_line("Q 1 2")

    def test_the_command_line_exits_1_on_violations(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".hist",
                                         delete=False) as f:
            f.write(CLEAN + "S 2900 2 7 40\n")
        try:
            self.assertEqual(check.main(["check.py", f.name]), 1)
            with open(f.name, "w") as g:
                g.write(CLEAN)
            self.assertEqual(check.main(["check.py", "--json", f.name]), 0)
        finally:
            os.unlink(f.name)


# The same load with membership churn and reads: user 3 is added to group
# 7 by its creator 1 (the first try unanswered, the second done), removed
# again (done), then added once more (done); user 2 marks group 7 read up
# to seq 5, then 9, and gets the READ events; at the end 3 is a member,
# user 2's pointers are at 9 and its client counts 0 unread, as the store
# implies; user 1 never marked read, but sent both messages: its own
# messages count as read (both pointers are at its last one).
CHURN = CLEAN + """
B 1300 1 7 3 add 41
R 6300 1 41 1011
B 6500 1 7 3 add 42
R 6510 1 42 0
V 6511 3 1 7 0 1
K 6600 2 7 5 43
R 6610 2 43 0
V 6611 2 4 7 5 2
B 7000 1 7 3 remove 44
R 7010 1 44 0
V 7011 3 2 7 0 1
K 7100 2 7 9 45
R 7110 2 45 0
V 7111 2 4 7 9 2
B 7500 1 7 3 add 46
R 7510 1 46 0
N 7 1 2 3
P 2 7 9 2 9 2
U 2 7 9 2 9 2 0
P 1 7 9 2 9 2
U 1 7 9 2 9 2 0
"""


class CheckerCatchesMembershipAndReadViolations(unittest.TestCase):
    def test_a_clean_churn_history_has_no_violation(self):
        v, _ = run(CHURN)
        self.assertEqual(v, [])

    def test_an_added_member_missing_at_the_end_is_lost(self):
        self.assertEqual(kinds(edit(CHURN, "N 7 1 2 3", "N 7 1 2")),
                         ["member-lost"])

    def test_a_removed_member_still_there_is_a_phantom(self):
        text = edit(CHURN, "B 7500 1 7 3 add 46\nR 7510 1 46 0\n", "")
        self.assertEqual(kinds(text), ["member-phantom"])
        self.assertEqual(kinds(edit(text, "N 7 1 2 3", "N 7 1 2")), [])

    def test_a_member_nobody_added_is_a_phantom(self):
        self.assertEqual(kinds(edit(CHURN, "N 7 1 2 3", "N 7 1 2 3 4")),
                         ["member-phantom"])

    def test_a_change_with_an_unknown_outcome_allows_either_end(self):
        # the last remove was never answered: 3 may or may not be there
        text = edit(CHURN, "R 7510 1 46 0\n", "") + \
            "B 7600 1 7 3 remove 47\n"
        self.assertEqual(kinds(text), [])
        self.assertEqual(kinds(edit(text, "N 7 1 2 3", "N 7 1 2")), [])

    def test_a_read_event_moving_back_is_caught(self):
        self.assertIn("read-backwards",
                      kinds(CHURN + "V 7200 2 4 7 5 2\n"))

    def test_a_store_pointer_behind_a_read_seen_is_caught(self):
        text = edit(CHURN, "P 2 7 9 2 9 2", "P 2 7 5 1 9 2")
        self.assertIn("read-backwards", kinds(text))

    def test_a_read_event_nobody_asked_for_is_a_phantom(self):
        self.assertEqual(kinds(CHURN + "V 7200 1 4 7 9 1\n"),
                         ["event-phantom"])
        self.assertEqual(kinds(CHURN + "V 7200 2 4 7 9 2\n"), [])

    def test_a_join_event_nobody_asked_for_is_a_phantom(self):
        self.assertEqual(kinds(CHURN + "V 7200 4 1 7 0 1\n"),
                         ["event-phantom"])

    def test_an_unread_count_other_than_the_store_implies_is_caught(self):
        self.assertEqual(kinds(edit(CHURN, "U 1 7 9 2 9 2 0",
                                    "U 1 7 9 2 9 2 1")),
                         ["unread-mismatch"])

    def test_a_message_of_another_member_after_the_pointer_is_unread(self):
        # user 2 read up to 5 only: user 1's message 9 is unread for it
        text = CHURN.replace("K 7100 2 7 9 45\nR 7110 2 45 0\n"
                             "V 7111 2 4 7 9 2\n", "")
        text = edit(text, "P 2 7 9 2 9 2", "P 2 7 5 1 9 2")
        self.assertEqual(kinds(edit(text, "U 2 7 9 2 9 2 0",
                                    "U 2 7 5 1 9 2 1")), [])
        self.assertEqual(kinds(edit(text, "U 2 7 9 2 9 2 0",
                                    "U 2 7 5 1 9 2 0")),
                         ["unread-mismatch"])

    def test_new_lines_must_be_well_formed(self):
        h = check.History()
        with self.assertRaises(ValueError):
            h.parse_line("B 1 1 7 3 join 4")
        with self.assertRaises(ValueError):
            h.parse_line("P 1 7 0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
