"""The ``speech`` corpus (about 6.5 h) from Debian packages, converted to 16 kHz mono WAV.

    speech/asterisk_<lang>/...  asterisk-core-sounds-<lang>-g722  phone prompts, 1 speaker/lang  CC-BY-SA-3.0 (ru CC-BY-3.0)
    speech/fillets_<lang>/...   fillets-ng-data-<lang> (cs, nl)    voice-acted game dialogue      GPL-2.0
    speech/klettres/<lang>/...  klettres-data                      spoken letters and syllables   GPL-2.0-or-later

The ``-g722`` asterisk packages carry 16 kHz recordings (the ``-wav`` ones are 8 kHz).

Notebook: book/01_data.md
"""

from __future__ import annotations

from pathlib import Path

from tinycodec.data.corpora.apt import (
    G722_DECODER_MISSING,
    apt_download,
    convert_tree,
    deb_extract,
    deb_version,
    g722_decoder_available,
)
from tinycodec.data.corpora.manifest import Entry

ASTERISK = {
    "en": "CC-BY-SA-3.0",
    "es": "CC-BY-SA-3.0",
    "fr": "CC-BY-SA-3.0",
    "it": "CC-BY-SA-3.0",
    "ru": "CC-BY-3.0",
}
FILLETS = ("cs", "nl")


def _files(base: Path, pattern: str) -> list[Path]:
    return sorted(p for p in base.glob(pattern) if p.is_file())


def _sources() -> list[tuple[str, str, str, str, str, str]]:
    """(package, folder inside it, file pattern, corpus prefix, licence, label) per source.

    The first folder level under each prefix is kept (en_US_f_Allison/..., klettres/<lang>/...):
    it names the speaker, which is what the reference split holds out.
    """
    rows = [(f"asterisk-core-sounds-{lang}-g722", "usr/share/asterisk/sounds", "**/*.g722",
             f"speech/asterisk_{lang}", licence, f"asterisk {lang}") for lang, licence in ASTERISK.items()]
    rows += [(f"fillets-ng-data-{lang}", "usr/share/games/fillets-ng/sound", "**/*.ogg",
              f"speech/fillets_{lang}", "GPL-2.0", f"fillets {lang}") for lang in FILLETS]
    rows.append(("klettres-data", "usr/share/klettres", "**/*.ogg", "speech/klettres", "GPL-2.0-or-later", "klettres"))
    return rows


def build(root: Path, cache: Path, sample_rate: int = 16_000, threads: int = 4) -> list[Entry]:
    sources = _sources()
    if any(pattern.endswith(".g722") for _, _, pattern, *_ in sources) and not g722_decoder_available():
        # refuse before downloading: without a decoder every Asterisk voice (2.2 of 6.4 h, and the test
        # split's Italian speaker) would be skipped file by file and the corpus silently smaller
        raise RuntimeError(f"the speech corpus: {G722_DECODER_MISSING}")
    debs = apt_download([package for package, *_ in sources], cache / "debs")
    entries: list[Entry] = []
    for package, inside, pattern, prefix, licence, label in sources:
        deb = debs[package]
        base = deb_extract(deb, cache / "x" / deb.stem)
        top = base / inside
        pairs = [(p, f"{prefix}/{p.relative_to(top).with_suffix('.wav').as_posix()}") for p in _files(top, pattern)]
        entries += convert_tree(pairs, root, sample_rate, label, threads, base=base, category="speech",
                                source_package=deb_version(deb), licence=licence)
    return entries
