"""Run configs: presets round-trip through JSON; unknown keys and wrong types are refused."""

from __future__ import annotations

import pytest

from hetacumn.config import METHODS, config_from_dict, config_to_dict, load_config, preset, save_config


@pytest.mark.parametrize("method", METHODS)
def test_presets_round_trip_through_json(method, tmp_path):
    config = preset(method, box_size=64, device="cpu")
    save_config(config, tmp_path / "config.json")
    assert load_config(tmp_path / "config.json") == config


def test_presets_differ_where_the_methods_differ():
    by_method = {m: preset(m) for m in METHODS}
    assert by_method["cryoai"].model.z_mode == "none" and by_method["cryoai"].model.zdim == 0
    assert by_method["cryofire"].task.symmetrize == "mirror" and not by_method["cryofire"].task.pose_prediction
    assert by_method["acehetem"].task.warmup_images > 0 and by_method["acehetem"].task.pose_prediction
    assert by_method["hetacumn"].task.pose_prediction and by_method["hetacumn"].model.z_mode == "variational"
    assert preset("hetacumn", device="cuda").model.encoder.backbone == "vgg"


def test_unknown_keys_and_wrong_types_are_refused():
    data = config_to_dict(preset("hetacumn"))
    data["model"]["zdimm"] = 4
    with pytest.raises(ValueError, match="zdimm"):
        config_from_dict(data)
    data = config_to_dict(preset("hetacumn"))
    data["train"]["epochs"] = "ten"
    with pytest.raises(ValueError, match="epochs"):
        config_from_dict(data)
    data = config_to_dict(preset("hetacumn"))
    data["task"]["symmetrize"] = "sideways"
    with pytest.raises(ValueError, match="symmetrize"):
        config_from_dict(data)


def test_unknown_method_and_bad_box_are_refused():
    with pytest.raises(ValueError, match="unknown method"):
        preset("cryoem")
    with pytest.raises(ValueError, match="even"):
        preset("hetacumn", box_size=63)
