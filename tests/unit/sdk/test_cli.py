"""The user CLI's pieces without a server: tables, the parser, and the hand-over from deploy/cli.py."""

from __future__ import annotations

import pytest

from deploy import cli as stack_cli
from flowline import cli


def test_a_table_aligns_columns_and_shows_missing_values_as_dashes():
    text = cli.table([("wfi_1", 2, None), ("wfi_long_id", 10, 2500.0)], ["instance", "step", "amount"])
    assert text.splitlines() == ["INSTANCE     STEP  AMOUNT", "wfi_1        2     -", "wfi_long_id  10    2500"]


def test_every_user_command_parses():
    parser = cli.build_parser()
    for argv in (["templates", "list", "--json"], ["templates", "apply", "-f", "t.json", "--url", "http://x"],
                 ["templates", "diff", "wf_a@1", "wf_a@2"], ["instances", "approve", "wfi_1", "2", "-r", "ok"],
                 ["instances", "retry", "wfi_1", "3", "--no-wait"], ["pending", "--token", "t"],
                 ["events", "tail", "--until", "InstanceCompleted", "--topic-prefix", "p."],
                 ["send", "transfer", "--amount", "2500", "--tenant", "acme"]):
        assert callable(parser.parse_args(argv).func), argv


def test_deploy_cli_hands_user_commands_over_and_keeps_its_own(capsys):
    assert set(stack_cli.USER_COMMANDS) == set(cli.COMMANDS)
    with pytest.raises(SystemExit) as done:
        stack_cli.main(["instances", "--help"])
    assert done.value.code == 0 and "approve" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        stack_cli.main(["stack", "--help"])
    assert "--profile" in capsys.readouterr().out


def test_an_unreachable_server_is_a_message_and_exit_code_1(capsys):
    assert cli.main(["templates", "list", "--url", "http://127.0.0.1:9", "--token", "t"]) == 1
    assert "127.0.0.1:9" in capsys.readouterr().err
