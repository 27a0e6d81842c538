import json

import pytest

from resbook import records, settings


@pytest.fixture
def run(monkeypatch, capsys):
    monkeypatch.setattr(settings, "gpu_name", lambda: None)
    r = settings.describe_run("00_test", data="generated digits", epochs=2)
    capsys.readouterr()
    return r


def test_record_round_trip(run, tmp_path):
    rec = records.Record.start(run, "resnet-20", lr=0.1)
    rec.metrics["val_accuracy"] = 0.987
    rec.wall_time_s = 12.5
    path = rec.save(tmp_path)
    data = json.loads(path.read_text())
    assert set(records.RECORD_FIELDS) <= set(data)
    assert data["settings"] == {"epochs": 2, "lr": 0.1}
    assert data["profile"] == "smoke" and data["device"].startswith("CPU")
    assert data["versions"]["python"] == run.versions["python"]
    loaded = records.load_records(tmp_path)
    assert len(loaded) == 1 and loaded[0].as_dict() == rec.as_dict()


def test_recording_times_and_saves_only_complete_runs(run, tmp_path):
    with records.recording(run, "ok", directory=tmp_path) as rec:
        rec.metrics["loss"] = 0.5
    with pytest.raises(KeyboardInterrupt):
        with records.recording(run, "interrupted", directory=tmp_path):
            raise KeyboardInterrupt
    saved = records.load_records(tmp_path)
    assert [r.name for r in saved] == ["ok"]
    assert saved[0].wall_time_s is not None and saved[0].wall_time_s >= 0


def test_missing_records_folder_is_empty(tmp_path):
    assert records.load_records(tmp_path / "nothing") == []


def test_git_commit_outside_a_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("RESBOOK_GIT_COMMIT", raising=False)
    assert records.git_commit(tmp_path) == "unknown"


def test_git_commit_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RESBOOK_GIT_COMMIT", "0123456789ab")
    assert records.git_commit(tmp_path) == "0123456789ab"


def test_markdown_table_formats_numbers_aligns_and_escapes():
    table = records.markdown_table([("plain|20", 272474, 0.0312, None), {"run": "resnet-20", "test error": 0.5}],
                                   ["run", "parameters", "test error", "loss"])
    assert table.splitlines() == ["| run | parameters | test error | loss |", "|---|--:|--:|---|",
                                  "| plain\\|20 | 272,474 | 3.12% |  |", "| resnet-20 |  | 50.00% |  |"]
    assert records.markdown_table([(1.23456, "x")], ["loss", "note"], align="rr").splitlines()[1:] == [
        "|--:|--:|", "| 1.235 | x |"]
    with pytest.raises(records.ResbookError, match="needs 2 cells"):
        records.markdown_table([(1,)], ["a", "b"])
