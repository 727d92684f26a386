"""Pulumi's project-config rules, applied to infra/Pulumi.yaml, the README's first deploy and
the committed stack files (infra/Pulumi.<stack>.yaml).

The rules are restated from Pulumi's own source, since the CLI cannot be installed here:
`Project.Validate` (sdk/go/common/workspace/project.go) refuses the project file itself, so
every command fails, `stack init` included; `mergeConfig` (sdk/go/common/workspace/config.go)
refuses a stack that lacks a required key ("Stack 'prod' is missing configuration value").
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]
Spec = dict[str, Any]


def _specs(project: Spec) -> dict[str, Spec]:
    """Each config key's declaration; `key: value` is shorthand for `key: {value: value}`."""
    return {
        key: spec if isinstance(spec, dict) else {"value": spec}
        for key, spec in (project.get("config") or {}).items()
    }


def _own(project: Spec, key: str) -> bool:
    """Whether a key is namespaced by the project (configKeyIsNamespacedByProject)."""
    return ":" not in key or key.startswith(f"{project['name']}:")


def _fits(kind: str, items: Spec | None, value: Any) -> bool:
    """ValidateConfigValue: a value (YAML-typed, or stack text) of the declared type."""
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, str) and value.lstrip("-").isdigit())
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if kind == "array":
        return (
            isinstance(value, list)
            and items is not None
            and all(_fits(items["type"], items.get("items"), v) for v in value)
        )
    return False


def project_errors(project: Spec) -> list[str]:
    """What Project.Validate refuses."""
    errors = []
    for key, spec in _specs(project).items():
        if "default" in spec and "value" in spec:
            errors.append(f"project config '{key}' cannot have both a 'default' and 'value'")
        if _own(project, key):
            if spec.get("type") == "array" and "items" not in spec:
                errors.append(f"The configuration key '{key}' declares an array without items")
            default_fits = _fits(spec.get("type", ""), spec.get("items"), spec.get("default"))
            if "type" in spec and "default" in spec and not default_fits:
                errors.append(f"The default value for '{key}' is not a {spec['type']}")
        elif "type" in spec:
            errors.append(
                f"Configuration key '{key}' is not namespaced by the project and should not"
                " define a type"
            )
        elif "default" in spec:
            errors.append(f"Configuration key '{key}' ... should not define a default value")
        elif "value" not in spec:
            errors.append(f"Configuration key '{key}' is namespaced and must provide 'value'")
    return errors


def stack_errors(project: Spec, stack: dict[str, tuple[str, bool]]) -> list[str]:
    """What mergeConfig refuses for a stack's config (key -> (text, set with --secret))."""
    errors = []
    name = project["name"]
    for key, spec in _specs(project).items():
        full = key if ":" in key else f"{name}:{key}"
        if full.split(":", 1)[0] != name:
            continue
        if full not in stack:
            if "default" not in spec and "value" not in spec:
                errors.append(f"Stack is missing configuration value '{key}'")
            continue
        text, secure = stack[full]
        if spec.get("secret") and not secure:
            errors.append(f"configuration key '{key}' must be encrypted as it's secret")
        if "type" in spec and not _fits(spec["type"], spec.get("items"), text):
            errors.append(f"configuration key '{key}' must be of type '{spec['type']}'")
    return errors


def _pulumi_yaml() -> Spec:
    doc: Spec = yaml.safe_load((ROOT / "infra" / "Pulumi.yaml").read_text())
    return doc


def readme_first_deploy() -> dict[str, tuple[str, bool]]:
    """The stack config the README's first-deploy steps set (`pulumi config set` lines)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### First deploy", 1)[1].split("\n### ", 1)[0]
    stack: dict[str, tuple[str, bool]] = {}
    for line in section.splitlines():
        if not line.startswith("pulumi config set "):
            continue
        words = shlex.split(line, comments=True)
        secure = "--secret" in words
        key, value = [w for w in words[3:] if not w.startswith("--")]
        stack[key] = (value, secure)
    return stack


def test_pulumi_loads_the_project_file() -> None:
    assert project_errors(_pulumi_yaml()) == []


def test_the_readme_first_deploy_sets_every_required_key() -> None:
    stack = readme_first_deploy()
    assert stack_errors(_pulumi_yaml(), stack) == []
    # The provider's keys, which Pulumi.yaml may not declare, come from the stack.
    program = (ROOT / "infra" / "__main__.py").read_text()
    for key in re.findall(r'gcp_config\.require\("(\w+)"\)', program):
        assert f"gcp:{key}" in stack, key


def test_every_key_the_program_reads_is_declared() -> None:
    declared = set(_specs(_pulumi_yaml()))
    program = (ROOT / "infra" / "__main__.py").read_text()
    read = re.findall(r'\bconfig\.(?:get|require)\w*\("(\w+)"\)', program)
    assert read
    assert {f"gong-sync:{key}" for key in read} <= declared


def test_the_rules_refuse_what_pulumi_refuses() -> None:
    """The checks above can fail: the shapes Pulumi rejects are rejected here too."""
    typed_provider_key = {"name": "p", "config": {"gcp:project": {"type": "string"}}}
    assert project_errors(typed_provider_key) == [
        "Configuration key 'gcp:project' is not namespaced by the project and should not"
        " define a type"
    ]
    assert project_errors({"name": "p", "config": {"gcp:region": {"default": "x"}}})
    required = {"name": "p", "config": {"p:network": {"type": "string"}}}
    assert project_errors(required) == []
    assert stack_errors(required, {}) == ["Stack is missing configuration value 'p:network'"]
    secret = {"name": "p", "config": {"p:hook": {"type": "string", "secret": True}}}
    assert stack_errors(secret, {"p:hook": ("https://x", False)})
    assert stack_errors({"name": "p", "config": {"p:on": {"type": "boolean"}}},
                        {"p:on": ("yes", False)})  # fmt: skip


def test_the_default_sources_are_the_registry() -> None:
    """No list to keep in step: an empty `sources` deploys every registered source."""
    from gong_sync import sources
    from gong_sync_infra.stack import StackConfig

    declared = _specs(_pulumi_yaml())["gong-sync:sources"]
    assert declared["default"] == []
    program = (ROOT / "infra" / "__main__.py").read_text()
    assert 'config.get_object("sources") or StackConfig.sources' in program
    assert list(StackConfig.sources) == list(sources.SOURCES)


# --- the committed stacks: infra/Pulumi.<stack>.yaml -------------------------------------------

STACKS = ("dev", "staging", "prod")
PROVIDER_KEYS = ("gcp:project", "gcp:region")  # the provider keys the program and README use


def stack_file(name: str) -> dict[str, tuple[Any, bool]]:
    """A stack file's config as Pulumi reads it: key -> (value, is ciphertext)."""
    doc = yaml.safe_load((ROOT / "infra" / f"Pulumi.{name}.yaml").read_text())
    stack: dict[str, tuple[Any, bool]] = {}
    for key, value in (doc.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            stack[key] = (value["secure"], True)  # what `pulumi config set --secret` writes
        else:  # text as `pulumi config set` writes it, or a YAML-typed value (a list, a bool)
            stack[key] = (value, False)
    return stack


def undeclared(project: Spec, stack: dict[str, tuple[Any, bool]]) -> list[str]:
    """Keys a stack sets that Pulumi.yaml does not declare: the program never reads them."""
    declared = set(_specs(project)) | set(PROVIDER_KEYS)
    return sorted(set(stack) - declared)


def unset_secrets(project: Spec, errors: list[str]) -> list[str]:
    """The errors left once the secrets each user sets with `--secret` are accounted for."""
    secret = {key for key, spec in _specs(project).items() if spec.get("secret")}
    waived = {f"Stack is missing configuration value '{key}'" for key in secret}
    return [e for e in errors if e not in waived]


def test_every_stack_file_passes_pulumi_rules_but_for_the_secrets_users_set() -> None:
    """Declared keys only, of their types; secrets only as ciphertext or not yet set."""
    project = _pulumi_yaml()
    for name in STACKS:
        stack = stack_file(name)
        assert undeclared(project, stack) == [], name
        assert unset_secrets(project, stack_errors(project, stack)) == [], name
        assert all(key in stack for key in PROVIDER_KEYS), name


def test_only_prod_protects_its_database_and_ci_finds_what_it_reads() -> None:
    """`production` (deletion protection) on prod alone; deploy.yml reads the datasets here."""
    production = {n: str(stack_file(n)["gong-sync:production"][0]).lower() for n in STACKS}
    assert production == {"dev": "false", "staging": "false", "prod": "true"}
    for name in ("staging", "prod"):  # read by .github/workflows/deploy.yml
        assert {"gong-sync:gongDataset", "gong-sync:salesforceDataset"} <= set(stack_file(name))


def test_the_stack_rules_refuse_a_typo_a_wrong_type_and_a_clear_secret() -> None:
    """The checks above can fail."""
    project = _pulumi_yaml()
    assert undeclared(project, {"gong-sync:sqlTeir": ("db-f1-micro", False)}) == [
        "gong-sync:sqlTeir"
    ]
    assert undeclared(project, {"gcp:zone": ("europe-west1-b", False)}) == ["gcp:zone"]
    typed = stack_errors(project, {"gong-sync:production": ("yes", False)})
    assert unset_secrets(project, typed) == [
        "configuration key 'gong-sync:production' must be of type 'boolean'"
    ]
    clear = stack_errors(project, {"gong-sync:slackWebhookUrl": ("https://hooks.x", False)})
    assert unset_secrets(project, clear) == [
        "configuration key 'gong-sync:slackWebhookUrl' must be encrypted as it's secret"
    ]
    assert unset_secrets(project, stack_errors(project, {})) == []
