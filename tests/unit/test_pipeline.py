import pytest

from hybridrec.pipeline import Step, StepFailed, run_steps


def test_steps_run_in_order_and_share_context():
    calls = []
    steps = [Step("a", lambda ctx: calls.append("a") or {"x": 1}),
             Step("b", lambda ctx: calls.append("b") or {"y": ctx["x"] + 1})]
    context = run_steps("job", steps, {})
    assert calls == ["a", "b"] and context["y"] == 2 and set(context["timings"]) == {"a", "b"}


def test_failing_step_is_named_and_stops_the_job():
    def boom(_):
        raise OSError("disk full")

    ran_after = []
    with pytest.raises(StepFailed, match="'write'.*disk full") as info:
        run_steps("job", [Step("write", boom), Step("after", lambda ctx: ran_after.append(1))], {})
    assert info.value.step == "write" and not ran_after
