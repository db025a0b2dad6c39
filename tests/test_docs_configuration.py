"""docs/configuration.md documents every setting with the default the code has."""

import enum
import re
from pathlib import Path

from hmrec.config import Settings

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _rows() -> dict[str, str]:
    """setting name -> the default column of its table row (a row may name several settings)."""
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`"):
            names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
            defaults = [d.strip() for d in cells[1].split(",")] if len(names) > 1 else [cells[1]]
            for i, name in enumerate(names):
                rows[name] = defaults[i] if i < len(defaults) else cells[1]
    return rows


def test_every_setting_is_documented_with_its_default():
    rows = _rows()
    for name, field in Settings.model_fields.items():
        aliases = field.validation_alias.choices if field.validation_alias is not None else [name]
        documented = [a for a in aliases if a in rows]
        assert documented, f"{name} is not in docs/configuration.md"
        default = field.default.value if isinstance(field.default, enum.Enum) else field.default
        shown = re.sub(r"(?<=\d),(?=\d{3}\b)", "", rows[documented[0]].strip("`"))  # 4,000,000
        if default is None or isinstance(default, type(Settings().HOME_DIR)):
            continue  # unset / path defaults are described in words
        expected = str(default).lower() if isinstance(default, bool) else str(default)
        assert shown.split(" ")[0] in (expected, expected.rstrip("0").rstrip(".")), (
            f"{name}: docs/configuration.md says {rows[documented[0]]!r}, the code's default is {default!r}")


def test_library_defaults_are_the_settings_defaults():
    """One source of defaults: a component built without arguments behaves as the settings say."""
    from hmrec.ranking.model import RankingModel
    from hmrec.retrieval.config import TwoTowerConfig

    s = Settings()
    assert TwoTowerConfig() == TwoTowerConfig.from_settings(s)
    model = RankingModel()
    assert (model.learning_rate, model.iterations, model.depth, model.scale_pos_weight, model.early_stopping_rounds,
            model.seed) == (s.RANKING_LEARNING_RATE, s.RANKING_ITERATIONS, s.RANKING_DEPTH,
                            s.RANKING_SCALE_POS_WEIGHT, s.RANKING_EARLY_STOPPING_ROUNDS, s.SEED)
