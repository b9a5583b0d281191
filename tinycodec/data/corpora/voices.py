"""The ``voices`` corpus: an out-of-domain check set of synthetic speech (espeak-ng), never trained on.

Eight voices (languages and voice variants) read the same two sentences in their language, at
16 kHz: robotic speech whose pitch, rate and spectra differ from every recorded speaker of the
``speech`` corpus. It answers one question: does a reader's own, unusual voice come through as well
as the held-out test split? Built locally by ``espeak-ng`` (``apt-get install espeak-ng``); no download.

Notebook: book/05_bitrate.md
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tinycodec.data.corpora.manifest import Entry, write_audio
from tinycodec.data.synth import synth_speech

SAMPLE_RATE = 16_000
# (espeak-ng voice, language tag, two sentences)
VOICES = [
    ("en-us+m3", "en", ("The quick brown fox jumps over the lazy dog near the river bank.",
                        "Please call me back before seven, the meeting moved to Thursday.")),
    ("en-gb+f2", "en", ("She sells sea shells by the sea shore every summer morning.",
                        "A small codec on a microcontroller sends two kilobits per second.")),
    ("de+m2", "de", ("Der schnelle braune Fuchs springt über den faulen Hund.",
                     "Bitte rufen Sie mich morgen früh noch einmal an.")),
    ("fr+f3", "fr", ("Le vif renard brun saute par-dessus le chien paresseux.",
                     "Nous arriverons à la gare vers huit heures du soir.")),
    ("es+m1", "es", ("El veloz murciélago hindú comía feliz cardillo y kiwi.",
                     "Mañana por la tarde vamos a caminar por la playa.")),
    ("it+f1", "it", ("Quel vituperabile xenofobo zelante assaggia il whisky.",
                     "La riunione è stata spostata a giovedì pomeriggio.")),
    ("pt-br+m4", "pt", ("Um pequeno jabuti xereta viu dez cegonhas felizes.",
                        "Por favor, feche a janela antes de sair de casa.")),
    ("nl+f4", "nl", ("Pa's wijze lynx bezag vroom het fikse aquaduct.",
                     "Het regent al de hele dag in de stad.")),
]


def build(root: Path, cache: Path) -> list[Entry]:
    """Synthesise every voice's two sentences into ``root/speech/VOICE_N.wav``.

    Raises:
        RuntimeError: espeak-ng is not installed (the message says how to install it).
    """
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("the voices corpus needs espeak-ng: apt-get install espeak-ng")
    entries = []
    for voice, lang, sentences in VOICES:
        for i, text in enumerate(sentences):
            wav = synth_speech(text, SAMPLE_RATE, voice=voice)
            wav = wav * (0.5 / float(wav.abs().max().clamp_min(1e-6)))  # espeak's level varies by voice
            rel = f"speech/{voice.replace('+', '_')}_{i}.wav"
            entries.append(write_audio(root, rel, wav, SAMPLE_RATE, category="speech",
                                       source_package="espeak-ng (local synthesis)",
                                       original_path=f"{voice} ({lang}): {text}", licence="GPL-3.0-or-later"))
    return entries
