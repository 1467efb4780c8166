"""File and folder names -> words, the way a sound designer reads them.

``Door_Wood-CreakOpen_03.wav`` -> ``door wood creak open 03``. Rules: split on anything that is not a
letter or digit (underscores, hyphens, dots, spaces), on camelCase (``creakOpen``, ``HTTPServer`` ->
``http server``), and between letters and digits (``door03``). Numbers are kept for keyword search
(``808``) but left out of the sentence given to the text model, where take numbers are noise.

Names following the Universal Category System (UCS: ``CatID_FXName_CreatorID_SourceID``, e.g.
``DOORWood_Creak Open Slow_JD_Lib.wav``) also get their category spelled out: ``DOORWood`` ->
``doors wood``. :data:`UCS_CATEGORIES` holds the category abbreviations of the UCS list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

# UCS category abbreviation -> category words (UCS v8 category list).
UCS_CATEGORIES: dict[str, str] = {
    "AERO": "aircraft", "AIR": "air", "ALRM": "alarms", "AMB": "ambience", "ANML": "animals",
    "ARCHIVED": "archived", "BEEP": "beeps", "BELL": "bells", "BIRD": "birds", "BOAT": "boats",
    "BLLT": "bullets", "TOON": "cartoon", "CERM": "ceramics", "CHAIN": "chains",
    "CHEM": "chemicals", "CLOCK": "clocks", "CLOTH": "cloth", "COMM": "communications",
    "COMP": "computers", "CREA": "creatures", "CROWD": "crowds", "DSGN": "designed",
    "DEST": "destruction", "DIRT": "dirt sand", "DOOR": "doors", "DRWR": "drawers",
    "ELEC": "electricity", "EQUIP": "equipment", "EXPL": "explosions", "FART": "farts",
    "FGHT": "fight", "FIRE": "fire", "FIREWRK": "fireworks", "FOLY": "foley", "FOOD": "food drink",
    "FEET": "footsteps", "GAME": "games", "GEOT": "geothermal", "GLAS": "glass", "GORE": "gore",
    "GUN": "guns", "HORN": "horns", "HMN": "human", "ICE": "ice", "LASR": "lasers",
    "LETHR": "leather", "LIQ": "liquid mud", "MACH": "machines", "MAGC": "magic",
    "MECH": "mechanical", "METL": "metal", "MOTR": "motors", "MOVE": "movement",
    "MUSC": "musical", "NATDIS": "natural disaster", "OBJ": "objects", "PAPR": "paper",
    "PLAS": "plastic", "RAIN": "rain", "ROBO": "robots", "ROCK": "rocks", "ROPE": "rope",
    "RUBR": "rubber", "SCI": "scifi", "SNOW": "snow", "SPRT": "sports", "SWSH": "swooshes",
    "TOOL": "tools", "TOY": "toys", "TRN": "trains", "UI": "user interface", "VEH": "vehicles",
    "VOX": "voices", "WATR": "water", "WEAP": "weapons", "WTHR": "weather", "WHSH": "whooshes",
    "WNDW": "windows", "WING": "wings", "WOOD": "wood",
}  # fmt: skip

_BLOCK_SPLIT = re.compile(r"[^\w]+|_", flags=re.UNICODE)
_UCS_CATID = re.compile(r"^([A-Z]{2,8})([A-Z][a-z][A-Za-z]*)$")


def _char_kind(c: str) -> str:
    if c.isdigit():
        return "digit"
    if c.isupper():
        return "upper"
    if c.isalpha():
        return "lower"  # lowercase and caseless letters (CJK, ...)
    return "other"


def _split_case(token: str) -> list[str]:
    """Split one alphanumeric token at camelCase and letter/digit boundaries (unicode-aware)."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(token)):
        prev, cur = _char_kind(token[i - 1]), _char_kind(token[i])
        nxt = _char_kind(token[i + 1]) if i + 1 < len(token) else ""
        boundary = (
            (prev == "lower" and cur == "upper")  # creakOpen
            or (prev == "upper" and cur == "upper" and nxt == "lower")  # HTTPServer
            or ((prev == "digit") != (cur == "digit"))  # door03, 808kick
        )
        if boundary:
            parts.append(token[start:i])
            start = i
    parts.append(token[start:])
    return [p for p in parts if p]


def split_words(text: str) -> list[str]:
    """Lowercase words of a name: ``"Door_Wood-CreakOpen_03"`` -> ``[door, wood, creak, open, 03]``."""
    words: list[str] = []
    for block in _BLOCK_SPLIT.split(text):
        words.extend(w.lower() for w in _split_case(block))
    return words


def ucs_category(stem: str) -> list[str] | None:
    """Category + subcategory words of a UCS CatID opening a file stem, or None if there is none."""
    first, sep, _ = stem.partition("_")
    m = _UCS_CATID.match(first)
    if not m or not sep:
        return None
    category = UCS_CATEGORIES.get(m.group(1))
    if category is None:
        return None
    return category.split() + [m.group(2).lower()]


def is_number(word: str) -> bool:
    return word.isdigit()


@dataclass(frozen=True)
class NameWords:
    """The words a file's name and folders contribute to the metadata channel."""

    name: list[str]  # from the file stem (UCS category spelled out when present)
    folder: list[str]  # from the folders between the indexed root and the file
    phrase_words: list[str] | None = (
        None  # UCS: category + FXName only (creator/source ids dropped)
    )

    def sentence_part(self) -> str:
        """The name as a phrase for the text model: numbers dropped, repeats removed."""
        seen: list[str] = []
        for w in self.phrase_words if self.phrase_words is not None else self.name:
            if not is_number(w) and w not in seen:
                seen.append(w)
        return " ".join(seen)


def path_words(rel_path: str | PurePath) -> NameWords:
    """Words of a path relative to its indexed root: file stem and the folders above it."""
    p = PurePath(rel_path)
    stem = p.name
    if p.suffix:
        stem = stem[: -len(p.suffix)]
    folder: list[str] = []
    for part in p.parent.parts:
        folder.extend(split_words(part))
    category = ucs_category(stem)
    if category is None:
        return NameWords(name=split_words(stem), folder=folder)
    blocks = stem.split("_")[1:]  # FXName, CreatorID, SourceID, ...
    rest = [w for b in blocks for w in split_words(b)]
    return NameWords(
        name=category + rest, folder=folder, phrase_words=category + split_words(blocks[0])
    )
