"""params.yaml validation: every kind of error names the key, the value and what is allowed."""

from pathlib import Path

import pytest
import yaml

from wgan.config import (
    ParamsError,
    ignored_knobs,
    load_params,
    parse_params,
    resolve_train,
    to_dict,
)
from wgan.model_geometry import dcgan_plan

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_are_valid_and_complete():
    params = load_params(ROOT / "params.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    # Every knob is written out in params.yaml, so users see and can -S every one.
    assert to_dict(params) == {**to_dict(parse_params({})), **raw}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"trian": {}}, r"trian: unknown key; known keys here: .*train"),
        ({"train": {"lamda": 10}}, r"train.lamda: unknown key; .*lambda"),
        ({"train": {"penalty_weight": 10}}, r"train.penalty_weight: unknown key"),
        ({"train": {"steps": "many"}}, r"train.steps: expected int, got 'many'"),
        ({"train": {"steps": 2.5}}, r"train.steps: expected int, got 2.5"),
        ({"train": {"jit_compile": "yes"}}, r"train.jit_compile: expected bool"),
        ({"train": {"batch": True}}, r"train.batch: expected int, got True"),
        ({"train": {"n_critic": 0}}, r"train.n_critic: value 0 is out of range; allowed: \[1, "),
        ({"train": {"lambda": -1}}, r"train.lambda: value -1.0 is out of range; allowed: \[0"),
        ({"train": {"variant": "gan-r1", "r1_every": 0}},
         r"train.r1_every: value 0 is out of range; allowed: \[1, inf\]"),
        ({"train": {"variant": "gan-r1", "r1_every": 16.0}},
         r"train.r1_every: expected int, got 16.0"),
        ({"train": {"variant": "wgan-div"}}, r"train.variant: unknown choice 'wgan-div'; "
                                             r"allowed: gan, wgan, wgan-gp, wgan-lp"),
        ({"data": {"name": "imagenet"}}, r"data.name: unknown choice 'imagenet'"),
        ({"data": {"mnist": {"source": "web"}}}, r"data.mnist.source: unknown choice 'web'"),
        ({"data": {"celeba": {"crop": 0}}}, r"data.celeba.crop: value 0 is out of range"),
        ({"data": {"celeba": "big"}}, r"data.celeba: expected a mapping, got 'big'"),
        ({"seed": -1}, r"seed: value -1 is out of range"),
        ({"sample": {"n": 3}}, r"evaluate.pr_k: value 3 needs more .* min\(sample.n, "
                               r"evaluate.n\) is 3; raise sample.n and evaluate.n"),
        ({"evaluate": {"n": 500, "pr_k": 500}}, r"evaluate.pr_k: value 500 .* is 500"),
        ({"evaluate": {"inception": {"weights": "w.h5"}}},
         r"evaluate.inception.weights: a Keras InceptionV3 file, read only with "
         r"evaluate.inception.model: keras"),
        ({"evaluate": {"inception": {"model": "keras", "graph": "g.pb"}}},
         r"evaluate.inception.graph/sha256: .*model is 'keras'"),
        ({"evaluate": {"inception": {"download": True}}},
         r"evaluate.inception.download: .* only against a pinned checksum; set "
         r"evaluate.inception.sha256"),
        ({"evaluate": {"inception": {"sha256": "abc"}}}, r"evaluate.inception.sha256: 'abc' is "
                                                         r"not 64 hex digits"),
        ({"evaluate": {"protocol": "fid50k_train"}},
         r"evaluate.protocol: 'fid50k_train' needs the standard Inception network"),
        ({"evaluate": {"reference_stats": "s.npz", "inception": {"model": "keras"}}},
         r"evaluate.reference_stats: 's.npz' needs the standard Inception network"),
        ({"evaluate": {"protocol": "fid50k_train", "inception": {"graph": "g.pb"}}},
         r"evaluate.protocol: fid50k_train scores 50000 samples, but sample.n is 10000; "
         r"raise sample.n"),
        ({"evaluate": {"protocol": "fid5k"}}, r"evaluate.protocol: unknown choice 'fid5k'; "
                                              r"allowed: null, fid50k_train, fid10k_test"),
        ({"train": {"variant": "wgan", "optimizer": "rmsprop", "beta1": 0.9}},
         r"train.beta1: .* only used by optimizer 'adam', but the optimizer is 'rmsprop'"),
        ({"train": {"optimizer": "rmsprop", "beta2": 0.99}},
         r"train.beta2: .* set train.beta2: null or train.optimizer: adam"),
        ({"train": {"variant": "wgan-lp"}, "model": {"critic_norm": "batch"}},
         r"model.critic_norm: 'batch' breaks the per-sample gradient penalty"),
        ({"data": {"name": "mask"}, "model": {"arch": "dcgan"}}, r"model.arch: 'dcgan' cannot"),
        ({"model": {"arch": "mlp"}}, r"model.arch: 'mlp' is for data.name 'mask'"),
        ({"data": {"name": "mask"}, "model": {"critic_norm": "layer"}},
         r"model.critic_norm: 'layer' applies to the dcgan critic only"),
        ({"data": {"name": "mask"}, "model": {"extra_layers": 2}},
         r"model.extra_layers: 2 applies to the dcgan only"),
        ({"model": {"extra_layers": -1}}, r"model.extra_layers: "),
        ({"data": {"name": "celeba"}, "model": {"conditional": True}},
         r"^model.conditional: true needs class labels, which data.name 'celeba' has none of "
         r"\(labelled: mnist, cifar10\); set model.conditional: false$"),
        ({"data": {"name": "mask"}, "model": {"conditional": True}},
         r"^model.conditional: true needs class labels, which data.name 'mask'"),
        ({"data": {"name": "celeba", "celeba": {"resize": 48}}},
         r"data.celeba.resize: dcgan supports sides 4·2\^k or 7·2\^k .* got 48"),
        ({"data": {"name": "folder", "folder": {"resize": 14}}}, r"data.folder.resize: .* got 14"),
    ],
)
def test_bad_params_raise_one_clear_error(raw, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_exponent_floats_without_a_dot_are_floats(tmp_path):
    # PyYAML (YAML 1.1) reads `1e-4` as a string; a hand-edited params.yaml must still work.
    (tmp_path / "params.yaml").write_text("train:\n  lr: 1e-4\n  lambda: 1E+1\n")
    train = load_params(tmp_path / "params.yaml").train
    assert (train.lr, train.penalty_weight) == (1e-4, 10.0)
    with pytest.raises(ParamsError, match=r"train.lr: expected float or null, got '1e-4x'"):
        parse_params({"train": {"lr": "1e-4x"}})
    with pytest.raises(ParamsError, match=r"train.steps: expected int, got '1e3'"):
        parse_params({"train": {"steps": "1e3"}})


def test_load_params_reports_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("gan", dict(optimizer="adam", lr=2e-4, beta1=0.5, n_critic=1, clip=None)),
        ("wgan", dict(optimizer="rmsprop", lr=5e-5, n_critic=5, clip=0.01, penalty_weight=None)),
        ("wgan-gp", dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, n_critic=5,
                         penalty_weight=10.0)),
        ("wgan-lp", dict(optimizer="adam", lr=1e-4, beta1=0.5, beta2=0.9, penalty_weight=10.0)),
    ],
)
def test_switching_variant_alone_gives_its_paper_defaults(variant, expected):
    train = resolve_train(parse_params({"train": {"variant": variant}}).train)
    assert {k: getattr(train, k) for k in expected} == expected


def test_user_values_win_over_variant_defaults():
    train = resolve_train(parse_params(
        {"train": {"variant": "wgan", "lr": 1e-3, "clip": 0.05, "n_critic": 2}}).train)
    assert (train.lr, train.clip, train.n_critic, train.optimizer) == (1e-3, 0.05, 2, "rmsprop")
    train = resolve_train(parse_params({"train": {"lambda": 3}}).train)
    assert train.penalty_weight == 3.0
    assert to_dict(train)["lambda"] == 3.0  # written back in YAML spelling
    # RMSprop chosen over the variant's Adam: the Adam betas are not recorded as used.
    train = resolve_train(parse_params({"train": {"variant": "gan", "optimizer": "rmsprop"}}).train)
    assert (train.optimizer, train.lr, train.beta1, train.beta2) == ("rmsprop", 2e-4, None, None)


def test_a_nested_override_keeps_the_sections_own_defaults():
    folder = parse_params({"data": {"folder": {"resize": 32}}}).data.folder
    assert (folder.resize, folder.crop, folder.path) == (32, None, "data/raw/images")


@pytest.mark.parametrize("side", [16, 28, 32, 56, 64, 112, 128, 256])
def test_every_side_the_dcgan_builds_is_a_valid_resize(side):
    parse_params({"data": {"name": "folder", "folder": {"resize": side}}})
    assert dcgan_plan(side)[0] in (4, 7)


@pytest.mark.parametrize(
    ("train", "ignored"),
    [
        # A sweep over variants × λ: λ means nothing to gan or wgan.
        ({"variant": "gan", "lambda": 10}, {"train.lambda": 10.0}),
        ({"variant": "wgan", "lambda": 10}, {"train.lambda": 10.0}),
        ({"variant": "wgan-gp", "clip": 0.05}, {"train.clip": 0.05}),
        ({"variant": "wgan-gp", "lp_sampling": "perturb", "perturb": 2.0},
         {"train.lp_sampling": "perturb", "train.perturb": 2.0}),
        ({"variant": "wgan-lp", "perturb": 2.0}, {"train.perturb": 2.0}),  # interpolating
        ({"variant": "wgan", "beta1": 0.9}, {"train.beta1": 0.9}),  # wgan's RMSprop
        ({"variant": "wgan-lp", "lp_sampling": "perturb", "perturb": 2.0, "lambda": 3}, {}),
        ({"variant": "wgan", "clip": 0.05, "optimizer": "adam", "beta1": 0.9}, {}),
        # Lazy regularisation is R1's (StyleGAN2): the GP variants penalise every step.
        ({"variant": "wgan-gp", "r1_every": 16}, {"train.r1_every": 16}),
        ({"variant": "gan-r1", "r1_every": 16, "lambda": 5}, {}),
    ],
)
def test_knobs_the_variant_does_not_read_are_ignored_and_listed(train, ignored):
    params = parse_params({"train": train})
    assert ignored_knobs(params.train) == ignored
    resolved = to_dict(resolve_train(params.train))
    defaults = to_dict(resolve_train(parse_params({"train": {"variant": train["variant"]}}).train))
    for key in ignored:  # reset to what the variant alone resolves to
        name = key.removeprefix("train.")
        assert resolved[name] == defaults[name], key
    for key, value in train.items():  # every value the variant reads is kept
        if f"train.{key}" not in ignored:
            assert resolved[key] == value, key


def test_a_bad_value_of_a_knob_the_variant_reads_is_still_an_error():
    with pytest.raises(ParamsError, match=r"train.lambda: value -1.0 is out of range"):
        parse_params({"train": {"variant": "gan", "lambda": -1}})
    with pytest.raises(ParamsError, match=r"train.clip: value -0.1 is out of range"):
        parse_params({"train": {"variant": "wgan", "clip": -0.1}})


def _billion_laughs(levels: int = 9) -> str:
    """A params file whose sample.n expands to 10^levels strings through aliases."""
    lines = ['a0: &a0 "lol"']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nsample:\n  n: *a{levels}\n"


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    import tracemalloc

    path = tmp_path / "params.yaml"
    path.write_text(_billion_laughs())
    tracemalloc.start()
    try:
        with pytest.raises(ParamsError) as err:
            load_params(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(err.value)
    assert "aliases (*a0) are not allowed in params" in message and "line 2" in message
    assert "\n" not in message and len(message) < 300
    assert peak < 5 << 20  # bytes: the file is parsed, never expanded


def test_a_huge_value_is_named_with_a_short_excerpt():
    # Without aliases a hostile value is at most as big as the file; the message stays short.
    with pytest.raises(ParamsError, match=r"sample.n: expected int, got \[") as err:
        parse_params({"sample": {"n": [list(range(1000))] * 1000}})
    assert len(str(err.value)) < 200
    with pytest.raises(ParamsError, match=r"unknown choice 'xxxx") as err:
        parse_params({"train": {"variant": "x" * 10**6}})
    assert len(str(err.value)) < 300


def test_an_oversized_params_file_is_refused_unread(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("seed: 0\n" + "#" * (2 << 20))
    with pytest.raises(ParamsError, match="larger than 1048576 bytes; this is not a params file"):
        load_params(path)


@pytest.mark.parametrize("key", ["train.lr", "train.lambda", "train.grad_clip", "train.ema",
                                 "train.beta1", "train.clip", "train.perturb",
                                 "data.celeba.test_fraction", "data.mask.test_fraction",
                                 "classifier.lr"])
@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_nan_and_inf_are_refused_for_every_float(tmp_path, key, value):
    section, *rest = key.split(".")
    nested = f"{rest[0]}:\n    {rest[1]}: {value}" if len(rest) == 2 else f"{rest[0]}: {value}"
    (tmp_path / "params.yaml").write_text(f"{section}:\n  {nested}\n")
    with pytest.raises(ParamsError, match=rf"{key}: value -?(nan|inf) is not a finite number"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(("raw", "message"), [
    ({"train": {"batch": 10**9}}, r"train.batch: .* allowed: \[1, 65536\] \(a training step"),
    ({"sample": {"n": 10**12}}, r"sample.n: .* \(samples are held in memory at once\)"),
    ({"evaluate": {"n": 10**12}}, r"evaluate.n: .* allowed: \[2, 10000000\]"),
    ({"data": {"mask": {"length": 10**9}}}, r"data.mask.length: .* mask MLP holds"),
    ({"model": {"mlp_hidden": 10**9}}, r"model.mlp_hidden: .* allowed: \[1, 65536\]"),
    ({"train": {"steps": 10**10}}, r"train.steps: .* allowed: \[1, 1000000000\]"),
])
def test_absurd_sizes_are_refused_with_the_reason(raw, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)
