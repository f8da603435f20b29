"""Whole turns through the real pipeline (bundled Whisper tiny.en, SmolLM2, Piper, light engine, ffmpeg), driven
through the `assistant ask` / `assistant listen` commands, plus every bad input a user can give them."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from assistant.cli.main import main
from assistant.config import load_settings
from assistant.events import ReplySentenceReady
from assistant.models import locate
from assistant.session import Session
from assistant.video import probe

pytestmark = pytest.mark.integration

QUESTION = "What is the capital of France?"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("q") / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), QUESTION], check=True)
    return path


@pytest.fixture(scope="module")
def listen_result(question_wav, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("listen")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = main(["listen", str(question_wav), "--out", str(out_dir), "--json"])
    return rc, out_dir, json.loads(stdout.getvalue())


def _whisper_text(path: Path) -> str:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(locate("whisper-tiny.en", Path("models"))), device="cpu", compute_type="int8")
    segments, _ = model.transcribe(str(path), beam_size=1, language="en")
    return " ".join(s.text for s in segments)


def _letters(text: str) -> str:
    return re.sub(r"[^a-z]", "", text.lower())


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) >= 4}


def test_listen_answers_a_spoken_question_with_speech_and_video(listen_result):
    rc, out_dir, result = listen_result
    assert rc == 0
    assert "capital of france" in result["transcript"].lower()
    assert result["reply"].strip()
    assert result["engines"]["asr"] == "whisper-tiny.en" and result["engines"]["tts"] == "piper"
    assert result["engines"]["talking_head"] == "light"
    for stage in ("asr", "llm_first_sentence", "tts_first_audio", "first_audio_from_end_of_speech"):
        assert result["timings_s"][stage] > 0
    audio, video = Path(result["audio_path"]), Path(result["video_path"])
    assert audio.parent == out_dir and video.parent == out_dir
    info = probe(video)
    assert info.has_video and info.has_audio and info.video_codec == "h264" and info.audio_codec == "aac"
    assert abs(info.duration_s - sf.info(str(audio)).duration) < 0.1
    # The joined reply stays in sync: both streams start together and end within one frame.
    assert abs(info.video_start_s - info.audio_start_s) <= 0.04
    assert abs(info.video_duration_s - info.audio_duration_s) <= 1 / info.fps + 0.005
    # The reply's own words come back out of its audio. Compared letter by letter, not word by word: tiny.en may
    # join or split words of an odd reply ("Le Grand Paris" came back as "grandparents"), while silence or another
    # sentence scores far below (0.2-0.3 for unrelated sentences of the same length).
    said, heard = _letters(result["reply"]), _letters(_whisper_text(audio))
    assert said, result["reply"]
    assert SequenceMatcher(None, said, heard).ratio() >= 0.6, (result["reply"], heard)


def test_the_turn_is_in_the_conversation_log(listen_result):
    log_files = list((load_settings().data_dir / "conversations").glob("*.jsonl"))
    records = [json.loads(line) for f in log_files for line in f.read_text().splitlines()]
    mine = [r for r in records if str(listen_result[1]) in " ".join(r["audio_paths"])]
    assert mine and "capital of france" in mine[-1]["transcript"].lower()
    assert all(Path(p).exists() for p in mine[-1]["audio_paths"] + mine[-1]["video_paths"])


def test_ask_without_video(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "ask", "Say hello.", "--out", str(tmp_path), "--json", "--no-video")
    result = json.loads(out)
    assert rc == 0 and result["reply"] and result["video_path"] is None
    assert sf.info(result["audio_path"]).duration > 0.3


def test_cancel_mid_reply_with_real_models(tmp_path):
    session = Session(load_settings(), out_dir=tmp_path)
    session.settings.talking_head.enabled = False
    session.load()
    sentences: list[str] = []

    def on_event(event):
        if isinstance(event, ReplySentenceReady):
            sentences.append(event.sentence.text)
            session.cancel_current("the user spoke again")

    session.on_event = on_event
    result = session.run_turn(text="Tell me a long story about a dragon and a knight, in many sentences.")
    session.close()
    assert result.cancelled
    assert len(sentences) == 1 and result.reply == sentences[0]


# ---- bad input: a clear message, exit status 2, nothing crashes ----


def test_missing_audio_file(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "listen", str(tmp_path / "nope.wav"))
    assert rc == 2 and "not found" in err and "nope.wav" in err


def test_unsupported_audio_format(capsys, tmp_path):
    bad = tmp_path / "question.wav"
    bad.write_text("this is not audio")
    rc, _, err = run_cli(capsys, "listen", str(bad))
    assert rc == 2 and "Cannot decode" in err and "ffmpeg" in err


def test_audio_over_the_limit(capsys, tmp_path):
    long = tmp_path / "long.wav"
    sf.write(str(long), np.zeros(16000 * 301, np.int16), 16000)
    rc, _, err = run_cli(capsys, "listen", str(long))
    assert rc == 2 and "over the limit" in err


def test_audio_without_speech(capsys, tmp_path):
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), (np.random.default_rng(0).standard_normal(32000) * 50).astype(np.int16), 16000)
    rc, _, err = run_cli(capsys, "listen", str(quiet))
    assert rc == 2 and "No speech found" in err


def test_broken_config_value(capsys, tmp_path):
    cfg = yaml.safe_load(Path("config/config.yaml").read_text())
    cfg["tts"]["engine"] = "loudspeaker"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    rc, _, err = run_cli(capsys, "--config", str(bad), "ask", "hi")
    assert rc == 2 and "tts.engine: 'loudspeaker' is not one of 'auto', 'coqui', 'piper', 'espeak'" in err


def test_corrupt_dialogue_model(capsys, tmp_path):
    corrupt = tmp_path / "broken.gguf"
    corrupt.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    cfg = yaml.safe_load(Path("config/config.yaml").read_text())
    cfg["dialogue"]["model"] = str(corrupt)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, _, err = run_cli(capsys, "--config", str(path), "ask", "hi", "--no-video")
    assert rc == 2 and "broken.gguf" in err


def test_two_turns_share_one_loaded_session(tmp_path):
    """Models load once: the second turn reuses them, and the dialogue remembers the first: the messages the
    second turn sends to llama.cpp hold the first question and the first reply."""
    session = Session(load_settings(), out_dir=tmp_path)
    session.settings.talking_head.enabled = False
    session.load()
    asr, llm = session.asr, session.dialogue
    sent: list[list[dict[str, str]]] = []
    real = llm._llm.create_chat_completion  # a spy on the real model: records the prompt, then generates

    def recording(messages, **kwargs):
        sent.append([dict(m) for m in messages])
        return real(messages=messages, **kwargs)

    llm._llm.create_chat_completion = recording
    try:
        first = session.run_turn(text="My name is Ada.")
        second = session.run_turn(text="What is my name?")
        assert session.asr is asr and session.dialogue is llm
    finally:
        session.close()
    assert first.reply and second.reply
    assert len(sent) == 2
    assert [m for m in sent[0] if m["role"] != "system"] == [{"role": "user", "content": "My name is Ada."}]
    remembered = [m for m in sent[1] if m["role"] != "system"]
    assert [m["role"] for m in remembered] == ["user", "assistant", "user"]
    assert remembered[0]["content"] == "My name is Ada." and remembered[2]["content"] == "What is my name?"
    # The remembered reply is the first turn's reply (the history keeps the model's raw text; the turn's
    # reply is the spoken sentences, cleaned of markdown).
    assert _words(first.reply) <= _words(remembered[1]["content"]), (first.reply, remembered[1])
    assert [t.user_text for t in llm.history] == ["My name is Ada.", "What is my name?"]


def test_every_ask_writes_its_own_reply_files(tmp_path, capsys):
    paths = []
    for question in ("Say hello.", "Say goodbye."):
        rc, out, _ = run_cli(capsys, "ask", question, "--out", str(tmp_path), "--json", "--no-video")
        assert rc == 0
        paths.append(Path(json.loads(out)["audio_path"]))
    assert paths[0] != paths[1]  # the second reply did not overwrite the first
    assert all(p.is_file() and p.parent == tmp_path and p.name.startswith("reply-") for p in paths)
    assert sf.info(str(paths[0])).duration > 0.3 and sf.info(str(paths[1])).duration > 0.3
