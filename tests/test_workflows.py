"""The GitHub Actions workflows: README commands, Workload Identity Federation, a gated prod.

actionlint (`make lint`) checks their syntax, expressions, action inputs and shell; these tests
check what it cannot know: every command they run is one the README documents, Google is
reached through Workload Identity Federation only, after the tests, and prod deploys only from
a v* tag or a manual run, in the GitHub environment `production`.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
DEPLOY = "./.github/workflows/deploy.yml"
TOOLS = ("make", "gong-sync", "pulumi")
PULUMI_GROUPS = ("stack", "config")  # `pulumi stack init`: the subcommand is two words
KEY_FILE = re.compile(
    r"credentials_json|GOOGLE_APPLICATION_CREDENTIALS|service_account_key|[\w${}()./*-]+\.json\b",
    re.IGNORECASE,
)
PINNED = re.compile(r"@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
Doc = dict[str, Any]
Command = tuple[str, ...]


def load_workflows() -> dict[str, Doc]:
    """Every workflow file, by name."""
    paths = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    return {p.name: yaml.safe_load(p.read_text()) for p in paths}


def triggers(workflow: Doc) -> Doc:
    """The `on:` block (YAML 1.1 reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


def jobs(workflow: Doc) -> Iterator[tuple[str, Doc]]:
    """Each job, by id."""
    yield from (workflow.get("jobs") or {}).items()


def steps(job: Doc) -> list[Doc]:
    """A job's steps (none for a job that calls a reusable workflow)."""
    return list(job.get("steps") or [])


def uses(step: Doc, action: str) -> bool:
    """Whether a step runs this action, at any version."""
    return str(step.get("uses", "")).startswith(f"{action}@")


def given(step_or_job: Doc) -> Doc:
    """Its `with:` inputs."""
    return dict(step_or_job.get("with") or {})


# --- commands --------------------------------------------------------------------------------


def commands(script: str) -> Iterator[Command]:
    """The make, gong-sync and pulumi commands a shell script (or a README line) runs."""
    for line in script.replace("\\\n", " ").splitlines():
        for part in re.split(r"&&|\|\||[;|]|\$\(", line):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:  # prose in backticks, not a command
                continue
            while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
                words = words[1:]  # NAME=value before the command
            if words and Path(words[0]).name in TOOLS:
                yield (Path(words[0]).name, *words[1:])


def subcommands(command: Command) -> list[Command]:
    """What a command names: (make, target) per target, (gong-sync, sub), (pulumi, sub...)."""
    tool, args = command[0], list(command[1:])
    if tool == "make":
        return [(tool, a) for a in args if not a.startswith("-") and "=" not in a]
    while args and args[0].startswith("-"):  # global options, and --log-format's value
        args = args[2:] if args[0] == "--log-format" else args[1:]
    if not args:
        return [(tool,)]
    if tool == "pulumi" and args[0] in PULUMI_GROUPS and len(args) > 1:
        return [(tool, args[0], args[1])]
    return [(tool, args[0])]


def flags(command: Command) -> set[str]:
    """The long options a command passes (or, in README usage text, accepts)."""
    return {m for word in command[1:] for m in re.findall(r"--[a-z][a-z-]*", word)}


def readme_commands(readme: str) -> list[Command]:
    """Every command the README shows, in its code blocks and in its inline code."""
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
    spans = re.findall(r"`([^`\n]+)`", fence.sub("", readme))
    return [c for text in [*fence.findall(readme), *spans] for c in commands(text)]


def undocumented(run: Command, documented: list[Command]) -> list[str]:
    """Why a command a workflow runs is not one the README documents (empty: it is)."""
    known = {s for c in documented for s in subcommands(c)}
    errors = [f"`{' '.join(s)}` is not in the README" for s in subcommands(run) if s not in known]
    if run[0] == "gong-sync" and not errors:
        sub = subcommands(run)[0]
        usage = [flags(c) for c in documented if sub in subcommands(c)]
        allowed = {"--log-format"}.union(*usage)
        errors += [f"`{' '.join(sub)} {f}` is not in the README" for f in flags(run) - allowed]
    return errors


def workflow_commands(workflow: Doc) -> Iterator[Command]:
    """The commands of every `run:` step, and the pulumi command pulumi/actions runs."""
    for _, job in jobs(workflow):
        for step in steps(job):
            yield from commands(str(step.get("run", "")))
            command = given(step).get("command")
            if uses(step, "pulumi/actions") and command:
                yield ("pulumi", command)


def command_errors(workflow: Doc, readme: str) -> list[str]:
    """Every command a workflow runs that the README does not document."""
    documented = readme_commands(readme)
    return [e for c in workflow_commands(workflow) for e in undocumented(c, documented)]


# --- credentials -----------------------------------------------------------------------------


def reaches_google(step: Doc) -> bool:
    """A step that calls Google Cloud: pulumi, gcloud, or gong-sync against a real project."""
    if uses(step, "pulumi/actions") and given(step).get("command"):
        return True
    script = str(step.get("run", ""))
    return bool(re.search(r"\bgcloud\b", script)) or any(
        c[0] in ("gong-sync", "pulumi") for c in commands(script)
    )


def grants_id_token(workflow: Doc, job: Doc) -> bool:
    """`permissions: id-token: write` on the job (or on the workflow, for a job with none)."""
    permissions = job.get("permissions", workflow.get("permissions")) or {}
    return permissions == "write-all" or (
        isinstance(permissions, dict) and permissions.get("id-token") == "write"
    )


def key_file_errors(text: str) -> list[str]:
    """Every mention of a key file or of a way to pass one."""
    return [f"key file: {m.group(0)}" for m in KEY_FILE.finditer(text)]


def job_credential_errors(workflow: Doc, name: str, job: Doc) -> list[str]:
    """How one job could reach Google other than by Workload Identity Federation after tests."""
    errors: list[str] = []
    auth = [i for i, s in enumerate(steps(job)) if uses(s, "google-github-actions/auth")]
    for i in auth:
        inputs = given(steps(job)[i])
        if not (inputs.get("workload_identity_provider") and inputs.get("service_account")):
            errors.append(f"{name}: auth without workload_identity_provider and service_account")
    if "secrets." in str(job.get("env") or "") + str(workflow.get("env") or ""):
        errors.append(f"{name}: secrets in the job's environment reach `make test`")
    if (auth or job.get("uses") == DEPLOY) and not grants_id_token(workflow, job):
        errors.append(f"{name}: no `permissions: id-token: write` for the OIDC token")
    for i, step in enumerate(steps(job)):
        guarded = [a for a in auth if a < i and steps(job)[a].get("if") in (None, step.get("if"))]
        if reaches_google(step) and not guarded:
            errors.append(f"{name}: step {i} reaches Google Cloud without auth before it")
        ran = [s for c in commands(str(step.get("run", ""))) for s in subcommands(c)]
        if auth and i > auth[0] and ("make", "test") in ran:
            errors.append(f"{name}: `make test` runs after the job has Google credentials")
    return errors


def credential_errors(workflow: Doc) -> list[str]:
    """Each way a workflow could reach Google other than through Workload Identity Federation."""
    errors = key_file_errors(yaml.safe_dump(workflow))
    return errors + [e for n, j in jobs(workflow) for e in job_credential_errors(workflow, n, j)]


# --- prod ------------------------------------------------------------------------------------


def prod_errors(workflows: dict[str, Doc]) -> list[str]:
    """Prod deploys only from a v* tag or a manual run, in the GitHub environment `production`."""
    errors: list[str] = []
    prod = [
        (f"{file}:{name}", workflow, given(job))
        for file, workflow in workflows.items()
        for name, job in jobs(workflow)
        if job.get("uses") == DEPLOY
        and (given(job).get("stack") == "prod" or given(job).get("environment") == "production")
    ]
    if len(prod) != 1:
        errors.append(f"{len(prod)} jobs deploy prod; expected one")
    for where, workflow, inputs in prod:
        if (inputs.get("stack"), inputs.get("environment")) != ("prod", "production"):
            errors.append(f"{where}: prod deploys in the GitHub environment `production`")
        on = triggers(workflow)
        if set(on) - {"push", "workflow_dispatch"}:
            errors.append(f"{where}: prod deploys on {sorted(on)}")
        push = on.get("push") or {}
        tags_only = set(push) == {"tags"} and all(t.startswith("v") for t in push["tags"])
        if "push" in on and not tags_only:
            errors.append(f"{where}: a push deploys prod only for a v* tag, not {push}")
    return errors


def deploy_errors(workflow: Doc) -> list[str]:
    """deploy.yml runs only when called, in the caller's environment, on the caller's stack."""
    errors = []
    if set(triggers(workflow)) != {"workflow_call"}:
        errors.append("deploy.yml runs only when called (on: workflow_call)")
    for name, job in jobs(workflow):
        if job.get("environment") != "${{ inputs.environment }}":
            errors.append(f"{name}: the environment is not the caller's")
        pulumi = [s for s in steps(job) if uses(s, "pulumi/actions")]
        if not pulumi or any("inputs.stack" not in s["with"]["stack-name"] for s in pulumi):
            errors.append(f"{name}: pulumi does not run on the caller's stack")
    return errors


def _workflow(*job_steps: Doc, permissions: Doc | None = None) -> Doc:
    """A one-job workflow, granting the OIDC token unless told otherwise."""
    granted = {"contents": "read", "id-token": "write"} if permissions is None else permissions
    return {"jobs": {"job": {"permissions": granted, "steps": list(job_steps)}}}


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def _our_variables(step: Doc) -> set[str]:
    """The gong-sync settings a step sets or reads (README, Configuration)."""
    names = [*(step.get("env") or {}), *re.findall(r"\b[A-Z_]{4,}\b", str(step.get("run", "")))]
    return {n for n in names if n.startswith("GONG_SYNC_") or n == "INSTANCE_CONNECTION_NAME"}


# --- the workflows as they are ---------------------------------------------------------------


def test_the_pipeline_is_there() -> None:
    """Pull requests test and preview staging; main deploys staging; tags deploy prod."""
    workflows = load_workflows()
    assert set(workflows) == {"ci.yml", "deploy.yml", "release.yml"}
    ci = workflows["ci.yml"]
    assert triggers(ci) == {"pull_request": None, "push": {"branches": ["main"]}}
    pull_request = ci["jobs"]["pull-request"]
    assert list(workflow_commands({"jobs": {"pr": pull_request}})) == [
        ("make", "test"), ("pulumi", "preview")
    ]  # fmt: skip
    preview = next(s for s in steps(pull_request) if uses(s, "pulumi/actions"))
    assert preview["with"]["comment-on-pr"] is True
    assert "staging" in preview["with"]["stack-name"]
    assert ci["jobs"]["staging"]["uses"] == DEPLOY
    assert ci["jobs"]["staging"]["with"] == {"stack": "staging", "environment": "staging"}
    assert list(workflow_commands(workflows["deploy.yml"])) == [
        ("make", "test"), ("pulumi", "up"), ("gong-sync", "check", "--live", "--timeout", "1800")
    ]  # fmt: skip
    assert workflows["release.yml"]["jobs"]["production"]["with"] == {
        "stack": "prod", "environment": "production"
    }  # fmt: skip


def test_every_command_is_one_the_readme_documents() -> None:
    """make, gong-sync and pulumi run only as the README shows them (gong-sync: its flags too)."""
    readme = _readme()
    ran = [c for w in load_workflows().values() for c in workflow_commands(w)]
    assert ("gong-sync", "check") in {subcommands(c)[0] for c in ran}
    for name, workflow in load_workflows().items():
        assert command_errors(workflow, readme) == [], name


def test_google_is_reached_only_through_workload_identity_federation() -> None:
    """No key file anywhere; every Google step follows google-github-actions/auth with WIF."""
    for path in sorted(WORKFLOWS.glob("*.yml")):
        assert key_file_errors(path.read_text()) == [], path.name
    for name, workflow in load_workflows().items():
        assert credential_errors(workflow) == [], name


def test_prod_deploys_only_from_a_tag_or_by_hand_in_production() -> None:
    """One job deploys prod: on v* tags or workflow_dispatch, in the environment `production`."""
    workflows = load_workflows()
    assert prod_errors(workflows) == []
    assert deploy_errors(workflows["deploy.yml"]) == []


def test_actions_are_pinned_to_a_major_version_at_least() -> None:
    """`uses: owner/action@vN` (or a full commit), never a branch."""
    for name, workflow in load_workflows().items():
        for _, job in jobs(workflow):
            for step in steps(job):
                if "uses" in step:
                    assert PINNED.search(step["uses"]), (name, step["uses"])


def test_the_pulumi_cli_is_the_version_of_the_sdk() -> None:
    """The CLI that pulumi/actions installs is the release of the pinned Python SDK."""
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "constraints.txt").read_text(), re.MULTILINE)
    assert pin
    installed = {
        s["with"]["pulumi-version"]
        for w in load_workflows().values() for _, j in jobs(w) for s in steps(j)
        if uses(s, "pulumi/actions")
    }  # fmt: skip
    assert installed == {pin[1]}


def test_the_health_check_reads_what_the_program_creates_and_the_readme_documents() -> None:
    """Stack outputs the program exports (the ones `make lint` lets through actionlint), the
    names it gives the database, its user and the password's secret, and variables from the
    README's Configuration table."""
    exported = re.findall(r'pulumi\.export\("(\w+)"', (ROOT / "infra" / "__main__.py").read_text())
    deploy = (WORKFLOWS / "deploy.yml").read_text()
    read = set(re.findall(r"steps\.up\.outputs\.(\w+)", deploy))
    assert read
    assert read <= set(exported)
    let_through = re.search(r'property "\(([\w|]+)\)"', (ROOT / "Makefile").read_text())
    assert let_through
    assert set(let_through[1].split("|")) == read
    database = (ROOT / "infra" / "gong_sync_infra" / "database.py").read_text()
    secret = re.search(r'SecretArgs\("([\w-]+)"', database)
    assert secret
    assert f"/secrets/{secret[1]}" in deploy
    for field, variable in (("database", "GONG_SYNC_DB_NAME"), ("user", "GONG_SYNC_DB_USER")):
        name = re.search(rf'^    {field}: str = "(\w+)"', database, re.MULTILINE)
        assert name
        assert f"{variable}: {name[1]}" in deploy
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", _readme(), re.MULTILINE))
    for workflow in load_workflows().values():
        for _, job in jobs(workflow):
            for step in steps(job):
                assert _our_variables(step) <= documented, _our_variables(step) - documented


# --- each rule can fail ----------------------------------------------------------------------


def test_an_invented_command_or_flag_is_refused() -> None:
    """What the README does not show is refused; what it shows passes, however it is written."""
    documented = readme_commands(_readme())
    assert undocumented(("gong-sync", "check", "--no-such-flag"), documented) == [
        "`gong-sync check --no-such-flag` is not in the README"
    ]
    assert undocumented(("make", "deploy"), documented) == ["`make deploy` is not in the README"]
    assert undocumented(("pulumi", "destroy", "--yes"), documented)
    assert undocumented(("gong-sync", "check", "--json"), documented) == []
    assert undocumented(("pulumi", "config", "set", "--secret", "k", "v"), documented) == []
    script = "GONG_SYNC_BQ_PROJECT=p .venv/bin/gong-sync check --json && make test \\\n  ARGS=-x"
    assert list(commands(script)) == [
        ("gong-sync", "check", "--json"), ("make", "test", "ARGS=-x")
    ]  # fmt: skip
    bad = _workflow({"run": ".venv/bin/gong-sync check --no-such-flag"})
    assert command_errors(bad, _readme())


def test_the_credential_rules_can_fail() -> None:
    """A key file, Google before auth, no auth, no OIDC token, tests after auth or beside a
    secret: refused."""
    wif = {
        "uses": "google-github-actions/auth@v3",
        "with": {"workload_identity_provider": "projects/1/x", "service_account": "d@p.iam"},
    }
    up = {"uses": "pulumi/actions@v7", "with": {"command": "up", "stack-name": "staging"}}
    test, check = {"run": "make test"}, {"run": ".venv/bin/gong-sync check"}
    assert credential_errors(_workflow(test, wif, up, check)) == []
    assert credential_errors(_workflow(up, wif))
    assert credential_errors(_workflow(test, check))
    assert credential_errors(_workflow(test, {"run": "gcloud secrets list"}))
    assert credential_errors(_workflow(test, wif, up, permissions={"contents": "read"}))
    assert credential_errors(_workflow(wif, test, up))
    leaky = _workflow(test, wif, up)
    leaky["jobs"]["job"]["env"] = {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}
    assert credential_errors(leaky)
    assert credential_errors(_workflow(test, {**wif, "if": "github.ref == 'x'"}, up))
    key = {"uses": "google-github-actions/auth@v3", "with": {"credentials_json": "${{ x }}"}}
    assert credential_errors(_workflow(test, key, up))
    for text in ("GOOGLE_APPLICATION_CREDENTIALS: k", "--key-file=sa-key.json",
                 "service_account_key: x", "credentials_json: y"):  # fmt: skip
        assert key_file_errors(text), text


def test_the_prod_rules_can_fail() -> None:
    """Prod on a branch push, a pull request, in another environment, or twice: refused."""
    workflows = load_workflows()
    release = workflows["release.yml"]
    for on in ({"push": {"branches": ["main"]}}, {"pull_request": None},
               {"push": {"tags": ["*"]}, "workflow_dispatch": None}):  # fmt: skip
        assert prod_errors({**workflows, "release.yml": {**release, "on": on}}), on
    job = release["jobs"]["production"]
    elsewhere = {**job, "with": {"stack": "prod", "environment": "staging"}}
    moved = {"on": release[True], "jobs": {"p": elsewhere}}
    assert prod_errors({**workflows, "release.yml": moved})
    assert prod_errors({**workflows, "again.yml": release})
    deploy = workflows["deploy.yml"]
    fixed = {**deploy["jobs"]["deploy"], "environment": "staging"}
    assert deploy_errors({**deploy, "jobs": {"deploy": fixed}})
    assert deploy_errors({**deploy, "on": {"push": None}})
