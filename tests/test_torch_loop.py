import random

import numpy as np
import pytest
import torch

from resbook import settings
from resbook.data.generated import make_digits
from resbook.errors import ResbookError
from resbook.models.torch_resnet import cifar_resnet
from resbook.train.torch_loop import as_tensors, autocast_dtype, evaluate, fit, save_checkpoint


@pytest.fixture(scope="module")
def digits():
    """Generated digits at half resolution (14x14): the loop does not care about the size, and a quarter of
    the pixels keeps the bfloat16 run short where the CPU emulates bf16 (44 s at 28x28 on a Zen 3 EPYC, 12 s)."""
    (x, y), (xt, yt) = make_digits(512, seed=0), make_digits(256, seed=1)
    return as_tensors(x[:, ::2, ::2], y, 0.13, 0.31), as_tensors(xt[:, ::2, ::2], yt, 0.13, 0.31)


def _model_and_optimizer():
    torch.manual_seed(0)
    model = cifar_resnet(8, in_channels=1)
    return model, torch.optim.Adam(model.parameters(), lr=3e-3)


def test_as_tensors_layout():
    x, y = as_tensors(torch.zeros(4, 28, 28, dtype=torch.uint8).numpy(), [1, 2, 3, 4])
    assert x.shape == (4, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    x, _ = as_tensors(torch.full((2, 8, 8, 3), 255, dtype=torch.uint8).numpy(), [0, 1], mean=0.5, std=0.5)
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x, torch.ones_like(x))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_loss_falls_and_model_learns(digits, precision):
    train, test = digits
    model, opt = _model_and_optimizer()
    before = evaluate(model, *test, device=torch.device("cpu"))
    hist = fit(model, opt, train, test, epochs=4, batch_size=64, device=torch.device("cpu"), verbose=False,
               precision=precision)
    assert hist["epoch"] == [1, 2, 3, 4]
    assert hist["loss"][-1] < 0.6 * hist["loss"][0]
    assert len(hist["step_loss"]) == 4 * 8 and all(isinstance(v, float) for v in hist["step_loss"])
    assert hist["val_accuracy"][-1] > max(0.5, before["accuracy"] + 0.3)


def test_checkpoint_resume_continues_at_the_right_epoch(digits, tmp_path, capsys):
    train, test = digits
    ckpt = tmp_path / "run.pt"
    model, opt = _model_and_optimizer()
    fit(model, opt, train, test, epochs=2, batch_size=64, device=torch.device("cpu"), checkpoint=ckpt, verbose=False)
    saved_step = opt.state_dict()["state"][0]["step"].item()
    # a new process would rebuild the model and optimizer from scratch, then resume
    model2, opt2 = _model_and_optimizer()
    steps = []
    hist = fit(model2, opt2, train, test, epochs=3, batch_size=64, device=torch.device("cpu"),
               checkpoint=ckpt, on_step_end=steps.append, verbose=True)
    assert "resumed from" in capsys.readouterr().out
    assert hist["epoch"] == [1, 2, 3]
    assert steps == list(range(17, 25))  # on_step_end counts the steps from the run's start, resumed ones too
    assert opt2.state_dict()["state"][0]["step"].item() == saved_step + 8  # one more epoch of 8 steps

    # the same three epochs in one go give the same weights: resuming loses nothing
    model3, opt3 = _model_and_optimizer()
    fit(model3, opt3, train, test, epochs=3, batch_size=64, device=torch.device("cpu"), verbose=False)
    for a, b in zip(model2.state_dict().values(), model3.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_a_corrupt_checkpoint_gets_one_sentence(digits, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"<html>not a checkpoint</html>")
    model, opt = _model_and_optimizer()
    with pytest.raises(ResbookError, match="is not a readable checkpoint"):
        fit(model, opt, digits[0], epochs=1, device=torch.device("cpu"), checkpoint=bad, verbose=False)
    assert bad.read_bytes() == b"<html>not a checkpoint</html>"  # the user's file is untouched


def test_autocast_follows_the_cpus_bf16_instructions_and_the_override(monkeypatch, capsys):
    cpu = torch.device("cpu")
    monkeypatch.delenv("RESBOOK_PRECISION", raising=False)
    monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert autocast_dtype(cpu) is torch.bfloat16 and autocast_dtype(cpu, "float32") is None
    monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx2"}))
    assert autocast_dtype(cpu) is None and autocast_dtype(cpu, "bfloat16") is torch.bfloat16
    monkeypatch.setenv("RESBOOK_PRECISION", "bfloat16")
    assert autocast_dtype(cpu) is torch.bfloat16
    model, opt = _model_and_optimizer()
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.long)
    fit(model, opt, (x, y), epochs=1, batch_size=4, device=cpu, name="tiny")
    assert capsys.readouterr().out.startswith(f"tiny: training on {settings.device_description()} with bf16 autocast")
    monkeypatch.setenv("RESBOOK_PRECISION", "half")
    with pytest.raises(ResbookError, match="RESBOOK_PRECISION='half' is not a precision: use 'auto', 'float32', "
                                           "'bfloat16'.$"):
        fit(model, opt, (x, y), epochs=1, batch_size=4, device=cpu, verbose=False)


@pytest.mark.parametrize("native", [True, False])
def test_an_invalid_precision_gets_one_sentence_naming_the_valid_ones(monkeypatch, native):
    """Also where bf16 is native (a bf16 GPU, a CPU with bf16 instructions), where 'auto' would pick bf16."""
    monkeypatch.delenv("RESBOOK_PRECISION", raising=False)
    monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx512_bf16"} if native else set()))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: native)
    for device in (torch.device("cpu"), torch.device("cuda")):
        for bad in ("amp", "fp16", "bf16"):
            with pytest.raises(ResbookError, match=f"^precision='{bad}' is not a precision: use 'auto', 'float32', "
                                                   "'bfloat16'.$"):
                autocast_dtype(device, bad)
        assert autocast_dtype(device, "auto") is (torch.bfloat16 if native else None)


def test_fit_leaves_the_global_random_generators_alone(digits):
    """Seeding is describe_run's job (settings.seed_everything); fit draws the data order from its own generator."""
    model, opt = _model_and_optimizer()
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    torch.rand(3), np.random.rand(3), random.random()
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    fit(model, opt, digits[0], epochs=1, batch_size=128, device=torch.device("cpu"), seed=7, verbose=False)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_a_failed_checkpoint_save_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "runs" / "run.pt"
    save_checkpoint(path, model={"w": torch.ones(2)}, epoch=1)
    with pytest.raises(Exception):
        save_checkpoint(path, model={"w": torch.zeros(2)}, epoch=2, hook=lambda: None)  # a lambda cannot be pickled
    assert torch.load(path)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["run.pt"]  # no temporary left behind
