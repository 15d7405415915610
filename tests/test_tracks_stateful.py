"""A hypothesis state machine: tracks against a dict-of-dicts model.

Random appends (times from a small set, so that merges into staged and into
committed entries are frequent, and older times are refused), flushes,
close-and-reopen, a view's reads, slices and ``findByTime``, with the
committed store and the model compared after every step, columns included.
"""

import shutil
import tempfile

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ml_dash import Experiment, load

TOPICS = ("robot/pose", "camera")
times = st.integers(0, 12).map(lambda n: n * 0.5)
fields = st.dictionaries(st.sampled_from(["x", "y", "label", "n.k"]),
                         st.one_of(st.integers(-5, 5), st.floats(-1e6, 1e6), st.text(max_size=3)),
                         max_size=3)


class TrackMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = tempfile.mkdtemp(prefix="ml_dash_tracks_")
        self.exp = Experiment(prefix="fuzz/tracks", dash_root=self.root)
        self.exp.run.start()
        self.committed = {topic: {} for topic in TOPICS}  # topic -> {ts: fields}
        self.staged = {topic: {} for topic in TOPICS}

    def teardown(self):
        if self.exp._session is not None:
            self.exp.run.complete()
        shutil.rmtree(self.root, ignore_errors=True)

    @rule(topic=st.sampled_from(TOPICS), ts=times, data=fields)
    def append(self, topic, ts, data):
        entry = dict(data)
        nested = {k: v for k, v in entry.items() if "." not in k}
        if "n.k" in entry:
            nested["n"] = {"k": entry["n.k"]}
        end = max(self.committed[topic], default=None)
        try:
            self.exp.tracks(topic).append(**nested, _ts=ts)
        except ValueError:
            assert end is not None and ts < end
            return
        assert end is None or ts >= end
        self.staged[topic].setdefault(ts, {}).update(entry)

    @rule()
    def flush(self):
        self.exp.flush()
        self.flush_model()

    @rule()
    def reopen(self):
        self.exp.run.complete()  # commits what is staged
        self.flush_model()
        self.exp = Experiment(prefix="fuzz/tracks", dash_root=self.root)
        self.exp.run.start()

    def flush_model(self):
        for topic in TOPICS:
            for ts, entry in self.staged[topic].items():
                self.committed[topic].setdefault(ts, {}).update(entry)
            self.staged[topic] = {}

    @rule(topic=st.sampled_from(TOPICS), query=st.integers(-1, 14).map(lambda n: n * 0.5 - 0.25))
    def find(self, topic, query):
        with load("fuzz/tracks", dash_root=self.root) as view:
            window = view.tracks(topic).slice()
            floor = [ts for ts in sorted(self.committed[topic]) if ts <= query]
            try:
                found = window.findByTime(query)
            except KeyError:
                assert not floor
                return
            assert found == {"timestamp": floor[-1], **self.committed[topic][floor[-1]]}

    @invariant()
    def committed_entries_and_columns_match(self):
        for topic in TOPICS:
            track = self.exp.tracks(topic)
            model = self.committed[topic]
            order = sorted(model)
            assert track.list_entries() == [{"timestamp": ts, **model[ts]} for ts in order]
            np.testing.assert_array_equal(track.timestamps(), np.array(order, dtype=float))
            for key in track.keys():
                if key == "_ts":
                    continue
                want = [model[ts].get(key) for ts in order]
                want = [float(v) if type(v) in (int, float) else np.nan for v in want]
                np.testing.assert_array_equal(track.column(key), np.array(want, dtype=float))


TrackMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
test_tracks_against_a_model = TrackMachine.TestCase
