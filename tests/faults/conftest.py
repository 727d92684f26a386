"""The fault matrix's summary: every scenario reports its exact checks; the session prints them.

Each test in this folder is one scenario. It compares Postgres with what BigQuery holds
through the `matrix` fixture, which counts the rows compared, lost and duplicated. At the end
of the session one line per scenario and a total are printed (tests/conftest.py: the root
conftest is the one the process printing the summary loads, xdist's controller included).
Each scenario travels on its test's teardown report, with its user_properties.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator

import pytest

from tests.faults.matrix import SUMMARY_PROPERTY, Scenario

_OWN = pytest.StashKey[Scenario]()


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
        report.user_properties.append((SUMMARY_PROPERTY, dataclasses.asdict(scenario)))
    return report
