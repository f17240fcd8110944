"""The index's merge rules (comode.store.index.state), on journal lines written by hand.

Each case is a history of writes to one video by several writers; the merged state must be
the same whatever order the journals are read in, must never call a video settled while a
write to it may still remove its group, and must survive a snapshot round trip.
"""

from __future__ import annotations

import itertools

import pytest

from comode.store.index.state import IndexState, Marker, parse_lines


def start(video, write, replaces=None):
    return {"op": "start", "video": video, "write": write, "replaces": replaces}


def done(video, write, status="complete", frames=10):
    return {"op": "done", "video": video, "write": write, "attrs": {"status": status, "frames": frames}, "bytes": 100}


def merged(journals: dict[str, list[dict]], order=None) -> IndexState:
    state = IndexState()
    for writer in order or journals:
        for entry in journals[writer]:
            state.apply(entry, writer=writer)
    return state


def every_order(journals: dict[str, list[dict]]) -> list[IndexState]:
    """The merge in every order of the journals, and line by line interleaved round robin."""
    states = [merged(journals, order) for order in itertools.permutations(journals)]
    interleaved = IndexState()
    for lines in itertools.zip_longest(*journals.values()):
        for writer, entry in zip(journals, lines):
            if entry is not None:
                interleaved.apply(entry, writer=writer)
    return states + [interleaved]


def view(state: IndexState, video: str = "v"):
    settled, token, live = state.settled(video)
    return settled, token, None if live is None else live.attrs["status"]


def test_a_write_counts_once_done_and_not_before():
    state = IndexState()
    state.apply(start("v", "a"), writer="host_1")
    assert view(state) == (False, None, None)  # started: its group may be half written
    state.apply(done("v", "a"), writer="host_1")
    assert view(state) == (True, "a", "complete")


def test_a_redo_replaces_the_old_write_before_it_touches_the_group():
    journals = {"host_1": [start("v", "a"), done("v", "a", "failed")], "host_2": [start("v", "b", replaces="a")]}
    for state in every_order(journals):
        assert view(state) == (False, None, None)  # b may have removed a's group: nobody may trust a
    journals["host_2"].append(done("v", "b"))
    for state in every_order(journals):
        assert view(state) == (True, "b", "complete") and list(state.videos["v"]) == ["b"]


def test_a_writer_that_did_not_know_the_group_it_removed_leaves_the_video_unsettled():
    """Two runs write one video at once: b read no marker (before a wrote its own) and then
    removed a's group.  Killed there, b leaves a's 'done' line behind: the video must not
    read as complete on its word."""
    journals = {"host_1": [start("v", "a"), done("v", "a")], "host_2": [start("v", "b")]}
    for state in every_order(journals):
        assert view(state) == (False, None, None) and state.unsettled() == ["v"]
    journals["host_2"].append(done("v", "b"))  # both finished: two live writes, the group tells which
    for state in every_order(journals):
        assert view(state) == (False, None, None)
        state.settle("v", Marker("b", {"status": "complete", "frames": 10}), writer_gone=lambda writer: False)
        assert view(state) == (True, "b", "complete")


def test_a_done_line_read_after_the_start_that_replaced_it_stays_replaced():
    journals = {
        "host_1": [start("v", "a"), done("v", "a")],
        "host_2": [start("v", "b", replaces="a"), done("v", "b", "failed")],
    }
    for state in every_order(journals):
        assert view(state) == (True, "b", "failed")


def test_settling_ends_the_writes_of_dead_writers_only():
    state = merged({"host_1": [start("v", "a"), done("v", "a")], "host_2": [start("v", "b", replaces="a")]})
    alive = IndexState.from_json(state.to_json())
    alive.settle("v", Marker.empty(), writer_gone=lambda writer: False)
    assert view(alive) == (False, None, None)  # b's writer may still be writing: keep asking the group
    # b's writer died after its marker, before its 'done' line: the group's write b is the one.
    state.settle("v", Marker("b", {"status": "complete", "frames": 12}), writer_gone=lambda writer: writer == "host_2")
    assert view(state) == (True, "b", "complete") and state.videos["v"]["b"].attrs["frames"] == 12
    # ... or died before: the group says 'writing' with b's id, which is what the index then says.
    cut = merged({"host_2": [start("v", "b")]})
    cut.settle("v", Marker("b", {"status": "writing"}), writer_gone=lambda writer: True)
    assert view(cut) == (True, "b", "writing")


def test_a_group_removed_by_hand_leaves_the_index_when_settled():
    state = merged({"host_1": [start("v", "a"), done("v", "a")]})
    state.settle("v", None, writer_gone=lambda writer: False)
    assert "v" not in state.videos


@pytest.mark.parametrize(
    "history",
    [
        {"host_1": [start("v", "a"), done("v", "a")]},
        {"host_1": [start("v", "a"), done("v", "a")], "host_2": [start("v", "b", replaces="a")]},
        {"host_1": [start("v", "a")], "host_2": [start("v", "b", replaces="a"), done("v", "b")]},
    ],
)
def test_a_snapshot_round_trip_changes_nothing_and_later_lines_apply_on_top(history):
    state = merged(history)
    again = IndexState.from_json(state.to_json())
    assert again.to_json() == state.to_json() and again.unsettled() == state.unsettled()
    later = [start("v", "c", replaces="b"), done("v", "c")]
    for target in (state, again):
        for entry in later:
            target.apply(entry, writer="host_3")
    assert view(state) == view(again)


def test_a_line_cut_short_by_a_kill_is_left_for_later():
    data = b'{"op":"start","video":"v","write":"a","replaces":null}\n{"op":"done","vi'
    entries, used = parse_lines(data)
    assert entries == [start("v", "a")] and used == data.index(b"\n") + 1
