import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench", Path(__file__).parent.parent / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_alternate_keeps_each_ways_fastest_round_and_alternates():
    calls = []
    times = {"plain": iter([5.2, 4.2, 5.2]), "ours": iter([4.2, 4.2, 5.2])}  # same cost, different stalls

    def way(k):
        def epoch():
            calls.append(k)
            return next(times[k])
        return epoch

    plain, ours = bench._alternate({"plain": way("plain"), "ours": way("ours")}, rounds=3, images=420)
    assert calls == ["plain", "ours"] * 3
    assert plain == pytest.approx(100.0) and ours == pytest.approx(100.0)  # medians would make it 1.24x
