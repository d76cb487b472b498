"""`customer-focus demo` against a running stack: the story, its trace, the figures it leaves behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from ops.cli import app
from ops.demo import SCHEDULED_EVENT_TYPES, DemoError, DemoReport, DemoTargets, play, render
from ops.embedded import free_port
from ops.stack import Stack
from shared.observability import trace_id_of
from tests.ops.support import inbox

CLI = Path(sys.executable).with_name("customer-focus")

# What the default routing rules (contract §6) send each department in the demo's story.
EXPECTED = {
    # The complaint, its four response promises (acknowledge, resolve, follow-up for the NPS 3, and a new
    # resolve once reopened), the acknowledge one due soon at once (4 h < the 24 h lead), two met, the verdict.
    "support": Counter(
        {
            "feedback.received": 1,
            "commitment.created": 4,
            "commitment.due_soon": 1,
            "commitment.met": 2,
            "feedback.status_changed": 1,
            "feedback.verdict_given": 1,
        }
    ),
    "sales": Counter({"meeting.recorded": 1, "expectation.confirmed": 1}),
    "production": Counter(
        {
            "expectation.confirmed": 1,
            "commitment.created": 1,
            "commitment.due_soon": 1,
            "commitment.overdue": 1,
            "commitment.met": 1,
        }
    ),
    "management": Counter(
        {
            "feedback.received": 1,
            "commitment.overdue": 1,
            "commitment.met": 1,
            "feedback.status_changed": 1,
            "feedback.verdict_given": 1,
        }
    ),
}
TOTAL = sum(expected.total() for expected in EXPECTED.values())
CAUSED_BY_REQUESTS = sum(
    count
    for expected in EXPECTED.values()
    for event_type, count in expected.items()
    if event_type not in SCHEDULED_EVENT_TYPES
)


def targets(stack: Stack) -> DemoTargets:
    return DemoTargets(*(stack.url(target.name) for target in dataclasses.fields(DemoTargets)))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def report(stack: Stack) -> DemoReport:
    return await play(targets(stack), stack.token, overdue_in=2.0, wait_seconds=30.0)


def test_each_department_receives_what_the_routing_rules_say(report: DemoReport) -> None:
    received = {department: Counter(r.event_type for r in items) for department, items in report.received.items()}

    assert received == EXPECTED


def test_the_commitment_goes_overdue_and_is_met_late(report: DemoReport) -> None:
    production = [r.event_type for r in report.received["production"]]

    assert report.commitment_status == "met_late"
    assert production.index("commitment.overdue") < production.index("commitment.met")


def test_the_complaint_is_acknowledged_in_time_and_its_rejected_resolution_reaches_management(
    report: DemoReport,
) -> None:
    support = [r.event_type for r in report.received["support"]]
    management = [r.event_type for r in report.received["management"]]

    assert report.feedback_status == "reopened"
    assert report.response_promises == 4
    assert "/v1/verdicts/" in report.verdict_url
    assert management.index("feedback.received") < management.index("feedback.verdict_given")
    assert "feedback.status_changed" in management
    # The acknowledge promise was met before anything about the resolution happened.
    assert support.index("commitment.met") < support.index("feedback.verdict_given")


def test_every_event_a_request_caused_carries_the_demo_s_trace(report: DemoReport) -> None:
    caused_by_requests = [
        r for items in report.received.values() for r in items if r.event_type not in SCHEDULED_EVENT_TYPES
    ]

    assert len(caused_by_requests) == CAUSED_BY_REQUESTS
    assert {r.trace_id for r in caused_by_requests} == {report.trace_id}


def test_the_summary_lists_every_department_and_the_trace(report: DemoReport) -> None:
    summary = render(report)

    for department, expected in EXPECTED.items():
        assert f"  {department} ({expected.total()})" in summary
    assert f"Trace {report.trace_id}: carried by {CAUSED_BY_REQUESTS} of {TOTAL} notifications" in summary


async def test_metrics_show_the_demo_s_requests_and_the_outbox_gauges(stack: Stack, report: DemoReport) -> None:
    async with httpx.AsyncClient() as client:
        feedback = (await client.get(f"{stack.url('feedback')}/metrics")).text
        commitments = (await client.get(f"{stack.url('commitments')}/metrics")).text

    created = _sample(feedback, "cf_http_requests_total", method="POST", route="/v1/feedback", status="201")
    completed = _sample(
        commitments,
        "cf_http_requests_total",
        method="POST",
        route="/v1/commitments/{commitment_id}/complete",
        status="200",
    )
    assert created >= 1
    assert completed >= 1
    for text in (feedback, commitments):
        assert _sample(text, "cf_outbox_pending_events") >= 0
        assert _sample(text, "cf_outbox_oldest_pending_seconds") >= 0
    assert {figures.service for figures in report.metrics if figures.http_requests > 0} == {
        "feedback",
        "expectations",
        "commitments",
        "notifications",
        "customers",
    }


def test_the_timeline_tells_the_whole_story_newest_first(report: DemoReport) -> None:
    types = Counter(entry.event_type for entry in report.timeline)

    assert [entry.time for entry in report.timeline] == sorted((e.time for e in report.timeline), reverse=True)
    assert report.timeline[-1].event_type == "feedback.received"
    # The complaint's four response promises and production's; met: acknowledge, resolve (on "resolved"), the late one.
    assert types["commitment.created"] == 5
    assert types["commitment.met"] == 3
    assert types["meeting.recorded"] == types["expectation.confirmed"] == types["feedback.verdict_given"] == 1
    assert types["commitment.overdue"] == 1


def test_the_summary_ends_with_the_timeline_and_the_health(report: DemoReport) -> None:
    summary = render(report)

    timeline = summary.split(f"Timeline of {report.customer_id} ")[1]
    lines = [line for line in timeline.splitlines()[1:] if line.strip()]
    assert len(lines) >= len(report.timeline) + 1
    for line, entry in zip(lines, report.timeline, strict=False):
        assert entry.event_type in line
        assert entry.summary in line
    assert lines[len(report.timeline)].startswith("health: ")
    if report.health is None:
        assert "health: not computed yet" in summary
    else:
        assert f"health: {report.health['band']} (score {report.health['score']})" in summary


def _sample(exposition: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples with `labels`; fails if there is none."""
    values = [
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert values, f"no {name} sample with {labels}"
    return sum(values)


async def test_demo_command_prints_each_department_and_the_trace_travels(stack: Stack) -> None:
    urls = [f"--{target.name}-url={stack.url(target.name)}" for target in dataclasses.fields(DemoTargets)]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CF_")}
    # The token comes from CF_AUTH_SECRET, as for anyone who runs the stack with their own secret.
    environment["CF_AUTH_SECRET"] = stack.secret
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "demo",
        *urls,
        "--overdue-in",
        "1",
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()

    assert process.returncode == 0, output
    for department, expected in EXPECTED.items():
        assert f"  {department} ({expected.total()})" in output
    customer = re.search(r"about (demo-[\w-]+):", output)
    trace = re.search(rf"Trace ([0-9a-f]{{32}}): carried by {CAUSED_BY_REQUESTS} of {TOTAL}", output)
    assert customer is not None, output
    assert trace is not None, output
    assert f"Timeline of {customer.group(1)} " in output
    assert "feedback.received" in output.split("Timeline of ")[1]
    assert re.search(r"^health: ", output, re.MULTILINE), output
    complaint = (await inbox(stack, "support", customer.group(1)))[0]
    assert trace_id_of(complaint["event"]["traceparent"]) == trace.group(1)


async def test_demo_without_a_running_stack_says_what_to_start() -> None:
    nowhere = DemoTargets.on_ports(base_port=free_port())

    with pytest.raises(DemoError, match=r"is the stack running"):
        await play(nowhere, "any-token", wait_seconds=1.0)


def test_demo_command_without_a_running_stack_exits_with_an_error() -> None:
    port = free_port()

    result = CliRunner().invoke(app, ["demo", "--base-port", str(port), "--token", "t"], env={"CF_AUTH_SECRET": None})

    assert result.exit_code == 1
    assert f"cannot reach feedback at http://127.0.0.1:{port}" in result.output
