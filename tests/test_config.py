"""Configuration: validation at the edge and the resolution of "auto" values."""

import json

import pytest

import labelscrub
from labelscrub.config import CleanConfig
from labelscrub.errors import LabelscrubError


def test_small_images_get_the_cifar_stem_at_native_size():
    config = CleanConfig(epochs=10).resolve(typical_side=32)
    assert (config.stem, config.image_size) == ("cifar", 32)
    assert (config.warmup, config.ramp, config.lr) == (2, 2, pytest.approx(0.1))


def test_large_images_get_the_imagenet_stem_at_224():
    config = CleanConfig(batch_size=256).resolve(typical_side=500)
    assert (config.stem, config.image_size, config.lr) == ("imagenet", 224, pytest.approx(0.2))


def test_explicit_values_survive_resolution():
    config = CleanConfig(stem="imagenet", image_size=64, warmup=0, ramp=5, lr=0.03).resolve(typical_side=8)
    assert (config.stem, config.image_size, config.warmup, config.ramp, config.lr) == ("imagenet", 64, 0, 5, 0.03)


@pytest.mark.parametrize("options, named", [
    (dict(rho_max=1.0), "--rho-max"), (dict(rho_max="most"), "--rho-max"), (dict(epochs=0), "--epochs"),
    (dict(stem="vit"), "--stem"),
    (dict(manifest_format="xml"), "--manifest-format"), (dict(warmup=-1), "--warmup"),
    (dict(select="per-label"), "--select"), (dict(rank_by="entropy"), "--rank-by"),
    (dict(smoothing=1.0), "--smoothing"), (dict(loss_pass="both"), "--loss-pass"),
    (dict(loader_workers=-1), "--loader-workers"),
])
def test_bad_values_are_rejected_with_the_option_name(options, named):
    with pytest.raises(LabelscrubError, match=named):
        CleanConfig(**options)


def test_the_api_rejects_unknown_options_and_lists_the_valid_ones(tmp_path):
    with pytest.raises(LabelscrubError, match="rho_max"):
        labelscrub.clean("sample_data/digits", tmp_path / "out", rhomax=0.2)


def test_config_round_trips_through_a_dict():
    config = CleanConfig(epochs=7, rho_max=0.3).resolve(typical_side=32)
    assert CleanConfig.from_dict(config.to_dict()) == config


def test_rho_max_auto_is_left_to_the_estimate_and_survives_the_round_trip_through_run_json():
    for given in ("auto", 0.3):
        config = CleanConfig(rho_max=given).resolve(typical_side=32)
        assert config.rho_max == given  # resolving looks at the images; the noise estimate fills auto later
        assert CleanConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_a_run_saved_before_relabel_confidence_reads_back_with_what_its_manifest_did():
    saved = CleanConfig(epochs=7, relabel=True).to_dict()
    del saved["relabel_confidence"]  # its --relabel wrote every suggestion
    assert CleanConfig.from_dict(saved).relabel_confidence == 0.0
    assert CleanConfig.from_dict(CleanConfig(relabel=True).to_dict()).relabel_confidence == 0.95


def test_relabel_is_on_by_default_but_a_run_saved_before_the_option_read_back_without_it():
    assert CleanConfig().relabel
    saved = CleanConfig(epochs=7).to_dict()
    del saved["relabel"]  # what run.json held before --relabel existed: its manifest relabelled nothing
    assert not CleanConfig.from_dict(saved).relabel
