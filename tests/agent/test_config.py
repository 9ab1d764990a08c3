"""config.toml: typed, validated, every bad value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import ConfigError, load_settings


def test_a_missing_file_means_defaults(meterline_home: Path) -> None:
    settings = load_settings()
    assert settings.budgets == []
    assert settings.proxy.port == 8790
    assert settings.imports.tools == ["claude-code", "codex"]


def test_every_section_reads(meterline_home: Path) -> None:
    (meterline_home / "config.toml").write_text("""
[[budgets]]
name = "plan"
period = "5h"
limit_tokens = 1_000_000
[prices."acme-1"]
input_per_mtok = 1.5
output_per_mtok = 6
[import]
tools = ["codex"]
interval_s = 10
[sync]
server_url = "https://meterline.example.com"
""")
    settings = load_settings()
    assert settings.budgets[0].to_budget().limit_tokens == 1_000_000
    assert settings.prices["acme-1"].output_per_mtok == 6
    assert settings.imports.tools == ["codex"]
    assert settings.sync.server_url == "https://meterline.example.com"


@pytest.mark.parametrize(("text", "where"), [
    ("[import]\ntools = [\"vim\"]\n", "import.tools[0]"),
    ("[prices.x]\ninput_per_mtok = -1\noutput_per_mtok = 1\n", "prices['x'].input_per_mtok"),
    ("[[budgets]]\nname = \"a\"\nlimit_usd = 1.0\n[[budgets]]\nname = \"a\"\nlimit_usd = 2.0\n",
     "two budgets share a name"),
    ("[[budgets]]\nname = \"a\"\nlimit_usd = 1.0\nwarn_at = 0\n", "budgets[0].warn_at"),
])
def test_bad_values_are_named(meterline_home: Path, text: str, where: str) -> None:
    (meterline_home / "config.toml").write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert where in str(caught.value)
