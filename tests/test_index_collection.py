"""A test sound library: the minetest sounds plus generated, tagged and broken files.

The builders here are shared by the index, server and web tests (imported as a module). The tests
in this file check the metadata readers against files written the way sound tools write them:
Broadcast Wave ``bext``, ``iXML``, ``LIST/INFO``, Vorbis comments, ID3 in WAV.
"""

from __future__ import annotations

import glob
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

MINETEST = Path("/usr/share/games/minetest")
MINETEST_SOUNDS = sorted(glob.glob(str(MINETEST / "**" / "sounds" / "*.ogg"), recursive=True))

# Generated files whose only description is in their tags: query -> expected file name.
TAGGED = {
    "thunder rumbling in the distance": "take_0001.wav",  # bext description
    "a cat meowing loudly": "SFX_0042.ogg",  # Vorbis DESCRIPTION
    "helicopter flying overhead": "rec_77.wav",  # iXML USER/DESCRIPTION
    "church bells ringing": "clip_9.wav",  # LIST/INFO ICMT
}


def tone(seconds: float = 0.5, freq: float = 440.0, sr: int = 16000, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def _chunk(cid: bytes, body: bytes) -> bytes:
    pad = b"\x00" if len(body) % 2 else b""
    return cid + struct.pack("<I", len(body)) + body + pad


def write_wav(path: Path, seconds: float = 0.5, freq: float = 440.0, chunks: bytes = b"") -> Path:
    """A 16 kHz mono WAV with extra RIFF chunks appended (the RIFF size is fixed up)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq), 16000, subtype="PCM_16")
    if chunks:
        data = bytearray(path.read_bytes()) + chunks
        data[4:8] = struct.pack("<I", len(data) - 8)
        path.write_bytes(bytes(data))
    return path


def bext(description: str, originator: str = "Field Recorder") -> bytes:
    body = description.encode()[:256].ljust(256, b"\x00") + originator.encode().ljust(32, b"\x00")
    return _chunk(b"bext", body.ljust(602, b"\x00"))


def ixml(description: str, category: str) -> bytes:
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?><BWFXML><IXML_VERSION>1.5</IXML_VERSION>'
        f"<PROJECT>Air Show</PROJECT><USER><DESCRIPTION>{description}</DESCRIPTION>"
        f"<CATEGORY>{category}</CATEGORY></USER></BWFXML>"
    )
    return _chunk(b"iXML", xml.encode())


def info(**fields: str) -> bytes:
    body = b"INFO" + b"".join(_chunk(k.encode(), v.encode() + b"\x00") for k, v in fields.items())
    return _chunk(b"LIST", body)


def write_ogg(path: Path, seconds: float = 0.5, freq: float = 660.0, **comments: str) -> Path:
    from mutagen.oggvorbis import OggVorbis

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, freq), 16000, format="OGG", subtype="VORBIS")
    if comments:
        f = OggVorbis(path)
        for k, v in comments.items():
            f[k] = v
        f.save()
    return path


def build_generated(root: Path) -> dict[str, Path]:
    """Tagged, oddly named and broken files under ``root``; returns name -> path of the good ones."""
    g = root / "generated"
    good = {
        "take_0001.wav": write_wav(g / "field" / "take_0001.wav", chunks=bext(
            "Thunder rumbling in the distance, heavy storm")),
        "SFX_0042.ogg": write_ogg(g / "SFX_0042.ogg", DESCRIPTION="Cat meowing loudly, indoors"),
        "rec_77.wav": write_wav(g / "rec_77.wav", chunks=ixml(
            "Helicopter flying overhead, low altitude", "AIRCRAFT")),
        "clip_9.wav": write_wav(g / "clip_9.wav", chunks=info(
            INAM="Bells", ICMT="Church bells ringing on a Sunday morning")),
        "DOORWood_Creak Open Slow_JD_Lib.wav": write_wav(
            g / "ucs" / "DOORWood_Creak Open Slow_JD_Lib.wav", seconds=0.7, freq=220),
        "Tür_knarrt_犬.wav": write_wav(g / "unicode" / "Tür_knarrt_犬.wav", freq=330),
    }  # fmt: skip
    bad = g / "broken"
    bad.mkdir(parents=True)
    (bad / "noise_burst.wav").write_bytes(np.random.default_rng(1).bytes(4096))
    (bad / "truncated_header.wav").write_bytes(good["clip_9.wav"].read_bytes()[:20])
    (bad / "empty.wav").write_bytes(b"")
    (bad / "readme.txt").write_text("not a sound\n")
    os.symlink(".", bad / "loop")  # folder symlink loop
    os.symlink("selfloop.wav", bad / "selfloop.wav")  # file symlink loop
    os.symlink("does_not_exist.wav", bad / "dangling.wav")
    (bad / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: skipped, not an error
    os.symlink(good["SFX_0042.ogg"], g / "link_to_cat.ogg")  # same file twice: indexed once
    return good


BROKEN = {  # file name -> error kind
    "noise_burst.wav": "corrupt",
    "truncated_header.wav": "corrupt",
    "empty.wav": "empty",
    "readme.txt": "not-audio",
    "selfloop.wav": "symlink",
    "dangling.wav": "symlink",
}


def copy_minetest(root: Path) -> list[Path]:
    """Copy the minetest sounds (mod/sounds/name.ogg) so tests may change them."""
    out = []
    for src in MINETEST_SOUNDS:
        rel = Path(src).relative_to(MINETEST)
        dst = root / "minetest" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        out.append(dst)
    return out


def require_minetest() -> None:
    if not MINETEST_SOUNDS:
        pytest.skip(
            f"no minetest sounds under {MINETEST} (install the Debian package minetest-data)"
        )


def build_collection(root: Path) -> dict[str, Path]:
    require_minetest()
    copy_minetest(root)
    return build_generated(root)


# -- tests of the metadata readers on these files -------------------------------------------


def test_tags_from_riff_chunks_and_vorbis(tmp_path):
    from soundsearch.index.tags import read_tags

    good = build_generated(tmp_path)
    assert read_tags(good["take_0001.wav"])["description"] == [
        "Thunder rumbling in the distance, heavy storm"
    ]
    assert read_tags(good["take_0001.wav"])["library"] == ["Field Recorder"]
    t = read_tags(good["rec_77.wav"])
    assert t["description"] == ["Helicopter flying overhead, low altitude"]
    assert t["category"] == ["AIRCRAFT"] and t["project"] == ["Air Show"]
    t = read_tags(good["clip_9.wav"])
    assert t["title"] == ["Bells"] and t["comment"] == ["Church bells ringing on a Sunday morning"]
    assert read_tags(good["SFX_0042.ogg"])["description"] == ["Cat meowing loudly, indoors"]
    assert read_tags(good["Tür_knarrt_犬.wav"]) == {}
    assert read_tags(tmp_path / "generated" / "broken" / "noise_burst.wav") == {}
    assert read_tags(tmp_path / "generated" / "broken" / "truncated_header.wav") == {}


def test_tags_id3_in_wav(tmp_path):
    from mutagen.id3 import TIT2, TXXX
    from mutagen.wave import WAVE

    from soundsearch.index.tags import read_tags

    p = write_wav(tmp_path / "id3.wav")
    f = WAVE(p)
    f.add_tags()
    f.tags.add(TIT2(encoding=3, text="Footsteps on gravel"))
    f.tags.add(TXXX(encoding=3, desc="DESCRIPTION", text="slow walk, boots"))
    f.save()
    t = read_tags(p)
    assert t["title"] == ["Footsteps on gravel"] and t["description"] == ["slow walk, boots"]


def test_tags_survive_corrupt_chunks(tmp_path):
    """A chunk size pointing past the end, and invalid iXML, give what is readable."""
    from soundsearch.index.tags import read_tags

    broken_xml = _chunk(b"iXML", b"<BWFXML><NOTE>unclosed")
    p = write_wav(tmp_path / "odd.wav", chunks=bext("Rain on a tin roof") + broken_xml)
    data = bytearray(p.read_bytes()) + b"LIST" + struct.pack("<I", 10**6) + b"INFO"
    p.write_bytes(bytes(data))
    assert read_tags(p)["description"] == ["Rain on a tin roof"]
