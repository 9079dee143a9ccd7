"""The public surface: short, sorted, complete (as httpx checks its own)."""

import types

import qkhyper


def test_all_is_sorted_and_complete() -> None:
    assert qkhyper.__all__ == sorted(qkhyper.__all__)
    submodules = {name for name, value in vars(qkhyper).items() if isinstance(value, types.ModuleType)}
    public = {name for name in vars(qkhyper) if not name.startswith("_")} - submodules - {"annotations"}
    assert set(qkhyper.__all__) == public
    for name in qkhyper.__all__:
        assert getattr(qkhyper, name) is not None


def test_the_api_works_without_the_cli(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = qkhyper.load_settings(env={})
    assert qkhyper.check(settings) == 0
