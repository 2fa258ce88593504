import pytest

from losslab.config import load_config, parse_value
from losslab.core.errors import LossLabError
from losslab.presets import preset_names


def test_every_preset_validates():
    assert {"grokking", "grokking-paper", "parity"} <= set(preset_names())
    for name in preset_names():
        assert load_config(name).name == name


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    from losslab.presets import sweep_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s5").mkdir()  # a store named after the preset it holds
    (tmp_path / "phase-diagram").mkdir()
    assert load_config("s5").task.op == "s5" and sweep_file("phase-diagram").name == "phase-diagram.toml"
    (tmp_path / "mine").write_text('name = "mine"\n')  # a file without .toml is still a file
    assert load_config("mine").name == "mine"
    with pytest.raises(LossLabError, match="config file not found: gone.toml"):
        load_config("gone.toml")


def test_overrides_are_typed():
    cfg = load_config("grokking", ["optim.lr=3e-4", "task.train_fraction=0.4", "optim.betas=[0.9, 0.95]",
                                   "model.layer_norm=true", "task.op=mul"], seed=7)
    assert cfg.optim.lr == 3e-4 and cfg.task.train_fraction == 0.4 and cfg.seed == 7
    assert cfg.optim.kwargs["betas"] == [0.9, 0.95] and cfg.model.layer_norm and cfg.task.op == "mul"
    assert parse_value("adamw") == "adamw" and parse_value("12") == 12


@pytest.mark.parametrize("overrides,message", [
    (["optim.lrr=1"], "'lrr' is not an argument of adamw"),
    (["task.pp=3"], "config task.pp: unknown key"),
    (["bogus=1"], "config bogus: unknown key"),
    (["task.train_fraction=1.0"], "config task.train_fraction: Input should be less than 1"),
    (["task.train_fraction=0"], "config task.train_fraction: Input should be greater than 0"),
    (["optim.lr=-0.1"], "config optim.lr: Input should be greater than 0"),
    (["task.op=div", "task.p=12"], "p=12 is not prime"),
    (["model.d_model=abc"], "config model.d_model: Input should be a valid integer"),
    (["optim.name=lion"], "unknown optimizer 'lion'"),
    (["optim.name=sgd", "optim.betas=[0.9, 0.9]"], "'betas' is not an argument of sgd"),
    (["optim.name=sam", "optim.rho=0"], "sam refused its arguments: rho must be > 0"),
    (["optim.name=sam", "optim.p=0.5"], "sam refused its arguments: p must be in [1, inf]"),
    (["optim.name=sam", "optim.base=lion"], "unknown base optimizer 'lion'"),
    (["optim.name=sam", "optim.nesterov=true", "optim.base=adam"], "'nesterov' is not an argument of sam"),
    (["optim.name=shampoo", "optim.graft=sgd"], "unknown graft 'sgd'"),
    (["optim.name=muon", "optim.orthogonalization=qr"], "unknown orthogonalization 'qr'"),
    (["model.name=cnn"], "config model: unknown name 'cnn'"),
    (["model.n_heads=3"], "not divisible by n_heads"),
    (["task.name=parity"], "the transformer needs a token task"),  # the modular keys are dropped, not the model
    (["optim.lr"], "--set expects key=value"),
])
def test_bad_config_is_one_clear_line(overrides, message):
    with pytest.raises(LossLabError) as e:
        load_config("grokking", overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_another_optimizer_starts_from_its_defaults():
    cfg = load_config("grokking", ["optim.name=sam", "optim.momentum=0.9"])  # the preset's betas are dropped
    assert cfg.optim.kwargs == {"lr": 1e-3, "weight_decay": 1.0, "momentum": 0.9}
    assert load_config("grokking", ["optim.name=adamw"]).optim.kwargs["betas"] == [0.9, 0.98]
    # an optimizer that takes the old one's keys keeps them: Grokfast around AdamW keeps its betas
    assert load_config("grokking", ["optim.name=grokfast_ema"]).optim.kwargs["betas"] == [0.9, 0.98]


def test_another_model_or_task_keeps_only_the_keys_it_takes():
    cfg = load_config("grokking", ["model.name=mlp", "model.width=16"])
    assert cfg.model.name == "mlp" and cfg.model.width == 16 and cfg.model.activation == "relu"
    cfg = load_config("parity", ["task.name=modular", "task.p=7", "model.name=transformer"])
    assert cfg.task.p == 7 and cfg.model.d_model == 128


def test_transformer_needs_tokens():
    with pytest.raises(LossLabError, match="the transformer needs a token task"):
        load_config({"task": {"name": "parity"}})


def test_parity_k_and_noise_validated():
    with pytest.raises(LossLabError, match="k=60 must be at most n=50"):
        load_config("parity", ["task.k=60"])
    with pytest.raises(LossLabError, match="task.noise"):
        load_config("parity", ["task.noise=0.5"])


def test_unknown_preset_and_missing_file(tmp_path):
    with pytest.raises(LossLabError, match="unknown preset 'nope'"):
        load_config("nope")
    with pytest.raises(LossLabError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("task = [")
    with pytest.raises(LossLabError, match="not valid TOML"):
        load_config(bad)


def test_file_config_with_defaults(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\n[task]\np = 31\n[optim]\nname = "sgd"\nmomentum = 0.9\nnesterov = true\n')
    cfg = load_config(f)
    assert cfg.task.p == 31 and cfg.model.name == "transformer" and cfg.optim.kwargs["nesterov"] is True


@pytest.mark.parametrize("assignments, key", [
    (["task.name=zipf", "task.n_classes=1"], "task.n_classes"), (["task.name=digits", "task.val_fraction=2"],
                                                                   "task.val_fraction"),
    (["task.name=parity", "task.n=0"], "task.n"), (["task.p=1"], "task.p"),
    (["model.name=mlp", "model.width=0"], "model.width"), (["model.n_layers=0"], "model.n_layers")])
def test_an_error_names_the_key_as_set_takes_it_for_every_task_and_model(assignments, key):
    """pydantic locates an error inside a union member (task.zipf.n_classes): the message names the
    key `--set` takes, for every task and model of the registries."""
    with pytest.raises(LossLabError, match=rf"^config {key}: "):
        load_config("grokking", assignments)
