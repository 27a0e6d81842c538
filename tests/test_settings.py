import json
import subprocess
import sys

import pytest

from resbook import settings
from resbook.errors import ResbookError


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(settings, "gpu_name", lambda: None)


@pytest.fixture
def a_gpu(monkeypatch):
    monkeypatch.setattr(settings, "gpu_name", lambda: "NVIDIA H100 80GB HBM3")


def test_default_profile_follows_the_device(monkeypatch, no_gpu):
    monkeypatch.delenv("RESBOOK_PROFILE", raising=False)
    assert settings.profile() == "smoke"


def test_default_profile_is_full_on_a_gpu(monkeypatch, a_gpu):
    monkeypatch.delenv("RESBOOK_PROFILE", raising=False)
    assert settings.profile() == "full"
    assert settings.device_description() == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize("value, expected", [("smoke", "smoke"), ("full", "full"), (" FULL ", "full")])
def test_profile_from_environment(monkeypatch, no_gpu, value, expected):
    monkeypatch.setenv("RESBOOK_PROFILE", value)
    assert settings.profile() == expected


def test_wrong_profile_is_one_sentence_naming_the_choices(monkeypatch):
    monkeypatch.setenv("RESBOOK_PROFILE", "fast")
    with pytest.raises(ResbookError) as err:
        settings.profile()
    msg = str(err.value)
    assert "'fast'" in msg and "'smoke'" in msg and "'full'" in msg
    assert "\n" not in msg and msg.endswith(".")


def test_pick(monkeypatch):
    monkeypatch.setenv("RESBOOK_PROFILE", "smoke")
    assert settings.pick(smoke=1, full=2) == 1
    monkeypatch.setenv("RESBOOK_PROFILE", "full")
    assert settings.pick(smoke=1, full=2) == 2


def test_describe_run_prints_profile_data_device_versions(monkeypatch, capsys, no_gpu):
    monkeypatch.setenv("RESBOOK_PROFILE", "smoke")
    run = settings.describe_run("00_test", data="generated digits", epochs=3)
    out = capsys.readouterr().out
    for expected in ("profile   smoke", "data      generated digits", "device    CPU:",
                     f"Python {sys.version_info.major}.{sys.version_info.minor}", "epochs=3"):
        assert expected in out
    assert run.as_dict()["settings"] == {"epochs": 3}
    json.dumps(run.as_dict())  # a run must be storable in a record


def test_settings_imports_no_framework():
    code = ("import sys, resbook, resbook.settings as s; s.describe_run('x', data='y'); "
            "print(sorted(m for m in ('tensorflow', 'torch', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_versions_name_keras_backend_only_once_keras_is_imported():
    # A PyTorch chapter that runs Keras in other processes must not print a backend it never used.
    code = ("import resbook.settings as s; print(s.format_versions(s.versions())); "
            "import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras; print(s.format_versions(s.versions()))")
    before, after = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   check=True).stdout.strip().splitlines()[-2:]
    assert "Keras " in before and "backend" not in before
    assert "(jax backend)" in after


def test_cli_info_and_bad_profile(monkeypatch):
    ok = subprocess.run([sys.executable, "-m", "resbook.cli", "info"], capture_output=True, text=True)
    assert ok.returncode == 0 and "profile" in ok.stdout and "versions" in ok.stdout
    env = {**__import__("os").environ, "RESBOOK_PROFILE": "fast"}
    bad = subprocess.run([sys.executable, "-m", "resbook.cli", "info"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().count("\n") == 0 and "is not a profile" in bad.stderr
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("flags, expected", [
    ({"fpu", "avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "AMX bf16"),
    ({"fpu", "avx2", "avx512f", "avx512_bf16"}, "AVX-512 bf16"),
    ({"fpu", "avx2", "avx512f"}, None),
    (set(), None),
])
def test_cpu_bf16_names_the_best_native_instruction_set(flags, expected):
    assert settings.cpu_bf16(flags) == expected


@pytest.fixture
def cpu_flags(monkeypatch, no_gpu):
    """Pretend this CPU has the given flags (and no GPU is present)."""
    monkeypatch.delenv("RESBOOK_PRECISION", raising=False)

    def use(*flags):
        monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset(flags))
    return use


def test_auto_precision_is_bf16_exactly_where_the_cpu_computes_it_natively(cpu_flags):
    cpu_flags("avx2", "avx512f", "avx512_bf16")
    assert settings.precision() == "bfloat16" and settings.precision("auto") == "bfloat16"
    assert settings.device_description().endswith("cores, AVX-512 bf16)")
    cpu_flags("avx2", "amx_bf16")
    assert settings.precision() == "bfloat16" and settings.device_description().endswith("cores, AMX bf16)")
    cpu_flags("avx2", "avx512f")
    assert settings.precision() == "float32" and settings.device_description().endswith("cores)")


def test_auto_precision_is_bf16_on_a_gpu(monkeypatch, a_gpu):
    monkeypatch.delenv("RESBOOK_PRECISION", raising=False)
    monkeypatch.setattr(settings, "cpu_flags", lambda: frozenset({"avx2"}))
    assert settings.precision() == "bfloat16"
    assert settings.precision(native_bf16=False) == "float32"  # e.g. a GPU without bf16 (torch asks)


def test_precision_override_by_argument_and_environment(monkeypatch, cpu_flags):
    cpu_flags("avx512_bf16")
    monkeypatch.setenv("RESBOOK_PRECISION", "float32")
    assert settings.precision() == "float32"
    assert settings.precision("bfloat16") == "bfloat16"  # the argument wins over the environment
    cpu_flags("avx2")
    monkeypatch.setenv("RESBOOK_PRECISION", " BFloat16 ")
    assert settings.precision() == "bfloat16"
    assert settings.precision("float32") == "float32"


@pytest.mark.parametrize("where", ["argument", "environment"])
def test_bad_precision_is_one_sentence_naming_the_choices(monkeypatch, where):
    if where == "environment":
        monkeypatch.setenv("RESBOOK_PRECISION", "fp16")
        call = settings.precision
    else:
        call = lambda: settings.precision("fp16")  # noqa: E731
    with pytest.raises(ResbookError) as err:
        call()
    msg = str(err.value)
    assert ("RESBOOK_PRECISION='fp16'" if where == "environment" else "precision='fp16'") in msg
    assert all(f"'{p}'" in msg for p in ("auto", "float32", "bfloat16"))
    assert "\n" not in msg and msg.endswith(".")


def test_importing_resbook_changes_no_environment():
    """TensorFlow's variables are set by prepare_tensorflow(), which the Keras modules call, not by an import."""
    env = {k: v for k, v in __import__("os").environ.items() if k not in settings.TENSORFLOW_ENV}
    code = ("import os, resbook, resbook.settings as s, resbook.data.datasets, resbook.records\n"
            "print(sorted(k for k in s.TENSORFLOW_ENV if k in os.environ))\n"
            "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'; s.prepare_tensorflow()\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines() == ["[]", "0 1"]  # nothing on import; a value the user set is kept


def test_describe_run_is_where_a_run_is_seeded(monkeypatch, capsys, no_gpu):
    import random

    import numpy as np
    draws = []
    for _ in range(2):
        settings.describe_run("00_test", data="d", seed=5)
        draws.append((random.random(), np.random.rand()))
    capsys.readouterr()
    assert draws[0] == draws[1]


def test_display_path_prints_what_the_reader_set_not_this_machines_folders(tmp_path, monkeypatch):
    data, cache, home, repo = (tmp_path / n for n in ("data", "cache", "home", "repo"))
    for d in (data, cache, home, repo / "notebooks"):
        d.mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.setenv("RESBOOK_DATA", str(data))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("RESBOOK_CACHE", raising=False)
    monkeypatch.chdir(repo / "notebooks")
    assert settings.display_path(data / "mnist") == "$RESBOOK_DATA/mnist"
    assert settings.display_path(data) == "$RESBOOK_DATA"
    assert settings.display_path(home / ".cache" / "resbook" / "mnist") == "~/.cache/resbook/mnist"
    assert settings.display_path(repo / "runs" / "ckpt.pt") == "runs/ckpt.pt"
    assert settings.display_path(home / "photos" / "a.jpg") == "~/photos/a.jpg"
    assert settings.display_path(cache / "x") == str(cache / "x")  # under none of them: unchanged
    monkeypatch.setenv("RESBOOK_CACHE", str(cache))
    assert settings.display_path(cache / "decoded" / "f.npz") == "$RESBOOK_CACHE/decoded/f.npz"


def test_describe_run_prints_a_data_folder_as_the_reader_set_it(tmp_path, monkeypatch, capsys, no_gpu):
    monkeypatch.setenv("RESBOOK_DATA", str(tmp_path))
    run = settings.describe_run("00_test", data=str(tmp_path / "flowers-recognition"))
    assert run.data == "$RESBOOK_DATA/flowers-recognition"
    assert "data      $RESBOOK_DATA/flowers-recognition\n" in capsys.readouterr().out
