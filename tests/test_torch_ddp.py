"""Data-parallel training with DistributedDataParallel under torchrun: two gloo processes on 127.0.0.1.

Every launch has a time limit and only loopback addresses are used. The
equality tests freeze BatchNorm (a fixed affine map): with batch statistics,
each process normalises its own half-batch and the two runs differ by design
(SyncBatchNorm, which would fix that, needs CUDA).
"""

import socket
import time

import numpy as np
import pytest
import torch

from resbook.errors import ResbookError
from resbook.train import torch_ddp
from resbook.train.torch_loop import epoch_order

SETTINGS = dict(epochs=2, batch_size=16, frozen_batchnorm=True, allreduce_probe=2, model=dict(widths=[8, 16, 32]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    path = tmp_path_factory.mktemp("ddp") / "digits.npz"
    np.savez(path, x_train=x[:192], y_train=y[:192], x_val=x[192:], y_val=y[192:])
    return path


@pytest.fixture(scope="module")
def two(data, tmp_path_factory):
    """Two processes with 16 examples each per step, for two epochs."""
    out = tmp_path_factory.mktemp("two")
    return torch_ddp.launch(dict(SETTINGS, data=str(data), snapshot_steps=[1, 12]), out, nproc=2, timeout_s=180,
                            verbose=False), out


def weights(out):
    return torch.load(out / "final.pt", weights_only=True)


def max_difference(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_two_processes_split_each_step_exactly_as_one_process_sees_it():
    one = epoch_order(100, epoch=3, seed=7)
    ranks = [epoch_order(100, epoch=3, seed=7, rank=r, world_size=2) for r in (0, 1)]
    for step in range(5):
        both = torch.cat([r[step * 10:(step + 1) * 10] for r in ranks])
        assert sorted(both.tolist()) == sorted(one[step * 20:(step + 1) * 20].tolist())
    assert not torch.equal(one, epoch_order(100, epoch=4, seed=7)), "set_epoch must reshuffle every epoch"


def test_two_processes_with_half_batches_train_the_weights_one_process_trains(two, data, tmp_path):
    result, out = two
    assert result["world_size"] == 2 and result["global_batch"] == 32 and result["epochs_done"] == 2
    assert result["digests"][0] == result["digests"][1], "the two copies of the model drifted apart"
    single = torch_ddp.launch(dict(SETTINGS, data=str(data), batch_size=32, snapshot_steps=[1]), tmp_path, nproc=1,
                              timeout_s=180, verbose=False)
    assert single["world_size"] == 1 and single["steps_per_epoch"] == result["steps_per_epoch"] == 6
    assert max_difference(weights(out), weights(tmp_path)) < 1e-5
    first_step = [torch.load(o / "step-1.pt", weights_only=True) for o in (out, tmp_path)]
    assert max_difference(*first_step) < 1e-6  # the same first step
    assert np.allclose(single["history"]["loss"], result["history"]["loss"], atol=1e-5)


def test_snapshots_are_the_weights_after_the_steps_asked_for(two):
    result, out = two
    assert sorted(p.name for p in out.glob("step-*.pt")) == ["step-1.pt", "step-12.pt"]
    last = torch.load(out / "step-12.pt", weights_only=True)  # 2 epochs x 6 steps: the final weights
    assert max_difference(last, weights(out)) == 0
    assert max_difference(torch.load(out / "step-1.pt", weights_only=True), last) > 0


def test_an_interrupted_run_resumes_on_every_rank_where_it_stopped(two, data, tmp_path):
    result, out = two
    first = torch_ddp.launch(dict(SETTINGS, data=str(data), stop_after=1), tmp_path, nproc=2, timeout_s=180,
                             verbose=False)
    assert first["epochs_done"] == 1 and not first["resumed"]
    resumed = torch_ddp.launch(dict(SETTINGS, data=str(data)), tmp_path, nproc=2, timeout_s=180, verbose=False)
    assert resumed["resumed"] and resumed["history"]["epoch"] == [1, 2]
    assert resumed["digests"][0] == resumed["digests"][1], "the ranks resumed with different states"
    assert resumed["digests"][0]["optimizer"] == result["digests"][0]["optimizer"]
    assert max_difference(weights(tmp_path), weights(out)) < 1e-6


def test_a_process_that_dies_stops_the_launch_with_one_sentence(data, tmp_path, one_sentence):
    start = time.monotonic()
    with pytest.raises(ResbookError) as err:
        torch_ddp.launch(dict(SETTINGS, data=str(data), fail_rank=1), tmp_path, nproc=2, timeout_s=120, verbose=False)
    assert "rank 1 of 2 was killed by SIGKILL" in one_sentence(str(err.value))
    assert time.monotonic() - start < 90


def test_a_rendezvous_that_never_completes_stops_in_bounded_time(data, tmp_path, one_sentence):
    start = time.monotonic()
    with pytest.raises(ResbookError) as err:  # two machines expected, only this one comes
        torch_ddp.launch(dict(SETTINGS, data=str(data)), tmp_path, nproc=1, nnodes=2, join_timeout_s=3,
                         timeout_s=60, verbose=False)
    assert "did not all meet at the rendezvous within 3 s" in one_sentence(str(err.value))
    assert time.monotonic() - start < 60


def test_a_port_in_use_is_refused_before_anything_starts(data, tmp_path, one_sentence):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ResbookError) as err:
            torch_ddp.launch(dict(SETTINGS, data=str(data)), tmp_path, port=port, timeout_s=30, verbose=False)
    assert f"port {port} on 127.0.0.1 is in use" in one_sentence(str(err.value))
    assert not (tmp_path / "settings.json").exists()


def test_a_launch_that_outlives_its_time_limit_is_stopped(data, tmp_path, one_sentence):
    start = time.monotonic()
    with pytest.raises(ResbookError) as err:
        torch_ddp.launch(dict(SETTINGS, data=str(data), epochs=50), tmp_path, nproc=2, timeout_s=4, verbose=False)
    assert "did not finish within 4 s and was stopped" in one_sentence(str(err.value))
    assert time.monotonic() - start < 15


def test_an_unknown_setting_gets_one_sentence(data, tmp_path, one_sentence):
    with pytest.raises(ResbookError) as err:
        torch_ddp.launch(dict(data=str(data), batch=8), tmp_path, timeout_s=30, verbose=False)
    assert "unknown setting(s) batch for a data-parallel run" in one_sentence(str(err.value))


def test_a_missing_data_file_gets_one_sentence(tmp_path, one_sentence):
    with pytest.raises(ResbookError) as err:
        torch_ddp.launch(dict(data=str(tmp_path / "missing.npz")), tmp_path, timeout_s=30, verbose=False)
    assert "does not exist" in one_sentence(str(err.value))


def test_a_data_file_that_is_not_the_arrays_gets_one_sentence(tmp_path, one_sentence):
    bad = tmp_path / "notes.npz"
    bad.write_text("not arrays")
    with pytest.raises(ResbookError) as err:
        torch_ddp.launch(dict(data=str(bad), epochs=1), tmp_path / "run", nproc=1, timeout_s=120, verbose=False)
    assert "is not an .npz with x_train, y_train, x_val, y_val" in one_sentence(str(err.value))


def test_the_command_for_more_machines_changes_only_the_launch_flags():
    one = torch_ddp.torchrun_command(["s.json"], nproc=2)
    many = torch_ddp.torchrun_command(["s.json"], nproc=8, nnodes=4, node_rank=3, endpoint="10.0.0.1:29400")
    changed = {a for a in many if a not in one}
    assert changed == {"--nnodes=4", "--nproc-per-node=8", "--node-rank=3", "--rdzv-endpoint=10.0.0.1:29400"}
