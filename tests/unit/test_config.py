from pathlib import Path

import pytest
import yaml

from assistant.config import (
    DEFAULT_CONFIG_PATH,
    load_settings,
    save_user_settings,
    settings_to_dict,
    user_config_path,
)
from assistant.errors import ConfigError
from assistant.profile import GIB, GPUInfo, resolve


def write(tmp_path: Path, data: dict, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


def test_shipped_defaults_load_and_every_section_is_present():
    s = load_settings()
    assert s.gpu_profile == "auto"
    assert s.audio.sample_rate_hz == 16000 and s.audio.frame_ms == 30 and 0 <= s.audio.vad_aggressiveness <= 3
    assert s.talking_head.standard.resolution.width == 1280 and s.talking_head.high.resolution.height == 1080
    assert s.talking_head.high.model == "wav2lip_gan" and s.talking_head.output.audio_bitrate == "192k"
    assert (s.dialogue.model, s.dialogue.gpu_layers) == ("auto", "auto")  # both from the profile and the machine
    # The shipped file spells out every setting (the model's defaults are not the only source).
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert set(raw) == {
        "gpu_profile", "audio", "asr", "dialogue", "tts", "talking_head", "live", "livestream", "serve",
        "presentation", "ui", "models", "paths"
    }


def test_bad_value_names_key_value_and_allowed(tmp_path):
    bad = write(tmp_path, {"talking_head": {"quality_mode": "ultra"}})
    with pytest.raises(ConfigError) as e:
        load_settings(bad)
    assert "talking_head.quality_mode: 'ultra' is not one of 'standard', 'high'" in str(e.value)


def test_unknown_key_is_an_error(tmp_path):
    bad = write(tmp_path, {"audio": {"vad_agressiveness": 2}})
    with pytest.raises(ConfigError, match=r"audio\.vad_agressiveness: unknown key"):
        load_settings(bad)


def test_out_of_range_and_odd_resolution(tmp_path):
    bad = write(tmp_path, {"audio": {"vad_aggressiveness": 4}, "talking_head": {"light": {"resolution": {"width": 641}}}})
    with pytest.raises(ConfigError) as e:
        load_settings(bad)
    msg = str(e.value)
    assert "audio.vad_aggressiveness: 4" in msg and "less than or equal to 3" in msg
    assert "talking_head.light.resolution.width: 641" in msg and "even" in msg


def test_gpu_layers_takes_auto_or_a_layer_count(tmp_path):
    ok = write(tmp_path, {"dialogue": {"gpu_layers": 20}}, "ok.yaml")
    assert load_settings(ok).dialogue.gpu_layers == 20
    for bad_value in ("all", -2, True):
        bad = write(tmp_path, {"dialogue": {"gpu_layers": bad_value}})
        with pytest.raises(ConfigError) as e:
            load_settings(bad)
        assert f"dialogue.gpu_layers: {bad_value!r}: must be auto or a number of layers" in str(e.value)


def test_broken_yaml_and_missing_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("audio: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")


def test_user_overlay_wins_and_shipped_file_is_untouched(tmp_path):
    before = DEFAULT_CONFIG_PATH.read_bytes()
    user = tmp_path / "user.yaml"
    save_user_settings({"talking_head": {"quality_mode": "high"}, "gpu_profile": "medium"}, user)
    save_user_settings({"audio": {"end_silence_ms": 700}}, user)
    s = load_settings(user_path=user)
    assert s.talking_head.quality_mode == "high" and s.gpu_profile == "medium" and s.audio.end_silence_ms == 700
    assert "talking_head.quality_mode" in s.user_keys
    assert yaml.safe_load(user.read_text()) == {
        "talking_head": {"quality_mode": "high"}, "gpu_profile": "medium", "audio": {"end_silence_ms": 700}}
    assert DEFAULT_CONFIG_PATH.read_bytes() == before


def test_a_user_config_that_is_not_utf8_leaves_the_defaults_and_a_notice_naming_file_and_position(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_bytes(b"audio:\n  end_silence_ms: 700 # d\xe9lai\n")
    s = load_settings(user_path=user)
    assert s.audio.end_silence_ms == load_settings(user_path=tmp_path / "absent.yaml").audio.end_silence_ms
    assert len(s.load_notices) == 1
    notice = s.load_notices[0]
    assert str(user) in notice and "byte 0xe9 at line 2, column 26" in notice and "save it as UTF-8" in notice
    assert "load_notices" not in settings_to_dict(s)
    # Saving would overwrite the file the user still has to fix: refused, the file unchanged.
    with pytest.raises(ConfigError, match="not UTF-8"):
        save_user_settings({"audio": {"end_silence_ms": 800}}, user)
    assert user.read_bytes() == b"audio:\n  end_silence_ms: 700 # d\xe9lai\n"


def test_invalid_user_change_is_refused_and_nothing_written(tmp_path):
    user = tmp_path / "user.yaml"
    with pytest.raises(ConfigError, match="gpu_profile"):
        save_user_settings({"gpu_profile": "turbo"}, user)
    assert not user.exists()


def test_user_config_path_is_in_xdg_config_home():
    import os

    assert user_config_path() == Path(os.environ["XDG_CONFIG_HOME"]) / "avatar-assistant" / "config.yaml"


def test_mirror_env_is_applied_by_the_config_layer():
    s = load_settings(env={"ASSISTANT_MODEL_MIRROR": "http://127.0.0.1:9/m"})
    assert s.models.mirror_url == "http://127.0.0.1:9/m"


@pytest.mark.parametrize(
    ("gpu", "profile", "asr", "th", "mode", "llm"),
    [
        # no CUDA: the tier the reference CPU sustains (medium), its models not downloaded: the bundled ones
        (None, "medium", "whisper-tiny.en", "light", "standard", "smollm2-135m"),
        (GPUInfo("RTX 5060", 8 * GIB, 6 * GIB), "medium", "whisper-small", "wav2lip", "standard", "llama-3.2-1b"),
        (GPUInfo("RTX 3090", 24 * GIB, 20 * GIB), "high", "whisper-medium", "wav2lip_gan", "high", "llama-3.2-3b"),
        (GPUInfo("GT 1030", 2 * GIB, 1 * GIB), "low", "whisper-tiny.en", "light", "standard", "smollm2-135m"),
    ],
)
def test_auto_profile_from_gpu(gpu, profile, asr, th, mode, llm):
    r = resolve(load_settings(), probe=lambda: gpu, llm_gpu_probe=lambda: False)
    assert (r.profile, r.asr_model, r.talking_head_engine, r.quality_mode) == (profile, asr, th, mode)
    assert r.dialogue_model == llm and r.notices == ()  # auto never steps down: it picked what fits
    assert r.sources["asr.model"] == f"gpu_profile={profile}"
    assert r.talking_head_device == ("cuda" if gpu else "cpu")


def test_explicit_settings_override_the_profile(tmp_path):
    user = tmp_path / "user.yaml"
    save_user_settings({"gpu_profile": "high", "asr": {"model": "whisper-tiny.en"}, "tts": {"engine": "piper"}}, user)
    r = resolve(load_settings(user_path=user), probe=lambda: GPUInfo("RTX 3090", 24 * GIB, 20 * GIB))
    assert r.profile == "high" and r.sources["profile"] == "user config"
    assert r.asr_model == "whisper-tiny.en" and r.sources["asr.model"] == "user config"
    assert r.tts_engine == "piper" and r.talking_head_engine == "wav2lip_gan"
    assert r.sources["talking_head.engine"] == "gpu_profile=high"


# ---- bounded loading, secrets, the round trip (#26) ----
def test_the_user_overlay_keeps_its_comments_when_a_key_is_saved(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("# mine\naudio:\n  end_silence_ms: 700  # I pause a lot\n")
    save_user_settings({"audio": {"vad_aggressiveness": 3}, "tts": {"espeak_voice": "en-gb"}}, user)
    text = user.read_text()
    assert "# mine" in text and "# I pause a lot" in text
    assert yaml.safe_load(text) == {
        "audio": {"end_silence_ms": 700, "vad_aggressiveness": 3},
        "tts": {"espeak_voice": "en-gb"},
    }


def test_an_invalid_save_writes_nothing(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("# mine\n")
    with pytest.raises(ConfigError, match="history_budget_tokens"):
        save_user_settings({"dialogue": {"history_budget_tokens": 5000}}, user)
    assert user.read_text() == "# mine\n"


def test_config_show_data_masks_urls_but_keeps_them_for_saving():
    s = load_settings(user_path=Path("/nonexistent.yaml"), env={})
    s.livestream.amqp_url = "amqp://bot:hunter2#x@broker/%2F"
    assert settings_to_dict(s, mask_secrets=True)["livestream"]["amqp_url"] == "amqp://bot:***@broker/%2F"
    assert settings_to_dict(s)["livestream"]["amqp_url"] == "amqp://bot:hunter2#x@broker/%2F"


def test_a_bad_url_value_is_reported_masked(tmp_path):
    path = write(tmp_path, {"livestream": {"rtmp_url": "rtmp//host/live/STREAMKEY", "amqp_url": "ampq://u:pw1234@h/"}})
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    message = str(e.value)
    assert "livestream.rtmp_url" in message and "livestream.amqp_url" in message
    assert "pw1234" not in message and "STREAMKEY" not in message, message


def test_a_yaml_syntax_error_does_not_quote_the_password(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("livestream:\n  amqp_url: amqp://u:pw1234@h/ : : [\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert "pw1234" not in str(e.value)


def test_a_long_bad_value_is_not_echoed_whole(tmp_path):
    path = write(tmp_path, {"asr": {"language": ["x" * 10_000]}})
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert len(str(e.value)) < 1000


def test_true_for_a_number_is_refused_but_booleans_still_load(tmp_path):
    with pytest.raises(ConfigError, match=r"audio.preroll_ms: True: must be a number"):
        load_settings(write(tmp_path, {"audio": {"preroll_ms": True}}))
    s = load_settings(write(tmp_path, {"audio": {"barge_in": False}}))
    assert s.audio.barge_in is False


def test_threads_above_the_cores_are_clamped_with_a_notice(tmp_path):
    user = write(tmp_path, {"dialogue": {"threads": 100_000}}, "user.yaml")
    s = load_settings(user_path=user, env={})
    assert s.dialogue.threads is not None and s.dialogue.threads < 100_000
    assert any("dialogue.threads: 100000 is more than" in n for n in s.load_notices)


def test_an_overlay_that_is_a_folder_is_a_notice_in_the_app_and_an_error_in_check(tmp_path):
    folder = tmp_path / "user.yaml"
    folder.mkdir()
    s = load_settings(user_path=folder, env={})
    assert any("is a folder" in n for n in s.load_notices)
    with pytest.raises(ConfigError, match="is a folder"):
        load_settings(user_path=folder, env={}, strict=True)
