"""The fault matrix's summary: every scenario reports its exact checks; the session prints them.

Each test in this folder is one scenario. It compares Postgres with what BigQuery holds
through the `matrix` fixture, which counts the rows compared, lost and duplicated. At the end
of the session one line per scenario and a total are printed. Each scenario travels on its
test's teardown report, so the summary is whole under `pytest -n 2` too (xdist's workers
send reports, with their user_properties, to the process that prints the summary).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator

import pytest

from tests.faults.matrix import Scenario

_OWN = pytest.StashKey[Scenario]()
_PROPERTY = "fault_scenario"
_SCENARIOS: list[Scenario] = []  # as reported, in the process that prints the summary


def _name(item: pytest.Item) -> str:
    module = item.path.stem.removeprefix("test_").replace("_", " ")
    test = item.name.removeprefix("test_").replace("_", " ")
    return f"{module}: {test}"


@pytest.fixture(autouse=True)
def matrix(request: pytest.FixtureRequest) -> Iterator[Scenario]:
    """This test's scenario: compare through it, so the summary shows what was checked."""
    scenario = Scenario(_name(request.node))
    request.node.stash[_OWN] = scenario
    yield scenario
    if scenario.outcome == "passed" and scenario.checks == 0:
        # A fault test that checks no content proves nothing about loss or duplication.
        pytest.fail(f"{scenario.name}: made no exact comparison through the matrix fixture")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    scenario = item.stash.get(_OWN, None)
    if scenario is not None and report.failed and report.when in ("setup", "call"):
        scenario.outcome = "FAILED"
    elif scenario is not None and report.skipped and report.when in ("setup", "call"):
        scenario.outcome = "skipped"
    if scenario is not None and report.when == "teardown":
        report.user_properties.append((_PROPERTY, dataclasses.asdict(scenario)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for key, value in report.user_properties:
        if key == _PROPERTY:
            _SCENARIOS.append(Scenario(**value))


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> None:
    ran = [s for s in _SCENARIOS if s.outcome != "skipped"]
    if not ran:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault matrix")
    width = max(len(s.name) for s in ran)
    for s in ran:
        flag = "" if s.outcome == "passed" else f"  {s.outcome}"
        note = f"  ({s.note})" if s.note else ""
        tr.write_line(
            f"{s.name:<{width}}  {s.checked:>6} rows checked, lost {s.lost},"
            f" duplicated {s.duplicated}{flag}{note}"
        )
    failed = sum(s.outcome != "passed" for s in ran)
    tr.write_line(
        f"fault matrix: {len(ran)} scenarios run{f' ({failed} FAILED)' if failed else ''},"
        f" {sum(s.checked for s in ran)} rows checked, lost {sum(s.lost for s in ran)},"
        f" duplicated {sum(s.duplicated for s in ran)}"
    )
