"""The hardware profile picks the dialogue model and where llama.cpp runs, and steps down on a machine that
cannot run it in real time. No GPU and no model load: the CUDA probe and llama.cpp's GPU-offload probe are
injected, DialogueManager.load is a no-op, and a "downloaded" model is a sparse file of the published size.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.config import load_settings, settings_to_dict, validate_dict
from assistant.events import Notice
from assistant.models import REGISTRY, install_dir
import assistant.profile
from assistant.capability import MachineSpeed, WorkloadTime
from assistant.profile import CPU_LIPSYNC_MIN_REALTIME, GIB, PROFILES, GPUInfo, resolve
from assistant.talking_head.speed import measure_cpu_lipsync
from tests.unit.conftest import REFERENCE_SPEED
from assistant.recommend import CPU_TIERS, REFERENCE_MACHINE_S, TIER_BY_PROFILE, sustained_tier, tier_cost
from assistant.session import Session, _keys

BIG_GPU = GPUInfo("RTX 3090", 24 * GIB, 20 * GIB)


def settings_for(tmp_path: Path, **changes):
    """The shipped defaults with `changes` (dotted key -> value) as if set in the user's file."""
    data = settings_to_dict(load_settings(user_path=tmp_path / "no-user.yaml", env={}))
    data["paths"].update(models_dir=str(tmp_path / "models"), data_dir=str(tmp_path / "data"))
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return validate_dict(data).model_copy(update={"user_keys": frozenset(changes)})


def fake_download(name: str, models_dir: Path) -> Path:
    """Put a registry model's files in place at their published sizes (sparse: no disk used)."""
    spec = REGISTRY[name]
    folder = install_dir(spec, models_dir)
    for f in spec.files:
        path = folder / f.rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            out.truncate(f.size_bytes)
    return folder


@pytest.mark.parametrize(
    ("profile", "model"), [("low", "smollm2-135m"), ("medium", "llama-3.2-1b"), ("high", "llama-3.2-3b")]
)
def test_the_profile_picks_the_dialogue_model(tmp_path, profile, model):
    r = resolve(
        settings_for(tmp_path, gpu_profile=profile), probe=lambda: BIG_GPU, llm_gpu_probe=lambda: False
    )
    assert (r.profile, r.dialogue_model) == (profile, model)
    assert r.sources["dialogue.model"] == f"gpu_profile={profile}"
    assert model in REGISTRY and PROFILES[profile].dialogue_model == model


def test_a_named_dialogue_model_wins_over_the_profile(tmp_path):
    r = resolve(
        settings_for(tmp_path, gpu_profile="high", **{"dialogue.model": "smollm2-135m"}),
        probe=lambda: BIG_GPU,
        llm_gpu_probe=lambda: False,
    )
    assert r.dialogue_model == "smollm2-135m" and r.sources["dialogue.model"] == "user config"


@pytest.mark.parametrize(
    ("configured", "offload", "layers", "source"),
    [
        ("auto", True, -1, "auto: llama.cpp built with GPU offload"),
        ("auto", False, 0, "auto: llama.cpp built without GPU offload"),
        (12, True, 12, "user config"),
        (0, True, 0, "user config"),
    ],
)
def test_gpu_layers_follow_the_llama_cpp_build(tmp_path, configured, offload, layers, source):
    asked: list[bool] = []

    def llm_gpu_probe() -> bool:
        asked.append(True)
        return offload

    settings = settings_for(tmp_path, **{"dialogue.gpu_layers": configured})
    r = resolve(settings, probe=lambda: None, llm_gpu_probe=llm_gpu_probe)
    assert r.dialogue_gpu_layers == layers and r.sources["dialogue.gpu_layers"] == source
    assert asked == ([True] if configured == "auto" else [])  # llama.cpp is asked only for auto


@pytest.mark.parametrize("profile", ["medium", "high"])
def test_medium_and_high_on_a_cpu_run_their_cpu_tier(tmp_path, profile):
    r = resolve(settings_for(tmp_path, gpu_profile=profile), probe=lambda: None, llm_gpu_probe=lambda: False)
    tier = TIER_BY_PROFILE[profile]
    assert r.profile == profile and r.requested_profile == profile and not r.stepped_down
    chosen = (r.asr_model, r.tts_engine, r.talking_head_engine, r.quality_mode, r.dialogue_model)
    assert chosen == (tier.asr_model, "piper", "light", "standard", tier.dialogue_model)
    assert tier.dialogue_model != "smollm2-135m" and tier.asr_model != "whisper-tiny.en"
    assert r.talking_head_device == "cpu"
    assert r.sources["profile"] == f"user config: {profile} on a CPU (no CUDA GPU)"


def slow_cpu(factor: float) -> MachineSpeed:
    return MachineSpeed(WorkloadTime(REFERENCE_MACHINE_S * factor, 0.0), 2, "slow")


def test_a_named_tier_this_cpu_cannot_keep_quick_says_so(tmp_path):
    r = resolve(
        settings_for(tmp_path, gpu_profile="high"), probe=lambda: None, llm_gpu_probe=lambda: False,
        cpu_speed_probe=lambda s: slow_cpu(20.0),
    )  # fmt: skip
    assert r.profile == "high" and r.dialogue_model == TIER_BY_PROFILE["high"].dialogue_model
    assert len(r.notices) == 1 and "Profile high on this CPU" in r.notices[0] and "start late" in r.notices[0]


@pytest.mark.parametrize("factor", [0.2, 1.0, 3.0, 50.0])
def test_auto_on_a_cpu_takes_the_highest_tier_it_sustains(tmp_path, factor):
    speed = slow_cpu(factor)
    r = resolve(settings_for(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False,
                cpu_speed_probe=lambda s: speed)  # fmt: skip
    tier = sustained_tier(speed)
    assert r.profile == tier.profile and r.cpu_speed == speed
    for higher in CPU_TIERS[CPU_TIERS.index(tier) + 1 :]:
        assert not tier_cost(higher, speed).sustained
    if tier.profile != "low":
        assert tier_cost(tier, speed).sustained
    # nothing downloaded: the bundled models answer, and no notice nags about it
    assert (r.dialogue_model, r.asr_model, r.notices) == ("smollm2-135m", "whisper-tiny.en", ())
    assert r.sources["profile"].startswith(f"auto: no CUDA GPU, this CPU sustains {tier.profile}")


def test_a_slower_cpu_never_gets_a_bigger_tier():
    ranks = [CPU_TIERS.index(sustained_tier(slow_cpu(f))) for f in (0.1, 0.5, 1.0, 2.0, 4.0, 100.0)]
    assert ranks == sorted(ranks, reverse=True) and ranks[-1] == 0


def test_auto_on_a_cpu_uses_a_downloaded_model_of_its_tier(tmp_path):
    settings = settings_for(tmp_path)
    tier = sustained_tier(slow_cpu(0.1))
    assert tier.profile != "low"  # a fast CPU sustains a bigger tier than the demo set
    fake_download(tier.dialogue_model, settings.models_dir)
    r = resolve(settings, probe=lambda: None, llm_gpu_probe=lambda: False, cpu_speed_probe=lambda s: slow_cpu(0.1))
    assert (r.dialogue_model, r.asr_model) == (tier.dialogue_model, "whisper-tiny.en")
    assert r.sources["dialogue.model"] == f"gpu_profile={tier.profile}"


def test_an_untimed_cpu_gets_the_demo_tier(tmp_path):
    r = resolve(settings_for(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False,
                cpu_speed_probe=lambda s: None)  # fmt: skip
    assert (r.profile, r.dialogue_model) == ("low", "smollm2-135m") and "not timed" in r.sources["profile"]


@pytest.mark.parametrize(("profile", "engine"), [("medium", "wav2lip"), ("high", "wav2lip_gan")])
def test_without_cuda_wav2lip_stays_where_this_cpu_renders_it_in_real_time(tmp_path, profile, engine):
    asked: list[str] = []

    def fast_cpu(settings, name):
        asked.append(name)
        return CPU_LIPSYNC_MIN_REALTIME + 0.3

    settings = settings_for(tmp_path, gpu_profile=profile)
    r = resolve(settings, probe=lambda: None, llm_gpu_probe=lambda: False, cpu_lipsync_probe=fast_cpu)
    assert asked == [engine]
    tier = TIER_BY_PROFILE[profile]
    assert r.profile == profile and not r.stepped_down
    assert (r.talking_head_engine, r.quality_mode, r.talking_head_device) == (engine, "standard", "cpu")
    assert (r.asr_model, r.tts_engine, r.dialogue_model) == (tier.asr_model, "piper", tier.dialogue_model)
    assert f"{engine} at 1.50x real time on this CPU" in r.sources["talking_head.engine"]
    assert f"talking head stays {engine}" in r.notices[-1]
    assert len(r.notices) == (1 if tier_cost(tier, REFERENCE_SPEED).sustained else 2)  # + "replies start late"


def test_auto_on_a_cpu_takes_wav2lip_when_its_weights_are_there_and_it_keeps_up(tmp_path):
    asked: list[str] = []

    def probe(settings, name):
        asked.append(name)
        return CPU_LIPSYNC_MIN_REALTIME + 0.3

    r = resolve(settings_for(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False, cpu_lipsync_probe=probe)
    assert asked == ["wav2lip"]
    assert (r.talking_head_engine, r.quality_mode, r.talking_head_device) == ("wav2lip", "standard", "cpu")
    slow = resolve(settings_for(tmp_path), probe=lambda: None, llm_gpu_probe=lambda: False,
                   cpu_lipsync_probe=lambda s, e: 0.65)  # fmt: skip
    assert slow.talking_head_engine == "light"


@pytest.mark.parametrize("rate", [None, CPU_LIPSYNC_MIN_REALTIME - 0.05, 0.65])
def test_without_cuda_a_slow_cpu_or_missing_weights_get_the_light_engine(tmp_path, rate):
    settings = settings_for(tmp_path, gpu_profile="medium")
    r = resolve(
        settings, probe=lambda: None, llm_gpu_probe=lambda: False, cpu_lipsync_probe=lambda s, e: rate
    )
    assert (r.talking_head_engine, r.quality_mode) == ("light", "standard")
    assert not [n for n in r.notices if "talking head" in n]


@pytest.mark.parametrize(
    ("changes", "probe"),
    [
        ({"gpu_profile": "low"}, lambda: None),  # low asked: the light engine, nothing measured
        ({"gpu_profile": "medium", "talking_head.engine": "static"}, lambda: None),  # the user's engine wins
        ({"gpu_profile": "medium"}, lambda: BIG_GPU),  # a GPU: the profile stands, nothing measured
    ],
)
def test_the_cpu_is_timed_only_when_its_answer_could_change_the_talking_head(tmp_path, changes, probe):
    def never(settings, engine):
        raise AssertionError("measured without need")

    resolve(
        settings_for(tmp_path, **changes), probe=probe, llm_gpu_probe=lambda: False, cpu_lipsync_probe=never
    )


def test_missing_weights_are_not_timed(tmp_path):
    settings = settings_for(tmp_path, **{"talking_head.models.wav2lip": str(tmp_path / "absent.pth")})
    assert measure_cpu_lipsync(settings, "wav2lip") is None


def test_resolve_renders_nothing_unless_given_the_measurement(tmp_path, monkeypatch):
    """The resolver reads settings and probes: without a Wav2Lip measurement given, a CPU keeps the light engine,
    even with the checkpoint on disk, and no Wav2Lip is built to time it."""
    import sys
    import types

    def never(*args, **kwargs):
        raise AssertionError("resolve built Wav2Lip to time it")

    monkeypatch.setitem(sys.modules, "assistant.talking_head.wav2lip_engine", types.SimpleNamespace(
        Wav2LipTalkingHead=never))  # fmt: skip
    settings = settings_for(tmp_path, gpu_profile="medium")
    checkpoint = settings.models_dir / "wav2lip" / "wav2lip.pth"  # where the config puts it
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    r = resolve(settings, probe=lambda: None, llm_gpu_probe=lambda: False)
    assert (r.talking_head_engine, r.quality_mode) == ("light", "standard")
    with pytest.raises(AssertionError, match="built Wav2Lip"):  # the negative control: the measurement does
        measure_cpu_lipsync(settings, "wav2lip")


def test_the_session_resolves_with_the_wav2lip_measurement(tmp_path):
    """What the app runs: a Session passes its CPU's Wav2Lip speed into resolve."""
    asked: list[str] = []

    def fast_cpu(settings, engine):
        asked.append(engine)
        return CPU_LIPSYNC_MIN_REALTIME + 0.3

    settings = settings_for(tmp_path, gpu_profile="medium")
    session = Session(settings, probe=lambda: None, llm_gpu_probe=lambda: False, cpu_lipsync_probe=fast_cpu)
    assert asked == ["wav2lip"] and session.resolved.talking_head_engine == "wav2lip"
    assert Session(settings, probe=lambda: None, llm_gpu_probe=lambda: False).resolved.talking_head_engine == (
        "light"  # the real measurement: no checkpoint in this models folder, so nothing is timed
    )


def test_with_cuda_the_named_profile_stays_and_says_nothing(tmp_path):
    r = resolve(settings_for(tmp_path, gpu_profile="high"), probe=lambda: BIG_GPU, llm_gpu_probe=lambda: True)
    assert (r.profile, r.talking_head_engine, r.dialogue_gpu_layers) == ("high", "wav2lip_gan", -1)
    assert not r.stepped_down and r.notices == ()


def test_a_setting_named_by_the_user_survives_the_cpu_tier(tmp_path):
    settings = settings_for(tmp_path, gpu_profile="high", **{"talking_head.engine": "static", "asr.model": "whisper-tiny.en"})
    r = resolve(settings, probe=lambda: None, llm_gpu_probe=lambda: False)
    assert r.profile == "high" and r.talking_head_engine == "static" and r.asr_model == "whisper-tiny.en"


# ---- the Session builds what was resolved, and reports what it built ----


@pytest.fixture
def no_llama_load(monkeypatch):
    from assistant.dialogue import DialogueManager

    monkeypatch.setattr(DialogueManager, "load", lambda self: None)


def test_session_uses_the_bundled_model_until_the_bigger_one_is_downloaded(tmp_path, no_llama_load):
    events: list = []
    settings = settings_for(tmp_path, gpu_profile="medium")
    session = Session(settings, events.append, probe=lambda: BIG_GPU, llm_gpu_probe=lambda: True)
    session.dialogue = session._build_dialogue()
    assert session.dialogue.name == "smollm2-135m" and session.dialogue.n_gpu_layers == -1
    assert session.engines_summary()["llm"] == "smollm2-135m on GPU (instead of llama-3.2-1b: not downloaded)"
    assert len(session.notices) == 1 and "llama-3.2-1b is not downloaded" in session.notices[0]
    assert [e.message for e in events if isinstance(e, Notice)] == session.notices

    session._keys = _keys(session.settings, session.resolved)  # what load() records

    # Downloaded: the next reconfigure rebuilds the dialogue stage with it, and the substitution is gone.
    folder = fake_download("llama-3.2-1b", settings.models_dir)
    reloaded: list[str] = []
    session.load = lambda progress=None: (
        reloaded.append("load")
        or setattr(  # type: ignore[method-assign]
            session, "dialogue", session._build_dialogue()
        )
    )
    assert session.reconfigure(settings) == ["dialogue"] and reloaded == ["load"]
    assert session.dialogue.model_path == folder / REGISTRY["llama-3.2-1b"].entry
    assert session.engines_summary()["llm"] == "llama-3.2-1b on GPU"
    assert session.notices == []


def test_session_reports_a_slow_tier_once_with_its_reason(tmp_path, no_llama_load, monkeypatch):
    monkeypatch.setattr(assistant.profile, "measure_cpu_speed", lambda settings: slow_cpu(20.0))
    events: list = []
    settings = settings_for(tmp_path, gpu_profile="high")
    session = Session(settings, events.append, probe=lambda: None, llm_gpu_probe=lambda: False)
    session.dialogue = session._build_dialogue()
    summary = session.engines_summary()
    assert summary["profile"] == "high"
    tier_model = TIER_BY_PROFILE["high"].dialogue_model
    assert summary["llm"] == f"smollm2-135m on CPU (instead of {tier_model}: not downloaded)"
    assert [n.split(" ")[:2] for n in session.notices] == [["Profile", "high"], ["Dialogue", "model:"]]
    session._keys = None
    session.load = lambda progress=None: None  # type: ignore[method-assign]
    session.reconfigure(settings)  # the same settings again: the profile's notice is not told twice
    assert len([e for e in events if isinstance(e, Notice) and e.message.startswith("Profile")]) == 1
    session.reconfigure(settings_for(tmp_path, gpu_profile="low"))
    assert session.engines_summary()["profile"] == "low"
    assert not [n for n in session.notices if n.startswith("Profile")]


def test_every_substitution_is_reported_not_only_the_last(tmp_path, no_llama_load):
    settings = settings_for(tmp_path, gpu_profile="high", **{"dialogue.model": "llama-3.2-3b"})
    session = Session(settings, probe=lambda: None, llm_gpu_probe=lambda: False)
    session.dialogue = session._build_dialogue()
    summary = session.engines_summary()
    assert summary["profile"] == "high"
    assert summary["llm"] == "smollm2-135m on CPU (instead of llama-3.2-3b: not downloaded)"
    # the reference CPU is too slow for high's tier (a notice), and its model is not downloaded (another)
    assert [n.split(" ")[:2] for n in session.notices] == [["Profile", "high"], ["Dialogue", "model:"]]
