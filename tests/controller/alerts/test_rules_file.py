"""The rules file: layered defaults, per-site overrides, and errors that name the table and the field."""

from pathlib import Path

import pytest

import controller.alerts
from controller.alerts import RuleName, RuleSet, RulesFileError, Severity, parse_rules

EXAMPLE = Path(controller.alerts.__file__).with_name("rules.example.toml")


def test_the_shipped_example_documents_exactly_the_built_in_defaults() -> None:
    text = EXAMPLE.read_text()
    rules = parse_rules(text, "rules.example.toml")
    assert rules.defaults == RuleSet() and rules.sites == {}
    for family in RuleSet.model_fields:
        assert f"[defaults.{family}]" in text
        for name in type(getattr(RuleSet(), family)).model_fields:
            assert f"\n{name} = " in text, f"{family}.{name} is not documented in the example"


def test_sites_inherit_fleet_defaults_and_override_field_by_field() -> None:
    rules = parse_rules(
        """
        [defaults.battery]
        horizon_h = 12
        clear_horizon_h = 16
        [sites.centre.battery]
        floor_pct = 25
        floor_clear_pct = 30
        [sites.centre.thermal]
        max_c = 8
        band_severity = "warning"
        """
    )
    centre, other = rules.for_site("centre"), rules.for_site("elsewhere")
    assert (centre.battery.horizon_h, centre.battery.floor_pct, centre.thermal.max_c) == (12, 25, 8)
    assert centre.thermal.band_severity is Severity.WARNING
    assert (other.battery.horizon_h, other.battery.floor_pct, other.thermal.max_c) == (12, 20, 50)
    assert rules.for_site(None) is rules.defaults


def test_maintenance_and_disabled_rules_are_rule_names() -> None:
    rules = parse_rules('[defaults.suppression]\nmaintenance_rules = ["battery_swap"]\ndisabled = ["clock_skew"]\n')
    assert rules.defaults.maintenance_quiet() == {RuleName.BATTERY_SWAP}
    assert rules.defaults.suppression.disabled == (RuleName.CLOCK_SKEW,)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sites.centre.battery]\nfloor_pct = 125\n", "sites.centre.battery.floor_pct: must be ≤ 100"),
        ("[defaults.battery]\nhorizon_h = 0\n", "defaults.battery.horizon_h: must be > 0"),
        ("[defaults.battery]\nflor_pct = 1\n", "defaults.battery.flor_pct: unknown field (known: window_h,"),
        ("[defaults.batery]\nfloor_pct = 1\n", "defaults.batery: unknown field (known: battery, thermal,"),
        ("[default.battery]\nfloor_pct = 1\n", "default: unknown table (expected defaults, sites)"),
        ("[sites.centre.thermal]\nmin_c = 10\nmax_c = 5\n", "sites.centre.thermal: min_c + 2·band_clear_margin_c"),
        (
            "[sites.centre.battery]\nhorizon_h = 40\n",
            "sites.centre.battery: horizon_h (40.0) must be ≤ clear_horizon_h",
        ),
        ("[defaults.battery]\nfloor_pct = 'low'\n", "defaults.battery.floor_pct: Input should be a valid number"),
        ('[defaults.suppression]\ndisabled = ["nope"]\n', "defaults.suppression.disabled.0: Input should be"),
        ("[sites.'bad site'.battery]\nfloor_pct = 1\n", "sites.bad site: not a valid site id"),
        ("sites = 3\n", "sites: must be a table"),
        ("[defaults.battery\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_with_the_table_and_field_named(text: str, message: str) -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(text, "alerts.toml")
    assert str(caught.value).startswith("rules file alerts.toml: ")
    assert message in str(caught.value)


def test_every_problem_is_reported_once_and_an_inherited_one_only_under_defaults() -> None:
    with pytest.raises(RulesFileError) as caught:
        parse_rules(
            "[defaults.battery]\nfloor_pct = 101\n[sites.a.battery]\nhorizon_h = 1\n[sites.b.thermal]\nmax_c = 999\n"
        )
    assert caught.value.problems == [
        "defaults.battery.floor_pct: must be ≤ 100",
        "sites.b.thermal.max_c: must be ≤ 125",
    ]


def test_a_site_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(RulesFileError, match="centre"):
        parse_rules('[sites."centre\\n".battery]\nfloor_pct = 20\n', "alerts.toml")
