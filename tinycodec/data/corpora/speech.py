"""The ``speech`` corpus (about 6.5 h) from Debian packages, converted to 16 kHz mono WAV.

    speech/asterisk_<lang>/...  asterisk-core-sounds-<lang>-g722  phone prompts, 1 speaker/lang  CC-BY-SA-3.0 (ru CC-BY-3.0)
    speech/fillets_<lang>/...   fillets-ng-data-<lang> (cs, nl)    voice-acted game dialogue      GPL-2.0
    speech/klettres/<lang>/...  klettres-data                      spoken letters and syllables   GPL-2.0-or-later

The ``-g722`` asterisk packages carry 16 kHz recordings (the ``-wav`` ones are 8 kHz).

Notebook: book/01_data.md
"""

from __future__ import annotations

from pathlib import Path

from tinycodec.data.corpora.apt import apt_download, convert_tree, deb_extract, deb_version
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


def build(root: Path, cache: Path, sample_rate: int = 16_000, threads: int = 4) -> list[Entry]:
    pkgs = [f"asterisk-core-sounds-{lang}-g722" for lang in ASTERISK]
    pkgs += [f"fillets-ng-data-{lang}" for lang in FILLETS] + ["klettres-data"]
    debs = apt_download(pkgs, cache / "debs")
    entries: list[Entry] = []
    for lang, licence in ASTERISK.items():
        deb = debs[f"asterisk-core-sounds-{lang}-g722"]
        base = deb_extract(deb, cache / "x" / deb.stem)
        sounds = base / "usr/share/asterisk/sounds"
        # keep the voice folder (en_US_f_Allison/...): it names the speaker
        pairs = [
            (p, f"speech/asterisk_{lang}/{p.relative_to(sounds).with_suffix('.wav').as_posix()}")
            for p in _files(sounds, "**/*.g722")
        ]
        entries += convert_tree(
            pairs,
            root,
            sample_rate,
            f"asterisk {lang}",
            threads,
            base=base,
            category="speech",
            source_package=deb_version(deb),
            licence=licence,
        )
    for lang in FILLETS:
        deb = debs[f"fillets-ng-data-{lang}"]
        base = deb_extract(deb, cache / "x" / deb.stem)
        sound = base / "usr/share/games/fillets-ng/sound"
        pairs = [
            (p, f"speech/fillets_{lang}/{p.relative_to(sound).with_suffix('.wav').as_posix()}")
            for p in _files(sound, "**/*.ogg")
        ]
        entries += convert_tree(
            pairs,
            root,
            sample_rate,
            f"fillets {lang}",
            threads,
            base=base,
            category="speech",
            source_package=deb_version(deb),
            licence="GPL-2.0",
        )
    deb = debs["klettres-data"]
    base = deb_extract(deb, cache / "x" / deb.stem)
    share = base / "usr/share/klettres"
    pairs = [
        (p, f"speech/klettres/{p.relative_to(share).with_suffix('.wav').as_posix()}")
        for p in _files(share, "**/*.ogg")
    ]
    entries += convert_tree(
        pairs,
        root,
        sample_rate,
        "klettres",
        threads,
        base=base,
        category="speech",
        source_package=deb_version(deb),
        licence="GPL-2.0-or-later",
    )
    return entries
