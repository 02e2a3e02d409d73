"""The trainer: config files, schedule, optimiser groups and clipping, batch-norm export, a few
steps that overfit a batch, exact resume after an interruption, its outputs (checkpoints that
load with load_model, metrics log, plot), and 2-process DDP with gloo."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from densepose_torch import ModelConfig, Predictor, load_model
from densepose_torch.chart_symmetry import FlipSymmetry
from densepose_torch.data.loader import StreamBatchSampler, TrainingDataset
from densepose_torch.data.mapper import Augmentation
from densepose_torch.errors import DensePoseError
from densepose_torch.modeling import build_model
from densepose_torch.training.config import (
    SolverConfig,
    TrainConfig,
    load_train_config,
    train_config_from_dict,
)
from densepose_torch.training.datasets import training_source
from densepose_torch.training.init import (
    export_model,
    load_initial_weights,
    prepare_backbone,
)
from densepose_torch.training.loop import CheckpointFiles, LoopConfig, ResumableLoop
from densepose_torch.training.model import TrainingModel
from densepose_torch.training.solver import (
    build_optimizer,
    clip_gradients,
    learning_rate,
    parameter_groups,
)
from densepose_torch.training.trainer import build_training_model, evaluate_trained, read_metrics, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"depth": 18, "base_channels": 16, "fpn_channels": 32, "pooler_resolution": 7, "head_channels": 32,
              "head_convs": 2, "box_fc_dim": 64, "min_size_test": 96, "max_size_test": 160}


# Two optimiser steps without a learning-rate drop: enough to see every loss and output move.
TWO_STEPS = {"ims_per_batch": 2, "base_lr": 0.01, "max_iter": 2, "steps": [], "warmup_iters": 1}


def tiny_config(dataset: Path, output: Path, **top) -> dict:
    files = {"annotations": str(dataset / "annotations.json"), "images": str(dataset / "images")}
    config = {
        "model": dict(TINY_MODEL),
        "data": {"train": [files], "val": files, "min_size_train": [80, 96], "max_size_train": 160, "num_workers": 0,
                 "eval_surface": "none"},
        "solver": {"ims_per_batch": 2, "base_lr": 0.01, "max_iter": 4, "steps": [3], "warmup_iters": 2, "warmup_factor": 0.1},
        "loss": {"rpn_pre_nms_topk_train": 200, "rpn_post_nms_topk_train": 100, "roi_batch_size_per_image": 32,
                 "densepose_rois_per_image": 4},
        "backbone_norm": "bn", "freeze_at": 0, "output": str(output), "checkpoint_period": 2, "log_period": 1, "threads": 1,
    }
    config.update(top)
    return config


def fixed_batch(config: TrainConfig) -> list:
    """The first two training samples at 96 px, unflipped: the same batch every call."""
    source = training_source(config.data.train)
    dataset = TrainingDataset(source, len(source), Augmentation((96,), 160, False, FlipSymmetry()), seed=0)
    return [dataset[(i, i)] for i in range(2)]


def test_config_file_overrides_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {zoo: R_50_FPN_s1x_legacy, head_convs: 4}\n"
                    "data: {train: [{annotations: a.json, images: imgs}]}\nsolver: {base_lr: 0.002}\n")
    config = load_train_config(path, ["solver.max_iter=10", "solver.steps=[5, 8]", "loss.densepose_rois_per_image=null"])
    assert config.model.coarse_segm_channels == 15 and config.model.head_convs == 4 and not config.model.decoder
    assert config.solver == SolverConfig(base_lr=0.002, max_iter=10, steps=(5, 8))
    assert config.data.train[0].annotations == "a.json" and config.data.min_size_train == (640, 672, 704, 736, 768, 800)
    for overrides, message in ((["solver.bse_lr=1"], "unknown key solver.bse_lr"),
                               (["solver.max_iter=ten"], "solver.max_iter must be an integer"),
                               (["solver.clip_gradients=both"], "solver.clip_gradients must be one of"),
                               (["solver.steps=[8, 5]"], "solver.steps must increase"),
                               (["max_iter"], "is not KEY=VALUE")):
        with pytest.raises(DensePoseError, match=message):
            load_train_config(path, overrides)
    with pytest.raises(DensePoseError, match="either"):
        load_train_config(path, ["data.train=[{images: x}]"])
    for name in ("default_model.yaml",) + tuple(p.name for p in (REPO / "configs").glob("*.yaml")):
        load_train_config(REPO / "configs" / name)  # every shipped config parses


def test_learning_rate_warmup_and_steps():
    solver = SolverConfig(base_lr=0.01, warmup_iters=100, warmup_factor=0.1, steps=(200, 300), gamma=0.1)
    assert learning_rate(solver, 0) == pytest.approx(0.001)
    assert learning_rate(solver, 50) == pytest.approx(0.01 * (0.1 * 0.5 + 0.5))
    assert learning_rate(solver, 100) == pytest.approx(0.01)
    assert learning_rate(solver, 199) == pytest.approx(0.01)
    assert learning_rate(solver, 200) == pytest.approx(0.001)
    assert learning_rate(solver, 300) == pytest.approx(0.0001)
    constant = SolverConfig(base_lr=0.01, warmup_iters=10, warmup_factor=0.5, warmup_method="constant")
    assert learning_rate(constant, 9) == pytest.approx(0.005) and learning_rate(constant, 10) == pytest.approx(0.01)


def test_norm_layers_have_no_weight_decay_and_clipping_is_per_parameter():
    config = train_config_from_dict(tiny_config(Path("/nonexistent"), Path("/nonexistent"),
                                                model=dict(TINY_MODEL, densepose_head="deeplab")))
    model = build_training_model(config)
    groups = parameter_groups(model, config.solver)
    norm_ids = {id(p) for m in model.modules() if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm)) for p in m.parameters()}
    assert groups[1]["weight_decay"] == 0.0 and {id(p) for p in groups[1]["params"]} == norm_ids
    assert groups[0]["weight_decay"] == 1e-4 and not norm_ids & {id(p) for p in groups[0]["params"]}
    sgd, adamw = build_optimizer(model, config.solver), build_optimizer(model, SolverConfig(optimizer="adamw", base_lr=1e-3))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == 0.9
    assert isinstance(adamw, torch.optim.AdamW) and [g["weight_decay"] for g in adamw.param_groups] == [1e-4, 0.0]
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    a.grad, b.grad = torch.tensor([3.0, -4.0]), torch.tensor([0.5, 2.0])
    clip_gradients([a, b], SolverConfig(clip_gradients="norm", clip_value=1.0))
    torch.testing.assert_close(a.grad, torch.tensor([0.6, -0.8]))  # norm 5 -> 1
    torch.testing.assert_close(b.grad, torch.tensor([0.5, 2.0]) / 2.0616, atol=1e-4, rtol=0)  # each on its own
    a.grad = torch.tensor([3.0, -0.5])
    clip_gradients([a], SolverConfig(clip_gradients="value", clip_value=1.0))
    torch.testing.assert_close(a.grad, torch.tensor([1.0, -0.5]))


def test_trained_batch_norm_exports_to_the_frozen_inference_architecture():
    model = build_model(ModelConfig(**TINY_MODEL))
    prepare_backbone(model, "bn", freeze_at=1)
    assert not any(p.requires_grad for p in model.backbone.bottom_up.stem.parameters())
    model.train()
    for _ in range(3):  # move the running statistics away from their initial values
        model.backbone(torch.randn(2, 3, 64, 64) * 50)
    model.eval()
    exported = export_model(model)
    x = torch.randn(1, 3, 96, 96) * 50
    with torch.no_grad():
        for a, b in zip(model.backbone(x), exported.backbone(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)  # same function, two float32 code paths
    assert set(exported.state_dict()) == set(build_model(model.config).state_dict())


def test_initial_weights_load_where_names_and_shapes_fit(tmp_path):
    from densepose_torch.checkpoint import save_checkpoint

    source = build_model(ModelConfig(**TINY_MODEL))
    path = save_checkpoint(source, tmp_path / "w.pth")
    target = build_model(ModelConfig(**dict(TINY_MODEL, head_channels=64)))
    loaded, left = load_initial_weights(target, path)
    assert loaded > 0 and left > 0  # the DensePose head differs in width, the rest fits
    torch.testing.assert_close(target.backbone.bottom_up.stem.conv1.weight, source.backbone.bottom_up.stem.conv1.weight)
    with pytest.raises(DensePoseError):
        load_initial_weights(target, tmp_path / "missing_model_name")


def test_a_grown_head_first_computes_what_the_smaller_trained_head_did(tmp_path):
    from densepose_torch.checkpoint import save_checkpoint

    torch.manual_seed(1)
    source = build_model(ModelConfig(**TINY_MODEL))  # 2 convolutions of 32 channels
    for parameter in source.roi_heads.densepose_predictor.parameters():  # predictor biases start at 0: make them count
        parameter.data.normal_()
    path = save_checkpoint(source, tmp_path / "w.pth")
    target = build_model(ModelConfig(**dict(TINY_MODEL, head_channels=48, head_convs=5)))
    loaded, left = load_initial_weights(target, path, grow_head=True)
    assert left == 0 and loaded == len(target.state_dict())
    pooled = torch.rand(3, 32, 7, 7)  # what the pooler gives the head: FPN channels, pooler_resolution
    with torch.no_grad():
        expected = source.roi_heads.densepose_predictor(source.roi_heads.densepose_head(pooled))
        grown = target.roi_heads.densepose_predictor(target.roi_heads.densepose_head(pooled))
        new_channels = target.roi_heads.densepose_head(pooled)[:, 32:]
    assert set(grown) == set(expected)
    for name in expected:
        torch.testing.assert_close(grown[name], expected[name], rtol=0, atol=1e-5)  # float32 sums of a few hundred terms
    assert new_channels.abs().sum() > 0  # the new channels compute something from the first step on

    # A plain load of the same file leaves the wider head at its initial weights; a head that would shrink is refused.
    assert load_initial_weights(build_model(ModelConfig(**dict(TINY_MODEL, head_channels=48, head_convs=5))), path)[1] > 0
    with pytest.raises(DensePoseError, match="does not fit"):
        load_initial_weights(build_model(ModelConfig(**dict(TINY_MODEL, head_convs=1))), path, grow_head=True)
    with pytest.raises(DensePoseError, match="set init_weights"):
        train_config_from_dict({"model": TINY_MODEL, "data": {"train": [{"annotations": "a.json", "images": "i"}]}, "grow_head": True})


def _linear_loop(folder: Path) -> ResumableLoop:
    """A 2 -> 1 linear model on the loop, checkpointing every iteration into `folder`."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    config = LoopConfig(SolverConfig(max_iter=4, steps=(), warmup_iters=1), checkpoint_period=1, label="linear",
                        divergence_advice="lower it")

    def write(path: Path, state: dict) -> None:
        torch.save({"model": model.state_dict(), **state}, path)

    return ResumableLoop(config, model, CheckpointFiles(folder, "m_", "last"), write, torch.device("cpu"), progress=False)


def test_the_loop_stops_at_a_non_finite_loss_with_one_line_and_resumes_from_its_checkpoint(tmp_path):
    loop = _linear_loop(tmp_path)
    inputs = torch.tensor([[1.0, 2.0]])

    def losses(iteration: int) -> dict[str, torch.Tensor]:
        value = loop.model(inputs).sum() ** 2
        return {"loss": value * float("nan") if iteration == 2 else value}

    with pytest.raises(DensePoseError, match=r"^the loss became nan at iteration 2; lower it$"):
        loop.run(0, lambda iteration: iteration, losses)
    assert (tmp_path / "last").read_text().strip() == "m_0000002.pth"
    saved = torch.load(tmp_path / "m_0000002.pth", weights_only=False)
    # The check comes before the step: the weights are those of the last good iteration.
    assert all(torch.equal(v, saved["model"][k]) for k, v in loop.model.state_dict().items())
    again = _linear_loop(tmp_path)
    assert not torch.equal(again.model.weight, loop.model.weight)
    assert again.restore() == 2 and torch.equal(again.model.weight, loop.model.weight)
    assert again.optimizer.state_dict()["state"][0]["momentum_buffer"].abs().sum() > 0


def test_a_few_steps_overfit_a_fixed_batch(tiny_synthetic_set, tmp_path):
    torch.manual_seed(0)
    config = train_config_from_dict(tiny_config(tiny_synthetic_set, tmp_path))
    batch = fixed_batch(config)
    model = build_training_model(config)
    network = TrainingModel(model, config.loss)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    totals = []
    for _ in range(25):
        losses = network(batch)
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert all(np.isfinite(totals))
    assert np.mean(totals[-3:]) < 0.5 * totals[0], totals  # observed: about 0.25 x the first loss


class _Interrupt(Exception):
    pass


def test_resume_after_an_interruption_is_bit_identical(tiny_synthetic_set, tmp_path):
    whole = train(train_config_from_dict(tiny_config(tiny_synthetic_set, tmp_path / "whole")), progress=False)

    def stop_after_2(done, model):
        if done == 2:
            raise _Interrupt

    cut = train_config_from_dict(tiny_config(tiny_synthetic_set, tmp_path / "cut"))
    with pytest.raises(_Interrupt):
        train(cut, progress=False, on_iteration=stop_after_2)
    assert (tmp_path / "cut" / "last_checkpoint").read_text().strip() == "model_0000002.pth"
    with pytest.raises(DensePoseError, match="--resume"):
        train(cut, progress=False)
    resumed = train(cut, resume=True, progress=False)
    a, b = torch.load(whole, weights_only=False)["model"], torch.load(resumed, weights_only=False)["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_whole = [e for e in read_metrics(tmp_path / "whole" / "metrics.jsonl") if "losses" in e]
    log_cut = [e for e in read_metrics(tmp_path / "cut" / "metrics.jsonl") if "losses" in e]
    assert [e["iteration"] for e in log_cut] == [1, 2, 3, 4]  # the resumed run's log has no duplicates
    assert [e["losses"] for e in log_whole] == [e["losses"] for e in log_cut]


def test_trainer_outputs_load_and_predict(tiny_synthetic_set, tmp_path):
    final = train(train_config_from_dict(tiny_config(tiny_synthetic_set, tmp_path / "run")), progress=False)
    run = tmp_path / "run"
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "metrics.jsonl", "loss_curves.png", "model_0000002.pth", "model_0000004.pth", "model_final.pth"} <= names
    entries = read_metrics(run / "metrics.jsonl")
    assert [e["iteration"] for e in entries if "losses" in e] == [1, 2, 3, 4]
    assert {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_densepose_I", "loss_densepose_S",
            "loss_densepose_U", "loss_densepose_V", "total"} == set(entries[0]["losses"])
    evaluation = [e["eval"] for e in entries if "eval" in e]
    assert len(evaluation) == 1 and evaluation[0]["images"] == 6 and evaluation[0]["part_miou_source"] == "dense"
    assert load_train_config(run / "config.yaml").solver.max_iter == 4
    from PIL import Image

    assert Image.open(run / "loss_curves.png").size[0] > 1000
    for path in (final, run / "model_0000002.pth"):
        model = load_model(path)
        assert model.config.base_channels == 16
        result = Predictor(model)(tiny_synthetic_set / "images" / "000000.jpg")
        assert result.image_size == (96, 96)
    # --eval-only evaluates the final weights again: the figures of the run's last evaluation.
    config = load_train_config(run / "config.yaml")
    path, again = evaluate_trained(config)
    assert path == final and again["summary"] == evaluation[0]
    assert json.loads((run / "evaluation.json").read_text())["summary"] == evaluation[0]


def test_init_weights_may_name_an_earlier_stage_that_trains_first(tiny_synthetic_set, tmp_path):
    import yaml

    def stage(name: str, **solver) -> dict:
        config = tiny_config(tiny_synthetic_set, tmp_path / name, solver=dict(TWO_STEPS, **solver))
        config["data"]["val"] = None
        return config

    first = tmp_path / "first.yaml"
    first.write_text(yaml.safe_dump(stage("first")))
    second = train_config_from_dict(dict(stage("second", base_lr=0.0), init_weights=str(first)))
    final = train(second, progress=False)
    assert (tmp_path / "first" / "model_final.pth").is_file() and final == tmp_path / "second" / "model_final.pth"
    # At learning rate 0 the second stage keeps what it started from: the first stage's weights.
    before = torch.load(tmp_path / "first" / "model_final.pth", weights_only=False)["model"]
    after = torch.load(final, weights_only=False)["model"]
    name = "roi_heads.densepose_predictor.ann_index_lowres.weight"
    assert not torch.equal(before[name], build_model(ModelConfig(**TINY_MODEL)).state_dict()[name])
    torch.testing.assert_close(after[name], before[name], rtol=0, atol=0)

    # Resuming the finished chain redoes nothing; a stage sharing a later stage's output is refused.
    log = tmp_path / "first" / "metrics.jsonl"
    written = log.stat().st_mtime_ns
    assert train(second, resume=True, progress=False) == final
    assert log.stat().st_mtime_ns == written
    solo = tmp_path / "solo.yaml"
    solo.write_text(yaml.safe_dump(stage("solo")))
    clash = train_config_from_dict(dict(stage("solo"), init_weights=str(solo)))
    with pytest.raises(DensePoseError, match="its own output"):
        train(clash, progress=False)


def test_average_of_trains_its_runs_and_writes_the_mean_of_their_weights(tiny_synthetic_set, tmp_path):
    import yaml

    def stage(name: str, seed: int, file: str | None = None) -> Path:
        config = tiny_config(tiny_synthetic_set, tmp_path / name, solver=TWO_STEPS, seed=seed)
        config["data"]["val"] = None
        path = tmp_path / f"{file or name}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    runs = [stage("a", 1), stage("b", 2)]
    soup = train_config_from_dict(dict(tiny_config(tiny_synthetic_set, tmp_path / "soup"), average_of=[str(p) for p in runs]))
    final = train(soup, progress=False)
    states = [torch.load(tmp_path / name / "model_final.pth", weights_only=False)["model"] for name in ("a", "b")]
    mean = torch.load(final, weights_only=False)["model"]
    name = "roi_heads.densepose_predictor.ann_index_lowres.weight"
    assert not torch.equal(states[0][name], states[1][name])  # two seeds, two different runs
    for key, tensor in mean.items():
        expected = (states[0][key] + states[1][key]) / 2 if tensor.is_floating_point() else states[0][key]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=1e-6)
    assert Predictor(load_model(final))(tiny_synthetic_set / "images" / "000000.jpg").image_size == (96, 96)

    # Runs of other architectures, a single run, or averaging with init_weights are refused.
    wider = tiny_config(tiny_synthetic_set, tmp_path / "wider", solver=TWO_STEPS)
    wider["model"]["head_channels"] = 48
    wider["data"]["val"] = None
    wide = tmp_path / "wider.yaml"
    wide.write_text(yaml.safe_dump(wider))
    mixed = train_config_from_dict(dict(tiny_config(tiny_synthetic_set, tmp_path / "mixed"), average_of=[str(runs[0]), str(wide)]))
    with pytest.raises(DensePoseError, match="another architecture"):
        train(mixed, progress=False)
    with pytest.raises(DensePoseError, match="at least two"):
        train_config_from_dict(dict(tiny_config(tiny_synthetic_set, tmp_path / "one"), average_of=[str(runs[0])]))
    with pytest.raises(DensePoseError, match="trains nothing"):
        train_config_from_dict(dict(tiny_config(tiny_synthetic_set, tmp_path / "x"), average_of=[str(p) for p in runs], init_weights=str(runs[0])))
    # Two runs writing to one output would resume each other's checkpoints.
    clash = train_config_from_dict(dict(tiny_config(tiny_synthetic_set, tmp_path / "clash"), average_of=[str(runs[0]), str(stage("a", 3, file="also_a"))]))
    with pytest.raises(DensePoseError, match="its own output"):
        train(clash, progress=False)


def test_synthetic_caches_render_in_the_loaders_processes_with_the_same_bytes(tmp_path, monkeypatch):
    from densepose_torch.synthetic import dataset as synthetic_dataset
    from densepose_torch.training.distributed import Processes
    from densepose_torch.training.trainer import prepare_data

    render = synthetic_dataset._render_all
    used = []
    monkeypatch.setattr(synthetic_dataset, "_render_all", lambda job, todo, workers, progress: (used.append(workers), render(job, todo, workers, progress)))

    def cached(name: str, workers: int) -> Path:
        synthetic = {"count": 3, "seed": 5, "size": 64, "num_points": 20, "cache": str(tmp_path / name)}
        config = tiny_config(tmp_path, tmp_path / f"out-{name}")
        config["data"].update(train=[{"synthetic": synthetic}], val=None, num_workers=workers)
        prepare_data(train_config_from_dict(config), Processes(), progress=False)
        return tmp_path / name

    def written(folder: Path) -> list[Path]:
        return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file() and p.name != "synth_config.json")

    one, two = cached("one", 0), cached("two", 2)
    assert used == [1, 2]  # no loader workers still renders (in this process); two render in two
    files = written(one)
    assert files and files == written(two)
    for name in files:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, config: dict, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    torch.set_num_threads(1)

    def keep(done, model):
        if done == config["solver"]["max_iter"]:
            torch.save(export_model(model).state_dict(), Path(out) / f"rank{rank}.pt")

    train(train_config_from_dict(config), progress=False, on_iteration=keep)


def test_two_process_ddp_with_gloo_averages_gradients(tiny_synthetic_set, tmp_path):
    """Both processes end with identical weights, and those are the weights of one process that
    averages, every step, the gradients of the two half batches: what DDP promises. (They differ
    from one process on the whole batch, as in detectron2: losses are normalised per process.)
    Frozen batch norm, as in the zoo recipe: trainable batch norm would add per-process
    statistics, which plain DDP does not synchronise."""
    config = tiny_config(tiny_synthetic_set, tmp_path / "ddp", backbone_norm="frozen", freeze_at=2)
    config["data"]["val"] = None
    config["solver"].update(max_iter=3, ims_per_batch=4, base_lr=0.001)  # from scratch without any norm: a small step
    torch.multiprocessing.spawn(_ddp_worker, args=(_free_port(), config, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)

    parsed = train_config_from_dict(config)
    torch.manual_seed(parsed.seed)
    model = build_training_model(parsed)
    network = TrainingModel(model, parsed.loss)
    optimizer = build_optimizer(model, parsed.solver)
    source = training_source(parsed.data.train)
    data = parsed.data
    dataset = TrainingDataset(source, len(source), Augmentation(data.min_size_train, data.max_size_train, True, FlipSymmetry()), parsed.seed)
    samplers = [iter(StreamBatchSampler(len(source), 4, parsed.seed, rank=r, world_size=2)) for r in (0, 1)]
    for iteration in range(3):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(parsed.solver, iteration)
        optimizer.zero_grad()
        for sampler in samplers:
            (sum(network([dataset[key] for key in next(sampler)]).values()) / 2).backward()
        optimizer.step()
    for key, value in export_model(model).state_dict().items():
        # DDP all-reduces g0/2 + g1/2, this accumulates g0/2 and g1/2 into one buffer: the same
        # sums up to float32 rounding (1e-7 relative), which three SGD steps carry into the
        # weights at a few 1e-6 at most (observed 1.8e-6); a wrong average (a sum, one rank's
        # gradient) would be off by the size of a whole update, 1e-3 and more.
        torch.testing.assert_close(rank0[key], value, atol=1e-5, rtol=1e-4)
    torch.manual_seed(parsed.seed)
    initial = export_model(build_training_model(parsed)).state_dict()
    largest_step = max((rank0[k] - v).abs().max().item() for k, v in initial.items() if v.is_floating_point())
    assert largest_step > 1e-3  # the updates dwarf the tolerance: a wrong average could not pass


@pytest.mark.parametrize("variant", [
    {"decoder": False, "coarse_segm_channels": 15},  # legacy: multi-level pooling, 15 coarse parts
    {"densepose_head": "deeplab", "uv_confidence": "indep_aniso", "segm_confidence": True},  # DL_WC2M
    {"uv_confidence": "iid_iso", "box_pooler_aligned": True, "box_pooler_sampling_ratio": 0},  # WC1, Atop10P box pooler
])
def test_every_zoo_head_variant_trains(tiny_synthetic_set, tmp_path, variant):
    config = train_config_from_dict(tiny_config(tiny_synthetic_set, tmp_path, model=dict(TINY_MODEL, **variant)))
    source = training_source(config.data.train)
    dataset = TrainingDataset(source, len(source), Augmentation((96,), 160, True, FlipSymmetry()), seed=0)
    model = build_training_model(config)
    losses = TrainingModel(model, config.loss)([dataset[(i, i)] for i in range(2)])
    expected_uv = {"loss_densepose_UV"} if "uv_confidence" in variant else {"loss_densepose_U", "loss_densepose_V"}
    assert {"loss_densepose_I", "loss_densepose_S"} | expected_uv <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # every trainable parameter is in the graph (what DDP needs)


def test_the_documented_torchrun_command_trains_with_two_processes(tiny_synthetic_set, tmp_path):
    """`torchrun --nproc_per_node 2 -m densepose_torch.cli train CONFIG` as README and
    docs/training.md give it (gloo on the CPU): both processes train, rank 0 writes the model."""
    config = tiny_config(tiny_synthetic_set, tmp_path / "run", backbone_norm="frozen", freeze_at=2)
    config["data"]["val"] = None
    config["solver"].update(max_iter=2, ims_per_batch=4, base_lr=0.001)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "densepose_torch.cli", "train", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_model(tmp_path / "run" / "model_final.pth").config.depth == TINY_MODEL["depth"]


# In a child process (the settings last for the life of the process that makes them): how many
# bytes malloc holds in mmapped blocks once a 16 MiB tensor is allocated.
_MMAPPED_BYTES = """
import ctypes, sys
import torch
from densepose_torch.allocator import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
buffer = torch.ones(4 * 2**20)
print(kept, libc.mallinfo2().hblkhd)
"""


def _glibc_version() -> tuple[int, ...]:
    """(2, 36) for glibc 2.36; () elsewhere (the check allocator.keep_freed_memory makes)."""
    name, version = platform.libc_ver()
    return tuple(int(part) for part in version.split(".")[:2]) if name == "glibc" else ()


@pytest.mark.skipif(_glibc_version() < (2, 33), reason="glibc's malloc only (mallinfo2 since 2.33)")
def test_cpu_malloc_settings_serve_large_buffers_from_the_reusable_heap():
    def mmapped_bytes(mode: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-c", _MMAPPED_BYTES, mode], capture_output=True, text=True, check=True)
        kept, held = out.stdout.split()
        return kept, int(held)

    # glibc's default serves a fresh process's 16 MiB block with mmap (returned to the system on
    # free, faulted in again on the next use); with the settings that densepose train and the
    # predictor make on a CPU it comes from the heap.
    _, by_default = mmapped_bytes("system")
    kept, for_training = mmapped_bytes("keep")
    assert kept == "True"
    assert by_default >= 16 * 2**20
    assert for_training < 16 * 2**20
