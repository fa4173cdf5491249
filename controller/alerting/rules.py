"""Reading the alert rules file named by ``--alert-rules-file`` (the parsing itself is pure:
:func:`controller.alerts.parse_rules`)."""

from pathlib import Path

from controller.alerts.rules_file import RulesConfig, RulesFileError, parse_rules


def load_rules(path: Path | None) -> RulesConfig:
    """The rules in ``path`` (the built-in defaults when None); :class:`RulesFileError` names what is wrong."""
    if path is None:
        return RulesConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesFileError(str(path), [f"cannot read it: {exc}"]) from exc
    return parse_rules(text, str(path))
