"""The metrics endpoint's text is the Prometheus format 0.0.4, whatever a label holds,
and it listens off this machine only when a person said so."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.promtext import FormatError, parse

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.service.metrics import Family, Sample, by_label, render

BASE = """
[storage]
state_dir = "{root}/state"
"""


def config_with(tmp_path: Path, metrics: str) -> Path:
    p = tmp_path / "poststelle.toml"
    p.write_text(BASE.format(root=tmp_path) + metrics)
    return p


@given(st.text(), st.text())
def test_any_label_value_and_help_text_come_back_from_the_rendered_text(value: str, help_text: str) -> None:
    text = render([Family("poststelle_test", help_text, "gauge", (Sample((("mailbox", value),), 1.0),))])
    assert len(text.split("\n")) == 4, "HELP, TYPE, one sample, the final line feed: nothing breaks a line"
    fam = parse(text)["poststelle_test"]
    assert fam.value(mailbox=value) == 1.0
    assert fam.help == help_text
    assert fam.type == "gauge"


def test_rendered_families_parse_strictly_with_every_known_state_present() -> None:
    fams = [
        Family(
            "poststelle_messages",
            "Messages by state.",
            "gauge",
            by_label("state", ("stored", "quarantined"), {"stored": 3, 'odd"one': 1}),
        ),
        Family("poststelle_outbox_oldest_queued_age_seconds", "Age.", "gauge", (Sample((), 12.5),)),
    ]
    parsed = parse(render(fams))
    assert parsed["poststelle_messages"].by("state") == {"stored": 3.0, "quarantined": 0.0, 'odd"one': 1.0}
    assert parsed["poststelle_outbox_oldest_queued_age_seconds"].value() == 12.5


@pytest.mark.parametrize(
    "bad",
    [
        'x{a="1"} 1\n',  # no HELP/TYPE
        '# HELP x h\n# TYPE x gauge\nx{a="\\q"} 1\n',  # undefined escape
        '# HELP x h\n# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n',  # repeated label set
        "# HELP x h\n# TYPE x gauge\nx 1",  # no final line feed
    ],
)
def test_the_test_parser_refuses_what_the_format_does_not_allow(bad: str) -> None:
    with pytest.raises(FormatError):
        parse(bad)


def test_metrics_listen_defaults_to_loopback_port_9465(tmp_path: Path) -> None:
    cfg = load_config(config_with(tmp_path, "[metrics]\n"))
    assert cfg.metrics is not None and (cfg.metrics.host, cfg.metrics.port) == ("127.0.0.1", 9465)
    assert load_config(config_with(tmp_path, "")).metrics is None, "no endpoint unless configured"


def test_metrics_listen_off_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, '[metrics]\nlisten = "0.0.0.0:9465"\n'))
    assert info.value.key == "metrics.listen" and "not a loopback address" in info.value.problem
    cfg = load_config(config_with(tmp_path, '[metrics]\nlisten = "0.0.0.0:9465"\nallow_remote = true\n'))
    assert cfg.metrics is not None and cfg.metrics.allow_remote
    with pytest.raises(ConfigError) as info:
        load_config(config_with(tmp_path, '[metrics]\nlisten = "[::1]:9465"\nport = 3\n'))
    assert info.value.key == "metrics.port", "unknown keys are named"
