"""Pulumi's project-config rules, applied to infra/Pulumi.yaml and the README's first deploy.

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
