"""The latent-ODE time-series task: its data generator, model, loss, training run and command line."""

import json

import pytest
import torch

from nde_plugins.experiments import timeseries as ts


def test_the_data_are_seeded_irregular_and_masked():
    a, b = ts.make_series(200), ts.make_series(200)
    assert torch.equal(a.values, b.values) and torch.equal(a.mask, b.mask)
    assert a.values.shape == a.mask.shape == (200, ts.GRID_POINTS, ts.CHANNELS)
    assert torch.equal(a.values * (1 - a.mask), torch.zeros_like(a.values))  # nothing where unobserved
    times_seen = a.mask.amax(dim=2).sum(dim=1)
    assert times_seen.min() >= 3 and times_seen.float().mean() == pytest.approx(0.35 * 40 + 2, abs=2.5)
    assert 0.2 < float(a.mask.mean()) < 0.4
    assert set(a.kind.tolist()) == {0, 1} and torch.allclose(a.times[:2], torch.tensor([0.125, 0.25]))
    assert not torch.equal(ts.make_series(200, seed=1).values, a.values)


def test_train_and_test_are_disjoint_series_split_80_20():
    data = ts.make_series(100)
    train, test = ts.train_test_split(data)
    assert (len(train), len(test)) == (80, 20)
    rows = {tuple(v.flatten().tolist()) for v in train.values} & {tuple(v.flatten().tolist()) for v in test.values}
    assert not rows


def test_the_loss_reads_observed_entries_only():
    values = torch.tensor([[[1.0, 2.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0, 0.0]]])
    prediction = torch.tensor([[[2.0, 2.0, 100.0]]])
    assert ts.masked_mse(prediction, values, mask).item() == pytest.approx(0.5)


def test_the_model_solves_through_the_union_of_the_batch_times_only():
    config = ts.SeriesConfig(n_series=20)
    block = ts.build_block(config)
    model = ts.LatentODE(block, config.latent)
    data = ts.make_series(20)
    mask = data.mask.clone()
    mask[:, 5] = 0  # no series of the batch observes t_5
    values = data.values * mask
    out = model(values, mask, data.times)
    assert out.shape == values.shape and torch.equal(out[:, 5], torch.zeros_like(out[:, 5]))
    used = mask.amax(dim=(0, 2)) > 0
    assert torch.allclose(block.t, torch.cat([torch.zeros(1), data.times[used]]))


def test_a_short_run_is_finite_and_repeats_under_its_seed():
    config = ts.SeriesConfig(n_series=60, epochs=2, batch_size=16, regularizers={"taylor": 0.01})
    first, second = ts.train_timeseries(config, progress=False), ts.train_timeseries(config, progress=False)
    assert first.test_loss == second.test_loss and first.iterations.loss == second.iterations.loss
    assert 0 < first.train_loss < 1 and 0 < first.test_loss < 1 and first.nfe_predict > 0
    assert len(first.history) == 2 and len(first.iterations.loss) == 2 * 3  # 48 training series, batches of 16


def test_regularizers_and_end_times_compose_with_the_task():
    config = ts.SeriesConfig(n_series=30, epochs=1, batch_size=24, end_time="steer", end_time_options={"b": 0.06},
                             regularizers={"error_estimate": 0.01, "stiffness": 0.0285})
    result = ts.train_timeseries(config, progress=False)
    assert result.nfe_predict > 0 and result.iterations.nfe_forward[0] > 0


def test_a_schedule_that_needs_labels_is_refused():
    config = ts.SeriesConfig(method="euler", step_size=0.25, schedule="step_adaption")
    with pytest.raises(ValueError, match="adapts from classification accuracy"):
        ts.build_block(config)


@pytest.mark.parametrize(("field", "value"), [("epochs", 0), ("n_series", 5), ("lr", -1.0)])
def test_bad_configurations_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ts.train_timeseries(ts.SeriesConfig(**{field: value}), progress=False)


def test_the_command_line_trains_the_task_and_compares_variants(capsys):
    from nde_plugins.cli import main

    assert main(["train", "--task", "timeseries", "--epochs", "1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["nfe_predict"] > 0 and document["config"]["epochs"] == 1
    assert main(["train", "--task", "timeseries", "--epochs", "1", "--compare", "vanilla,taylor"]) == 0
    out = capsys.readouterr().out
    assert "test loss e-3" in out and "taylor" in out and out.startswith("timeseries (latent ODE")
    assert main(["train", "--task", "timeseries", "--iterations", "3"]) == 2
    assert "only applies with --task stiff" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--method", "euler", "--step-size", "0.25", "--schedule", "step_adaption"],
     "argument --schedule: schedule 'step_adaption' adapts from classification accuracy"),
    (["--end-time", "steer:b=0.5"], "argument --end-time: end time 'steer': b = 0.5, but it must satisfy"),
    (["--regularizer", "taylor:order=7"], "argument --regularizer: 'taylor:order=7': taylor: order must be"),
    (["--lr", "nan"], "argument --lr: must be a finite number > 0"),
    (["--epochs", "0"], "argument --epochs: must be a whole number >= 1"),
])
def test_the_command_line_refuses_bad_timeseries_arguments_in_one_line(argv, message, capsys):
    from nde_plugins.cli import main

    assert main(["train", "--task", "timeseries", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_taylor_order_from_the_command_line_is_an_integer(capsys):
    from nde_plugins.cli import main

    assert main(["train", "--task", "timeseries", "--epochs", "1", "--regularizer", "taylor:weight=0.01,order=3",
                 "--json"]) == 0
    assert "order" in json.loads(capsys.readouterr().out)["config"]["regularizers"]["taylor"]
