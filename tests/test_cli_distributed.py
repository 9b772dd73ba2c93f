"""The digits job on several processes: ``nde-plugins train --nproc N`` (torchrun, gloo, DDP) and its checks.

One run (``python -m nde_plugins train --nproc 2``) launches two ranks through torchrun and reads
the JSON that rank 0 alone prints; the other
tests run in this process: the single-process path against the training loop it had before
data-parallel training existed, the refusals of bad command lines, and the pieces of the launch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from nde_plugins import cli
from nde_plugins.cli import main
from nde_plugins.experiments.digits import (
    ADDITIVE_COUNTS,
    DigitsClassifier,
    TrainConfig,
    TrainResult,
    build_block,
    fit_digits,
    load_digits_split,
    local_batch_size,
    parameter_checksum,
)

pytest.importorskip("sklearn")

#: A small, quick run: a loose adaptive solve (its NFE follow each rank's data), a regularizer, per-rank end times.
TWO_RANKS = ["train", "--nproc", "2", "--epochs", "1", "--method", "dopri5", "--rtol", "1e-3", "--atol", "1e-3",
             "--batch-size", "256", "--regularizer", "kinetic_energy:weight=0.01", "--end-time", "steer:b=0.25",
             "--json"]


@pytest.fixture(scope="module")
def two_ranks() -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python -m nde_plugins`` TWO_RANKS, run once for the module (the launch
    takes seconds); a collective that hangs fails the run within the process group's timeout."""
    process = subprocess.run([sys.executable, "-m", "nde_plugins", *TWO_RANKS], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return process.returncode, process.stdout, process.stderr


def test_two_processes_print_one_json_document_with_every_rank(two_ranks):
    code, out, err = two_ranks
    assert code == 0, err[-4000:]
    document = json.loads(out)  # one document: rank 1 printed nothing
    assert document["processes"] == {"world_size": 2, "backend": "gloo", "global_batch": 256, "batch_per_rank": 128}
    ranks, total = document["ranks"], document["ranks_total"]
    assert len(ranks) == 2
    for key in ADDITIVE_COUNTS:
        assert total[key] == pytest.approx(ranks[0][key] + ranks[1][key]), key
    n_train = len(load_digits_split()[0])
    # The sampler deals ceil(n / 2) samples to each rank, in batches of 128: both ranks take as many steps.
    assert [entry["samples"] for entry in ranks] == [(n_train + 1) // 2] * 2
    assert [entry["batches"] for entry in ranks] == [-(-((n_train + 1) // 2) // 128)] * 2
    assert all(entry["nfe_forward"] > 0 and entry["regularization"] > 0 for entry in ranks)
    # Each rank solved its own half with its own end times: the regularization values differ.
    assert ranks[0]["regularization"] != ranks[1]["regularization"]
    # DDP kept the replicas identical: every rank's checksum of its trained parameters is the same.
    assert ranks[0]["parameter_checksum"] == ranks[1]["parameter_checksum"]


def test_the_report_is_rank_0s_and_the_history_averages_over_ranks(two_ranks):
    document = json.loads(two_ranks[1])
    ranks, total = document["ranks"], document["ranks_total"]
    assert sum(document["iterations"]["nfe_forward"]) == ranks[0]["nfe_forward"]
    assert len(document["iterations"]["loss"]) == ranks[0]["batches"]
    assert document["history"][0]["mean_nfe"] == pytest.approx(total["nfe_forward"] / total["batches"])
    assert document["config"]["batch_size"] == 256 and document["nfe_predict"] > 0


# ------------------------------------------------------------------------------------------------
# One process: unchanged by data-parallel training


def _loop_before_ddp(config: TrainConfig) -> tuple[DigitsClassifier, list[float]]:
    """fit_digits' training loop as it was before it learned to run on several processes."""
    x_train, y_train, _, _ = load_digits_split()
    torch.manual_seed(config.seed)
    model = DigitsClassifier(build_block(config))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    for epoch in range(1, config.epochs + 1):
        model.block.epoch = epoch
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            reg = model.block.regularization()
            optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            optimizer.step()
            losses.append(loss.item())
    return model, losses


def test_one_process_trains_bit_for_bit_as_before():
    config = TrainConfig(method="rk4", step_size=0.5, epochs=2, seed=3, batch_size=400, end_time="steer",
                         end_time_options={"b": 0.25}, regularizers={"kinetic_energy": 0.01})
    model, result = fit_digits(config, progress=False)
    reference, losses = _loop_before_ddp(config)
    assert result.iterations.loss == losses
    for (name, value), expected in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(value, expected), name
    # One process is one rank: its numbers are the totals, and they match the per-batch log.
    assert len(result.ranks) == 1
    assert result.ranks_total == {key: result.ranks[0][key] for key in ADDITIVE_COUNTS}
    assert result.ranks[0]["nfe_forward"] == sum(result.iterations.nfe_forward)
    assert result.ranks[0]["samples"] == 2 * len(load_digits_split()[0])
    assert result.ranks[0]["parameter_checksum"] == parameter_checksum(model)


def test_the_global_batch_must_split_evenly():
    assert local_batch_size(128, 2) == 64 and local_batch_size(5, 1) == 5
    with pytest.raises(ValueError, match="does not divide over 3 ranks"):
        local_batch_size(128, 3)


def test_the_checksum_sees_a_changed_parameter():
    model = DigitsClassifier(build_block(TrainConfig(method="rk4", step_size=0.5)))
    before = parameter_checksum(model)
    with torch.no_grad():
        model.head.bias[0] += 1e-6
    assert parameter_checksum(model) != before


# ------------------------------------------------------------------------------------------------
# The command line


def _refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--nproc", "0"], "argument --nproc: must be a whole number >= 1, got '0'"),
    (["--nproc=-2"], "argument --nproc: must be a whole number >= 1, got '-2'"),
    (["--nproc", "2", "--batch-size", "127"], "argument --batch-size: 127 does not split over 2 processes"),
    (["--nproc", "2", "--task", "stiff"], "argument --nproc: training on several processes (--nproc 2) is "
                                          "implemented for --task digits only"),
    (["--nproc", "2", "--task", "spheres", "--step-size", "0.5"], "for --task digits only"),
    (["--nproc", "2", "--compare", "vanilla,error_estimate"], "argument --compare: not available across processes"),
    (["--backend", "gloo"], "argument --backend: only applies across processes"),
    (["--nproc", "1", "--backend", "gloo"], "argument --backend: only applies across processes"),
    (["--nproc", "2", "--backend", "mpi"], "argument --backend: invalid choice: 'mpi'"),
    (["--end-time", "steer:b=0.5,synchronized=1"], "synchronized must be true or false"),
    (["--end-time", "steer:b=0.5,synchronized=true,per_sample=true"], "both per_sample and synchronized"),
])
def test_bad_process_options_are_one_line_errors(argv, message, capsys):
    assert message in _refused(["train", *argv], capsys)


def test_nccl_is_refused_for_a_model_on_the_cpu(capsys):
    line = _refused(["train", "--nproc", "2", "--backend", "nccl"], capsys)
    assert "argument --backend" in line and ("no nccl backend" in line or "trains on the CPU" in line)


def test_under_torchrun_nproc_is_refused_and_errors_name_the_rank(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    line = _refused(["train", "--nproc", "2"], capsys)
    assert line.startswith("nde-plugins train (rank 1): error: argument --nproc: this process is already a torchrun "
                           "rank (WORLD_SIZE=2)")
    assert "argument --task" in _refused(["train", "--task", "stiff"], capsys)
    monkeypatch.setenv("RANK", "2")
    assert "not a rank 0 <= RANK < WORLD_SIZE" in _refused(["train"], capsys)


def test_nproc_1_trains_in_this_process(monkeypatch, capsys):
    launched = []
    monkeypatch.setattr(cli, "_launch", lambda *args: launched.append(args) or 0)
    argv = ["train", "--nproc", "1", "--epochs", "1", "--method", "rk4", "--step-size", "0.5", "--batch-size", "720",
            "--json"]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert launched == [] and "processes" not in document and len(document["ranks"]) == 1


def test_nproc_relaunches_the_same_command_through_torchrun(monkeypatch):
    launched = []
    monkeypatch.setattr(cli, "_launch", lambda nproc, argv: launched.append((nproc, argv)) or 0)
    argv = ["train", "--epochs", "1", "--nproc", "3", "--batch-size", "129", "--json"]
    assert main(argv) == 0
    assert launched == [(3, argv)]
    command = cli.torchrun_command(3, argv)
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3",
                       "-m", "nde_plugins", "train", "--epochs", "1", "--batch-size", "129", "--json"]


@pytest.mark.parametrize("argv", [
    ["train", "--nproc", "2", "--json"],
    ["train", "--nproc=2", "--json"],
    ["train", "--npr", "2", "--json"],
    ["train", "--json", "--np=2"],
])
def test_every_spelling_of_nproc_is_dropped(argv):
    assert cli._without_nproc(argv) == ["train", "--json"]


def test_the_backend_follows_the_device():
    assert cli.default_backend(torch.device("cpu")) == "gloo"
    expected = "nccl" if torch.distributed.is_nccl_available() else "gloo"
    assert cli.default_backend(torch.device("cuda")) == expected


def test_the_text_report_lists_every_rank_and_the_totals(capsys):
    ranks = [{"samples": 719.0, "batches": 12.0, "nfe_forward": 96.0, "nfe_backward": 0.0, "nfe_diffusion": 0.0,
              "steps_accepted": 24.0, "steps_rejected": 1.0, "regularization": 0.5, "train_time_s": 1.25,
              "parameter_checksum": 0xAF4D3DB3},
             {"samples": 719.0, "batches": 12.0, "nfe_forward": 102.0, "nfe_backward": 0.0, "nfe_diffusion": 0.0,
              "steps_accepted": 25.0, "steps_rejected": 2.0, "regularization": 0.25, "train_time_s": 1.5,
              "parameter_checksum": 0xAF4D3DB3}]
    total = {key: ranks[0][key] + ranks[1][key] for key in ADDITIVE_COUNTS}
    result = TrainResult(config={}, train_accuracy=0.0, test_accuracy=0.0, nfe_predict=0, train_time_s=0.0,
                         predict_time_s=0.0, ranks=ranks, ranks_total=total)
    cli._print_ranks(argparse.Namespace(batch_size=128), result, "gloo")
    out = capsys.readouterr().out
    assert "2 (gloo), global batch 128 = 2 x 64 per step" in out
    assert "identical on every rank (CRC-32 af4d3db3)" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("    ")}
    assert rows["0"][1:8] == ["719", "12", "96", "0", "24", "1", "0.5"]
    assert rows["total"][1:8] == ["1438", "24", "198", "0", "49", "3", "0.75"]
    ranks[1]["parameter_checksum"] = 1
    cli._print_ranks(argparse.Namespace(batch_size=128), result, "gloo")
    assert "DIFFERENT across ranks: af4d3db3, 00000001" in capsys.readouterr().out
