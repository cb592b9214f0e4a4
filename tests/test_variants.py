"""The variants table: every entry names parts that exist and knobs that mean something."""

import dataclasses

import pytest

from wgan.config import ModelConfig, TrainConfig, parse_params, resolve_train
from wgan.losses import LOSSES
from wgan.penalties import PENALTIES
from wgan.variants import VARIANT_KNOBS, VARIANTS, Variant, get_variant

TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
CRITIC_NORMS = next(f for f in dataclasses.fields(ModelConfig)
                    if f.name == "critic_norm").metadata["choices"]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_names_parts_and_knobs_that_exist(name):
    variant = VARIANTS[name]
    assert variant.loss in LOSSES and variant.penalty in PENALTIES
    assert set(variant.defaults) <= TRAIN_FIELDS
    assert set(variant.reads) <= set(VARIANT_KNOBS) <= TRAIN_FIELDS
    assert set(variant.critic_norms) <= set(CRITIC_NORMS)
    # A penalty needs points; without one there is nothing to draw.
    assert (variant.penalty == "none") == (variant.point_sampling("interpolate") is None)
    # Its paper defaults are what switching to it alone resolves to.
    train = resolve_train(parse_params({"train": {"variant": name}}).train)
    assert {k: getattr(train, k) for k in variant.defaults} == dict(variant.defaults)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_critic_norms_a_variant_refuses_are_refused_by_the_params_check(name):
    for norm in CRITIC_NORMS:
        raw = {"train": {"variant": name}, "model": {"critic_norm": norm}}
        if norm in VARIANTS[name].critic_norms:
            parse_params(raw)
        else:
            with pytest.raises(ValueError, match=f"model.critic_norm: '{norm}'"):
                parse_params(raw)


def test_perturb_is_read_only_when_the_points_are_perturbed():
    lp = get_variant("wgan-lp")
    assert "perturb" in lp.knobs_read("perturb")
    assert "perturb" not in lp.knobs_read("interpolate")
    assert get_variant("wgan-gp").point_sampling("perturb") == "interpolate"


def test_a_table_entry_with_an_unknown_knob_or_name_is_refused():
    with pytest.raises(ValueError, match="not in VARIANT_KNOBS"):
        Variant(loss="wasserstein", penalty="gp", paper="", defaults={},
                reads=frozenset({"lamda"}))
    with pytest.raises(ValueError, match="critic_constraint: unknown 'orthogonal'"):
        Variant(loss="wasserstein", penalty="none", paper="", defaults={},
                critic_constraint="orthogonal")
    with pytest.raises(ValueError, match="'clip' and reading 'clip' go together"):
        Variant(loss="wasserstein", penalty="none", paper="", defaults={},
                critic_constraint="spectral", reads=frozenset({"clip"}))
    with pytest.raises(ValueError, match="unknown variant 'wgan-div'; choose one of gan"):
        get_variant("wgan-div")
