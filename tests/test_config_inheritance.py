"""`base: other.yaml` in a training config: the file's values laid over the base file's."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from densepose_torch.errors import DensePoseError
from densepose_torch.training.config import (
    dump_train_config,
    load_train_config,
    merge_config_trees,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

ROOT = """\
model: {depth: 18, base_channels: 16, fpn_channels: 32}
data:
  train: [{synthetic: {count: 10, size: 128}}, {synthetic: {count: 5, seed: 3}}]
  val: {synthetic: {count: 4, seed: 1, cache: val}}
  min_size_train: [96, 128]
solver: {base_lr: 0.001, max_iter: 100, steps: [50, 80]}
distillation: {output: teacher, teacher: {crop_size: 64, max_iter: 10}}
output: out/root
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_mappings_merge_and_everything_else_replaces(tmp_path):
    _write(tmp_path, "root.yaml", ROOT)
    child = _write(tmp_path, "child.yaml", (
        "base: root.yaml\n"
        "model: {fpn_channels: 48}\n"                          # one key of a mapping
        "data:\n"
        "  train: [{synthetic: {count: 7}}]\n"                 # a list: replaced whole
        "  val: {synthetic: {cache: photo-val}}\n"             # nested mappings merge
        "  min_size_train: [160]\n"
        "solver: {max_iter: 60, steps: [40]}\n"
        "distillation: null\n"                                 # null removes the base's section
        "output: out/child\n"))
    config = load_train_config(child)
    assert (config.model.depth, config.model.base_channels, config.model.fpn_channels) == (18, 16, 48)
    assert [d.synthetic.count for d in config.data.train] == [7] and config.data.train[0].synthetic.size == 512
    assert (config.data.val.synthetic.count, config.data.val.synthetic.seed, config.data.val.synthetic.cache) == (4, 1, "photo-val")
    assert config.data.min_size_train == (160,)
    assert (config.solver.base_lr, config.solver.max_iter, config.solver.steps) == (0.001, 60, (40,))
    assert config.distillation is None and config.output == "out/child"


def test_merge_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    over = {"a": {"c": [3]}, "e": {"f": 2}}
    assert merge_config_trees(base, over) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": {"f": 2}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1} and over == {"a": {"c": [3]}, "e": {"f": 2}}


def test_a_base_is_found_beside_its_file_and_chains(tmp_path, monkeypatch):
    _write(tmp_path, "shared/root.yaml", ROOT)
    _write(tmp_path, "shared/middle.yaml", "base: root.yaml\nsolver: {base_lr: 0.002}\noutput: out/middle\n")
    leaf = _write(tmp_path, "runs/leaf.yaml", "base: ../shared/middle.yaml\nsolver: {max_iter: 90}\n")
    monkeypatch.chdir(tmp_path / "runs")  # neither the root nor the folder of the bases
    config = load_train_config("leaf.yaml")
    assert (config.solver.base_lr, config.solver.max_iter, config.solver.steps) == (0.002, 90, (50, 80))
    assert config.output == "out/middle" and config.model.base_channels == 16
    assert load_train_config(leaf) == config


def test_overrides_apply_after_inheritance(tmp_path):
    _write(tmp_path, "root.yaml", ROOT)
    child = _write(tmp_path, "child.yaml", "base: root.yaml\nsolver: {max_iter: 60, steps: [40]}\n")
    config = load_train_config(child, ["solver.max_iter=70", "solver.base_lr=0.01", "distillation.teacher.crop_size=96"])
    assert (config.solver.max_iter, config.solver.base_lr, config.solver.steps) == (70, 0.01, (40,))
    assert config.distillation.teacher.crop_size == 96 and config.distillation.teacher.max_iter == 10


def _one_line_error(path: Path, match: str) -> None:
    with pytest.raises(DensePoseError, match=match) as caught:
        load_train_config(path)
    assert "\n" not in str(caught.value)


def test_a_cycle_is_an_error(tmp_path):
    a = _write(tmp_path, "a.yaml", "base: b.yaml\n")
    _write(tmp_path, "b.yaml", "base: ./a.yaml\n" + ROOT)
    _one_line_error(a, r"cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml")
    _one_line_error(_write(tmp_path, "self.yaml", "base: self.yaml\n" + ROOT), "cycle")


def test_a_bad_base_is_an_error(tmp_path):
    _one_line_error(_write(tmp_path, "missing.yaml", "base: nowhere.yaml\n" + ROOT), r"missing\.yaml: its base file .*nowhere\.yaml does not exist")
    for value in ("3", "[a.yaml]", "null", "''", "{file: a.yaml}"):
        _one_line_error(_write(tmp_path, "odd.yaml", f"base: {value}\n" + ROOT), "base must be the path of another config file")
    _write(tmp_path, "broken.yaml", "model: [\n")
    _one_line_error(_write(tmp_path, "child.yaml", "base: broken.yaml\n"), r"broken\.yaml is not valid YAML")
    _write(tmp_path, "list.yaml", "- 1\n")
    _one_line_error(_write(tmp_path, "child.yaml", "base: list.yaml\n"), r"list\.yaml must hold a mapping")


def test_the_resolved_config_of_a_run_needs_no_base(tmp_path):
    # A run folder's config.yaml is the resolved config: it loads alone, to the same config.
    config = load_train_config(CONFIGS / "ablation" / "cascade.yaml")
    assert "base" not in yaml.safe_load(dump_train_config(config))
    assert load_train_config(_write(tmp_path, "config.yaml", dump_train_config(config))) == config


def _leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def _at(tree, keys: tuple):
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


BASED = [path for path in sorted(CONFIGS.glob("**/*.yaml")) if "base" in yaml.safe_load(path.read_text())]


@pytest.mark.parametrize("path", BASED, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_a_shipped_config_lists_only_what_it_changes(path):
    own = yaml.safe_load(path.read_text())
    base = load_train_config(path.parent / own.pop("base")).to_dict()
    resolved = load_train_config(path).to_dict()
    for keys, _ in _leaves(own):
        assert _at(resolved, keys) != _at(base, keys), f"{path.name}: {'.'.join(keys)} repeats its base's value"
