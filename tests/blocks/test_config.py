"""`config apply` / `config show`: the YAML file into blocks, secrets from the environment, clear errors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from nmbrs_visma.blocks import AdministrationMappingBlock, NmbrsAccount, VismaNetAccount, load_mappings
from nmbrs_visma.blocks.listing import read_named_blocks
from nmbrs_visma.blocks.locks import administration_lock_name, token_lock_name
from nmbrs_visma.config import ConfigError, apply_config, apply_config_file, plan_config, show_config
from nmbrs_visma.journals.models import ClosedPeriodPolicy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "config.yaml"
EXAMPLE_ENV = {
    "VISMA_CLIENT_SECRET": "visma-secret-111",
    "VISMA_INTERACTIVE_CLIENT_SECRET": "visma-secret-222",
    "NMBRS_CLIENT_SECRET": "nmbrs-secret-333",
    "NMBRS_SUBSCRIPTION_KEY": "nmbrs-key-444",
}


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_example_applies_into_blocks_and_locks(clean_blocks: None) -> None:
    applied = apply_config(_example(), EXAMPLE_ENV)
    assert applied.visma_accounts == ["bakkerij-groep", "bakkerij-zuid"]
    assert applied.nmbrs_accounts == ["default"]
    assert applied.mappings == ["company-1001", "company-1002", "company-1004", "company-2001"]

    service = VismaNetAccount.load("bakkerij-groep")
    assert service.client_secret.get_secret_value() == "visma-secret-111"
    assert service.tenant_id == "1000001" and service.grant_type == "client_credentials"
    nmbrs = NmbrsAccount.load("default")
    assert nmbrs.subscription_key.get_secret_value() == "nmbrs-key-444"

    loaded = load_mappings()
    zuid = loaded.mappings[1002]
    assert (zuid.visma_account, zuid.branch, zuid.ledger) == ("bakkerij-zuid", "2", "L")
    assert zuid.cost_center.enabled and zuid.cost_center.description == "Department"
    assert zuid.cost_unit.description == "Project"
    assert zuid.closed_period_policy is ClosedPeriodPolicy.REFUSE
    assert loaded.nmbrs_accounts[1001] == "default"
    assert loaded.mappings[1004].test_company and loaded.mappings[2001].debtor_blocked

    # a lock for each account on a rotating refresh token; none for the service account (nothing rotates)
    expected = [token_lock_name(VismaNetAccount, "bakkerij-zuid"), token_lock_name(NmbrsAccount, "default")]
    assert applied.token_locks == expected
    with get_client(sync_client=True) as client:
        for name in expected:
            assert client.read_global_concurrency_limit_by_name(name).limit == 1
        with pytest.raises(ObjectNotFound):
            client.read_global_concurrency_limit_by_name(token_lock_name(VismaNetAccount, "bakkerij-groep"))


def test_applying_creates_each_administrations_posting_lock_once(clean_blocks: None) -> None:
    apply_config(_example(), EXAMPLE_ENV)
    loaded = load_mappings()
    tenants = {name: account.tenant_id for name, account in read_named_blocks(VismaNetAccount)}
    expected = sorted(
        {
            administration_lock_name(f"{tenants[m.visma_account]}/{m.branch}/{m.ledger}")
            for m in loaded.mappings.values()
            if tenants.get(m.visma_account)
        }
    )
    assert expected
    with get_client(sync_client=True) as client:
        for name in expected:
            limit = client.read_global_concurrency_limit_by_name(name)
            assert (limit.limit, limit.active) == (1, True)
        client.delete_global_concurrency_limit_by_name(expected[0])  # as if it had never been made
    again = apply_config(_example(), EXAMPLE_ENV)
    assert again.posting_locks == [expected[0]]  # only the missing one is made; the others are found
    assert apply_config(_example(), EXAMPLE_ENV).posting_locks == []


def test_a_missing_secret_names_the_account_and_variable_and_writes_nothing(clean_blocks: None) -> None:
    env = {key: value for key, value in EXAMPLE_ENV.items() if key != "NMBRS_SUBSCRIPTION_KEY"}
    with pytest.raises(ConfigError) as raised:
        apply_config(_example(), env)
    assert raised.value.problems == [
        "Nmbrs account 'default': environment variable NMBRS_SUBSCRIPTION_KEY (subscription_key_env) is not set"
    ]
    assert load_mappings().mappings == {}


def test_validation_errors_name_the_company_and_field() -> None:
    data = _example()
    del data["companies"][1]["branch"]
    data["companies"][2]["closed_period_policy"] = "sometimes"
    data["companies"][3]["visma_account"] = "nowhere"
    data["companies"][0]["colour"] = "blue"
    with pytest.raises(ConfigError) as raised:
        plan_config(data, EXAMPLE_ENV)
    text = "\n".join(raised.value.problems)
    assert "companies[1] (company 1002): branch: Field required" in text
    assert "companies[2] (company 1004): closed_period_policy:" in text
    assert "companies[3] (company 2001): visma_account 'nowhere' is not defined" in text
    assert "companies[0] (company 1001): colour: Extra inputs are not permitted" in text


def test_a_four_weekly_company_without_a_period_mapping_is_a_config_error_naming_it() -> None:
    data = _example()
    data["companies"][1]["period_type"] = "4-weeks"
    with pytest.raises(ConfigError) as raised:
        plan_config(data, EXAMPLE_ENV)
    (problem,) = raised.value.problems
    assert problem.startswith("companies[1] (company 1002): ")
    assert "a 4-weeks payroll needs period_mapping" in problem
    data["companies"][1]["period_mapping"] = "end_date"
    planned = plan_config(data, EXAMPLE_ENV)
    mapping = planned.mappings[1002].to_mapping()
    assert (mapping.period_type, mapping.period_mapping) == ("4-weeks", "end_date")


def test_a_company_mapped_twice_is_refused() -> None:
    data = _example()
    data["companies"].append(copy.deepcopy(data["companies"][0]))
    with pytest.raises(ConfigError, match="company 1001 is mapped 2 times"):
        plan_config(data, EXAMPLE_ENV)


def test_account_problems_are_named() -> None:
    data = _example()
    data["visma_net"]["accounts"]["Bad Name"] = data["visma_net"]["accounts"].pop("bakkerij-zuid")
    del data["visma_net"]["accounts"]["bakkerij-groep"]["tenant_id"]
    data["nmbrs"]["accounts"]["default"]["client_secret"] = "written-in-the-file"
    with pytest.raises(ConfigError) as raised:
        plan_config(data, EXAMPLE_ENV)
    text = "\n".join(raised.value.problems)
    assert "Visma.net account 'Bad Name': the name must be lowercase letters" in text
    assert "Visma.net account 'bakkerij-groep': tenant_id is required for grant_type client_credentials" in text
    assert "Nmbrs account 'default': client_secret: Extra inputs are not permitted" in text
    assert "written-in-the-file" not in text


def test_reapplying_keeps_connected_tokens_unless_the_identity_changed(clean_blocks: None) -> None:
    apply_config(_example(), EXAMPLE_ENV)
    NmbrsAccount.load("default").store_token({"access_token": "a", "expires_in": 3600, "refresh_token": "r"})
    applied = apply_config(_example(), EXAMPLE_ENV)
    assert applied.mappings == [] and len(applied.unchanged_mappings) == 4
    kept = NmbrsAccount.load("default")
    assert kept.refresh_token is not None and kept.refresh_token.get_secret_value() == "r"

    data = _example()
    data["nmbrs"]["accounts"]["default"]["client_id"] = "another-app"
    apply_config(data, EXAMPLE_ENV)
    assert NmbrsAccount.load("default").refresh_token is None


def test_blocks_not_in_the_file_are_reported_not_deleted(clean_blocks: None) -> None:
    AdministrationMappingBlock(nmbrs_company=3001, visma_account="x", branch="1", ledger="L").save("company-3001")
    applied = apply_config(_example(), EXAMPLE_ENV)
    assert applied.not_in_file == ["company-3001"]
    assert 3001 in load_mappings().mappings


def test_the_commands_apply_and_show_with_secrets_masked(
    clean_blocks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("COLUMNS", "250")  # rich would abbreviate cells in an 80-column capture
    assert apply_config_file(EXAMPLE) == 0
    NmbrsAccount.load("default").store_token({"access_token": "tok-555", "expires_in": 3600, "refresh_token": "r-666"})
    capsys.readouterr()
    assert show_config() == 0
    shown = capsys.readouterr().out
    for company in ("1001", "1002", "1004", "2001"):
        assert company in shown
    assert "bakkerij-groep" in shown and "Department" in shown and "set (hidden)" in shown
    for secret in [*EXAMPLE_ENV.values(), "tok-555", "r-666"]:
        assert secret not in shown

    broken = tmp_path / "broken.yaml"
    broken.write_text("companies: [{nmbrs_company: 5}]\n")
    assert apply_config_file(broken) == 2
    assert "companies[0] (company 5): visma_account: Field required" in capsys.readouterr().out


# -- a file-only configuration: Visma.net accounts and companies, no Nmbrs API account ------------------------

FILE_ONLY_ENV = {key: value for key, value in EXAMPLE_ENV.items() if not key.startswith("NMBRS_")}


def _file_only() -> dict:
    """The example without its `nmbrs` section, and no company naming an Nmbrs account."""
    data = _example()
    del data["nmbrs"]
    for company in data["companies"]:
        company.pop("nmbrs_account", None)
    return data


def test_a_file_only_config_applies_with_no_nmbrs_account_per_company(clean_blocks: None) -> None:
    applied = apply_config(_file_only(), FILE_ONLY_ENV)  # no Nmbrs secret in the environment either
    assert applied.nmbrs_accounts == []
    assert applied.mappings == ["company-1001", "company-1002", "company-1004", "company-2001"]
    assert applied.token_locks == [token_lock_name(VismaNetAccount, "bakkerij-zuid")]

    loaded = load_mappings()
    assert loaded.nmbrs_accounts == {1001: None, 1002: None, 1004: None, 2001: None}  # never a made-up "default"
    assert AdministrationMappingBlock.load("company-1002").nmbrs_account is None
    assert loaded.mappings[1002].cost_center.description == "Department"  # the rest of the mapping as before
    assert read_named_blocks(NmbrsAccount) == []

    again = apply_config(_file_only(), FILE_ONLY_ENV)
    assert again.mappings == [] and len(again.unchanged_mappings) == 4


@pytest.mark.parametrize("nmbrs_section", [None, {}, {"accounts": {}}])
def test_an_empty_nmbrs_section_is_file_only_too(nmbrs_section: dict | None) -> None:
    data = _file_only()
    data["nmbrs"] = nmbrs_section
    planned = plan_config(data, FILE_ONLY_ENV)
    assert planned.nmbrs_accounts == {}
    assert {number: block.nmbrs_account for number, block in planned.mappings.items()} == dict.fromkeys(
        (1001, 1002, 1004, 2001)
    )


def test_naming_an_nmbrs_account_a_file_only_config_lacks_is_refused(clean_blocks: None) -> None:
    data = _file_only()
    data["companies"][1]["nmbrs_account"] = "default"
    with pytest.raises(ConfigError) as raised:
        apply_config(data, FILE_ONLY_ENV)
    assert raised.value.problems == [
        "companies[1] (company 1002): nmbrs_account 'default' is not defined under nmbrs.accounts"
    ]
    assert load_mappings().mappings == {}  # nothing written


def test_with_one_nmbrs_account_a_company_uses_it_and_with_several_must_name_one() -> None:
    one = plan_config(_example(), EXAMPLE_ENV)
    assert {block.nmbrs_account for block in one.mappings.values()} == {"default"}

    data = _example()
    data["nmbrs"]["accounts"]["second"] = copy.deepcopy(data["nmbrs"]["accounts"]["default"])
    with pytest.raises(ConfigError) as raised:
        plan_config(data, EXAMPLE_ENV)
    problems = raised.value.problems
    assert (
        "companies[0] (company 1001): nmbrs_account is required when there are several Nmbrs accounts " in (problems[0])
    )
    assert "(default, second)" in problems[0]
    assert len(problems) == 3  # 1001, 1004, 2001; 1002 names its account
    assert not [problem for problem in problems if "company 1002" in problem]

    for company in data["companies"]:
        company["nmbrs_account"] = "second"
    planned = plan_config(data, EXAMPLE_ENV)
    assert {block.nmbrs_account for block in planned.mappings.values()} == {"second"}


def test_a_block_saved_before_with_the_default_account_still_reads_it(clean_blocks: None) -> None:
    """A block written before `nmbrs_account` could be empty holds "default": it keeps reading that account."""
    AdministrationMappingBlock(
        nmbrs_company=3001, nmbrs_account="default", visma_account="x", branch="1", ledger="L"
    ).save("company-3001")
    AdministrationMappingBlock(nmbrs_company=3002, nmbrs_account="", visma_account="x", branch="1", ledger="L").save(
        "company-3002"
    )  # a field cleared in the UI form: journal files only
    assert load_mappings().nmbrs_accounts == {3001: "default", 3002: None}


def test_the_commands_apply_a_file_only_file_and_show_its_companies_as_journal_files_only(
    clean_blocks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # rich would abbreviate cells in an 80-column capture
    apply_config(_example(), EXAMPLE_ENV)  # every company on the one Nmbrs account, "default"
    for key, value in FILE_ONLY_ENV.items():
        monkeypatch.setenv(key, value)
    for key in set(EXAMPLE_ENV) - set(FILE_ONLY_ENV):
        monkeypatch.delenv(key, raising=False)
    file_only = _file_only()
    file_only["companies"] = [file_only["companies"][1]]  # company 1002 only, from now on from journal files
    path = tmp_path / "file-only.yaml"
    path.write_text(yaml.safe_dump(file_only))
    assert "nmbrs" not in yaml.safe_load(path.read_text())
    capsys.readouterr()

    assert apply_config_file(path) == 0
    assert "0 Nmbrs account(s), 1 company mapping(s) written" in capsys.readouterr().out
    assert show_config() == 0
    rows = {line.split("│")[1].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 3}
    assert "none (journal files only)" in rows["1002"]
    for company in ("1001", "1004", "2001"):
        assert "default" in rows[company] and "journal files only" not in rows[company]


def test_an_account_time_out_is_set_in_the_file_and_defaults_to_thirty_seconds() -> None:
    env = {"VISMA_SECRET": "s", "NMBRS_SECRET": "n", "NMBRS_KEY": "k"}
    data = {
        "visma_net": {"accounts": {"main": {"client_id": "c", "client_secret_env": "VISMA_SECRET", "tenant_id": "1",
                                            "timeout_seconds": 90}}},
        "nmbrs": {"accounts": {"default": {"client_id": "c", "client_secret_env": "NMBRS_SECRET",
                                           "subscription_key_env": "NMBRS_KEY"}}},
    }  # fmt: skip
    planned = plan_config(data, env)
    assert planned.visma_accounts["main"].timeout_seconds == 90
    assert planned.nmbrs_accounts["default"].timeout_seconds == 30
    data["visma_net"]["accounts"]["main"]["timeout_seconds"] = 0
    with pytest.raises(ConfigError, match="timeout_seconds"):
        plan_config(data, env)
