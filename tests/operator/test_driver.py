from __future__ import annotations

from quantbench.driver import owner_of, spec_problem
from tests.operator.factories import spec_dict


def body(spec: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "b", "namespace": "ns", "uid": "u"}, "spec": spec}


def test_spec_problems_name_the_field() -> None:
    assert spec_problem(body(spec_dict())) is None
    problem = spec_problem(body(spec_dict(baseline="int4")))
    assert problem is not None and "spec.baseline" in problem and "int4" in problem
    problem = spec_problem(body({**spec_dict(), "serverr": {}}))
    assert problem is not None and "spec.serverr" in problem and "did you mean 'server'" in problem


def test_owner() -> None:
    owner = owner_of(body(spec_dict()))
    assert (owner.name, owner.namespace, owner.uid) == ("b", "ns", "u")
