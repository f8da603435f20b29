"""Build a tiny Coqui VITS model (random weights, ~260 k parameters, ~1 MB) and save it the way a downloaded
Coqui model is laid out: <models_dir>/coqui/<name with / replaced by -->/model.pth + config.json.

It reads characters, not phonemes, so loading it needs no phonemizer. Random weights speak noise, which is
all a test of the loading and synthesis path needs. Needs coqui-tts (scripts/install_coqui.sh) and torch.

    python tests/integration/tiny_coqui.py MODELS_DIR   # writes MODELS_DIR/coqui/tts_models--en--tiny--vits/
"""

from __future__ import annotations

import sys
from pathlib import Path

TINY_MODEL_NAME = "tts_models/en/tiny/vits"
SAMPLE_RATE_HZ = 22050
HOP_LENGTH = (
    256  # Coqui's default audio hop: the decoder's upsample rates must multiply to it (8 * 8 * 4 = 256)
)


def model_folder(models_dir: Path, name: str = TINY_MODEL_NAME) -> Path:
    """Where the lead's model downloader would put the Coqui model `name`."""
    return Path(models_dir) / "coqui" / name.replace("/", "--")


def build_tiny_vits(models_dir: Path, name: str = TINY_MODEL_NAME, seed: int = 0) -> Path:
    """Create, save and return the model folder (model.pth + config.json). Same seed, same weights."""
    import torch
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters",
        pad="_",
        eos="",
        bos="",
        blank=None,
        characters="abcdefghijklmnopqrstuvwxyz",
        punctuations=" !,.?'-",
        phonemes=None,
    )
    args = VitsArgs(
        hidden_channels=16,  # 192 in the released ljspeech model
        hidden_channels_ffn_text_encoder=32,
        num_heads_text_encoder=2,
        num_layers_text_encoder=1,
        num_layers_posterior_encoder=1,  # training only, still built
        num_layers_flow=1,
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3, 5]],  # resblock type "1" needs three dilations
        upsample_rates_decoder=[8, 8, 4],  # product = HOP_LENGTH samples per spectrogram frame
        upsample_kernel_sizes_decoder=[16, 16, 8],  # twice each rate, as in HiFi-GAN
        upsample_initial_channel_decoder=32,
        use_sdp=False,  # deterministic duration predictor: the same length every run
        init_discriminator=False,  # training only
    )
    config = VitsConfig(
        model_args=args,
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        characters=characters,
        add_blank=False,
    )
    config.audio.sample_rate = SAMPLE_RATE_HZ
    config.audio.hop_length = HOP_LENGTH
    torch.manual_seed(seed)
    model = Vits(config)
    folder = model_folder(models_dir, name)
    folder.mkdir(parents=True, exist_ok=True)
    # A released Coqui checkpoint is a dict whose "model" entry is the state dict (training extras skipped).
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} MODELS_DIR")
    print(build_tiny_vits(Path(sys.argv[1])))
