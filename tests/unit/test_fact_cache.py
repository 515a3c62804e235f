"""Facts read once per host while the deploy is prepared (saf/fact_cache.py), and afresh once it runs."""

from __future__ import annotations

from types import SimpleNamespace

from pyinfra.api.state import StateStage

from saf.fact_cache import cache_facts_while_preparing


class Kernel:
    pass


class File:
    pass


def node(stage: StateStage = StateStage.Prepare):
    asked: list[tuple] = []

    def get_fact(fact_cls, *args, **kwargs):
        asked.append((fact_cls.__name__, args, kwargs))
        return {"asked": len(asked), "nested": {"args": list(args)}}

    host = SimpleNamespace(state=SimpleNamespace(current_stage=stage), get_fact=get_fact)
    cache_facts_while_preparing(host)
    return host, asked


def test_while_preparing_the_same_question_is_asked_once():
    host, asked = node()
    assert host.get_fact(Kernel)["asked"] == host.get_fact(Kernel)["asked"] == 1
    assert host.get_fact(File, path="/a")["asked"] == 2
    assert host.get_fact(File, path="/b")["asked"] == 3  # other arguments: another question
    assert host.get_fact(File, path="/a", _sudo=True)["asked"] == 4
    assert host.get_fact(File, path="/a")["asked"] == 2
    assert host.get_fact(File, "/c") == {"asked": 5, "nested": {"args": ["/c"]}}  # positional arguments count too
    assert host.get_fact(File, "/d")["asked"] == 6 and host.get_fact(File, "/c")["asked"] == 5
    assert asked[4] == ("File", ("/c",), {}) and asked[3] == ("File", (), {"path": "/a", "_sudo": True})


def test_an_answer_changed_by_its_reader_is_not_the_next_answer():
    host, _ = node()
    answer = host.get_fact(Kernel)
    answer["asked"] = "changed"
    answer["nested"]["args"].append("changed too")
    assert host.get_fact(Kernel) == {"asked": 1, "nested": {"args": []}}


def test_once_operations_run_every_question_goes_to_the_node():
    host, asked = node()
    host.get_fact(Kernel)
    host.state.current_stage = StateStage.Execute
    assert host.get_fact(Kernel)["asked"] == 2 and host.get_fact(Kernel)["asked"] == 3
    host.get_fact(File, "/e", path="/f")
    assert asked[-1] == ("File", ("/e",), {"path": "/f"})  # passed on whole


def test_an_unhashable_argument_is_asked_every_time():
    host, asked = node()
    host.get_fact(File, ["/a"], paths=["/a"])
    host.get_fact(File, ["/a"], paths=["/a"])
    assert asked == [("File", (["/a"],), {"paths": ["/a"]})] * 2
