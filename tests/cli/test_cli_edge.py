"""The CLI of the edge pieces: train with a recipe, prune-channels, search."""

import json

from typer.testing import CliRunner

from edgecv.cli.app import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_train_edge_recipe_then_prune_channels(tmp_path, image_folder):
    model, smaller = tmp_path / "m.keras", tmp_path / "s.keras"
    r = run("train", "--data", image_folder, "--arch", "dscnn", "--recipe", "edge", "--epochs", "2", "--batch-size",
            "16", "--out", model, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert "after 2 epochs" in r.stdout
    r = run("prune-channels", model, "--data", image_folder, "--ratio", "0.5", "--finetune-epochs", "1", "--runs",
            "20", "--out", smaller, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert smaller.is_file()
    for row in ("parameters", "MACs", "int8 p50 ms", "test accuracy"):
        assert row in r.stdout
    assert "b5_pw" in r.stdout and "MACs before" in r.stdout


def test_search_writes_the_choice(tmp_path, image_folder):
    out = tmp_path / "search"
    r = run("search", "--data", image_folder, "--epochs", "1", "--channels", "0,0.5", "--sparsity", "0",
            "--finetune-epochs", "1", "--max-drop", "100", "--runs", "10", "--out", out, "--json", "-q")
    assert r.exit_code == 0, r.output + r.stderr
    printed = json.loads(r.stdout)
    assert printed["chosen"] and len(printed["candidates"]) == 2
    assert (out / "best.tflite").is_file() and (out / "search.md").is_file()


def test_search_bad_grid_is_one_line(tmp_path):
    for args, fragment in ((["--channels", "0,1.5"], "channel ratios must be in [0, 1)"),
                           (["--channels", "a"], "--channels takes comma-separated numbers"),
                           (["--modes", "int4"], "--modes takes")):
        r = run("search", "--out", tmp_path / "s", *args)
        assert r.exit_code == 2, r.output
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], r.stderr


def test_prune_channels_names_an_unprunable_layer(tmp_path, image_folder):
    from edgecv._tf import keras

    L = keras().layers
    inputs = keras().Input((16, 16, 3))
    a, b = L.Conv2D(4, 3, name="a")(inputs), L.Conv2D(4, 3, name="b")(inputs)
    model = keras().Model(inputs, L.Dense(3, activation="softmax")(L.Flatten()(L.Concatenate(name="cat")([a, b]))))
    path = tmp_path / "concat.keras"
    model.save(path)
    r = run("prune-channels", path, "--data", image_folder, "--out", tmp_path / "o.keras", "-q")
    assert r.exit_code == 2, r.output
    assert "layer 'cat' (Concatenate) cannot be pruned by channel" in r.stderr


def test_budget_too_small_or_not_positive_is_one_line(tmp_path, image_folder):
    for budget, fragment in (("0.0001", "cannot finish one epoch here: the smallest that works is about"),
                             ("0", "budget must be a positive number of minutes"),
                             ("-3", "budget must be a positive number of minutes")):
        r = run("train", "--data", image_folder, "--arch", "resnet8", "--budget-minutes", budget, "--out",
                tmp_path / "m.keras", "-q")
        assert r.exit_code == 2, r.output
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and fragment in lines[0], r.stderr
        assert not (tmp_path / "m.keras").exists()


def test_budgeted_train_reports_the_epochs_it_fitted(tmp_path, image_folder):
    r = run("train", "--data", image_folder, "--budget-minutes", "0.2", "--batch-size", "16", "--out",
            tmp_path / "m.keras", "-q")
    assert r.exit_code == 0, r.output + r.stderr
    epochs = int(r.stdout.split(" after ")[1].split()[0])
    assert epochs >= 1 and (tmp_path / "m.keras").is_file()
    # the budget was used, not ignored: the plan is reported, and training ended within its 12 seconds
    assert "fitted to a 0.2-minute budget" in r.stdout, r.stdout
    ended = float(r.stdout.split("training ended at ")[1].split()[0])
    assert ended <= 12.0, r.stdout


def test_stream_refuses_the_edge_recipe_in_one_line(tmp_path, image_folder):
    r = run("train", "--data", image_folder, "--arch", "resnet8", "--stream", "--out", tmp_path / "m.keras", "-q")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "add --recipe classic" in lines[0], r.stderr


def test_train_patchnet_with_every_recipe_option(tmp_path, image_folder):
    model = tmp_path / "p.keras"
    r = run("train", "--data", image_folder, "--arch", "patchnet", "--epochs", "2", "--batch-size", "16",
            "--optimizer", "nesterov", "--lr", "0.05", "--weight-decay", "5e-4", "--label-smoothing", "0.2",
            "--shift", "2", "--alternate-flips", "--ema", "0.9", "--whiten", "--out", model, "-q")
    assert r.exit_code == 0, r.output + r.stderr
    assert model.is_file() and "after 2 epochs" in r.stdout


def test_whiten_on_a_model_without_a_patch_stem_is_one_line(tmp_path, image_folder):
    r = run("train", "--data", image_folder, "--arch", "resnet8", "--epochs", "1", "--whiten", "--out",
            tmp_path / "m.keras", "-q")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "patch stem" in lines[0], r.stderr
    assert not (tmp_path / "m.keras").exists()


def test_stream_refuses_the_new_recipe_options_in_one_line(tmp_path, image_folder):
    r = run("train", "--data", image_folder, "--recipe", "classic", "--weight-decay", "1e-4", "--stream", "--out",
            tmp_path / "m.keras", "-q")
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "weight decay" in lines[0], r.stderr


def test_search_over_a_keras3_model_cuts_it_in_keras3_and_prunes_its_rebuild(tmp_path, image_folder):
    """Channel cuts and modes on the user's Keras 3 model as it is; magnitude pruning through the rebuild."""
    from edgecv._tf import keras3

    k = keras3()
    inputs = k.Input((16, 16, 3))
    h = k.layers.Conv2D(8, 3, activation="hard_silu")(k.layers.Rescaling(1 / 255.0)(inputs))
    h = k.layers.Conv2D(8, 3, activation="relu")(h)
    model = tmp_path / "mine.keras"
    k.Model(inputs, k.layers.Dense(3, activation="softmax")(k.layers.GlobalAveragePooling2D()(h))).save(model)
    r = run("search", "--data", image_folder, "--model", model, "--channels", "0,0.5", "--sparsity", "0,0.5",
            "--modes", "int8,float16", "--finetune-epochs", "1", "--prune-epochs", "1", "--max-drop", "100",
            "--runs", "5", "--out", tmp_path / "s", "--json", "-q")
    assert r.exit_code == 0, r.output + r.stderr
    candidates = json.loads(r.stdout)["candidates"]
    assert len(candidates) == 8
    assert all(c["result"]["status"] == "ok" for c in candidates), [c["result"].get("reason") for c in candidates]
    cut = [c for c in candidates if c["channel_ratio"] == 0.5]
    assert all(c["macs"] < candidates[0]["macs"] for c in cut)
