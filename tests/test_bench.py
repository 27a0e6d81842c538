import importlib.util
import sys
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench", Path(__file__).parent.parent / "benchmarks" / "bench.py")
bench = importlib.util.module_from_spec(spec)
sys.modules["bench"] = bench  # dataclasses look their module up there
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


@pytest.mark.parametrize("precision, flags, vendor, family, expected", [
    ("float32", {"fma", "avx2"}, "AuthenticAMD", 23, 32),                        # Zen 2: 2 x 256-bit FMA
    ("float32", {"fma", "avx512f", "avx512_bf16"}, "AuthenticAMD", 25, 32),      # Zen 4: AVX-512 on 256-bit pipes
    ("bfloat16", {"fma", "avx512f", "avx512_bf16"}, "AuthenticAMD", 25, 64),     # bf16 dot products: twice
    ("float32", {"fma", "avx512f", "avx512_bf16", "amx_bf16"}, "GenuineIntel", 6, 64),
    ("bfloat16", {"fma", "avx512f", "avx512_bf16", "amx_bf16"}, "GenuineIntel", 6, 1024),  # AMX tiles
    ("bfloat16", {"fma", "avx2"}, "GenuineIntel", 6, 32),                        # no native bf16: FP32 rate
])
def test_flops_per_cycle_follows_the_instruction_set(precision, flags, vendor, family, expected):
    assert bench.flops_per_cycle(precision, flags, vendor, family) == expected


def test_peak_is_cores_times_clock_times_flops_per_cycle(monkeypatch):
    from resbook import settings
    info = {"cpu MHz": "2500.000", "flags": "fma avx2", "vendor_id": "AuthenticAMD", "cpu family": "23"}
    monkeypatch.setattr(settings, "cpu_info", lambda: info)
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.peak_gflops("float32") == pytest.approx(2 * 2.5 * 32)
    monkeypatch.setattr(settings, "cpu_info", lambda: {})
    assert bench.peak_gflops("float32") is None


def test_keras_train_flops_counts_convolutions_and_dense_layers_and_frozen_ones_once():
    import keras
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, padding="same"),
                              keras.layers.GlobalAveragePooling2D()])
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(5)(inner(inputs)))
    conv, dense = 2 * 8 * 8 * 3 * 3 * 3 * 4, 2 * 4 * 5
    assert bench.keras_train_flops(model) == 3 * (conv + dense)
    inner.trainable = False
    assert bench.keras_train_flops(model) == conv + 3 * dense
