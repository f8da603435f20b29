"""The TTS fallback chain with fake engines: load failures, synthesis failures, the reasons reported, empty
text; plus the engines' own checks that need no model (model/voice lookup messages, a missing espeak-ng
binary)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from assistant.audio.io import write_wav
from assistant.errors import Cancelled, ConfigError, TTSError
from assistant.events import SpeechAudio
from assistant.tts import (
    CoquiEngine,
    EmptyTextError,
    EspeakEngine,
    FallbackTTS,
    PiperEngine,
    TTSEngine,
    TTSImportError,
    TTSModelError,
    TTSOptions,
    build_tts,
    chain_for,
    resolve_model,
    resolve_voice,
)
from assistant.tts.base import TTSOutputError, speech_from_wav
from assistant.tts.select import FAILURES_IN_A_ROW_TO_DROP
from assistant.tts.coqui import _fix_side_file_paths

RATE_HZ = 16000


class FakeEngine:
    """A TTSEngine that writes a short tone, or fails where told to."""

    def __init__(
        self, name: str, load_error: Exception | None = None, synth_errors: list[Exception] | None = None
    ):
        self.name = name
        self.load_error = load_error
        self.synth_errors = list(synth_errors or [])
        self.loads = 0
        self.spoken: list[str] = []
        self.closed = 0
        self.loaded = False

    def load(self) -> None:
        self.loads += 1
        if self.load_error is not None:
            raise self.load_error
        self.loaded = True

    def synthesize(self, text: str, out_path: Path) -> SpeechAudio:
        assert self.loaded, "synthesize before load"
        if self.synth_errors:
            raise self.synth_errors.pop(0)
        self.spoken.append(text)
        tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(RATE_HZ // 2) / RATE_HZ).astype(np.float32)  # 0.5 s
        write_wav(out_path, tone, RATE_HZ)
        return speech_from_wav(out_path, self.name, text, 0.01)

    def close(self) -> None:
        self.closed += 1
        self.loaded = False


def fakes(**kwargs: FakeEngine) -> dict:
    return {name: (lambda _options, engine=engine: engine) for name, engine in kwargs.items()}


def test_chain_order_follows_the_preferred_engine() -> None:
    assert chain_for("coqui") == ("coqui", "piper", "espeak")
    assert chain_for("piper") == ("piper", "espeak")
    assert chain_for("espeak") == ("espeak",)
    assert chain_for("auto") == ("piper", "espeak")
    with pytest.raises(ConfigError, match=r"'festival'.*coqui, piper, espeak"):
        chain_for("festival")


def test_fakes_and_real_engines_satisfy_the_protocol() -> None:
    for engine in (FakeEngine("x"), CoquiEngine(), PiperEngine(), EspeakEngine()):
        assert isinstance(engine, TTSEngine)
    assert isinstance(FallbackTTS([FakeEngine("x")]), TTSEngine)


def test_preferred_engine_speaks_and_later_ones_are_not_loaded(tmp_path: Path) -> None:
    coqui, piper, espeak = FakeEngine("coqui"), FakeEngine("piper"), FakeEngine("espeak")
    tts = build_tts("coqui", factories=fakes(coqui=coqui, piper=piper, espeak=espeak))
    speech = tts.synthesize("Hello.", tmp_path / "a.wav")
    assert (speech.engine, speech.fallback_reason) == ("coqui", None)
    assert speech.sample_rate_hz == RATE_HZ and speech.duration_s == pytest.approx(0.5)
    assert tts.fallbacks == [] and tts.fallback_reason is None
    assert (piper.loads, espeak.loads) == (0, 0)


def test_coqui_load_failure_falls_back_to_piper_with_the_reason(tmp_path: Path) -> None:
    coqui = FakeEngine("coqui", load_error=TTSModelError("Cannot load the Coqui model /m/model.pth: corrupt"))
    piper, espeak = FakeEngine("piper"), FakeEngine("espeak")
    reported: list[tuple[str, str]] = []
    tts = build_tts(
        "coqui",
        factories=fakes(coqui=coqui, piper=piper, espeak=espeak),
        on_fallback=lambda engine, reason: reported.append((engine, reason)),
    )
    assert tts.name == "piper" and tts.preferred == "coqui"

    speech = tts.synthesize("Hello.", tmp_path / "a.wav")

    assert speech.engine == "piper" and piper.spoken == ["Hello."]
    assert speech.fallback_reason == "coqui failed to load: Cannot load the Coqui model /m/model.pth: corrupt"
    assert [(s.engine, s.stage) for s in tts.fallbacks] == [("coqui", "load")]
    assert reported == [("coqui", speech.fallback_reason)]
    assert coqui.closed == 1 and espeak.loads == 0


def test_import_error_and_missing_voice_fall_through_to_espeak(tmp_path: Path) -> None:
    coqui = FakeEngine("coqui", load_error=TTSImportError("Coqui TTS does not import; install it with: ..."))
    piper = FakeEngine("piper", load_error=FileNotFoundError("no voice.onnx"))
    espeak = FakeEngine("espeak")
    tts = build_tts("coqui", factories=fakes(coqui=coqui, piper=piper, espeak=espeak))
    speech = tts.synthesize("Hello.", tmp_path / "a.wav")
    assert speech.engine == "espeak"
    assert [s.engine for s in tts.fallbacks] == ["coqui", "piper"]
    assert "Coqui TTS does not import" in speech.fallback_reason
    assert "piper failed to load: FileNotFoundError: no voice.onnx" in speech.fallback_reason


def test_one_synthesis_failure_moves_down_for_that_sentence_only(tmp_path: Path) -> None:
    coqui = FakeEngine("coqui", synth_errors=[RuntimeError("CUDA error: device-side assert")])
    piper = FakeEngine("piper")
    tts = build_tts("coqui", factories=fakes(coqui=coqui, piper=piper, espeak=FakeEngine("espeak")))
    assert tts.name == "coqui"

    first = tts.synthesize("First.", tmp_path / "1.wav")
    second = tts.synthesize("Second.", tmp_path / "2.wav")

    assert (first.engine, second.engine) == ("piper", "coqui")
    assert piper.spoken == ["First."] and coqui.spoken == ["Second."]
    assert first.fallback_reason == "coqui failed to synthesize: RuntimeError: CUDA error: device-side assert"
    assert second.fallback_reason is None
    assert tts.fallbacks == [] and coqui.closed == 0


def test_failures_in_a_row_drop_the_engine_until_it_is_retried(tmp_path: Path) -> None:
    now = [0.0]
    broken = [RuntimeError("CUDA error: device-side assert")] * FAILURES_IN_A_ROW_TO_DROP
    coqui, piper = FakeEngine("coqui", synth_errors=list(broken)), FakeEngine("piper")
    tts = FallbackTTS([coqui, piper], retry_load_after_s=60.0, clock=lambda: now[0])
    spoken = [tts.synthesize(f"S{i}.", tmp_path / f"{i}.wav").engine for i in range(FAILURES_IN_A_ROW_TO_DROP + 1)]
    assert spoken == ["piper"] * (FAILURES_IN_A_ROW_TO_DROP + 1)
    assert [(s.engine, s.stage) for s in tts.fallbacks] == [("coqui", "synthesize")] and coqui.closed == 1
    assert len(coqui.spoken) == 0 and tts.name == "piper"

    now[0] = 59.0  # not yet: piper goes on
    assert tts.synthesize("Later.", tmp_path / "l.wav").engine == "piper"
    now[0] = 61.0  # the broken engine has healed: it is the preferred one again
    assert tts.synthesize("Healed.", tmp_path / "h.wav").engine == "coqui"
    assert tts.fallbacks == [] and tts.name == "coqui"


def test_a_load_failure_is_retried_after_a_while_but_a_missing_package_is_not(tmp_path: Path) -> None:
    now = [0.0]
    coqui = FakeEngine("coqui", load_error=TTSModelError("model not downloaded"))
    piper = FakeEngine("piper", load_error=TTSImportError("piper-tts is not installed"))
    espeak = FakeEngine("espeak")
    tts = FallbackTTS([coqui, piper, espeak], retry_load_after_s=30.0, clock=lambda: now[0])
    assert tts.synthesize("One.", tmp_path / "1.wav").engine == "espeak"
    coqui.load_error = piper.load_error = None  # the model arrived; the package did not appear by itself
    now[0] = 31.0
    assert tts.synthesize("Two.", tmp_path / "2.wav").engine == "coqui"
    assert coqui.spoken == ["Two."] and piper.loads == 1
    assert [s.engine for s in tts.fallbacks] == ["piper"]


def test_every_engine_failing_raises_with_every_reason(tmp_path: Path) -> None:
    engines = fakes(
        piper=FakeEngine("piper", load_error=TTSModelError("voice missing")),
        espeak=FakeEngine("espeak", synth_errors=[TTSError("espeak-ng failed (exit 1): bad voice")]),
    )
    tts = build_tts("piper", factories=engines)
    with pytest.raises(TTSError) as info:
        tts.synthesize("Hello.", tmp_path / "a.wav")
    message = str(info.value)
    assert "piper failed to load: voice missing" in message
    assert "espeak failed to synthesize: espeak-ng failed (exit 1): bad voice" in message
    assert "apt-get install espeak-ng" in message
    # One sentence no engine could speak does not mute the session: the next one is spoken.
    assert tts.synthesize("Again.", tmp_path / "b.wav").engine == "espeak"


def test_nothing_loads_raises_at_build_time() -> None:
    engines = fakes(espeak=FakeEngine("espeak", load_error=TTSImportError("espeak-ng is not installed")))
    with pytest.raises(TTSError, match="espeak failed to load: espeak-ng is not installed"):
        build_tts("espeak", factories=engines)


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_a_clear_error_and_no_fallback(text: str, tmp_path: Path) -> None:
    coqui, piper = FakeEngine("coqui"), FakeEngine("piper")
    tts = build_tts(
        "coqui", factories=fakes(coqui=coqui, piper=piper, espeak=FakeEngine("espeak")), load=False
    )
    with pytest.raises(EmptyTextError, match="empty") as info:
        tts.synthesize(text, tmp_path / "a.wav")
    assert isinstance(info.value, ValueError) and isinstance(info.value, TTSError)
    assert coqui.loads == 0 and tts.fallbacks == []


def test_cancellation_is_not_a_failure(tmp_path: Path) -> None:
    coqui = FakeEngine("coqui", synth_errors=[Cancelled("new user speech")])
    tts = build_tts(
        "coqui", factories=fakes(coqui=coqui, piper=FakeEngine("piper"), espeak=FakeEngine("espeak"))
    )
    with pytest.raises(Cancelled):
        tts.synthesize("Hello.", tmp_path / "a.wav")
    assert tts.name == "coqui" and tts.fallbacks == []


def test_an_engine_that_cannot_be_built_is_reported_and_skipped(tmp_path: Path) -> None:
    def bad_coqui(_options: TTSOptions) -> TTSEngine:
        raise ValueError("Coqui device 'tpu' is not one of auto, cpu, cuda")

    piper = FakeEngine("piper")
    tts = build_tts(
        "coqui", factories={"coqui": bad_coqui, "piper": lambda o: piper, "espeak": lambda o: piper}
    )
    speech = tts.synthesize("Hello.", tmp_path / "a.wav")
    assert speech.engine == "piper" and tts.preferred == "coqui"
    assert (
        speech.fallback_reason
        == "coqui failed to load: ValueError: Coqui device 'tpu' is not one of auto, cpu, cuda"
    )


def test_options_reach_the_real_engine_factories() -> None:
    options = TTSOptions(
        models_dir=Path("/m"),
        coqui_model="coqui-xtts-v2",
        speaker="Ana Florence",
        language="de",
        piper_voice="/v/voice.onnx",
        espeak_voice="en-gb",
        espeak_rate_wpm=150,
        device="cpu",
    )
    tts = build_tts("coqui", options, load=False)
    coqui, piper, espeak = tts._engines
    assert (coqui.model, coqui.speaker, coqui.language, coqui.device) == (
        "coqui-xtts-v2",
        "Ana Florence",
        "de",
        "cpu",
    )
    assert (piper.voice, piper.models_dir) == ("/v/voice.onnx", Path("/m"))
    assert (espeak.voice, espeak.rate_wpm) == ("en-gb", 150)


# ---- engine checks that need no model ----


def test_missing_espeak_binary_names_the_install_command(tmp_path: Path) -> None:
    engine = EspeakEngine(binary="espeak-ng-not-installed-here")
    with pytest.raises(TTSImportError, match=r"sudo apt-get install espeak-ng"):
        engine.synthesize("Hello.", tmp_path / "a.wav")


def test_missing_coqui_model_says_it_is_not_downloaded(tmp_path: Path) -> None:
    with pytest.raises(TTSModelError, match=r"not downloaded.*never downloaded while speaking"):
        resolve_model("tts_models/en/some/vits", tmp_path)
    with pytest.raises(TTSModelError, match=r"assistant models download coqui-vits"):
        resolve_model("tts_models/en/ljspeech/vits", tmp_path)  # a registry model: the registry's advice
    with pytest.raises(TTSModelError, match="not a registry name"):
        resolve_model("my-voice", tmp_path)


def test_coqui_model_folder_layouts(tmp_path: Path) -> None:
    vits = tmp_path / "coqui" / "tts_models--en--x--vits"
    vits.mkdir(parents=True)
    (vits / "model_file.pth").write_bytes(b"w")
    (vits / "config.json").write_text(json.dumps({"model": "vits"}))
    files = resolve_model("tts_models/en/x/vits", tmp_path)
    assert (files.checkpoint, files.config, files.model_type) == (
        vits / "model_file.pth",
        vits / "config.json",
        "vits",
    )

    xtts = tmp_path / "xtts"
    xtts.mkdir()
    (xtts / "model.pth").write_bytes(b"w")
    (xtts / "config.json").write_text(json.dumps({"model": "xtts"}))
    assert resolve_model(xtts, tmp_path).checkpoint == xtts  # XTTS loads from its folder

    (tmp_path / "lone.pth").write_bytes(b"w")
    with pytest.raises(TTSModelError, match="config.json"):
        resolve_model(tmp_path / "lone.pth", tmp_path)


def test_side_file_paths_from_the_training_machine_are_pointed_at_the_model_folder(tmp_path: Path) -> None:
    (tmp_path / "speaker_ids.json").write_text("{}")
    config = {
        "speakers_file": "/home/trainer/run/speaker_ids.json",
        "model_args": {"speakers_file": "/home/trainer/run/speaker_ids.json", "d_vector_file": None},
    }
    assert _fix_side_file_paths(config, tmp_path)
    assert (
        config["speakers_file"] == config["model_args"]["speakers_file"] == str(tmp_path / "speaker_ids.json")
    )
    assert not _fix_side_file_paths(config, tmp_path)  # already right: nothing to change


def test_unknown_piper_voice_names_what_to_use(tmp_path: Path) -> None:
    with pytest.raises(TTSModelError, match=r"Unknown Piper voice 'en_GB-nobody'.*piper-joe"):
        resolve_voice("en_GB-nobody", tmp_path)
    with pytest.raises(TTSModelError, match="not found"):
        resolve_voice(tmp_path / "missing.onnx", tmp_path)
    local = tmp_path / "piper" / "en_GB-somebody.onnx"
    local.parent.mkdir()
    local.write_bytes(b"onnx")
    assert resolve_voice("en_GB-somebody", tmp_path) == local
