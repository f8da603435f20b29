"""The talking-head fallback chain with fake engines: order, lazy build-once, reasons, OOM policy, cancellation."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.cancel import CancelToken
from assistant.errors import (
    Cancelled,
    CheckpointError,
    NoFaceError,
    TalkingHeadError,
    VideoEncodeError,
    VideoOutOfMemoryError,
)
from assistant.events import AvatarVideo
from assistant.talking_head.base import RenderSettings, TalkingHeadEngine
from assistant.talking_head.chain import TalkingHeadChain, default_factories

AUDIO, OUT = Path("speech.wav"), Path("out.mp4")


class FakeEngine:
    """Implements the engine protocol; fails with `errors` in turn (None = succeed)."""

    def __init__(self, name: str, errors: list[BaseException | None] | None = None) -> None:
        self.name = name
        self.errors = list(errors or [])
        self.renders = 0
        self.closed = False

    def render(self, audio_path: Path, output_path: Path) -> AvatarVideo:
        self.renders += 1
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        return AvatarVideo(output_path, "whatever-the-engine-says", 25, 25.0, 64, 48, 1.0, 0.5)

    def close(self) -> None:
        self.closed = True


class Factories(dict):
    """name -> factory; counts builds; a name mapped to an exception fails to build."""

    def __init__(self, **behaviour: list[BaseException | None] | BaseException) -> None:
        super().__init__()
        self.builds: dict[str, int] = {}
        self.engines: dict[str, FakeEngine] = {}
        for name in ("wav2lip_gan", "wav2lip", "light", "static"):
            self[name] = self._factory(name, behaviour.get(name, []))

    def _factory(self, name: str, behaviour: list[BaseException | None] | BaseException):
        def build() -> FakeEngine:
            self.builds[name] = self.builds.get(name, 0) + 1
            if isinstance(behaviour, BaseException):
                raise behaviour
            self.engines[name] = FakeEngine(name, behaviour)
            return self.engines[name]

        return build


def test_fake_engine_meets_the_protocol() -> None:
    assert isinstance(FakeEngine("light"), TalkingHeadEngine)


def test_configured_engine_runs_and_is_built_once() -> None:
    f = Factories()
    chain = TalkingHeadChain("wav2lip", f)
    for _ in range(3):
        video = chain.render(AUDIO, OUT)
        assert video.engine == "wav2lip"  # the chain names the step, not the engine's own label
        assert video.fallback_reasons == ()
    assert f.builds == {"wav2lip": 1}  # built lazily, once, kept; nothing else built
    assert f.engines["wav2lip"].renders == 3
    assert chain.steps == ("wav2lip", "light", "static")  # never climbs up to wav2lip_gan


def test_missing_weights_step_down_once_and_keep_reporting() -> None:
    f = Factories(
        wav2lip_gan=CheckpointError("models/wav2lip/wav2lip_gan.pth is missing; run assistant models")
    )
    chain = TalkingHeadChain("wav2lip_gan", f)
    first = chain.render(AUDIO, OUT)
    second = chain.render(AUDIO, OUT)
    assert first.engine == second.engine == "wav2lip"
    assert len(first.fallback_reasons) == 1
    reason = first.fallback_reasons[0]
    assert reason.startswith("wav2lip_gan -> wav2lip:")
    assert "CheckpointError" in reason and "wav2lip_gan.pth is missing" in reason
    assert second.fallback_reasons == first.fallback_reasons
    assert f.builds["wav2lip_gan"] == 1  # not retried every turn
    assert "wav2lip_gan" in chain.unavailable


def test_falls_all_the_way_to_static_with_a_reason_per_step() -> None:
    f = Factories(
        wav2lip_gan=CheckpointError("no gan weights"),
        wav2lip=CheckpointError("no weights"),
        light=NoFaceError("No face found in the avatar image"),
    )
    video = TalkingHeadChain("wav2lip_gan", f).render(AUDIO, OUT)
    assert video.engine == "static"
    assert [r.split(":")[0] for r in video.fallback_reasons] == [
        "wav2lip_gan -> wav2lip",
        "wav2lip -> light",
        "light -> static",
    ]
    assert "NoFaceError" in video.fallback_reasons[2]


def test_oom_propagates_when_asked_and_nothing_else_runs() -> None:
    f = Factories(wav2lip=[VideoOutOfMemoryError("CUDA out of memory")])
    chain = TalkingHeadChain("wav2lip", f, on_oom="raise")
    with pytest.raises(VideoOutOfMemoryError):
        chain.render(AUDIO, OUT)
    assert "light" not in f.builds
    assert chain.render(AUDIO, OUT).engine == "wav2lip"  # OOM is per turn: the engine stays usable


def test_oom_falls_back_to_the_cpu_engine_when_asked() -> None:
    f = Factories(wav2lip=[VideoOutOfMemoryError("CUDA out of memory")])
    video = TalkingHeadChain("wav2lip", f, on_oom="fallback").render(AUDIO, OUT)
    assert video.engine == "light"
    assert video.fallback_reasons[0].startswith("wav2lip -> light: out of memory")


def test_a_failed_render_falls_back_for_that_turn_only() -> None:
    f = Factories(light=[VideoEncodeError("ffmpeg failed: broken pipe"), None])
    chain = TalkingHeadChain("light", f)
    first = chain.render(AUDIO, OUT)
    assert first.engine == "static"
    assert "failed (VideoEncodeError: ffmpeg failed: broken pipe)" in first.fallback_reasons[0]
    second = chain.render(AUDIO, OUT)
    assert second.engine == "light" and second.fallback_reasons == ()
    assert f.builds["light"] == 1


def test_unexpected_exceptions_also_degrade() -> None:
    f = Factories(light=[ZeroDivisionError("bug")])
    assert TalkingHeadChain("light", f).render(AUDIO, OUT).engine == "static"


def test_every_engine_failing_raises_with_all_reasons() -> None:
    f = Factories(light=NoFaceError("no face"), static=[VideoEncodeError("disk full")])
    with pytest.raises(TalkingHeadError, match=r"light: unavailable .*no face.*static: failed .*disk full"):
        TalkingHeadChain("light", f).render(AUDIO, OUT)


def test_cancellation_is_never_a_fallback() -> None:
    f = Factories(wav2lip=[Cancelled("new user speech")])
    with pytest.raises(Cancelled):
        TalkingHeadChain("wav2lip", f).render(AUDIO, OUT)
    assert "light" not in f.builds

    token = CancelToken()
    token.cancel("stop")
    f2 = Factories()
    with pytest.raises(Cancelled, match="stop"):
        TalkingHeadChain("light", f2).render(AUDIO, OUT, cancel=token)
    assert f2.builds == {}


def test_close_closes_built_engines() -> None:
    f = Factories(wav2lip=CheckpointError("missing"))
    chain = TalkingHeadChain("wav2lip", f)
    chain.render(AUDIO, OUT)
    chain.close()
    assert f.engines["light"].closed


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown talking-head engine 'musetalk'"):
        TalkingHeadChain("musetalk", Factories())
    with pytest.raises(ValueError, match="on_oom"):
        TalkingHeadChain("light", Factories(), on_oom="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="No factory"):
        TalkingHeadChain("light", {"wav2lip": lambda: FakeEngine("wav2lip")})


def test_default_factories_cover_every_engine_without_building_them(tmp_path: Path) -> None:
    factories = default_factories(tmp_path / "missing.png", RenderSettings())
    assert set(factories) == {"wav2lip_gan", "wav2lip", "light", "static"}
    chain = TalkingHeadChain("light", factories)
    # The photo does not exist: light and static both fail to build, and the error says what was missing.
    with pytest.raises(TalkingHeadError, match="Avatar image not found"):
        chain.render(tmp_path / "a.wav", tmp_path / "o.mp4")
